"""score.py unchanged under azureml-inference-server-http (its own environment, gunicorn on a
free loopback port), for a single model and a pooled deployment."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml.data import TenantData
from ml.serving import InferenceServer, start_inference_server

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


@pytest.fixture(scope="module")
def servers(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, InferenceServer]]:
    logs = tmp_path_factory.mktemp("server-logs")
    started = {
        "single": start_inference_server(model_dirs["single"], logs / "single.log"),
        "pool": start_inference_server(model_dirs["pool"], logs / "pool.log"),
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
