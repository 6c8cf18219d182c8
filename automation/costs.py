"""What each tenant costs, and pooled tenants' budgets enforced from their metered usage.

Azure's cost data stops at the resource: a pool's endpoint is one resource serving many
tenants, so Cost Management, and a budget filtered on a tag, sees the pool and never its
tenants (the review's W8; https://learn.microsoft.com/azure/cost-management-billing/costs/enable-tag-inheritance
inherits tags of the resource group, not of a caller). The automation splits a pool's spend
by usage instead:

- **Metering.** Every hour, each pool's usage per tenant (requests, rows, scoring time: the
  ``UsageSource``, read from collected data where every row names its tenant) over each
  complete hour is written once to the ``usage`` table, one row per pool and hour: a second
  run or a second worker writes nothing twice. An hour is metered once its collected data
  has settled (:data:`SETTLE`), oldest first, from the budget period's start, at most
  :data:`MAX_HOURS_PER_RUN` a run (a first run catches up over several).
- **Cost.** A dedicated tenant costs its stamp's spend. A pooled tenant costs its share of
  its pool's metered scoring time in the period, times the pool's spend (``CostSource``:
  the pool budget's ``currentSpend`` on Azure).
- **Enforcement.** A pooled tenant's budget thresholds are told once per period. At its stop
  percentage (``stop_at_percent``) its scoring requests are refused at the gateway until
  the next period (``PlatformPort.refuse_scoring``), and its retraining waits
  (``automation.budgets.gpu_work_allowed``); its neighbours are untouched. The refusal is
  applied again on every run while it lasts (a restarted gateway, a value reset by hand),
  and lifted by ``BudgetHandler.resume_due`` once the period ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from automation.budgets import BudgetHandler, period_of, stop_in_force
from automation.port import CostSource, PlatformPort, Spend, Usage, UsageSource
from tenancy import contracts
from tenancy.errors import BudgetExceededError, ConflictError, MlopsError
from tenancy.spec import PlatformSpec, PoolSpec, TenantSpec

logger = logging.getLogger("tenant_mlops.costs")

HOUR = timedelta(hours=1)
#: Collected data of an hour is complete this long after the hour ends (the collectors
#: write in batches of at most a minute or so).
SETTLE = timedelta(minutes=10)
#: Hours metered per pool in one run: a first run late in a month catches up in a few.
MAX_HOURS_PER_RUN = 24 * 7


# --- budget periods ------------------------------------------------------------------------


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --- metering ------------------------------------------------------------------------------


def _partition(stamp: str, period_start: date) -> str:
    return f"{stamp}|{period_start.isoformat()}"


def _hour_row(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H")


@dataclass(frozen=True)
class Metered:
    """A pool's usage per tenant in a period, as far as it has been metered."""

    usage: Mapping[str, Usage]
    hours: int
    until: datetime | None  # the end of the latest metered hour

    @property
    def scoring_ms(self) -> float:
        return sum(u.scoring_ms for u in self.usage.values())

    def share(self, tenant: str) -> float:
        total = self.scoring_ms
        used = self.usage.get(tenant)
        return used.scoring_ms / total if used is not None and total > 0 else 0.0


class Meter:
    """The hourly usage ledger of the pools (``tenancy.contracts.TABLE_USAGE``)."""

    def __init__(self, store: Any, usage: UsageSource) -> None:
        self.store = store
        self.usage = usage

    def meter(self, pool: PoolSpec, member: str, period_start: date, now: datetime) -> int:
        """Meter the settled hours of ``pool`` not metered yet (``member``: a tenant of the
        pool, which names its endpoint); the number of hours metered."""
        stamp = f"pool-{pool.id}"
        partition = _partition(stamp, period_start)
        done = {r.row for r in self.store.query(contracts.TABLE_USAGE, partition)}
        hour, metered = _at(period_start), 0
        while hour + HOUR <= now - SETTLE and metered < MAX_HOURS_PER_RUN:
            row = _hour_row(hour)
            if row not in done:
                used = self.usage.usage(member, since=hour, until=hour + HOUR)
                record = {
                    "tenants": {
                        tenant: [u.requests, u.rows, round(u.scoring_ms, 3)]
                        for tenant, u in sorted(used.items())
                    }
                }
                with contextlib.suppress(ConflictError):  # another run metered it
                    self.store.insert(contracts.TABLE_USAGE, partition, row, record)
                metered += 1
            hour += HOUR
        return metered

    def metered(self, stamp: str, period_start: date) -> Metered:
        totals: dict[str, Usage] = {}
        rows = self.store.query(contracts.TABLE_USAGE, _partition(stamp, period_start))
        for record in rows:
            for tenant, (requests, scored, millis) in record.data["tenants"].items():
                totals[tenant] = totals.get(tenant, Usage()) + Usage(requests, scored, millis)
        latest = max((r.row for r in rows), default=None)
        if latest is None:
            return Metered(totals, 0, None)
        until = datetime.strptime(latest, "%Y-%m-%dT%H").replace(tzinfo=UTC) + HOUR
        return Metered(totals, len(rows), until)


