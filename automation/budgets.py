"""Budget alerts: notify at every threshold; above the stack's stop threshold, scale the
tenant's compute to 0 and refuse new GPU work until the budget's next period. An alert
delivered again (action groups retry, thresholds re-fire) changes nothing.

Budgets are named by the program (``budget-<stamp>-budget`` for a dedicated tenant or a
pool, ``budget-pool-<pool>-<tenant>-budget`` for a pooled tenant), which is how an alert
finds its tenant. Both payload shapes Azure sends are read, keys case-insensitively: the
common alert schema (``data.alertContext.AlertData``) and the budget notification schema.
"""

from __future__ import annotations

import calendar
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from automation.port import PlatformPort
from automation.store import StateStore
from tenancy import contracts
from tenancy.errors import ConflictError, InvalidInputError
from tenancy.spec import PlatformSpec, TenantSpec


@dataclass(frozen=True)
class BudgetAlert:
    budget_name: str
    spent: float
    budget: float
    threshold_amount: float
    period_start: date

    @property
    def percent(self) -> float:
        return 100 * self.spent / self.budget if self.budget else 0.0

    @property
    def threshold_percent(self) -> float:
        return 100 * self.threshold_amount / self.budget if self.budget else 0.0


def _lower(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()}


def _number(values: Mapping[str, Any], *keys: str) -> float:
    for key in keys:
        if key in values:
            text = str(values[key]).replace(",", "").rstrip("%").strip()
            try:
                return float(text)
            except ValueError:
                raise InvalidInputError(
                    f"budget alert field {key} is not a number: {values[key]!r}"
                ) from None
    raise InvalidInputError(f"budget alert lacks {' / '.join(keys)}")


def parse_budget_alert(payload: Any) -> BudgetAlert:
    if not isinstance(payload, Mapping):
        raise InvalidInputError("the alert body must be a JSON object")
    data = _lower(payload).get("data")
    if not isinstance(data, Mapping):
        raise InvalidInputError("the alert has no 'data' object")
    values = _lower(data)
    context = values.get("alertcontext")
    if isinstance(context, Mapping):  # common alert schema
        inner = _lower(context).get("alertdata")
        if not isinstance(inner, Mapping):
            raise InvalidInputError("data.alertContext has no AlertData: not a budget alert")
        values = _lower(inner)
    name = values.get("budgetname")
    if not isinstance(name, str) or not name:
        raise InvalidInputError("the alert names no budget (BudgetName)")
    try:
        start = date.fromisoformat(str(values.get("budgetstartdate", ""))[:10])
    except ValueError:
        raise InvalidInputError("BudgetStartDate is missing or not a date") from None
    return BudgetAlert(
        budget_name=name,
        spent=_number(values, "spendingamount", "spentamount"),
        budget=_number(values, "budget", "budgetamount"),
        threshold_amount=_number(values, "notificationthresholdamount", "budgetthreshold"),
        period_start=start,
    )


def tenants_of_budget(spec: PlatformSpec, budget_name: str) -> tuple[list[TenantSpec], bool]:
    """(tenants the budget covers, whether it is one pooled tenant's share of a pool)."""
    name = budget_name.removeprefix("budget-").removesuffix("-budget")
    for tenant in spec.tenants:
        if tenant.tier == "dedicated" and name == f"tenant-{tenant.id}":
            return [tenant], False
        if tenant.tier == "pooled" and name == f"pool-{tenant.pool}-{tenant.id}":
            return [tenant], True
    for pool in spec.pools:
        if name == f"pool-{pool.id}":
            return spec.tenants_in_pool(pool.id), False
    return [], False


def _add_months(start: date, months: int, anchor_day: int) -> date:
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def period_of(anchor: date, grain: str, now: datetime) -> tuple[date, date]:
    """(start, end) of the budget period that holds ``now``, periods counted from
    ``anchor`` (the budget's start date) by its time grain."""
    months = {"Monthly": 1, "Quarterly": 3, "Annually": 12}.get(grain, 1)
    start = anchor
    while True:
        end = _add_months(start, months, anchor.day)
        if datetime(end.year, end.month, end.day, tzinfo=UTC) > now:
            return start, end
        start = end


def next_period(start: date, grain: str, now: datetime) -> datetime:
    """The first day of the budget period after ``now``'s."""
    end = period_of(start, grain, now)[1]
    return datetime(end.year, end.month, end.day, tzinfo=UTC)


@dataclass(frozen=True)
class BudgetOutcome:
    status: str  # "notified" | "stopped" | "duplicate" | "unknown_budget"
    tenants: tuple[str, ...]
    detail: str


