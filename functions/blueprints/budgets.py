"""Budget alerts from the action group (secure webhook), pooled tenants' budgets from their
metered usage (hourly), and the idle-workspace check."""

from __future__ import annotations

import logging
from dataclasses import asdict

import azure.functions as func
from services import services

from automation.budgets import BudgetHandler, idle_workspaces, parse_budget_alert
from blueprints.edge import error_response, json_response
from blueprints.identity import require_action_group, signed_in
from tenancy import contracts
from tenancy.errors import InvalidInputError, MlopsError

bp = func.Blueprint()  # type: ignore[no-untyped-call]
logger = logging.getLogger("tenant_mlops.budgets")


@bp.function_name(contracts.FUNCTION_BUDGET_ALERT)
@bp.route(route=contracts.ROUTE_BUDGET_ALERT, methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def on_budget_alert(req: func.HttpRequest) -> func.HttpResponse:
    """The action group authenticates with an Entra token (secure webhook), which App
    Service authentication validates; the app then checks that the token is the action
    group's, for its own application. No function key travels in the webhook's URL."""
    app = services()
    try:
        principal = signed_in(req, app.settings.auth_enabled)
        require_action_group(principal, app.settings.spec.function_app.alert_webhook_app_id)
        try:
            payload = req.get_json()
        except ValueError:
            raise InvalidInputError("the alert body is not JSON") from None
        alert = parse_budget_alert(payload)
        outcome = BudgetHandler(app.settings.spec, app.store, app.port, app.clock).handle(alert)
    except MlopsError as error:
        return error_response(error)
    logger.info("budget alert %s: %s", alert.budget_name, outcome.status)
    return json_response(asdict(outcome))


@bp.function_name("idle_workspaces")
@bp.timer_trigger(schedule="0 0 6 * * *", arg_name="timer", run_on_startup=False)
def idle_workspace_check(timer: func.TimerRequest) -> None:
    """Daily: stops whose budget period ended are lifted, idle workspaces are reported."""
    app = services()
    BudgetHandler(app.settings.spec, app.store, app.port, app.clock).resume_due()
    for stamp in idle_workspaces(app.settings.spec, app.port.last_compute_activity, app.clock()):
        days = app.settings.spec.budget_policy.idle_workspace_days
        app.port.notify(stamp, "info", f"{stamp} has run no compute for {days} days or more")


@bp.function_name("pooled_budgets")
@bp.timer_trigger(schedule="0 10 * * * *", arg_name="timer", run_on_startup=False)
def pooled_budget_check(timer: func.TimerRequest) -> None:
    """Hourly: meter the pools' last settled hours, then judge each pooled tenant's share of
    its pool's spend against its budget (``automation.costs``): Azure sends no budget alert
    for a pooled tenant, whose cost only its usage tells."""
    app = services()
    for outcome in app.pooled_budgets.run():
        log = logger.warning if outcome.status in ("stopped", "refused") else logger.info
        log("pooled budget of %s: %s (%.0f %%)", outcome.tenant, outcome.status, outcome.percent)
