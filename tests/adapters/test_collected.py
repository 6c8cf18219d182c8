"""Collected inference data read back from Azurite's blob service in the collector layout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from adapters.collected import collected_rows
from local.azurite import start_azurite


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
