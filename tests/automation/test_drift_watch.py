"""Drift of a live deployment: collected rows against the baseline, then retrain (classical)
or human review (cv, nlp), once per day; model-monitor alerts take the same path."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from automation.drift_watch import DriftWatcher, monitor_breach, rows_from_jsonl
from automation.store import MemoryStore
from tenancy import PlatformSpec, contracts
from tenancy.errors import InvalidInputError
from tests.automation.fakes import FakePlatform, FakeSource

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
