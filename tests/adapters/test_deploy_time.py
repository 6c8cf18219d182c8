"""The deploy-time adapter at the HTTP level: the Functions package goes up with a bearer
token (never the account key, D1) and waits out role propagation within a bound; a batch
endpoint's default is set by a GET and a PUT of the endpoint as the service returns it
(REST examples ``BatchEndpoint/get.json`` and ``createOrUpdate.json``, api 2025-12-01)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from adapters.deploy_time import (
    Bounds,
    ExpectedStateProvider,
    set_batch_default,
    upload_blob,
    upload_package,
)
from infra.package import archive_bytes, digest_of
from tenancy.errors import DependencyError
from tests.adapters.fake_arm import FakeCredential, InMemoryTransport

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Scripted(InMemoryTransport):
    """Answers each request with the next scripted reply and keeps what was sent."""

    replies: list[Reply]
    sent: list[Any] = field(default_factory=list)

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        status, headers, body = self.replies.pop(0)
        internal = requests.Response()
        internal.status_code = status
        internal.raw = io.BytesIO(body)
        internal.headers.update(headers)
        return RestRequestsTransportResponse(request=request, internal_response=internal)


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


CREATED: Reply = (201, {"ETag": '"0x1"', "Last-Modified": "Thu, 03 Dec 2026 12:00:00 GMT"}, b"")
MISMATCH: Reply = (
    403,
    {"x-ms-error-code": "AuthorizationPermissionMismatch", "Content-Type": "application/xml"},
    b"<?xml version='1.0'?><Error><Code>AuthorizationPermissionMismatch</Code>"
    b"<Message>This request is not authorized to perform this operation.</Message></Error>",
)


def _files(tmp_path: Path) -> Path:
    """A package zip as `make package` writes one."""
    (tmp_path / "function_app.py").write_text("import azure.functions as func\n")
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    package = tmp_path / "function-app.zip"
    package.write_bytes(
        archive_bytes(
            {"function_app.py": tmp_path / "function_app.py", "host.json": tmp_path / "host.json"}
        )
    )
    return package


def _upload(package: Path, transport: Scripted, clock: Clock, digest: str | None = None) -> str:
    return upload_package(
        blob_endpoint="https://stplatform.blob.core.windows.net/",
        container="function-releases",
        blob="released-package.zip",
        package=package,
        digest=digest or digest_of(package),
        credential=FakeCredential(),
        transport=transport,
        bounds=Bounds(
            sleep=clock.sleep, clock=lambda: clock.now, propagation_seconds=60, poll_seconds=15
        ),
    )


def test_the_package_is_uploaded_with_a_bearer_token_and_its_digest(tmp_path: Path) -> None:
    transport, clock = Scripted([CREATED]), Clock()
    url = _upload(_files(tmp_path), transport, clock)
    [request] = transport.sent
    assert request.method == "PUT"
    assert url == "https://stplatform.blob.core.windows.net/function-releases/released-package.zip"
    assert request.headers["Authorization"] == "Bearer fake-token"
    assert "SharedKey" not in json.dumps(dict(request.headers))
    assert "sig=" not in request.url  # no SAS either
    assert request.headers["x-ms-meta-digest"] == digest_of(tmp_path / "function-app.zip")
    assert request.headers["x-ms-blob-content-type"] == "application/zip"
    body = request.content if isinstance(request.content, bytes) else request.data
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert names == ["function_app.py", "host.json"]


def test_a_new_role_assignment_is_waited_for_within_a_bound(tmp_path: Path) -> None:
    transport, clock = Scripted([MISMATCH, MISMATCH, CREATED]), Clock()
    _upload(_files(tmp_path), transport, clock)
    assert len(transport.sent) == 3 and clock.slept == [15, 15]
    forever = Scripted([MISMATCH] * 10)
    with pytest.raises(DependencyError, match="Storage Blob Data Contributor"):
        _upload(_files(tmp_path), forever, Clock())
    assert len(forever.sent) == 5  # 0, 15, 30, 45, 60 s: then it gives up


def test_a_refusal_that_is_not_propagation_fails_at_once(tmp_path: Path) -> None:
    keys_off = (403, {"x-ms-error-code": "KeyBasedAuthenticationNotPermitted"}, b"")
    transport = Scripted([keys_off])
    with pytest.raises(DependencyError, match="KeyBasedAuthenticationNotPermitted"):
        _upload(_files(tmp_path), transport, Clock())
    assert len(transport.sent) == 1


def test_a_package_rebuilt_since_the_plan_is_not_uploaded(tmp_path: Path) -> None:
    package = _files(tmp_path)
    planned = digest_of(package)
    package.write_bytes(package.read_bytes() + b"rebuilt")
    transport = Scripted([CREATED])
    with pytest.raises(DependencyError, match="changed since the plan"):
        _upload(package, transport, Clock(), digest=planned)
    assert transport.sent == []


ENDPOINT = (
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/test-rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/my-aml-workspace/batchEndpoints/"
    "testEndpointName"
)


def _endpoint(state: str, defaults: dict[str, str] | None = None) -> Reply:
    """The GET shape of BatchEndpoint/get.json (2025-12-01)."""
    body = {
        "id": ENDPOINT,
        "name": "testEndpointName",
        "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints",
        "location": "westeurope",
        "tags": {"tenant-id": "contoso"},
        "kind": "string",
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
        "properties": {
            "authMode": "AADToken",
            "scoringUri": "https://testendpointname.westeurope.inference.ml.azure.com/jobs",
            "swaggerUri": "https://www.contoso.com/example",
            "provisioningState": state,
            **({"defaults": defaults} if defaults else {}),
        },
        "systemData": {"createdAt": "2020-01-01T12:34:56.999Z"},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _set(transport: Scripted, clock: Clock, seconds: float = 600) -> str:
    return set_batch_default(
        endpoint_id=ENDPOINT,
        deployment="default",
        credential=FakeCredential(),
        transport=transport,
        bounds=Bounds(
            sleep=clock.sleep, clock=lambda: clock.now, operation_seconds=seconds, poll_seconds=10
        ),
    )


def test_the_batch_default_is_set_by_a_put_of_the_endpoint_as_returned() -> None:
    transport, clock = (
        Scripted(
            [
                _endpoint("Succeeded"),
                (201, {}, b"{}"),
                _endpoint("Updating"),
                _endpoint("Succeeded", {"deploymentName": "default"}),
            ]
        ),
        Clock(),
    )
    assert _set(transport, clock) == "Succeeded"
    get, put, *polls = transport.sent
    assert (get.method, put.method) == ("GET", "PUT")
    assert all(urlparse(r.url).path == ENDPOINT for r in transport.sent)
    assert all("api-version=2025-12-01" in r.url for r in transport.sent)
    assert put.headers["Authorization"] == "Bearer fake-token"
    body = json.loads(put.content)
    assert body["properties"]["defaults"] == {"deploymentName": "default"}
    assert body["properties"]["authMode"] == "AADToken"
    assert body["tags"] == {"tenant-id": "contoso"} and body["location"] == "westeurope"
    for read_only in ("scoringUri", "swaggerUri", "provisioningState"):
        assert read_only not in body["properties"]
    assert "id" not in body and "systemData" not in body
    assert len(polls) == 2 and clock.slept == [10]


def test_a_failed_or_endless_update_is_reported() -> None:
    failed = Scripted([_endpoint("Succeeded"), (200, {}, b"{}"), _endpoint("Failed")])
    with pytest.raises(DependencyError, match="ended Failed"):
        _set(failed, Clock())
    endless = Scripted([_endpoint("Succeeded"), (200, {}, b"{}")] + [_endpoint("Updating")] * 10)
    with pytest.raises(DependencyError, match="still Updating after 30 s"):
        _set(endless, Clock(), seconds=30)
    refused = Scripted([(404, {}, b'{"error": {"code": "ResourceNotFound"}}')])
    with pytest.raises(DependencyError, match="answered 404"):
        _set(refused, Clock())


def test_the_expected_state_is_written_as_json_with_a_bearer_token() -> None:
    transport = Scripted([MISMATCH, CREATED])
    clock = Clock()
    document = json.dumps({"version": 1, "resources": []})
    url = upload_blob(
        blob_endpoint="https://stplatform.blob.core.windows.net/",
        container="platform-state",
        blob="expected-state.json",
        data=document.encode(),
        content_type="application/json",
        metadata={"digest": "abc"},
        what="the expected state",
        credential=FakeCredential(),
        transport=transport,
        bounds=Bounds(sleep=clock.sleep, clock=lambda: clock.now, poll_seconds=15),
    )
    assert url == "https://stplatform.blob.core.windows.net/platform-state/expected-state.json"
    request = transport.sent[-1]
    assert request.headers["Authorization"] == "Bearer fake-token"
    assert request.headers["x-ms-blob-content-type"] == "application/json"
    assert clock.slept == [15]  # the deployer's new grant was waited for
    body = request.content if isinstance(request.content, bytes) else request.data
    assert json.loads(body) == {"version": 1, "resources": []}


def test_the_expected_state_is_written_again_only_when_it_changes() -> None:
    provider = ExpectedStateProvider()
    olds = {
        "blobEndpoint": "https://st/",
        "containerName": "platform-state",
        "blobName": "expected-state.json",
        "digest": "a",
        "document": "{}",
    }
    assert not provider.diff("id", olds, dict(olds)).changes
    assert provider.diff("id", olds, {**olds, "digest": "b", "document": "{ }"}).changes