class BudgetHandler:
    def __init__(
        self,
        spec: PlatformSpec,
        store: StateStore,
        port: PlatformPort,
        clock: Callable[[], datetime],
    ) -> None:
        self.spec = spec
        self.store = store
        self.port = port
        self.clock = clock

    def handle(self, alert: BudgetAlert) -> BudgetOutcome:
        tenants, pooled_share = tenants_of_budget(self.spec, alert.budget_name)
        if not tenants:
            return BudgetOutcome(
                "unknown_budget", (), f"no tenant of this stack has budget {alert.budget_name}"
            )
        ids = tuple(t.id for t in tenants)
        key = f"{alert.budget_name}|{alert.period_start.isoformat()}|{alert.threshold_amount:g}"
        try:
            self.store.insert(
                contracts.TABLE_BUDGET_STATE,
                "alerts",
                key.replace("/", "_"),
                {"percent": alert.percent, "at": self.clock().isoformat()},
            )
        except ConflictError:
            return BudgetOutcome("duplicate", ids, f"alert {key} was handled already")
        spent = f"{alert.percent:.0f} % spent ({alert.spent:g} of {alert.budget:g})"
        message = f"budget {alert.budget_name}: {spent}"
        stopped = []
        for tenant in tenants:
            self.port.notify(tenant.id, "warning", message)
            if alert.percent >= self.spec.stop_at_percent_for(tenant):
                self._stop(tenant, alert, pooled_share)
                stopped.append(tenant.id)
        if stopped:
            return BudgetOutcome(
                "stopped", tuple(stopped), f"{message}: GPU work stopped until the next period"
            )
        return BudgetOutcome("notified", ids, message)

    def _stop(self, tenant: TenantSpec, alert: BudgetAlert, pooled_share: bool) -> None:
        until = next_period(alert.period_start, tenant.budget.time_grain, self.clock())
        if not pooled_share and tenant.tier == "dedicated":
            # A pool's compute serves other tenants: only a dedicated stamp is scaled down.
            self.port.scale_compute(tenant.id, 0)
        record = {
            "blocked_until": until.isoformat(),
            "reason": f"budget {alert.budget_name} at {alert.percent:.0f} %",
        }
        existing = self.store.get(contracts.TABLE_BUDGET_STATE, "blocked", tenant.id)
        with contextlib.suppress(ConflictError):
            if existing is None:
                self.store.insert(contracts.TABLE_BUDGET_STATE, "blocked", tenant.id, record)
            else:
                self.store.replace(existing, record)
        self.port.notify(
            tenant.id,
            "critical",
            f"GPU work of {tenant.id} stopped until {until.date()}: {record['reason']}",
        )

    def resume_due(self) -> list[str]:
        """Tenants whose stop ended (a new budget period began): a dedicated stamp's GPU
        cluster gets its node cap back, and the tenant hears it. Each stop is resumed once
        (the record is marked), whatever the number of timer runs."""
        now = self.clock()
        resumed = []
        for record in self.store.query(contracts.TABLE_BUDGET_STATE, "blocked"):
            if (
                record.data.get("resumed")
                or datetime.fromisoformat(record.data["blocked_until"]) > now
            ):
                continue
            try:
                tenant = self.spec.tenant(record.row)
            except KeyError:
                continue  # a tenant that left the stack: nothing of it to resume
            try:
                self.store.replace(record, {**record.data, "resumed": now.isoformat()})
            except ConflictError:
                continue  # another worker resumed it
            if tenant.tier == "dedicated" and tenant.compute is not None:
                self.port.scale_compute(tenant.id, tenant.compute.max_nodes)
            work = "GPU work"
            if record.data.get("scoring"):  # a pooled tenant's metered stop (automation.costs)
                self.port.admit_scoring(tenant.id)
                work = "scoring and GPU work"
            message = f"{work} of {tenant.id} resumes: a new budget period began"
            self.port.notify(tenant.id, "info", message)
            resumed.append(tenant.id)
        return resumed


def stop_in_force(record: Mapping[str, Any], now: datetime) -> bool:
    """A ``blocked`` record that still stops its tenant: not lifted, its period not over."""
    return not record.get("resumed") and datetime.fromisoformat(record["blocked_until"]) > now


def gpu_work_allowed(store: StateStore, tenant: str, now: datetime) -> bool:
    """False while a budget stop is in force (new training jobs and retraining check this)."""
    record = store.get(contracts.TABLE_BUDGET_STATE, "blocked", tenant)
    return record is None or datetime.fromisoformat(record.data["blocked_until"]) <= now


def idle_workspaces(
    spec: PlatformSpec, last_activity: Callable[[str], datetime | None], now: datetime
) -> list[str]:
    """Pre-production stamps with no active compute for the policy's number of days."""
    if spec.environment.is_production:
        return []
    limit = timedelta(days=spec.budget_policy.idle_workspace_days)
    stamps = sorted({t.stamp_key for t in spec.tenants})
    return [s for s in stamps if (seen := last_activity(s)) is None or now - seen > limit]
