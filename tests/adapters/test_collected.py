"""Collected inference data read back from Azurite's blob service in the collector layout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from adapters.collected import collected_rows, endpoint_usage, labelled_window
from automation.port import Usage
from automation.usage import shares
from local.azurite import start_azurite
from ml.quality import LabelledWindow


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerClient]:
    azurite = start_azurite(tmp_path_factory.mktemp("azurite-blob"))
    client = BlobServiceClient.from_connection_string(azurite.connection_string).create_container(
        "workspaceblobstore"
    )
    yield client
    azurite.stop()


def _put(container: ContainerClient, path: str, records: list[dict[str, object]]) -> None:
    container.upload_blob(path, "\n".join(json.dumps(r) for r in records).encode(), overwrite=True)


def test_inputs_join_outputs_hour_by_hour(container: ContainerClient) -> None:
    base = "modelDataCollector/ep/blue"
    _put(container, f"{base}/model_inputs/2026/11/22/10/a.jsonl", [
        {"correlationid": "c1", "data": [{"x1": 1.0, "x2": 2.0}, {"x1": 3.0, "x2": 4.0}]},
        {"correlationid": "c2", "data": [{"x1": 5.0, "x2": "bad"}]},
        {"correlationid": "c3", "data": [{"x1": 7.0, "x2": 8.0}]},  # no outputs collected
    ])  # fmt: skip
    _put(container, f"{base}/model_outputs/2026/11/22/10/a.jsonl", [
        {"correlationid": "c1", "data": [1, {"prediction": 0}]},
        {"correlationid": "c2", "data": [1]},
    ])  # fmt: skip
    _put(
        container,
        f"{base}/model_inputs/2026/11/22/11/b.jsonl",
        [{"correlationid": "c4", "data": [[9, 10]]}],
    )
    _put(
        container,
        f"{base}/model_outputs/2026/11/22/11/b.jsonl",
        [{"correlationid": "c4", "data": [2]}],
    )
    _put(
        container,
        f"{base}/model_inputs/2026/11/22/13/late.jsonl",
        [{"correlationid": "c5", "data": [[0, 0]]}],
    )
    chunks = list(
        collected_rows(
            container,
            "ep",
            "blue",
            ["x1", "x2"],
            since=datetime(2026, 11, 22, 10, tzinfo=UTC),
            until=datetime(2026, 11, 22, 12, tzinfo=UTC),
        )
    )
    assert [c.tolist() for c in chunks] == [[[1.0, 2.0, 1.0], [3.0, 4.0, 0.0]], [[9.0, 10.0, 2.0]]]


def test_the_window_bounds_are_kept_inside_an_hours_partition(container: ContainerClient) -> None:
    """A window that starts or ends mid-hour reads whole hour partitions: the records of
    that hour outside the window are left out by their collection time."""
    base = "modelDataCollector/ep-mid/blue"

    def record(correlation: str, minute: int, value: float) -> dict[str, object]:
        at = datetime(2026, 11, 22, 10, minute, tzinfo=UTC).isoformat()
        return {"correlationid": correlation, "time": at, "data": [[value, value]]}

    _put(container, f"{base}/model_inputs/2026/11/22/10/a.jsonl", [
        record("before", 5, 1.0), record("inside", 30, 2.0), record("after", 55, 3.0),
        {"correlationid": "untimed", "time": "not a time", "data": [[4.0, 4.0]]},
    ])  # fmt: skip
    _put(container, f"{base}/model_outputs/2026/11/22/10/a.jsonl", [
        {"correlationid": c, "data": [0]} for c in ("before", "inside", "after", "untimed")
    ])  # fmt: skip
    chunks = collected_rows(
        container,
        "ep-mid",
        "blue",
        ["x1", "x2"],
        since=datetime(2026, 11, 22, 10, 20, tzinfo=UTC),
        until=datetime(2026, 11, 22, 10, 50, tzinfo=UTC),
    )
    assert [c.tolist() for c in chunks] == [[[2.0, 2.0, 0.0], [4.0, 4.0, 0.0]]]


def _label(request_id: str, label: object, at: str) -> dict[str, object]:
    return {"correlationid": request_id, "tenant": "fabrikam", "label": label, "time": at}


def _scored(prediction: int, p1: float, **row: object) -> dict[str, object]:
    return {"prediction": prediction, "probabilities": [1 - p1, p1], "classes": [0, 1], **row}


def test_labels_join_their_tenants_rows_within_the_horizon(container: ContainerClient) -> None:
    """Pooled rows name their tenant as Azure ML's collector writes them (a ``tenant_id``
    column) or as the embedded gateway does (the record's ``tenant``); a label joins only a
    request of the tenant who sent it, up to the horizon after the window."""
    outputs = "modelDataCollector/pool-ep/blue/model_outputs/2026/12/05"
    labels = "modelDataCollector/pool-ep/ground_truth/2026/12"
    _put(container, f"{outputs}/09/a.jsonl", [
        {"correlationid": "r1", "time": "2026-12-05T09:10:00+00:00",
         "data": [_scored(1, 0.9, tenant_id="fabrikam")]},
        {"correlationid": "r2", "time": "2026-12-05T09:20:00+00:00", "tenant": "fabrikam",
         "data": [_scored(0, 0.2), _scored(1, 0.7)]},
        {"correlationid": "r3", "time": "2026-12-05T09:30:00+00:00",
         "data": [_scored(1, 0.6, tenant_id="northwind")]},
        {"correlationid": "r4", "time": "2026-12-05T09:40:00+00:00",
         "data": [_scored(0, 0.1, tenant_id="fabrikam")]},
        {"correlationid": "r5", "time": "2026-12-05T09:50:00+00:00",
         "data": [_scored(0, 0.3, tenant_id="fabrikam")]},
    ])  # fmt: skip
    _put(container, f"{labels}/05/10/a.jsonl", [
        _label("r1", 0, "2026-12-05T10:00"),
        _label("r1", 1, "2026-12-05T10:05"),
        _label("r2", [0, 0], "2026-12-05T10:00"),
        # northwind's request, labelled by fabrikam: never joined to northwind's row
        _label("r3", 1, "2026-12-05T10:00"),
        # two values for a request of one row: they do not fit, nothing is joined
        _label("r4", [1, 1], "2026-12-05T10:00"),
    ])  # fmt: skip
    _put(container, f"{labels}/07/10/late.jsonl", [  # two days later: past the horizon
        _label("r5", 1, "2026-12-07T10:00"),
    ])  # fmt: skip
    since = datetime(2026, 12, 5, 9, tzinfo=UTC)

    def window(tenant: str) -> LabelledWindow:
        return labelled_window(
            container, "pool-ep", "blue", tenant=tenant, owner="",
            since=since, until=since + timedelta(hours=1), horizon=timedelta(hours=24),
        )  # fmt: skip

    fabrikam = window("fabrikam")
    assert fabrikam.classes == [0, 1] and fabrikam.rows == 5  # r1, r2 (two rows), r4, r5
    assert fabrikam.labels == [1, 0, 0]  # r1's later label, r2's per row
    assert fabrikam.predictions == [1, 0, 1]
    assert np.allclose(fabrikam.probabilities, [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    northwind = window("northwind")
    assert (northwind.rows, northwind.labels) == (1, [])


def test_a_pooled_deployments_rows_are_read_per_tenant(container: ContainerClient) -> None:
    base = "modelDataCollector/pool-drift/blue"
    _put(container, f"{base}/model_inputs/2026/12/05/09/a.jsonl", [
        {"correlationid": "a", "data": [{"tenant_id": "fabrikam", "x1": 1.0},
                                        {"tenant_id": "northwind", "x1": 9.0}]},
        {"correlationid": "b", "tenant": "northwind", "data": [[8.0]]},  # the gateway's form
    ])  # fmt: skip
    _put(container, f"{base}/model_outputs/2026/12/05/09/a.jsonl", [
        {"correlationid": "a", "data": [{"tenant_id": "fabrikam", "prediction": 0},
                                        {"tenant_id": "northwind", "prediction": 1}]},
        {"correlationid": "b", "tenant": "northwind", "data": [{"prediction": 1}]},
    ])  # fmt: skip
    since = datetime(2026, 12, 5, 9, tzinfo=UTC)

    def rows(tenant: str | None) -> list[tuple[float, ...]]:
        chunks = collected_rows(
            container, "pool-drift", "blue", ["x1"],
            since=since, until=since + timedelta(hours=1), tenant=tenant,
        )  # fmt: skip
        return sorted(tuple(r) for chunk in chunks for r in chunk.tolist())

    assert rows("fabrikam") == [(1.0, 0.0)]
    assert rows("northwind") == [(8.0, 1.0), (9.0, 1.0)]
    assert rows(None) == [(1.0, 0.0), (8.0, 1.0), (9.0, 1.0)]  # the whole deployment


def test_usage_is_metered_per_tenant_across_the_endpoints_deployments(
    container: ContainerClient,
) -> None:
    root = "modelDataCollector/pool-usage"
    _put(container, f"{root}/blue/model_outputs/2026/12/05/09/a.jsonl", [
        {"correlationid": "a", "time": "2026-12-05T09:10:00+00:00",
         "data": [{"tenant_id": "fabrikam", "prediction": 0, "scoring_ms": 2.0},
                  {"tenant_id": "northwind", "prediction": 1, "scoring_ms": 2.0}]},
        {"correlationid": "b", "time": "2026-12-05T09:20:00+00:00", "tenant": "northwind",
         "data": [{"prediction": 1, "scoring_ms": 4.0}, {"prediction": 0, "scoring_ms": 4.0}]},
    ])  # fmt: skip
    _put(container, f"{root}/green/model_outputs/2026/12/05/09/b.jsonl", [  # since deleted
        {"correlationid": "c", "time": "2026-12-05T09:30:00+00:00",
         "data": [{"tenant_id": "fabrikam", "prediction": 1, "scoring_ms": 6.0}]},
    ])  # fmt: skip
    _put(container, f"{root}/blue/model_outputs/2026/12/05/11/late.jsonl", [  # outside
        {"correlationid": "d", "time": "2026-12-05T11:00:00+00:00", "tenant": "fabrikam",
         "data": [{"prediction": 1, "scoring_ms": 100.0}]},
    ])  # fmt: skip
    labels = f"{root}/ground_truth/2026/12/05/09/l.jsonl"  # not a deployment
    _put(container, labels, [_label("a", 1, "2026-12-05T09:40")])
    since = datetime(2026, 12, 5, 9, tzinfo=UTC)
    usage = endpoint_usage(
        container, "pool-usage", since=since, until=since + timedelta(hours=1), owner=""
    )
    assert usage == {
        "fabrikam": Usage(requests=2, rows=2, scoring_ms=8.0),
        "northwind": Usage(requests=2, rows=3, scoring_ms=10.0),
    }
    assert {t: round(u.share, 3) for t, u in shares(usage).items()} == {
        "fabrikam": 0.444,
        "northwind": 0.556,
    }
    assert shares({"idle": Usage()})["idle"].share == 0.0
