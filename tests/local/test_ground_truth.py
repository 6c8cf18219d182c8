"""Ground truth at the gateway: each score answers with a request id the caller's tenant can
later label through ``POST /{endpoint}/feedback``; labels land in the collector's storage
(Azurite) before the answer counts them, and a label for a request the tenant did not make,
or made too long ago, is never stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient, ContainerClient

from automation.store import MemoryStore
from local.azurite import start_azurite
from local.collector import records_of
from local.gateway import Gateway, GroundTruth, TenantLimits
from local.keys import KeyRing
from local.serve import BackgroundServer
from tenancy import contracts, request_ids
from tests.local.upstream import upstreams

ADMIN = {"Authorization": "Bearer admin-token"}
KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 9, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerClient]:
    azurite = start_azurite(tmp_path_factory.mktemp("azurite-labels"))
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    yield service.create_container("collected")
    azurite.stop()


class Platform:
    def __init__(self, url: str, keys: dict[str, str], gateway: Gateway, clock: Clock) -> None:
        self.url, self.keys, self.gateway, self.clock = url, keys, gateway, clock

    def score(self, tenant: str, endpoint: str) -> requests.Response:
        return requests.post(
            f"{self.url}/{endpoint}/score",
            json={"data": [[1.0, 2.0], [3.0, 4.0]]},
            headers={"Authorization": f"Bearer {self.keys[tenant]}"},
            timeout=30,
        )

    def feedback(self, tenant: str, endpoint: str, body: Any) -> requests.Response:
        return requests.post(
            f"{self.url}/{endpoint}/feedback",
            data=body if isinstance(body, bytes) else json.dumps(body),
            headers={"Authorization": f"Bearer {self.keys[tenant]}"},
            timeout=30,
        )


@pytest.fixture
def platform(container: ContainerClient) -> Iterator[Platform]:
    for blob in container.list_blobs():
        container.delete_blob(blob.name)
    ring = KeyRing(MemoryStore())
    keys = {t: ring.issue(t)["primary"] for t in ("contoso", "fabrikam", "northwind")}
    limits = {t: TenantLimits(rate_per_minute=600_000, max_payload_bytes=64_000) for t in keys}
    clock = Clock()
    truth = GroundTruth(
        KEY,
        timedelta(hours=24),
        max_labels=3,
        write=container.upload_blob,
    )
    collected: list[Any] = []
    gateway = Gateway(
        ring, limits, "admin-token", collector=collected.append, clock=clock, ground_truth=truth
    )
    gateway.collected = collected  # type: ignore[attr-defined]
    server = BackgroundServer(gateway.app).start()
    with upstreams("blue", "pool") as servers:
        put = requests.Session()
        put.headers.update(ADMIN)
        put.put(f"{server.url}/admin/endpoints/ep-contoso", json={"tenants": ["contoso"]})
        put.put(
            f"{server.url}/admin/endpoints/ep-pool",
            json={"tenants": ["fabrikam", "northwind"], "pooled": True},
        )
        for endpoint, upstream in (("ep-contoso", "blue"), ("ep-pool", "pool")):
            put.put(
                f"{server.url}/admin/endpoints/{endpoint}/deployments/blue",
                json={"url": servers[upstream].url},
            )
            put.put(
                f"{server.url}/admin/endpoints/{endpoint}/traffic", json={"traffic": {"blue": 100}}
            )
        yield Platform(server.url, keys, gateway, clock)
    server.stop()


def _stored(container: ContainerClient) -> list[dict[str, Any]]:
    lines = []
    for blob in container.list_blobs(name_starts_with=contracts.COLLECTOR_ROOT):
        if f"/{contracts.COLLECTION_LABELS}/" in blob.name:
            text = container.download_blob(blob.name).readall().decode()
            lines += [dict(json.loads(line), blob=blob.name) for line in text.splitlines()]
    return lines


def test_a_tenant_labels_its_own_requests_and_they_are_stored_before_the_answer(
    platform: Platform, container: ContainerClient
) -> None:
    first, second = platform.score("contoso", "ep-contoso"), platform.score("contoso", "ep-contoso")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    platform.clock.now += 3600  # labels come later
    answer = platform.feedback(
        "contoso",
        "ep-contoso",
        {"labels": [{"request_id": ids[0], "label": 1}, {"request_id": ids[1], "label": "no"}]},
    )
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 2, "unknown": []}
    stored = _stored(container)
    assert sorted((s["correlationid"], s["label"], s["tenant"]) for s in stored) == sorted(
        [(ids[0], 1, "contoso"), (ids[1], "no", "contoso")]
    )
    assert all(s["blob"].startswith("modelDataCollector/ep-contoso/ground_truth/2026/12/05/10/")
               for s in stored)  # fmt: skip
    # The scored records carry the same id and the tenant.
    exchange = platform.gateway.collected[0]  # type: ignore[attr-defined]
    (_, inputs), (_, outputs) = records_of(exchange)
    assert inputs["correlationid"] == ids[0] and inputs["tenant"] == "contoso"
    assert outputs["correlationid"] == ids[0] and outputs["tenant"] == "contoso"


def test_labels_for_requests_the_tenant_did_not_make_are_unknown_and_never_stored(
    platform: Platform, container: ContainerClient
) -> None:
    fabrikams = platform.score("fabrikam", "ep-pool").headers["x-request-id"]
    northwinds = platform.score("northwind", "ep-pool").headers["x-request-id"]
    contosos = platform.score("contoso", "ep-contoso").headers["x-request-id"]
    forged = request_ids.issue(b"x" * 32, "northwind", datetime.now(UTC))  # another key
    answer = platform.feedback(
        "northwind",
        "ep-pool",
        {
            "labels": [
                {"request_id": fabrikams, "label": 0},  # a neighbour's, same endpoint
                {"request_id": contosos, "label": 0},  # another endpoint's tenant
                {"request_id": forged, "label": 0},
            ]
        },
    )
    assert answer.json() == {"accepted": 0, "unknown": [fabrikams, contosos, forged]}
    assert _stored(container) == []
    own = platform.feedback(
        "northwind", "ep-pool", {"labels": [{"request_id": northwinds, "label": 1}]}
    )
    assert own.json() == {"accepted": 1, "unknown": []}
    [stored] = _stored(container)
    assert (stored["tenant"], stored["correlationid"]) == ("northwind", northwinds)


def test_a_label_later_than_the_horizon_is_unknown(platform: Platform) -> None:
    request_id = platform.score("contoso", "ep-contoso").headers["x-request-id"]
    platform.clock.now += 25 * 3600
    late = platform.feedback("contoso", "ep-contoso", {"labels": [{"request_id": request_id,
                                                                    "label": 1}]})  # fmt: skip
    assert late.json() == {"accepted": 0, "unknown": [request_id]}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"not json", "not JSON"),
        ({"labels": []}, '{"labels"'),
        ({"labels": [{"label": 1}]}, "labels[0]: request_id must be text"),
        ({"labels": [{"request_id": "r", "label": {"a": 1}}]}, "labels[0]: label must be"),
        ({"labels": [{"request_id": str(i), "label": 1} for i in range(4)]}, "at most 3"),
    ],
)
def test_a_bad_feedback_body_is_refused_by_name(
    platform: Platform, container: ContainerClient, body: Any, named: str
) -> None:
    answer = platform.feedback("contoso", "ep-contoso", body)
    assert answer.status_code == 400
    assert named in answer.json()["error"]["message"]
    assert _stored(container) == []


def test_storage_down_accepts_nothing_and_says_to_send_again(platform: Platform) -> None:
    request_id = platform.score("contoso", "ep-contoso").headers["x-request-id"]

    def down(name: str, data: bytes) -> None:
        raise ConnectionError("storage is down")

    truth = platform.gateway.ground_truth
    assert truth is not None
    platform.gateway.ground_truth = GroundTruth(truth.key, truth.horizon, truth.max_labels, down)
    answer = platform.feedback(
        "contoso", "ep-contoso", {"labels": [{"request_id": request_id, "label": 1}]}
    )
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert platform.feedback("contoso", "ep-contoso", b"{}").status_code == 400  # still serving


def test_a_key_of_another_endpoint_cannot_send_labels_there(platform: Platform) -> None:
    answer = platform.feedback("fabrikam", "ep-contoso", {"labels": [{"request_id": "r",
                                                                       "label": 1}]})  # fmt: skip
    assert answer.status_code == 401
