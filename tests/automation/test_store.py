"""The state store contract, in memory and against Azurite's table service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.table_store import TableStore
from automation.store import MemoryStore, StateStore
from local.azurite import start_azurite
from tenancy import PlatformSpec
from tenancy.errors import ConflictError


@pytest.fixture(scope="module")
def azurite_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    azurite = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield azurite.connection_string
    azurite.stop()


@pytest.fixture(params=["memory", "azurite"])
def store(request: pytest.FixtureRequest, azurite_connection: str) -> StateStore:
    if request.param == "memory":
        return MemoryStore()
    return TableStore.from_connection_string(azurite_connection)


def test_insert_is_the_idempotency_check(store: StateStore, request: pytest.FixtureRequest) -> None:
    table = f"t{request.node.callspec.id}insert"
    first = store.insert(
        table, "contoso", "model-2", {"phase": "creating", "traffic": {"blue": 100}}
    )
    assert store.get(table, "contoso", "model-2") == first
    with pytest.raises(ConflictError, match="exists"):
        store.insert(table, "contoso", "model-2", {"phase": "other"})
    assert store.get(table, "contoso", "model-2").data == {
        "phase": "creating",
        "traffic": {"blue": 100},
    }  # type: ignore[union-attr]


def test_a_stale_write_is_refused(store: StateStore, request: pytest.FixtureRequest) -> None:
    table = f"t{request.node.callspec.id}replace"
    read = store.insert(table, "contoso", "r", {"n": 1})
    written = store.replace(read, {"n": 2})
    assert written.etag != read.etag
    with pytest.raises(ConflictError, match="changed since it was read"):
        store.replace(read, {"n": 3})  # someone else wrote in between
    assert store.get(table, "contoso", "r").data == {"n": 2}  # type: ignore[union-attr]


def test_query_by_partition(store: StateStore, request: pytest.FixtureRequest) -> None:
    table = f"t{request.node.callspec.id}query"
    for partition, row in (("a", "1"), ("b", "1"), ("a", "2")):
        store.insert(table, partition, row, {"row": row})
    assert [(r.partition, r.row) for r in store.query(table, "a")] == [("a", "1"), ("a", "2")]
    assert len(store.query(table)) == 3
    assert store.get(table, "a", "missing") is None


def test_azurite_refuses_a_missing_service_cleanly(tmp_path: Path) -> None:
    store = TableStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    with pytest.raises(Exception, match=r"(?i)connect|refused|failed"):
        store.get("nothing", "p", "r")


def test_a_rollout_persists_in_table_storage_and_resumes_in_a_new_process(
    azurite_connection: str, specs: dict[str, PlatformSpec]
) -> None:
    """The runner over Azurite's table service: a second runner (another worker, or the
    same after a restart) reads the state and the audit the first one wrote."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from automation.runner import RolloutRunner  # noqa: PLC0415
    from tests.automation.fakes import FakePlatform  # noqa: PLC0415

    store = TableStore.from_connection_string(azurite_connection)
    platform = FakePlatform()
    platform.serve("contoso", "contoso-classical/1")
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    first = RolloutRunner(specs["local"], store, platform, lambda: now)
    first.begin("contoso", "contoso-classical/9", "automation", "c")
    first.tick("contoso", "contoso-classical/9")  # creating -> smoke_testing
    second = RolloutRunner(
        specs["local"], TableStore.from_connection_string(azurite_connection), platform, lambda: now
    )
    assert second.get("contoso", "contoso-classical/9").phase.value == "smoke_testing"
    assert ("contoso", "contoso-classical/9") in second.active()
    audit = store.query("audit", "contoso")
    assert [r.data["after"]["phase"] for r in audit][-2:] == ["creating", "smoke_testing"]
