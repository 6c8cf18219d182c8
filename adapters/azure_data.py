"""The Azure data planes the automation calls beside ARM, through one azure-core pipeline
each (the tests give them the same fake transport as MLClient): scoring an online endpoint,
and the workspace's MLflow tracking API for a model's run metrics.

Why not the SDK's ``online_endpoints.invoke``: it cannot send the ``x-tenant-id`` header a
pooled deployment needs (APIM sets it for tenants), it loses an error answer's status when
the body is not JSON (``MlException``, the review's W13) and maps 408 to a timeout error.
Here every answer is its status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    RetryPolicy,
)
from azure.core.rest import HttpRequest

from tenancy.errors import DependencyError

logger = logging.getLogger("tenant_mlops.azure")

#: AADToken online endpoints take tokens for Azure ML's audience
#: (https://learn.microsoft.com/azure/machine-learning/how-to-authenticate-online-endpoint).
SCORING_SCOPE = "https://ml.azure.com/.default"
#: The workspace's MLflow API takes the Azure Resource Manager token azureml-mlflow sends
#: (https://learn.microsoft.com/azure/machine-learning/how-to-use-mlflow-configure-tracking).
TRACKING_SCOPE = "https://management.azure.com/.default"
#: The header that routes a request to one deployment, whatever the traffic split
#: (https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints).
DEPLOYMENT_HEADER = "azureml-model-deployment"
TENANT_HEADER = "x-tenant-id"
SCORING_TIMEOUT_SECONDS = 30


class DataPlane:
    def __init__(self, credential: TokenCredential, transport: Any = None) -> None:
        self._scoring = self._client(credential, SCORING_SCOPE, transport)
        self._tracking = self._client(credential, TRACKING_SCOPE, transport)

    @staticmethod
    def _client(
        credential: TokenCredential, scope: str, transport: Any
    ) -> PipelineClient[Any, Any]:
        options: dict[str, Any] = {"transport": transport} if transport is not None else {}
        return PipelineClient(
            base_url="",
            policies=[
                HeadersPolicy(),
                # One attempt: a smoke test counts what green answers, retries would hide it.
                RetryPolicy(retry_total=0),
                BearerTokenCredentialPolicy(credential, scope),
            ],
            **options,
        )

    def score(
        self,
        scoring_uri: str,
        body: Mapping[str, Any],
        deployment: str,
        tenant: str | None = None,
    ) -> int:
        """The HTTP status of one scoring request to ``deployment``; 408 when it does not
        answer in time, 503 when it cannot be reached."""
        headers = {DEPLOYMENT_HEADER: deployment}
        if tenant:
            headers[TENANT_HEADER] = tenant
        request = HttpRequest("POST", scoring_uri, json=dict(body), headers=headers)
        try:
            response = self._scoring.send_request(
                request, read_timeout=SCORING_TIMEOUT_SECONDS, connection_timeout=10
            )
        except (ServiceRequestTimeoutError, ServiceResponseTimeoutError):
            return 408
        except AzureError as error:
            logger.warning("deployment %s could not be reached: %s", deployment, error)
            return 503
        return int(response.status_code)

    def run_metrics(self, tracking_uri: str, run_id: str) -> dict[str, float]:
        """The latest value of each metric of an MLflow run in the workspace
        (``GET /api/2.0/mlflow/runs/get``, MLflow's REST API, which the workspace serves)."""
        base = tracking_uri.replace("azureml://", "https://", 1).rstrip("/")
        url = f"{base}/api/2.0/mlflow/runs/get?run_id={quote(run_id, safe='')}"
        try:
            response = self._tracking.send_request(HttpRequest("GET", url))
        except AzureError as error:
            raise DependencyError(f"the workspace's MLflow API is not reachable: {error}") from None
        if response.status_code == 404:
            return {}
        if response.status_code >= 400:
            raise DependencyError(
                f"the workspace's MLflow API answered {response.status_code} for run {run_id}"
            )
        metrics = (response.json().get("run") or {}).get("data", {}).get("metrics") or []
        return {str(m["key"]): float(m["value"]) for m in metrics if "key" in m and "value" in m}
