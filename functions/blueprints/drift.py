"""Drift: a timer checks every tenant's live deployment; Azure ML model monitors' breach
alerts (RunStatusChanged) reach the same decision."""

from __future__ import annotations

import logging

import azure.functions as func
from services import each_online_tenant, services

from automation.drift_watch import monitor_breach, tenant_of_workspace
from tenancy import contracts
from tenancy.errors import InvalidInputError

bp = func.Blueprint()  # type: ignore[no-untyped-call]
logger = logging.getLogger("tenant_mlops.drift")


@bp.function_name("drift_check")
# The schedule is an app setting: the stack's drift.schedule.
@bp.timer_trigger(
    schedule=f"%{contracts.SETTING_DRIFT_SCHEDULE}%", arg_name="timer", run_on_startup=False
)
def drift_check(timer: func.TimerRequest) -> None:
    app = services()
    for tenant, decision in each_online_tenant(
        app.settings.spec, app.drift.check, "drift check", logger
    ):
        logger.info("drift of %s: %s (%s)", tenant, decision.action, decision.reason)


@bp.function_name(contracts.FUNCTION_RUN_STATUS_CHANGED)
@bp.event_grid_trigger(arg_name="event")
def on_run_status_changed(event: func.EventGridEvent) -> None:
    app = services()
    try:
        owner = tenant_of_workspace(app.settings.spec, event.topic or "")
        breach = monitor_breach(event.get_json(), owner)
    except InvalidInputError as error:
        app.registration.record_refusal("eventgrid", event.id, error.message)
        return
    if breach is None:
        return  # an ordinary run finished
    tenant, model = breach
    if tenant not in {t.id for t in app.settings.spec.tenants}:
        app.registration.record_refusal(
            "eventgrid", event.id, f"no tenant {tenant!r} in this stack"
        )
        return
    decision = app.drift.act(tenant, model, "Azure ML model monitor threshold breached")
    logger.info("monitor alert for %s: %s", tenant, decision.action)
