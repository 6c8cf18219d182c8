"""Azure Resource Manager over one azure-core pipeline (bearer token, retries on throttling
and transient errors, as the SDKs retry), with no SDK of its own: what the policy audit's
inventory (``adapters.azure_inventory``) and the budgets (``adapters.azure``) read and write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest

from tenancy.errors import DependencyError, NotFoundError

ARM = "https://management.azure.com"
SCOPE = f"{ARM}/.default"


class Arm:
    def __init__(
        self, credential: TokenCredential, *, user_agent: str, transport: Any = None
    ) -> None:
        policies = [
            UserAgentPolicy(user_agent=user_agent),
            RetryPolicy(),
            BearerTokenCredentialPolicy(credential, SCOPE),
        ]
        self.client: PipelineClient[HttpRequest, Any] = PipelineClient(
            base_url=ARM, policies=policies, transport=transport
        )

    def send(self, request: HttpRequest, what: str, *, missing_ok: bool = False) -> Any:
        """The JSON answer; ``{}`` for a 404 when ``missing_ok``, else a 404 is a
        :class:`NotFoundError` and any other failure a :class:`DependencyError`, each
        naming ``what`` and the status."""
        response = self.client.send_request(request)
        response.read()  # a transport may hand the body over unread
        if response.status_code == 404:
            if missing_ok:
                return {}
            raise NotFoundError(f"{what} does not exist (ARM answered 404)")
        if response.status_code >= 400:
            raise DependencyError(
                f"{what} answered {response.status_code}: {response.text()[:300]}"
            )
        return response.json() if response.content else {}

    def get(self, path: str, api_version: str, what: str) -> Any:
        return self.send(HttpRequest("GET", f"{ARM}{path}?api-version={api_version}"), what)

    def send_get_or_none(self, path: str, api_version: str, what: str) -> Any:
        """The resource, or None when ARM answers 404."""
        request = HttpRequest("GET", f"{ARM}{path}?api-version={api_version}")
        found = self.send(request, what, missing_ok=True)
        return found or None

    def put(
        self,
        path: str,
        api_version: str,
        body: Mapping[str, Any],
        what: str,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        request = HttpRequest(
            "PUT",
            f"{ARM}{path}?api-version={api_version}",
            json=dict(body),
            headers=dict(headers or {}),
        )
        return self.send(request, what)

    def list(self, path: str, api_version: str, what: str) -> Iterator[Mapping[str, Any]]:
        """Every item of an ARM list, following ``nextLink``; nothing when the parent is
        gone (https://learn.microsoft.com/rest/api/machinelearning/online-endpoints/list
        answers ``{"value": [...], "nextLink": ...}``, as every ARM list does)."""
        url: str | None = f"{ARM}{path}?api-version={api_version}"
        while url:
            answer = self.send(HttpRequest("GET", url), what, missing_ok=True)
            yield from answer.get("value") or []
            url = answer.get("nextLink")
