"""Drift of a live deployment: collected rows against the baseline, then retrain (classical)
or human review (cv, nlp), once per day; model-monitor alerts take the same path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from automation.drift_watch import (
    DriftWatcher,
    monitor_breach,
    rows_from_jsonl,
    tenant_of_workspace,
)
from automation.store import MemoryStore
from tenancy import PlatformSpec, contracts, naming, parse_platform_spec
from tenancy.errors import ConfigError, DependencyError, InvalidInputError
from tests.automation.fakes import FakePlatform, FakeSource
from tests.tenancy.conftest import stack_document

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _watcher(
    spec: PlatformSpec, source: FakeSource
) -> tuple[DriftWatcher, FakePlatform, MemoryStore]:
    platform, store = FakePlatform(), MemoryStore()
    for tenant in ("contoso", "adatum"):
        platform.serve(tenant, f"{tenant}-model/3")
    return DriftWatcher(spec, store, platform, source, lambda: NOW), platform, store


def test_no_drift_does_nothing(specs: dict[str, PlatformSpec]) -> None:
    watcher, platform, _ = _watcher(specs["local"], FakeSource())
    decision = watcher.check("contoso")
    assert decision.action == "none" and platform.notifications == []


def test_a_drifting_classical_model_retrains_once_a_day(specs: dict[str, PlatformSpec]) -> None:
    source = FakeSource(shift=0.8)
    watcher, _platform, _ = _watcher(specs["local"], source)
    decision = watcher.check("contoso")
    assert decision.action == "retrain" and decision.reason == "drift in x1"
    assert source.retrained == [("contoso", "drift in x1")]
    assert watcher.check("contoso").action == "duplicate"
    assert len(source.retrained) == 1


def test_a_drifting_cv_model_opens_a_review_instead(specs: dict[str, PlatformSpec]) -> None:
    source = FakeSource(shift=0.8)
    watcher, _platform, store = _watcher(specs["local"], source)
    assert watcher.check("adatum").action == "review"
    assert source.retrained == []
    [task] = store.query(contracts.TABLE_EVENTS, "review")
    assert task.data["status"] == "open" and task.data["model"] == "adatum-model/3"


def test_too_little_data_is_not_a_verdict(specs: dict[str, PlatformSpec]) -> None:
    watcher, _, _ = _watcher(specs["local"], FakeSource(shift=3, rows=10))
    assert watcher.check("contoso").action == "insufficient_data"


def test_retraining_waits_while_the_budget_stops_gpu_work(specs: dict[str, PlatformSpec]) -> None:
    source = FakeSource(shift=0.8)
    watcher, _, store = _watcher(specs["local"], source)
    store.insert(
        contracts.TABLE_BUDGET_STATE,
        "blocked",
        "contoso",
        {"blocked_until": "2026-12-01T00:00:00+00:00"},
    )
    assert watcher.check("contoso").action == "blocked" and source.retrained == []


def test_model_monitor_breaches_are_read_case_insensitively() -> None:
    data = {
        "RunId": "r",
        "RunTags": {
            "AzureML_ModelMonitor_Threshold_Breached": "True",
            "Tenant": "contoso",
            "model": "contoso-model/3",
        },
    }
    assert monitor_breach(data) == ("contoso", "contoso-model/3")
    assert monitor_breach({"runTags": {"other": "x"}}) is None
    with pytest.raises(InvalidInputError, match="names no tenant"):
        monitor_breach({"runTags": {contracts.MODEL_MONITOR_BREACH_TAG: "true"}})


def test_collected_rows_are_read_in_the_columns_order() -> None:
    lines = [
        json.dumps({"data": [{"x1": 1.0, "x2": 2}, {"x1": 3.5, "x2": 4.0}], "correlationid": "c1"}),
        "not json",
        json.dumps({"data": [[5.0, 6.0], [1.0, "x"], {"x1": 1.0}]}),
    ]
    assert rows_from_jsonl(lines, ["x1", "x2"]).tolist() == [[1.0, 2.0], [3.5, 4.0], [5.0, 6.0]]


def _large(document: dict[str, Any], tenant: str = "contoso") -> PlatformSpec:
    """dev, with ``tenant`` scoring more rows a day than one Function instance measures."""
    model = next(t for t in document["tenants"] if t["id"] == tenant)
    model["quota"].update(rate_limit_per_minute=30_000, rows_per_request=1_000)
    return parse_platform_spec(document)


def test_a_tenant_whose_data_outgrows_the_function_is_watched_by_an_azure_ml_monitor() -> None:
    spec = _large(stack_document("dev"))
    assert spec.drift_engine_of(spec.tenant("contoso")) == "azure_ml"  # 43 billion rows a day
    assert spec.drift_engine_of(spec.tenant("adatum")) == "function"
    source = FakeSource(shift=0.8)
    platform, store = FakePlatform(), MemoryStore()
    for tenant in ("contoso", "adatum"):
        platform.serve(tenant, f"{tenant}-model/3")
    watcher = DriftWatcher(
        spec, store, platform, source, lambda: NOW, ensure_monitor=platform.ensure_model_monitor
    )
    first = watcher.check("contoso")
    assert (first.action, first.reason) == ("azure_ml_monitor", "model monitor of blue created")
    assert watcher.check("contoso").reason == "model monitor of blue unchanged"
    assert source.retrained == []  # nothing of contoso's was measured here
    assert watcher.check("adatum").action == "review"  # adatum stays on the Function
    # The monitor's breach acts as the Function's own verdict would: once a day.
    assert watcher.act("contoso", "contoso-model/3", "monitor breached").action == "retrain"
    assert watcher.act("contoso", "contoso-model/3", "monitor breached").action == "duplicate"


def test_without_monitors_a_monitored_tenant_is_a_named_dependency_error() -> None:
    spec = _large(stack_document("dev"))
    platform = FakePlatform()
    platform.serve("contoso", "contoso-model/3")
    watcher = DriftWatcher(spec, MemoryStore(), platform, FakeSource(), lambda: NOW)
    with pytest.raises(DependencyError, match="Azure ML model monitor, which this platform"):
        watcher.check("contoso")


def test_a_pooled_or_local_tenant_cannot_be_moved_to_a_monitor() -> None:
    document = stack_document("dev")
    next(t for t in document["tenants"] if t["id"] == "fabrikam")["drift_engine"] = "azure_ml"
    with pytest.raises(ConfigError, match="fabrikam: drift on an Azure ML model monitor needs a "
                       "dedicated deployment"):  # fmt: skip
        parse_platform_spec(document)
    with pytest.raises(ConfigError, match="needs Azure ML"):
        _large(stack_document("local"))


def test_a_breach_without_a_tenant_tag_is_its_workspaces_tenant(
    specs: dict[str, PlatformSpec],
) -> None:
    spec = specs["dev"]
    workspace = naming.workspace(spec.environment, "tenant-contoso")
    topic = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices"
        f"/workspaces/{workspace}"
    )
    assert tenant_of_workspace(spec, topic) == "contoso"
    pool = naming.workspace(spec.environment, "pool-shared")
    assert tenant_of_workspace(spec, f"/x/workspaces/{pool}") is None  # a pool is no tenant
    breached = {"runTags": {contracts.MODEL_MONITOR_BREACH_TAG: "true"}}
    assert monitor_breach(breached, tenant_of_workspace(spec, topic)) == ("contoso", "")
