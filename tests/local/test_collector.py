"""The gateway's collector writes what drift reads: Azurite blobs in the collector layout."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from adapters.collected import collected_rows
from local.azurite import start_azurite
from local.collector import BlobCollector


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerClient]:
    azurite = start_azurite(tmp_path_factory.mktemp("azurite-collector"))
    yield BlobServiceClient.from_connection_string(azurite.connection_string).create_container(
        "collected"
    )
    azurite.stop()


def test_collected_records_are_read_back_as_drift_rows(container: ContainerClient) -> None:
    collector = BlobCollector(container, flush_seconds=3600)
    for i in range(3):
        collector(
            "ep", "blue", "model_inputs", {"correlationid": f"c{i}", "data": [[float(i), 1.0]]}
        )
        collector("ep", "blue", "model_outputs", {"correlationid": f"c{i}", "data": [i % 2]})
    assert collector.flush() == 6
    now = datetime.now(UTC)
    chunks = list(
        collected_rows(
            container,
            "ep",
            "blue",
            ["a", "b"],
            since=now - timedelta(hours=1),
            until=now + timedelta(hours=1),
        )
    )
    assert sorted(map(tuple, chunks[0].tolist())) == [
        (0.0, 1.0, 0.0),
        (1.0, 1.0, 1.0),
        (2.0, 1.0, 0.0),
    ]


def test_a_storage_outage_keeps_the_records_for_the_next_flush() -> None:
    class Down:
        def __init__(self) -> None:
            self.up = False
            self.blobs: dict[str, bytes] = {}

        def upload_blob(self, name: str, data: bytes, overwrite: bool = False) -> None:
            if not self.up:
                raise ConnectionError("storage is down")
            self.blobs[name] = data

    storage = Down()
    collector = BlobCollector(storage, flush_seconds=3600, max_buffered=3)
    for i in range(5):
        collector("ep", "blue", "model_inputs", {"n": i})
    assert collector.dropped == 2  # bounded memory: the rest is shed, serving continues
    assert collector.flush() == 0
    storage.up = True
    assert collector.flush() == 3 and len(storage.blobs) == 1


def test_a_write_whose_answer_was_lost_is_stored_once() -> None:
    """Storage wrote the batch but the answer never came back (a timeout, a reset): the retry
    writes the same blob again, so every record is stored exactly once."""

    class LosesAnswers:
        def __init__(self) -> None:
            self.blobs: dict[str, bytes] = {}
            self.lose = 1

        def upload_blob(self, name: str, data: bytes, overwrite: bool = False) -> None:
            assert overwrite or name not in self.blobs
            self.blobs[name] = data
            if self.lose:
                self.lose -= 1
                raise TimeoutError("the answer was lost")

    storage = LosesAnswers()
    collector = BlobCollector(storage, flush_seconds=3600)
    for i in range(4):
        collector("ep", "blue", "model_inputs", {"n": i})
    assert collector.flush() == 0
    collector("ep", "blue", "model_inputs", {"n": 4})
    assert collector.flush() == 5
    stored = [line for blob in storage.blobs.values() for line in blob.decode().splitlines()]
    assert sorted(stored) == sorted(f'{{"n":{i}}}' for i in range(5))


def test_output_rows_keep_the_class_probabilities_and_records_their_tenant() -> None:
    from local.collector import Exchange, records_of  # noqa: PLC0415

    answer = (
        b'{"predictions": [1, 0], "probabilities": [[0.2, 0.8], [0.9, 0.1]], "classes": [0, 1]}'
    )
    exchange = Exchange(
        "ep", "blue", "r1", datetime(2026, 12, 5, tzinfo=UTC), b'{"data": [[1], [2]]}', answer,
        "t", scoring_ms=3.0,
    )  # fmt: skip
    (_, inputs), (_, outputs) = records_of(exchange)
    assert inputs["tenant"] == outputs["tenant"] == "t"
    assert outputs["data"] == [
        {"prediction": 1, "probabilities": [0.2, 0.8], "classes": [0, 1], "scoring_ms": 1.5},
        {"prediction": 0, "probabilities": [0.9, 0.1], "classes": [0, 1], "scoring_ms": 1.5},
    ]
