"""The scoring gateway's semantics, in process (Starlette's test client) against real
loopback deployments."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from automation.store import MemoryStore
from local.collector import records_of
from local.gateway import Gateway, TenantLimits
from local.keys import KeyRing, digest
from local.serve import BackgroundServer
from tests.local.upstream import Upstream, upstreams

ADMIN = {"Authorization": "Bearer admin-token"}


class Client:
    """requests against the running gateway, with paths relative to its URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.session, method)
        return lambda path, **kwargs: call(self.url + path, timeout=30, **kwargs)


@pytest.fixture
def setup() -> Iterator[tuple[Client, Gateway, dict[str, str], dict[str, Upstream], list[Any]]]:
    ring = KeyRing(MemoryStore())
    keys = {
        tenant: ring.issue(tenant)["primary"] for tenant in ("contoso", "fabrikam", "northwind")
    }
    collected: list[Any] = []
    limits = {t: TenantLimits(rate_per_minute=600_000, max_payload_bytes=2048) for t in keys}
    gateway = Gateway(ring, limits, "admin-token", collector=collected.append, seed=7)
    server = BackgroundServer(gateway.app).start()
    client = Client(server.url)
    with upstreams("blue", "green", "pool") as servers:
        client.put(
            "/admin/endpoints/ep-contoso",
            json={"tenants": ["contoso"], "timeout_seconds": 0.5},
            headers=ADMIN,
        )
        client.put(
            "/admin/endpoints/ep-pool",
            json={"tenants": ["fabrikam", "northwind"], "pooled": True},
            headers=ADMIN,
        )
        for name in ("blue", "green"):
            client.put(
                f"/admin/endpoints/ep-contoso/deployments/{name}",
                json={"url": servers[name].url},
                headers=ADMIN,
            )
        client.put(
            "/admin/endpoints/ep-pool/deployments/blue",
            json={"url": servers["pool"].url},
            headers=ADMIN,
        )
        client.put(
            "/admin/endpoints/ep-contoso/traffic",
            json={"traffic": {"blue": 100, "green": 0}},
            headers=ADMIN,
        )
        client.put(
            "/admin/endpoints/ep-pool/traffic", json={"traffic": {"blue": 100}}, headers=ADMIN
        )
        yield client, gateway, keys, servers, collected
    server.stop()


