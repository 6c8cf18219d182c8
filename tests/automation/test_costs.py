"""Cost per tenant and pooled budgets: the hourly usage ledger (once per hour, settled hours
only, catching up), each pooled tenant's share of its pool's spend, and the enforcement that
refuses the tenant over its budget alone, once told, lifted when the period ends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from automation.budgets import BudgetHandler, gpu_work_allowed, period_of
from automation.costs import (
    MAX_HOURS_PER_RUN,
    SETTLE,
    Meter,
    PooledBudgets,
    cost_report,
)
from automation.port import Spend, Usage
from automation.store import MemoryStore
from tenancy import PlatformSpec, contracts
from tenancy.errors import DependencyError
from tests.automation.fakes import FakePlatform

PERIOD = date(2026, 12, 1)
NOW = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)  # 60 settled hours into the period


class HourlyUsage:
    """The pool's tenants' scoring time per hour (the UsageSource, as the adapters meter
    it from collected data); counts the windows it is asked for."""

    def __init__(self, per_hour: dict[str, float]) -> None:
        self.per_hour = per_hour
        self.windows: list[tuple[datetime, datetime]] = []

    def usage(self, tenant: str, *, since: datetime, until: datetime) -> dict[str, Usage]:
        assert until - since == timedelta(hours=1)
        self.windows.append((since, until))
        return {t: Usage(10, 20, ms) for t, ms in self.per_hour.items()}


class FixedCosts:
    def __init__(self, spends: dict[str, float], failing: frozenset[str] = frozenset()) -> None:
        self.spends = spends
        self.failing = failing

    def stamp_spend(self, stamp: str, now: datetime) -> Spend:
        if stamp in self.failing:
            raise DependencyError(f"budget of {stamp} answered 503")
        start = period_of(date(2026, 1, 1), "Monthly", now)[0]  # budgets since January
        return Spend(self.spends.get(stamp, 0.0), "USD", start)


@pytest.fixture
def spec(specs: dict[str, PlatformSpec]) -> PlatformSpec:
    return specs["local"]


def test_budget_periods_follow_the_anchor_and_grain() -> None:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    assert period_of(date(2026, 1, 1), "Monthly", at) == (date(2026, 12, 1), date(2027, 1, 1))
    assert period_of(date(2026, 1, 1), "Quarterly", at) == (date(2026, 10, 1), date(2027, 1, 1))
    assert period_of(date(2026, 1, 1), "Annually", at) == (date(2026, 1, 1), date(2027, 1, 1))
    # The boundary belongs to the next period.
    assert period_of(date(2026, 1, 1), "Monthly", datetime(2027, 1, 1, tzinfo=UTC))[0] == date(
        2027, 1, 1
    )


def test_each_settled_hour_is_metered_once_and_a_long_gap_is_caught_up_over_runs(
    spec: PlatformSpec,
) -> None:
    store, usage = MemoryStore(), HourlyUsage({"fabrikam": 30.0, "northwind": 10.0})
    meter, pool = Meter(store, usage), spec.pool("shared")
    # 191 settled hours: 22:00-23:00 of December 8th has not settled at 00:05 on the 9th.
    now = datetime(2026, 12, 9, 0, 5, tzinfo=UTC)
    assert meter.meter(pool, "fabrikam", PERIOD, now) == MAX_HOURS_PER_RUN
    assert meter.meter(pool, "fabrikam", PERIOD, now) == 191 - MAX_HOURS_PER_RUN
    assert meter.meter(pool, "fabrikam", PERIOD, now) == 0  # nothing twice
    assert len(usage.windows) == 191 == len(set(usage.windows))
    assert max(until for _, until in usage.windows) <= now - SETTLE
    metered = meter.metered("pool-shared", PERIOD)
    assert metered.hours == 191
    assert metered.until == datetime(2026, 12, 8, 23, tzinfo=UTC)
    assert metered.usage["fabrikam"] == Usage(1910, 3820, 30.0 * 191)
    assert metered.share("fabrikam") == pytest.approx(0.75)
    assert metered.share("litware") == 0.0  # never scored


def test_a_pooled_tenant_costs_its_share_of_the_pools_spend_and_a_dedicated_its_own(
    spec: PlatformSpec,
) -> None:
    store = MemoryStore()
    meter = Meter(store, HourlyUsage({"fabrikam": 60.0, "northwind": 30.0, "litware": 10.0}))
    meter.meter(spec.pool("shared"), "fabrikam", PERIOD, NOW)
    costs = FixedCosts({"pool-shared": 200.0, "tenant-contoso": 42.0}, frozenset({"tenant-adatum"}))
    report = cost_report(spec, costs, meter, NOW)
    by_tenant = {c.tenant: c for c in report.tenants}
    assert by_tenant["fabrikam"].cost == pytest.approx(120.0)
    assert by_tenant["northwind"].cost == pytest.approx(60.0)
    assert by_tenant["litware"].cost == pytest.approx(20.0)
    assert sum(c.cost for c in report.tenants if c.pooled) == pytest.approx(200.0)
    assert by_tenant["fabrikam"].percent == pytest.approx(120.0)
    assert by_tenant["contoso"].share == 1.0 and by_tenant["contoso"].cost == 42.0
    # One stamp's unknown spend is named, and never hides the others.
    assert "adatum" not in by_tenant and "503" in report.errors["tenant-adatum"]
    assert by_tenant["fabrikam"].to_dict()["period"] == ["2026-12-01", "2027-01-01"]
    assert report.unattributed == {}


def test_a_pools_spend_with_nobody_scoring_is_the_pools_own(spec: PlatformSpec) -> None:
    meter = Meter(MemoryStore(), HourlyUsage({}))
    meter.meter(spec.pool("shared"), "fabrikam", PERIOD, NOW)
    report = cost_report(spec, FixedCosts({"pool-shared": 50.0}), meter, NOW)
    assert all(c.cost == 0 for c in report.tenants if c.pooled)
    assert report.unattributed == {"pool-shared": 50.0}


def _enforcer(
    spec: PlatformSpec, spend: float, clock: list[datetime]
) -> tuple[PooledBudgets, FakePlatform, MemoryStore]:
    platform, store = FakePlatform(), MemoryStore()
    usage = HourlyUsage({"fabrikam": 60.0, "northwind": 30.0, "litware": 10.0})
    enforcer = PooledBudgets(
        spec,
        store,
        platform,
        lambda: clock[0],
        usage=usage,
        costs=FixedCosts({"pool-shared": spend}),
    )
    return enforcer, platform, store


def test_the_tenant_over_its_budget_is_refused_alone_told_once_and_served_next_period(
    spec: PlatformSpec,
) -> None:
    clock = [NOW]
    enforcer, platform, store = _enforcer(spec, 200.0, clock)  # fabrikam: 120 of 100
    outcomes = {o.tenant: o for o in enforcer.run()}
    assert outcomes["fabrikam"].status == "stopped"
    # 60 of 100: below its 75 %, told only that its forecast crosses 100 %.
    assert outcomes["northwind"].status == "notified"
    [told] = [m for t, _, m in platform.notifications if t == "northwind"]
    assert told.startswith("budget of northwind: forecast at")
    assert platform.refused == {"fabrikam": datetime(2027, 1, 1, tzinfo=UTC)}
    critical = [n for n in platform.notifications if n[1] == "critical"]
    assert len(critical) == 1 and critical[0][0] == "fabrikam"
    assert "refused until 2027-01-01" in critical[0][2] and "60.0% share" in critical[0][2]
    assert "other tenants of pool shared are served" in critical[0][2]
    assert not gpu_work_allowed(store, "fabrikam", NOW)
    assert gpu_work_allowed(store, "northwind", NOW)

    # The next run applies the stop again (a restarted gateway) and tells nobody twice.
    told = len(platform.notifications)
    platform.refused.clear()
    clock[0] = NOW + timedelta(hours=1)
    assert {o.tenant: o.status for o in enforcer.run()}["fabrikam"] == "stopped"
    assert "fabrikam" in platform.refused
    assert len(platform.notifications) == told

    # A new period: the stop is lifted and the tenant hears it.
    clock[0] = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    enforcer.costs = FixedCosts({"pool-shared": 1.0})
    enforcer.run()
    assert platform.refused == {}
    assert ("admit", "fabrikam") in platform.calls
    assert any("scoring and GPU work of fabrikam resumes" in n[2] for n in platform.notifications)
    assert gpu_work_allowed(store, "fabrikam", clock[0])


def test_thresholds_below_the_stop_are_told_once_per_period(spec: PlatformSpec) -> None:
    clock = [NOW]
    enforcer, platform, _ = _enforcer(spec, 130.0, clock)  # fabrikam 78 of 100, litware 13
    outcomes = {o.tenant: o for o in enforcer.run()}
    assert outcomes["fabrikam"].status == "notified"
    assert platform.refused == {}
    # 78 % actual crosses 75 %; the forecast (78 over 2.5 of 31 days) crosses 100 %.
    fabrikam = [m for t, _, m in platform.notifications if t == "fabrikam"]
    assert len(fabrikam) == 2
    assert any("78 % of its budget spent" in m for m in fabrikam)
    assert any("forecast at" in m for m in fabrikam)
    clock[0] = NOW + timedelta(hours=2)
    assert {o.tenant: o.status for o in enforcer.run()}["fabrikam"] == "within"
    assert len([t for t, _, _ in platform.notifications if t == "fabrikam"]) == 2


def test_a_pool_whose_spend_is_unknown_is_skipped_and_the_others_judged(
    spec: PlatformSpec,
) -> None:
    clock = [NOW]
    enforcer, platform, store = _enforcer(spec, 200.0, clock)
    enforcer.costs = FixedCosts({}, frozenset({"pool-shared"}))
    assert enforcer.run() == []  # nothing judged without the pool's spend
    assert platform.refused == {}
    assert store.query(contracts.TABLE_USAGE) == []


def test_resume_due_admits_only_tenants_stopped_from_scoring(spec: PlatformSpec) -> None:
    platform, store = FakePlatform(), MemoryStore()
    for tenant, scoring in (("fabrikam", True), ("contoso", False)):
        record = {"blocked_until": "2027-01-01T00:00:00+00:00", "reason": "r"}
        store.insert(
            contracts.TABLE_BUDGET_STATE, "blocked", tenant, {**record, "scoring": scoring}
        )
    later = datetime(2027, 1, 2, tzinfo=UTC)
    assert sorted(BudgetHandler(spec, store, platform, lambda: later).resume_due()) == [
        "contoso",
        "fabrikam",
    ]
    assert [c for c in platform.calls if c[0] == "admit"] == [("admit", "fabrikam")]
