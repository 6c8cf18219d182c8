"""The Azure data planes at the HTTP level: scoring keeps every answer's status (W13) and
sends the headers a pooled deployment needs; run metrics come from the workspace's MLflow
API."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
from azure.core.exceptions import ServiceRequestError, ServiceResponseTimeoutError
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from adapters.azure_data import DataPlane
from tenancy.errors import DependencyError
from tests.adapters.fake_arm import FakeCredential, InMemoryTransport

SCORING = "https://ep.westeurope.inference.ml.azure.com/score"
TRACKING = "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"


class Answers(InMemoryTransport):
    def __init__(self, status: int = 200, body: bytes = b"{}", error: Exception | None = None):
        self.status, self.body, self.error = status, body, error
        self.requests: list[Any] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        internal = requests.Response()
        internal.status_code = self.status
        internal.raw = io.BytesIO(self.body)
        response = RestRequestsTransportResponse(request=request, internal_response=internal)
        response.read()
        return response


def _plane(transport: Answers) -> DataPlane:
    return DataPlane(FakeCredential(), transport)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Answers(502, b"<html>502 Bad Gateway</html>"), 502),  # not JSON: the status stays
        (Answers(424, b'{"error": "model failed"}'), 424),
        (Answers(error=ServiceResponseTimeoutError("read timed out")), 408),
        (Answers(error=ServiceRequestError("connection refused")), 503),
    ],
    ids=["non-json-502", "424", "timeout", "unreachable"],
)
def test_every_scoring_answer_becomes_its_status(answer: Answers, status: int) -> None:
    assert _plane(answer).score(SCORING, {"data": [[1.0]]}, "green") == status
    assert len(answer.requests) == 1  # no retry hides what green answered


def test_scoring_names_the_deployment_and_a_pools_tenant_with_a_token() -> None:
    answer = Answers(200, b'{"predictions": [1]}')
    assert _plane(answer).score(SCORING, {"data": [[1.0]]}, "green", tenant="litware") == 200
    sent = answer.requests[0]
    assert sent.headers["azureml-model-deployment"] == "green"
    assert sent.headers["x-tenant-id"] == "litware"
    assert sent.headers["Authorization"] == "Bearer fake-token"
    assert json.loads(sent.content) == {"data": [[1.0]]}


def test_run_metrics_come_from_the_workspaces_mlflow_api() -> None:
    body = {"run": {"data": {"metrics": [{"key": "accuracy", "value": 0.93, "step": 0}]}}}
    answer = Answers(200, json.dumps(body).encode())
    assert _plane(answer).run_metrics(TRACKING, "job-1") == {"accuracy": 0.93}
    url = answer.requests[0].url
    assert url.startswith("https://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/")
    assert url.endswith("/api/2.0/mlflow/runs/get?run_id=job-1")


def test_an_unknown_run_has_no_metrics_and_a_refusal_is_a_dependency_error() -> None:
    assert _plane(Answers(404, b"{}")).run_metrics(TRACKING, "gone") == {}
    with pytest.raises(DependencyError, match="403"):
        _plane(Answers(403, b"{}")).run_metrics(TRACKING, "job-1")