def _score(
    client: Client, key: str, endpoint: str = "ep-contoso", body: Any = None, **headers: str
) -> Any:
    return client.post(
        f"/{endpoint}/score",
        json=body or {"data": [[1.0, 2.0]]},
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def test_the_tenant_comes_from_the_key(setup: Any) -> None:
    client, _, keys, _, _ = setup
    assert _score(client, keys["contoso"]).status_code == 200
    assert client.post("/ep-contoso/score", json={"data": [[1]]}).status_code == 401
    assert _score(client, "guessed-key").status_code == 401
    # Another tenant's key cannot reach this endpoint, nor its deployments through the header.
    assert _score(client, keys["fabrikam"]).status_code == 401
    assert (
        _score(client, keys["fabrikam"], **{"azureml-model-deployment": "green"}).status_code == 401
    )


def test_traffic_is_split_by_weight_and_the_header_picks_own_deployments(setup: Any) -> None:
    client, _, keys, _, _ = setup
    client.put(
        "/admin/endpoints/ep-contoso/traffic",
        json={"traffic": {"blue": 80, "green": 20}},
        headers=ADMIN,
    )
    served = Counter(
        _score(client, keys["contoso"]).headers["azureml-model-deployment"] for _ in range(200)
    )
    assert 120 < served["blue"] < 190 and served["green"] > 10
    client.put(
        "/admin/endpoints/ep-contoso/traffic",
        json={"traffic": {"blue": 100, "green": 0}},
        headers=ADMIN,
    )
    answer = _score(
        client, keys["contoso"], **{"azureml-model-deployment": "green"}
    )  # green at 0 %
    assert answer.status_code == 200 and answer.json()["predictions"] == ["green"]
    assert _score(client, keys["contoso"], **{"azureml-model-deployment": "red"}).status_code == 404


def test_a_pooled_endpoint_sets_the_tenant_and_ignores_the_callers_claims(setup: Any) -> None:
    client, _, keys, servers, _ = setup
    answer = _score(
        client,
        keys["northwind"],
        "ep-pool",
        **{"x-tenant-id": "fabrikam", "azureml-model-deployment": "green"},
    )
    assert answer.status_code == 200
    assert servers["pool"].seen[-1]["x-tenant-id"] == "northwind"


def test_payload_and_rate_limits(setup: Any) -> None:
    client, gateway, keys, _, _ = setup
    big = {"data": [[1.0] * 600]}
    assert _score(client, keys["contoso"], body=big).status_code == 413
    gateway.buckets["contoso"].tokens = 0
    gateway.buckets["contoso"].rate = 0.5
    limited = _score(client, keys["contoso"])
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert _score(client, keys["fabrikam"], "ep-pool").status_code == 200  # others unaffected


def test_too_many_pending_requests_on_one_deployment_is_a_429(setup: Any) -> None:
    client, gateway, keys, _, _ = setup
    gateway.endpoints["ep-contoso"].deployments["blue"].max_pending = 0
    answer = _score(client, keys["contoso"])
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"


def test_deployment_failures_map_to_azure_mls_statuses(setup: Any) -> None:
    client, gateway, keys, servers, _ = setup
    servers["blue"].mode = "bad_request"
    assert _score(client, keys["contoso"]).status_code == 400
    servers["blue"].mode = "fail"
    failed = _score(client, keys["contoso"])
    assert failed.status_code == 424 and failed.json()["error"]["code"] == "model_failed"
    servers["blue"].mode = "hang"
    assert _score(client, keys["contoso"]).status_code == 408
    servers["blue"].release.set()
    gateway.register("ep-contoso", "blue", "http://127.0.0.1:9")  # nothing listens there
    assert _score(client, keys["contoso"]).status_code == 424
    # Another tenant's endpoint kept serving throughout.
    assert _score(client, keys["fabrikam"], "ep-pool").status_code == 200


def test_no_traffic_is_a_404(setup: Any) -> None:
    client, _, keys, _, _ = setup
    client.put(
        "/admin/endpoints/ep-contoso/traffic",
        json={"traffic": {"blue": 0, "green": 0}},
        headers=ADMIN,
    )
    assert _score(client, keys["contoso"]).status_code == 404


def test_mirror_copies_and_metrics_count_per_deployment(setup: Any) -> None:
    client, _gateway, keys, servers, _ = setup
    client.put(
        "/admin/endpoints/ep-contoso/traffic",
        json={"traffic": {"blue": 100, "green": 0}, "mirror": {"green": 50}},
        headers=ADMIN,
    )
    for _ in range(40):
        _score(client, keys["contoso"])
    stats = client.get("/admin/endpoints/ep-contoso/deployments/blue/stats", headers=ADMIN).json()
    assert stats["requests"] == 40 and stats["errors"] == 0 and stats["p99_ms"] is not None
    assert 0 < len(servers["green"].seen) < 40  # about half mirrored, answers discarded


def test_inputs_and_outputs_are_collected_with_a_correlation_id(setup: Any) -> None:
    client, _, keys, _, collected = setup
    body = {"input_data": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}
    answer = _score(client, keys["contoso"], body=body)
    exchange = collected[-1]
    (kind, inputs), (kind2, outputs) = records_of(exchange)
    assert (exchange.endpoint, exchange.deployment) == ("ep-contoso", "blue")
    assert (kind, kind2) == ("model_inputs", "model_outputs")
    assert inputs["data"] == [{"a": 1.0, "b": 2.0}] and outputs["data"] == ["blue"]
    assert inputs["correlationid"] == outputs["correlationid"] == answer.headers["x-request-id"]


def test_the_admin_api_checks_its_token_and_the_traffic_rules(setup: Any) -> None:
    client, _, _, _, _ = setup
    assert client.get("/admin/endpoints").status_code == 401
    for body, expected in (
        ({"traffic": {"blue": 60, "green": 30}}, 400),
        ({"traffic": {"blue": 100, "green": 0}, "mirror": {"green": 60}}, 400),
        ({"traffic": {"blue": 90, "green": 10}, "mirror": {"green": 10}}, 400),
        ({"traffic": {"blue": 100, "purple": 0}}, 200),
    ):
        assert (
            client.put("/admin/endpoints/ep-contoso/traffic", json=body, headers=ADMIN).status_code
            == expected
        )
    assert (
        client.delete("/admin/endpoints/ep-contoso/deployments/blue", headers=ADMIN).status_code
        == 409
    )
    assert (
        client.delete("/admin/endpoints/ep-contoso/deployments/green", headers=ADMIN).status_code
        == 200
    )


def test_keys_are_stored_as_digests_and_rotate_one_slot_at_a_time() -> None:
    store = MemoryStore()
    ring = KeyRing(store)
    issued = ring.issue("contoso")
    record = store.get("keys", "tenants", "contoso")
    assert record is not None and record.data == {slot: digest(k) for slot, k in issued.items()}
    assert issued["primary"] not in str(record.data)
    fresh = ring.rotate("contoso", "primary")
    assert ring.tenant_of(issued["primary"]) is None
    assert ring.tenant_of(fresh) == ring.tenant_of(issued["secondary"]) == "contoso"


def _hanging(client: Client, key: str, upstream: Upstream, count: int) -> list[threading.Thread]:
    """``count`` of a tenant's requests to the pool held by its deployment (until released)."""
    seen = len(upstream.seen)
    threads = [
        threading.Thread(target=_score, args=(client, key, "ep-pool"), daemon=True)
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(upstream.seen) < seen + count and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the requests to arrive
    assert len(upstream.seen) == seen + count
    return threads


def _released(upstream: Upstream, threads: list[threading.Thread]) -> None:
    upstream.release.set()
    for thread in threads:
        thread.join(timeout=30)
    upstream.mode, upstream.release = "ok", threading.Event()


def test_a_tenants_concurrent_requests_are_capped_as_api_management_caps_them(
    setup: Any,
) -> None:
    client, gateway, keys, servers, _ = setup
    gateway.limits["fabrikam"].max_concurrency = 2
    servers["pool"].mode = "hang"
    held = _hanging(client, keys["fabrikam"], servers["pool"], 2)
    try:
        refused = _score(client, keys["fabrikam"], "ep-pool")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "concurrency_limited"
        northwind = _hanging(client, keys["northwind"], servers["pool"], 1)  # its own cap
    finally:
        _released(servers["pool"], held)
    _released(servers["pool"], northwind)
    assert _score(client, keys["fabrikam"], "ep-pool").status_code == 200  # slots given back


def test_one_tenant_cannot_take_a_pooled_deployment_from_the_others(setup: Any) -> None:
    client, _, keys, servers, _ = setup
    client.put(
        "/admin/endpoints/ep-pool/deployments/blue",
        json={"url": servers["pool"].url, "max_pending": 4},
        headers=ADMIN,
    )
    servers["pool"].mode = "hang"
    held = _hanging(client, keys["fabrikam"], servers["pool"], 2)  # its share: 4 slots / 2
    try:
        beyond = _score(client, keys["fabrikam"], "ep-pool")
        assert beyond.status_code == 429  # northwind's share stays free for northwind
        held += _hanging(client, keys["northwind"], servers["pool"], 2)
    finally:
        _released(servers["pool"], held)


def test_a_restarting_deployment_says_when_to_come_back_and_a_failed_one_fails(
    setup: Any,
) -> None:
    client, gateway, keys, servers, _ = setup
    gateway.suspend("ep-contoso", "blue", 4, "deployment blue is restarting")
    restarting = _score(client, keys["contoso"])
    assert restarting.status_code == 503
    assert 1 <= int(restarting.headers["Retry-After"]) <= 4
    assert restarting.json()["error"]["message"] == "deployment blue is restarting"
    gateway.suspend("ep-contoso", "blue", None, "deployment blue is in a crash loop")
    assert _score(client, keys["contoso"]).status_code == 424
    gateway.register("ep-contoso", "blue", servers["blue"].url)  # back, with its share
    assert gateway.endpoints["ep-contoso"].traffic["blue"] == 100
    assert _score(client, keys["contoso"]).status_code == 200


def test_a_budget_stop_refuses_that_tenant_alone_until_its_day(setup: Any) -> None:
    client, gateway, keys, servers, _ = setup
    stop = "/admin/tenants/fabrikam/budget-stop"
    assert client.put(stop, json={"until": "2027-01-01T00:00:00+00:00"}).status_code == 401
    answer = client.put(stop, json={"until": "2027-01-01T00:00:00+00:00"}, headers=ADMIN)
    assert answer.json() == {"tenant": "fabrikam", "refused_until": "2027-01-01"}
    seen = len(servers["pool"].seen)
    refused = _score(client, keys["fabrikam"], "ep-pool")
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "budget_exceeded",
        "message": "the budget of tenant fabrikam is spent: its scoring requests are refused "
        "until 2027-01-01",
    }
    assert len(servers["pool"].seen) == seen  # refused before the shared deployment
    assert _score(client, keys["northwind"], "ep-pool").status_code == 200  # its neighbour
    # Applied again (the automation does, every run): the same; lifted: served again.
    assert client.put(stop, json={"until": "2027-01-01T00:00:00+00:00"}, headers=ADMIN).ok
    assert client.delete(stop, headers=ADMIN).json()["refused_until"] is None
    assert _score(client, keys["fabrikam"], "ep-pool").status_code == 200
    # A stop whose day has passed refuses nothing.
    client.put(stop, json={"until": "2020-01-01T00:00:00+00:00"}, headers=ADMIN)
    assert _score(client, keys["fabrikam"], "ep-pool").status_code == 200
    # Bad input is named, and changes nothing.
    for body in ({"until": "soon"}, {"until": "2027-01-01T00:00:00"}, {}):
        answer = client.put(stop, json=body, headers=ADMIN)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_input"
    unknown = client.put("/admin/tenants/nobody/budget-stop", json={}, headers=ADMIN)
    assert unknown.status_code == 404
    assert gateway.budget_stops["fabrikam"][1] == "2020-01-01"
