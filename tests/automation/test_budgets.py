"""Budget alerts: both payload shapes, notify at every threshold, stop above the limit,
repeats change nothing, pooled tenants never stop their pool's compute."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from automation.budgets import (
    BudgetHandler,
    gpu_work_allowed,
    idle_workspaces,
    next_period,
    parse_budget_alert,
)
from automation.store import MemoryStore
from tenancy import PlatformSpec
from tenancy.errors import InvalidInputError
from tests.automation.fakes import FakePlatform

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def common_schema(name: str, spent: float, budget: float, threshold: float) -> dict[str, object]:
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {"alertRule": name, "monitorCondition": "Fired"},
            "alertContext": {
                "AlertCategory": "budgets",
                "AlertData": {
                    "BudgetName": name,
                    "SpentAmount": str(spent),
                    "BudgetAmount": str(budget),
                    "NotificationThresholdAmount": str(threshold),
                    "BudgetStartDate": "2026-11-01",
                    "Unit": "USD",
                },
            },
        },
    }


def budget_schema(name: str, spent: float, budget: float, threshold: float) -> dict[str, object]:
    return {
        "schemaId": "AIP Budget Notification",
        "data": {
            "budgetName": name,
            "SpendingAmount": f"{spent:,.2f}",
            "Budget": str(budget),
            "NotificationThresholdAmount": str(threshold),
            "BudgetStartDate": "2026-11-01T00:00:00Z",
        },
    }


@pytest.fixture
def setup(specs: dict[str, PlatformSpec]) -> tuple[BudgetHandler, FakePlatform, MemoryStore]:
    platform, store = FakePlatform(), MemoryStore()
    return BudgetHandler(specs["local"], store, platform, lambda: NOW), platform, store


def test_both_payload_shapes_read_alike() -> None:
    a = parse_budget_alert(common_schema("budget-tenant-contoso-budget", 850, 1000, 800))
    b = parse_budget_alert(budget_schema("budget-tenant-contoso-budget", 850, 1000, 800))
    assert a == b
    assert (a.percent, a.threshold_percent, a.period_start) == (85.0, 80.0, date(2026, 11, 1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "must be a JSON object"),
        ({"data": "x"}, "no 'data' object"),
        ({"data": {"alertContext": {}}}, "not a budget alert"),
        ({"data": {"Budget": "1"}}, "names no budget"),
        ({"data": {"BudgetName": "b", "BudgetStartDate": "soon"}}, "not a date"),
        (
            {"data": {"BudgetName": "b", "BudgetStartDate": "2026-11-01", "SpentAmount": "lots"}},
            "is not a number",
        ),
    ],
)
def test_malformed_alerts_are_named(payload: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_budget_alert(payload)


def test_every_threshold_notifies_once(
    setup: tuple[BudgetHandler, FakePlatform, MemoryStore],
) -> None:
    handler, platform, _ = setup
    alert = parse_budget_alert(common_schema("budget-tenant-contoso-budget", 600, 1000, 500))
    assert handler.handle(alert).status == "notified"
    assert handler.handle(alert).status == "duplicate"
    assert handler.handle(alert).status == "duplicate"
    assert len(platform.notifications) == 1 and platform.scaled == {}


def test_above_the_stop_threshold_compute_goes_to_zero_until_the_next_period(
    setup: tuple[BudgetHandler, FakePlatform, MemoryStore],
) -> None:
    handler, platform, store = setup
    alert = parse_budget_alert(common_schema("budget-tenant-contoso-budget", 1020, 1000, 1000))
    for _ in range(3):  # delivered three times: one action
        handler.handle(alert)
    assert platform.scaled == {"contoso": 0}
    assert [n for n in platform.notifications if n[1] == "critical"] == [
        (
            "contoso",
            "critical",
            "GPU work of contoso stopped until 2026-12-01: "
            "budget budget-tenant-contoso-budget at 102 %",
        )
    ]
    assert not gpu_work_allowed(store, "contoso", NOW)
    assert gpu_work_allowed(store, "contoso", datetime(2026, 12, 1, tzinfo=UTC))
    assert gpu_work_allowed(store, "adatum", NOW)


def test_a_pooled_tenant_over_budget_is_blocked_without_stopping_the_pool(
    setup: tuple[BudgetHandler, FakePlatform, MemoryStore],
) -> None:
    handler, platform, store = setup
    outcome = handler.handle(
        parse_budget_alert(budget_schema("budget-pool-shared-fabrikam-budget", 130, 100, 100))
    )
    assert (outcome.status, outcome.tenants) == ("stopped", ("fabrikam",))
    assert platform.scaled == {}  # the pool's compute serves northwind and litware too
    assert not gpu_work_allowed(store, "fabrikam", NOW)


def test_an_unknown_budget_changes_nothing(
    setup: tuple[BudgetHandler, FakePlatform, MemoryStore],
) -> None:
    handler, platform, _ = setup
    assert (
        handler.handle(parse_budget_alert(budget_schema("budget-other", 10, 1, 1))).status
        == "unknown_budget"
    )
    assert platform.notifications == []


def test_periods_and_idle_workspaces(specs: dict[str, PlatformSpec]) -> None:
    assert next_period(date(2026, 1, 1), "Quarterly", NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_period(date(2026, 1, 1), "Annually", NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    seen = {"tenant-contoso": datetime(2026, 11, 20, tzinfo=UTC)}
    assert idle_workspaces(specs["local"], seen.get, NOW) == ["pool-shared", "tenant-adatum"]
    assert idle_workspaces(specs["prod"], seen.get, NOW) == []  # production is not flagged
