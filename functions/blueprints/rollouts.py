"""Rollouts: the timer that advances them, and approve / abort for the approver personas."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

import azure.functions as func
from services import Services, services

from automation.rollout import Command
from blueprints.edge import error_response, json_response
from tenancy import contracts
from tenancy.errors import AuthenticationError, InvalidInputError, MlopsError, PermissionDeniedError

bp = func.Blueprint()  # type: ignore[no-untyped-call]
logger = logging.getLogger("tenant_mlops.rollouts")
PRINCIPAL_HEADER = "x-ms-client-principal"  # set by App Service authentication (Entra)


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


def caller_groups(req: func.HttpRequest) -> tuple[str, set[str]]:
    """(name, Entra group ids) of the signed-in caller, from App Service authentication."""
    encoded = req.headers.get(PRINCIPAL_HEADER)
    if not encoded:
        raise AuthenticationError("sign in: the request carries no authenticated principal")
    try:
        principal: dict[str, Any] = json.loads(base64.b64decode(encoded))
    except (binascii.Error, ValueError):
        raise AuthenticationError("the authenticated principal header is malformed") from None
    claims = principal.get("claims") or []
    groups = {c.get("val", "") for c in claims if c.get("typ") == "groups"}
    names = [c.get("val", "") for c in claims if c.get("typ") in ("name", "preferred_username")]
    return (names[0] if names else "unknown"), groups


def _persona(app: Services, tenant_id: str, groups: set[str]) -> str:
    tenant = app.settings.spec.tenant(tenant_id)
    policy = app.settings.spec.rollout_for(tenant)
    members = tenant.personas.model_dump()
    for persona in policy.approver_personas:
        if groups & set(members.get(persona) or []):
            return persona
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
        actor, groups = caller_groups(req)
        persona = _persona(app, tenant, groups)
        reason = (req.params.get("reason") or "")[:500]
        model = f"{params.get('model')}/{params.get('version')}"
        transition = app.runner.command(
            tenant,
            model,
            Command(action, actor, persona, reason),
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