def meter_pools(spec: PlatformSpec, meter: Meter, costs: CostSource, now: datetime) -> None:
    """Meter every serving pool's settled hours in its budget's current period; a pool whose
    spend or usage cannot be read is logged and left for the next run."""
    for pool in spec.pools:
        members = spec.tenants_in_pool(pool.id)
        if not pool.endpoints.online.enabled or not members:
            continue
        try:
            spend = costs.stamp_spend(f"pool-{pool.id}", now)
            meter.meter(pool, members[0].id, spend.period_start, now)
        except MlopsError:
            logger.exception("metering pool %s failed", pool.id)


# --- cost per tenant -----------------------------------------------------------------------


@dataclass(frozen=True)
class TenantCost:
    tenant: str
    stamp: str
    pooled: bool
    period_start: date
    period_end: date
    currency: str
    stamp_spend: float
    share: float  # of the stamp's spend: 1 for a dedicated tenant, metered in a pool
    budget: float
    usage: Usage | None = None  # metered in the period (pooled tenants)
    metered_until: datetime | None = None

    @property
    def cost(self) -> float:
        return self.stamp_spend * self.share

    @property
    def percent(self) -> float:
        return 100 * self.cost / self.budget

    def forecast(self, now: datetime) -> float:
        """The cost at the period's end if it goes on as so far (a straight line)."""
        elapsed = (now - _at(self.period_start)).total_seconds()
        length = (_at(self.period_end) - _at(self.period_start)).total_seconds()
        return self.cost * length / elapsed if elapsed > 0 else self.cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "stamp": self.stamp,
            "pooled": self.pooled,
            "period": [self.period_start.isoformat(), self.period_end.isoformat()],
            "currency": self.currency,
            "stamp_spend": round(self.stamp_spend, 2),
            "share": round(self.share, 6),
            "cost": round(self.cost, 2),
            "budget": self.budget,
            "percent": round(self.percent, 2),
            "usage": None
            if self.usage is None
            else {
                "requests": self.usage.requests,
                "rows": self.usage.rows,
                "scoring_ms": round(self.usage.scoring_ms, 3),
            },
            "metered_until": self.metered_until.isoformat() if self.metered_until else None,
        }


@dataclass
class CostReport:
    """Every tenant's cost in its budget period, and what no tenant's usage accounts for."""

    at: datetime
    tenants: list[TenantCost] = field(default_factory=list)
    # A pool's spend in hours nobody scored (no share to split it by): the pool's own.
    unattributed: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # stamp -> why its spend is unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "tenants": [c.to_dict() for c in self.tenants],
            "unattributed": {k: round(v, 2) for k, v in self.unattributed.items()},
            "errors": self.errors,
        }


def cost_report(spec: PlatformSpec, costs: CostSource, meter: Meter, now: datetime) -> CostReport:
    """Each tenant's cost so far in its budget's current period (from the ledger as far as
    it is metered: run :class:`PooledBudgets` to meter first)."""
    report = CostReport(now)
    spends: dict[str, Spend] = {}
    for stamp in dict.fromkeys(t.stamp_key for t in spec.tenants):
        try:
            spends[stamp] = costs.stamp_spend(stamp, now)
        except MlopsError as error:  # one stamp's unknown spend never hides the others
            report.errors[stamp] = error.message
    for tenant in spec.tenants:
        spend = spends.get(tenant.stamp_key)
        if spend is None:
            continue
        report.tenants.append(_tenant_cost(spec, tenant, spend, meter, now))
    for pool in spec.pools:
        stamp = f"pool-{pool.id}"
        members = [c for c in report.tenants if c.stamp == stamp]
        if stamp in spends and members and not any(c.share for c in members):
            report.unattributed[stamp] = spends[stamp].amount
    return report


def _tenant_cost(
    spec: PlatformSpec, tenant: TenantSpec, spend: Spend, meter: Meter, now: datetime
) -> TenantCost:
    _, end = period_of(spend.period_start, tenant.budget.time_grain, now)
    pooled = tenant.tier == "pooled"
    metered = meter.metered(tenant.stamp_key, spend.period_start) if pooled else None
    return TenantCost(
        tenant=tenant.id,
        stamp=tenant.stamp_key,
        pooled=pooled,
        period_start=spend.period_start,
        period_end=end,
        currency=spend.currency,
        stamp_spend=spend.amount,
        share=metered.share(tenant.id) if metered else 1.0,
        budget=tenant.budget.amount,
        usage=metered.usage.get(tenant.id, Usage()) if metered else None,
        metered_until=metered.until if metered else None,
    )


