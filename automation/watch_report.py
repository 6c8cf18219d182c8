"""The drift and quality report of an installation: what its automation's timers recorded
per tenant (drift it acted on, human reviews still open, the latest quality check), read
from the platform's state tables. `mlops watch report` prints it; the scheduled workflow
(.github/workflows/watch-report.yml) runs it against each Azure installation's state
account and keeps it as the run's summary.

Nothing is measured here: the Function App's timers measure (drift_check, quality_check)
and record; this only reads, so a report never changes what the automation decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from automation.drift_watch import DRIFT_EVENTS, REVIEW_TASKS, tenant_and_model
from automation.quality_watch import latest_checks
from automation.store import StateStore
from tenancy import contracts
from tenancy.errors import InvalidInputError


@dataclass
class TenantWatch:
    tenant: str
    drift: list[dict[str, Any]] = field(default_factory=list)  # acted on, in the window
    open_reviews: list[dict[str, Any]] = field(default_factory=list)  # whenever opened
    quality: dict[str, Any] | None = None  # the latest check, if one ran

    @property
    def needs_attention(self) -> bool:
        breached = bool(self.quality and self.quality.get("breaches"))
        return bool(self.drift or self.open_reviews or breached)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "needs_attention": self.needs_attention,
            "drift": self.drift,
            "open_reviews": self.open_reviews,
            "quality": self.quality,
        }


def watch_report(
    store: StateStore, tenants: Sequence[str], now: datetime, days: int
) -> list[TenantWatch]:
    """Per tenant (the stack's, in its order), what the timers recorded: drift acted on
    in the last ``days`` days, reviews still open, the latest quality check."""
    if days < 1:
        raise InvalidInputError(f"days must be at least 1, not {days}")
    since = now - timedelta(days=days)
    report = {tenant: TenantWatch(tenant) for tenant in tenants}
    for record in store.query(contracts.TABLE_EVENTS, DRIFT_EVENTS):
        tenant, model = tenant_and_model(record.row)
        at = datetime.fromisoformat(str(record.data["at"]))
        if tenant in report and at >= since:
            report[tenant].drift.append(
                {"model": model, "reason": record.data["reason"], "at": at.isoformat()}
            )
    for record in store.query(contracts.TABLE_EVENTS, REVIEW_TASKS):
        tenant, _ = tenant_and_model(record.row)
        if tenant in report and record.data.get("status") == "open":
            report[tenant].open_reviews.append(dict(record.data))
    for tenant, check in latest_checks(store).items():
        if tenant in report:
            report[tenant].quality = check
    for watched in report.values():
        watched.drift.sort(key=lambda d: str(d["at"]))
    return list(report.values())


def to_markdown(stack: str, report: Sequence[TenantWatch], now: datetime, days: int) -> str:
    """The report as a GitHub job summary: one row per tenant, then what needs attention."""
    lines = [
        f"# Drift and quality: {stack}",
        "",
        f"At {now:%Y-%m-%d %H:%M} UTC; drift over the last {days} day(s).",
        "",
        "| tenant | drift acted on | open reviews | quality (latest check) |",
        "|---|---|---|---|",
    ]
    for watched in report:
        lines.append(
            f"| {watched.tenant} | {len(watched.drift)} | {len(watched.open_reviews)} "
            f"| {_quality_cell(watched.quality)} |"
        )
    flagged = [w for w in report if w.needs_attention]
    lines += ["", "## Needs attention" if flagged else "Nothing needs attention."]
    for watched in flagged:
        for drift in watched.drift:
            lines.append(f"- {watched.tenant}: {drift['model']} {drift['reason']} ({drift['at']})")
        for review in watched.open_reviews:
            lines.append(
                f"- {watched.tenant}: review of {review['model']} open since {review['opened']}"
            )
        for breach in (watched.quality or {}).get("breaches", []):
            lines.append(f"- {watched.tenant}: {breach}")
    return "\n".join(lines) + "\n"


def _quality_cell(check: dict[str, Any] | None) -> str:
    if check is None:
        return "no check yet"
    measured = check.get("measured") or {}
    accuracy = measured.get("accuracy")
    shown = f"accuracy {accuracy:.3f}" if isinstance(accuracy, float) else "too few labels"
    return f"{check['model']}: {shown}, {check['labelled']} labelled, action {check['action']}"
