"""An azure-core transport that answers Azure Resource Manager as Azure ML does, in memory,
and records every request (method, path, api-version, body) for the tests to assert."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", 4_102_444_800)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    api_version: str
    body: Any


class InMemoryTransport(HttpTransport):
    """An azure-core transport with nothing to open or close: subclasses answer ``send``."""

    def __enter__(self) -> InMemoryTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class FakeArm(InMemoryTransport):
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlparse(request.url)
        body = json.loads(request.content) if getattr(request, "content", None) else None
        version = parse_qs(url.query).get("api-version", [""])[0]
        path = url.path.lower()
        self.calls.append(Call(request.method, url.path, version, body))
        status = self.failures.get((request.method, path))
        if status:
            return self._respond(
                request, status, {"error": {"code": "Failed", "message": "injected"}}
            )
        if request.method == "GET":
            found = self.resources.get(path) or self._collection(path)
            return self._respond(
                request,
                200 if found else 404,
                found or {"error": {"code": "ResourceNotFound", "message": path}},
            )
        if request.method == "PUT":
            stored = {**(body or {}), "id": url.path, "name": url.path.rsplit("/", 1)[-1]}
            stored.setdefault("properties", {})["provisioningState"] = "Succeeded"
            if "/models/" in path:  # as ARM answers a model version (ModelVersion/get.json)
                stored["properties"]["flavors"] = stored["properties"].get("flavors") or {}
            self.resources[path] = stored
            return self._respond(request, 200, stored)
        if request.method in ("DELETE", "POST", "PATCH"):
            if request.method == "DELETE":
                self.resources.pop(path, None)
            return self._respond(request, 200, {})
        return self._respond(request, 405, {})

    def _collection(self, path: str) -> dict[str, Any] | None:
        """A list GET: the resources one segment below ``path``."""
        children = [
            r for key, r in sorted(self.resources.items())
            if key.startswith(path + "/") and "/" not in key[len(path) + 1 :]
        ]  # fmt: skip
        return {"value": children} if children else None

    @staticmethod
    def _respond(request: Any, status: int, body: Any) -> Any:
        internal = requests.Response()
        internal.status_code = status
        internal.raw = io.BytesIO(json.dumps(body).encode())
        internal.headers["Content-Type"] = "application/json"
        return RestRequestsTransportResponse(request=request, internal_response=internal)

    def writes(self, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method != "GET" and re.search(pattern, c.path, re.I)]