# --- enforcement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PooledBudgetOutcome:
    tenant: str
    status: str  # "within" | "notified" | "stopped" | "refused" (a stop still in force)
    percent: float
    detail: str


class PooledBudgets:
    """Meter the pools, then judge each pooled tenant's cost against its budget."""

    def __init__(
        self,
        spec: PlatformSpec,
        store: Any,
        port: PlatformPort,
        clock: Callable[[], datetime],
        *,
        usage: UsageSource,
        costs: CostSource,
    ) -> None:
        self.spec = spec
        self.store = store
        self.port = port
        self.meter = Meter(store, usage)
        self.costs = costs
        self.clock = clock

    def run(self) -> list[PooledBudgetOutcome]:
        now = self.clock()
        # A period that ended lifts its stops first: a new period starts at zero.
        BudgetHandler(self.spec, self.store, self.port, self.clock).resume_due()
        meter_pools(self.spec, self.meter, self.costs, now)
        report = cost_report(self.spec, self.costs, self.meter, now)
        outcomes = []
        for cost in report.tenants:
            if cost.pooled:
                outcomes.append(self._judge(self.spec.tenant(cost.tenant), cost, now))
        return outcomes

    def _judge(self, tenant: TenantSpec, cost: TenantCost, now: datetime) -> PooledBudgetOutcome:
        spent = (
            f"{cost.percent:.0f} % of its budget spent ({cost.cost:.2f} of "
            f"{cost.budget:g} {cost.currency}: its {cost.share:.1%} share of pool "
            f"{tenant.pool}'s {cost.stamp_spend:.2f})"
        )
        told = self._tell_thresholds(tenant, cost, now, spent)
        stop = self.spec.stop_at_percent_for(tenant)
        if cost.percent >= stop:
            return self._stop(tenant, cost, spent)
        blocked = self.store.get(contracts.TABLE_BUDGET_STATE, "blocked", tenant.id)
        if blocked is not None and stop_in_force(blocked.data, now):
            self.port.refuse_scoring(
                tenant.id,
                datetime.fromisoformat(blocked.data["blocked_until"]),
                blocked.data["reason"],
            )
            return PooledBudgetOutcome(tenant.id, "refused", cost.percent, blocked.data["reason"])
        return PooledBudgetOutcome(tenant.id, "notified" if told else "within", cost.percent, spent)

    def _tell_thresholds(
        self, tenant: TenantSpec, cost: TenantCost, now: datetime, spent: str
    ) -> bool:
        """Each threshold crossed is told once per period (actual, or forecast at the
        period's end); True when one was told in this run."""
        told = False
        forecast = 100 * cost.forecast(now) / cost.budget
        for threshold in tenant.budget.thresholds:
            actual = threshold.type == "Actual"
            if (cost.percent if actual else forecast) < threshold.percent:
                continue
            key = (
                f"metered|{tenant.id}|{cost.period_start.isoformat()}|"
                f"{threshold.type}|{threshold.percent:g}"
            )
            try:
                self.store.insert(
                    contracts.TABLE_BUDGET_STATE,
                    "alerts",
                    key,
                    {"percent": cost.percent, "at": now.isoformat()},
                )
            except ConflictError:
                continue
            what = spent if actual else f"forecast at {forecast:.0f} % by {cost.period_end}"
            self.port.notify(tenant.id, "warning", f"budget of {tenant.id}: {what}")
            told = True
        return told

    def _stop(self, tenant: TenantSpec, cost: TenantCost, spent: str) -> PooledBudgetOutcome:
        until = _at(cost.period_end)
        reason = f"metered budget of {tenant.id} at {cost.percent:.0f} %"
        record = {"blocked_until": until.isoformat(), "reason": reason, "scoring": True}
        existing = self.store.get(contracts.TABLE_BUDGET_STATE, "blocked", tenant.id)
        fresh = existing is None or not stop_in_force(existing.data, self.clock())
        with contextlib.suppress(ConflictError):  # another worker stopped it: same record
            if existing is None:
                self.store.insert(contracts.TABLE_BUDGET_STATE, "blocked", tenant.id, record)
            elif fresh:
                self.store.replace(existing, record)
        self.port.refuse_scoring(tenant.id, until, reason)
        if fresh:
            refused = BudgetExceededError.for_tenant(tenant.id, cost.period_end.isoformat())
            neighbours = f"the other tenants of pool {tenant.pool} are served as before"
            self.port.notify(tenant.id, "critical", f"{refused.message} ({spent}); {neighbours}")
        return PooledBudgetOutcome(tenant.id, "stopped", cost.percent, spent)
