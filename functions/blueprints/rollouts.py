"""Rollouts: the timer that advances them, and approve / abort for the approver personas."""

from __future__ import annotations

import logging

import azure.functions as func
from services import Services, services

from automation.rollout import Command
from blueprints.edge import error_response, json_response
from blueprints.identity import Principal, require_audience, signed_in
from tenancy import contracts
from tenancy.errors import InvalidInputError, MlopsError, PermissionDeniedError

bp = func.Blueprint()  # type: ignore[no-untyped-call]
logger = logging.getLogger("tenant_mlops.rollouts")


@bp.function_name("rollout_tick")
# The schedule is an app setting the program derives from the stack's analysis intervals.
@bp.timer_trigger(
    schedule=f"%{contracts.SETTING_ROLLOUT_SCHEDULE}%", arg_name="timer", run_on_startup=False
)
def rollout_tick(timer: func.TimerRequest) -> None:
    app = services()
    app.runner.resume()
    for tenant, model in app.runner.active():
        try:
            app.runner.tick(tenant, model)
        except Exception:  # one rollout's failure must not stop the others
            logger.exception("rollout %s of %s could not advance", model, tenant)


def approver(app: Services, req: func.HttpRequest) -> Principal:
    """The signed-in caller, with a token for the automation's application."""
    principal = signed_in(req, app.settings.auth_enabled)
    require_audience(principal, app.settings.spec.function_app.alert_webhook_app_id)
    return principal


def _persona(app: Services, tenant_id: str, principal: Principal) -> str:
    tenant = app.settings.spec.tenant(tenant_id)
    policy = app.settings.spec.rollout_for(tenant)
    members = tenant.personas.model_dump()
    for persona in policy.approver_personas:
        if principal.groups & set(members.get(persona) or []):
            return persona
    if principal.has_group_overage:
        raise PermissionDeniedError(
            "the token names no groups because the caller is in too many: give the "
            "approver groups an app role of the automation's application, or fewer groups"
        )
    raise PermissionDeniedError(
        f"only {', '.join(policy.approver_personas)} of {tenant_id} may approve or abort "
        "its rollouts"
    )


@bp.function_name("rollout_command")
@bp.route(
    route="rollouts/{tenant}/{model}/{version}/{action}",
    methods=["POST"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def rollout_command(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous at the host: App Service authentication signs the caller in, and the caller's
    Entra groups must hold one of the tenant's approver personas."""
    app = services()
    params = req.route_params
    try:
        action = params.get("action", "")
        if action not in ("approve", "abort"):
            raise InvalidInputError(f"action must be approve or abort, got {action!r}")
        tenant = params.get("tenant", "")
        if tenant not in {t.id for t in app.settings.spec.tenants}:
            raise InvalidInputError(f"no tenant {tenant!r} in this stack")
        principal = approver(app, req)
        persona = _persona(app, tenant, principal)
        reason = (req.params.get("reason") or "")[:500]
        model = f"{params.get('model')}/{params.get('version')}"
        transition = app.runner.command(
            tenant,
            model,
            Command(action, principal.name, persona, reason),
            req.headers.get("x-correlation-id", ""),
        )
        state = app.runner.get(tenant, model)
    except MlopsError as error:
        return error_response(error)
    return json_response(
        {
            "phase": state.phase.value,
            "traffic": dict(state.traffic),
            "reason": transition.reason if transition else "no change",
        }
    )
