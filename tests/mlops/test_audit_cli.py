"""`mlops audit` for an installation on Azure: the open findings its Function App recorded
(rule violations and drift), read from the platform's state tables (Azurite here)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.table_store import TableStore
from automation.audit import PolicyAudit
from infra.offline import OfflineRun
from local.azurite import start_azurite
from mlops.cli import main
from policies.live import LiveResource
from tenancy import PlatformSpec
from tests.live_inventory import expected_of, inventory_of


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[str]:
    azurite = start_azurite(tmp_path / "azurite")
    yield azurite.connection_string
    azurite.stop()


def test_the_findings_an_installation_recorded_are_listed_with_its_drift(
    connection: str,
    specs: dict[str, PlatformSpec],
    planned: dict[str, OfflineRun],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["audit", "--state-connection", connection]) == 0
    assert "no open finding" in capsys.readouterr().out
    inventory = inventory_of(planned["dev"])
    account = next(r for r in inventory if r.type_token == "azure-native:storage:StorageAccount")
    body = copy.deepcopy(dict(account.body))
    body["properties"]["allowBlobPublicAccess"] = True  # someone turned it on
    live = [r for r in inventory if r.id != account.id]
    live.append(LiveResource(account.id, account.type, account.name, body))
    # What the Function App's timer records, in the same tables.
    audit = PolicyAudit(
        specs["dev"],
        TableStore.from_connection_string(connection),
        lambda *told: None,
        lambda: datetime(2026, 12, 5, 9, 0, tzinfo=UTC),
    )
    audit.run(live)
    audit.run_drift(expected_of(planned["dev"]), live)
    assert main(["audit", "--state-connection", connection, "--json"]) == 1  # a mandatory one
    listed = {(f["level"], f["policy"], f["resource"]) for f in json.loads(capsys.readouterr().out)}
    assert listed == {
        ("mandatory", "storage-no-public-blob", account.id),
        ("drift", "changed", account.id),
    }
    main(["audit", "--state-connection", connection])
    out = capsys.readouterr().out
    assert "allowBlobPublicAccess is True (the plan set False)" in out
    assert out.count(account.name) == 2
