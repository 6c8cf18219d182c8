"""Policy checks after deployment: a timer judges what is deployed with the pack's rules,
and compares it with what `pulumi up` set (drift from the plan)."""

from __future__ import annotations

import logging

import azure.functions as func
from services import services

from tenancy import contracts

bp = func.Blueprint()  # type: ignore[no-untyped-call]
logger = logging.getLogger("tenant_mlops.audit")


@bp.function_name("policy_audit")
# The schedule is an app setting: the stack's audit.schedule.
@bp.timer_trigger(
    schedule=f"%{contracts.SETTING_AUDIT_SCHEDULE}%", arg_name="timer", run_on_startup=False
)
def policy_audit(timer: func.TimerRequest) -> None:
    app = services()
    inventory = app.inventory
    live = inventory.live_resources()
    outcome = app.audit.run(live, inventory.judged_rules)
    logger.info(
        "policy audit: %d new, %d still open, %d cleared",
        len(outcome.opened),
        len(outcome.persisting),
        len(outcome.cleared),
    )
    expected = inventory.expected_state()
    if expected is None:
        return
    drift = app.audit.run_drift(expected, live, inventory.inventoried_types)
    logger.info(
        "drift from the plan: %d new, %d still open, %d cleared",
        len(drift.opened),
        len(drift.persisting),
        len(drift.cleared),
    )
