"""`mlops watch report`: what an installation's timers recorded (drift acted on, reviews
open, the latest quality check), read from its state tables (Azurite here, as the
scheduled workflow reads the platform storage account on Azure)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from adapters.table_store import TableStore
from automation.drift_watch import DriftWatcher
from automation.quality_watch import QUALITY, QualityCheck
from automation.watch_report import watch_report
from local.azurite import start_azurite
from mlops.cli import EXIT_OK, main
from tenancy import PlatformSpec, contracts
from tenancy.errors import InvalidInputError
from tests.automation.fakes import FakePlatform, FakeSource


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[str]:
    azurite = start_azurite(tmp_path / "azurite")
    yield azurite.connection_string
    azurite.stop()


def _record_drift(spec: PlatformSpec, store: TableStore, at: datetime) -> None:
    """What the drift_check timer records: contoso retrained, adatum sent to review."""
    platform = FakePlatform()
    for tenant in ("contoso", "adatum"):
        platform.serve(tenant, f"{tenant}-model/3")
    watcher = DriftWatcher(spec, store, platform, FakeSource(shift=2.0), lambda: at)
    assert watcher.check("contoso").action == "retrain"
    assert watcher.check("adatum").action == "review"


def test_the_report_lists_what_the_timers_recorded_per_tenant(
    connection: str, specs: dict[str, PlatformSpec], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    spec, store = specs["dev"], TableStore.from_connection_string(connection)
    now = datetime.now(UTC)
    _record_drift(spec, store, now - timedelta(days=20))  # outside a week's report
    _record_drift(spec, store, now - timedelta(days=1))
    check = QualityCheck(
        "fabrikam", "shared-classical/2", "blue", 400, 120, None, None,
        breaches=("accuracy 0.710 is below the minimum 0.8",), action="retrain",
    )  # fmt: skip
    store.insert(contracts.TABLE_EVENTS, QUALITY, "fabrikam", check.to_dict())

    summary = tmp_path / "summary.md"
    argv = ["watch", "report", "--stack", "dev", "--state-connection", connection]
    assert main([*argv, "--json", "--markdown", str(summary)]) == EXIT_OK
    report = {w["tenant"]: w for w in json.loads(capsys.readouterr().out)}
    assert list(report) == [t.id for t in spec.tenants]
    contoso, adatum, fabrikam = report["contoso"], report["adatum"], report["fabrikam"]
    assert [d["model"] for d in contoso["drift"]] == ["contoso-model/3"]  # the last week's
    assert contoso["needs_attention"] and contoso["open_reviews"] == []
    # Both reviews are still open, whenever they were opened.
    assert [r["model"] for r in adatum["open_reviews"]] == ["adatum-model/3"] * 2
    assert fabrikam["quality"]["breaches"] == list(check.breaches)
    assert not report["northwind"]["needs_attention"]
    written = summary.read_text()
    assert "# Drift and quality: dev" in written and "## Needs attention" in written
    assert "- fabrikam: accuracy 0.710 is below the minimum 0.8" in written
    assert "| northwind | 0 | 0 | no check yet |" in written
    # Over 30 days, both drift events of contoso are there.
    longer = watch_report(store, ["contoso"], now, 30)
    assert len(longer[0].drift) == 2


def test_a_window_shorter_than_a_day_is_refused(
    connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidInputError, match="days must be at least 1, not 0"):
        watch_report(
            TableStore.from_connection_string(connection), ["contoso"], datetime.now(UTC), 0
        )
    argv = ["watch", "report", "--stack", "dev", "--state-connection", connection, "--days", "0"]
    assert main(argv) != EXIT_OK
    assert "days must be at least 1, not 0" in capsys.readouterr().err


def test_the_report_reads_only_and_creates_no_table(
    connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signed in as the report identity (Storage Table Data Reader), nothing may be
    created: an installation whose timers recorded nothing yet reads as empty."""
    argv = ["watch", "report", "--stack", "prod", "--state-connection", connection, "--json"]
    assert main(argv) == EXIT_OK
    assert not any(w["needs_attention"] for w in json.loads(capsys.readouterr().out))
    service = TableServiceClient.from_connection_string(connection)
    assert list(service.list_tables()) == []
    reader = TableStore.from_connection_string(connection, read_only=True)
    with pytest.raises(InvalidInputError, match="read-only: events is not written"):
        reader.insert(contracts.TABLE_EVENTS, "drift", "x", {})
