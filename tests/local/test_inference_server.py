"""score.py unchanged under azureml-inference-server-http (its own environment, gunicorn on a
free loopback port), for a single model and a pooled deployment."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local.inference_server import InferenceServer, start_inference_server
from ml.data import TenantData

Splits = dict[str, tuple[TenantData, TenantData]]


def _post(
    server: InferenceServer, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{server.url}/score",
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class DataCollectorSidecar:
    """Stands in for the data collector sidecar of an Azure ML deployment. The collector SDK
    posts each payload to ``http://<AZUREML_MDC_HOST>:<AZUREML_MDC_PORT>/modeldata/log``."""

    def __init__(self) -> None:
        self.payloads: list[tuple[dict[str, str], Any]] = []
        self._arrived = threading.Condition()
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with sidecar._arrived:
                    sidecar.payloads.append(
                        ({k.lower(): v for k, v in self.headers.items()}, json.loads(body))
                    )
                    sidecar._arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(
        self, done: Callable[[list[tuple[dict[str, str], Any]]], bool], timeout: float = 60
    ) -> list[tuple[dict[str, str], Any]]:
        """Every payload so far, once ``done`` holds for them (or the timeout passed)."""
        with self._arrived:
            self._arrived.wait_for(lambda: done(self.payloads), timeout)
            return list(self.payloads)


@pytest.fixture(scope="module")
def sidecar() -> Iterator[DataCollectorSidecar]:
    running = DataCollectorSidecar()
    yield running
    running.server.shutdown()


@pytest.fixture(scope="module")
def servers(
    model_dirs: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    sidecar: DataCollectorSidecar,
) -> Iterator[dict[str, InferenceServer]]:
    logs = tmp_path_factory.mktemp("server-logs")
    # The pooled deployment runs as one with a data collector: the environment variables
    # Azure ML sets for such a deployment, pointing at the sidecar.
    collecting = {
        "AZUREML_MDC_ENABLED": "true",
        "AZUREML_MDC_HOST": "127.0.0.1",
        "AZUREML_MDC_PORT": str(sidecar.port),
    }
    started = {
        "single": start_inference_server(model_dirs["single"], logs / "single.log"),
        "pool": start_inference_server(model_dirs["pool"], logs / "pool.log", env=collecting),
    }
    yield started
    for server in started.values():
        server.stop()


def test_the_server_scores_through_score_py(
    servers: dict[str, InferenceServer], local_splits: Splits
) -> None:
    rows = local_splits["contoso"][1].X[:5].tolist()
    status, body = _post(servers["single"], {"data": rows})
    assert status == 200
    assert len(body["predictions"]) == 5 and len(body["probabilities"][0]) == 2


def test_bad_input_is_a_400_under_the_server(servers: dict[str, InferenceServer]) -> None:
    status, body = _post(servers["single"], b'{"data": [[NaN]]}')
    assert status == 400
    assert body == {
        "error": {"code": "invalid_input", "message": "NaN is not allowed: send finite numbers"}
    }


def test_a_pooled_deployment_routes_by_the_gateways_header(
    servers: dict[str, InferenceServer], local_splits: Splits
) -> None:
    text = {"data": [["password reset login"]]}
    assert _post(servers["pool"], text, {"x-tenant-id": "litware"})[0] == 200
    assert _post(servers["pool"], text)[0] == 400
    assert _post(servers["pool"], text, {"x-tenant-id": "umbrella"})[0] == 404


def test_with_a_data_collector_inputs_and_outputs_are_collected_per_tenant(
    servers: dict[str, InferenceServer],
    sidecar: DataCollectorSidecar,
    local_splits: Splits,
    model_dirs: dict[str, Path],
) -> None:
    """W5: score.py calls Azure ML's data collector (azureml-ai-monitoring, unchanged). The
    inputs carry the model's column names, the outputs carry the predictions and class
    probabilities, both are tagged with the pooled tenant, and the two share the correlation
    id drift monitoring joins on: the request's x-request-id, which labels name."""
    column = json.loads((model_dirs["pool"] / "litware" / "schema.json").read_text())[
        "columns"
    ][0]
    # A refused request and the single-model server (no collector) come first: the collector
    # sends in order, so had they been collected they would arrive before the valid call's.
    assert _post(servers["pool"], {"data": [[1]]}, {"x-tenant-id": "litware"})[0] == 400
    assert _post(servers["single"], {"data": local_splits["contoso"][1].X[:2].tolist()})[0] == 200
    texts = [["collector check: vpn drops"], ["collector check: invoice overdue"]]
    headers = {"x-tenant-id": "litware", "x-request-id": "r-collector-check"}
    status, body = _post(servers["pool"], {"data": texts}, headers)
    assert status == 200
    expected_inputs = [{"tenant_id": "litware", column: text} for [text] in texts]

    def position(got: list[tuple[dict[str, str], Any]]) -> int:
        return next((i for i, (_, data) in enumerate(got) if data == expected_inputs), -1)

    # The inputs' payload and the one after it (the outputs, sent in order) have arrived.
    arrived = sidecar.wait_for(lambda got: 0 <= position(got) < len(got) - 1)
    at = position(arrived)
    assert at >= 0, f"no inputs payload arrived: {arrived}"
    (inputs_headers, _), (outputs_headers, outputs) = arrived[at : at + 2]
    assert inputs_headers["ce-type"] == "azureml.inference.model_inputs"
    assert outputs_headers["ce-type"] == "azureml.inference.model_outputs"
    timed = [row.pop("scoring_ms") for row in outputs]  # the request's time, shared per row
    assert len(set(timed)) == 1 and timed[0] > 0
    assert outputs == [
        {"tenant_id": "litware", "prediction": p, "probabilities": q, "classes": body["classes"]}
        for p, q in zip(body["predictions"], body["probabilities"], strict=True)
    ]
    # Collected under the gateway's request id: the tenant's labels name that id.
    assert inputs_headers["ce-x-request-id"] == outputs_headers["ce-x-request-id"]
    assert inputs_headers["ce-x-request-id"] == "r-collector-check"
    collected = [json.dumps(data) for _, data in arrived]
    assert not any("[[1]]" in text or "contoso" in text for text in collected)


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses listening on ``port`` (Linux's /proc/net/tcp: hex, little-endian)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if fields[3] == "0A" and int(port_hex, 16) == port:
            addresses.add(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
    return addresses


def test_the_server_binds_loopback_only(servers: dict[str, InferenceServer]) -> None:
    for server in servers.values():
        assert _listening_addresses(server.port) == {"127.0.0.1"}


def test_the_inference_server_takes_its_workers_from_the_variable_deployments_set() -> None:
    """Deployments set WORKER_COUNT to their vCPUs (infra.stamp); this is the variable the
    installed azureml-inference-server-http reads, and its default is one worker."""
    import subprocess  # noqa: PLC0415

    from local.inference_server import scoring_python  # noqa: PLC0415
    from tenancy import contracts  # noqa: PLC0415

    read = subprocess.run(
        [
            str(scoring_python()),
            "-c",
            "from azureml_inference_server_http import constants as c; "
            "print(c.ENV_WORKER_COUNT, c.DEFAULT_WORKER_COUNT)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert read.stdout.split() == [contracts.SETTING_SCORING_WORKERS, "1"]
