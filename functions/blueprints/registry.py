"""Registry events: Event Grid's ModelRegistered and MLflow's signed webhook, one handler."""

from __future__ import annotations

import logging
from dataclasses import asdict

import azure.functions as func
from services import services

from automation.registry_events import (
    MAX_NAME_LENGTH,
    from_event_grid,
    from_mlflow,
    verify_mlflow_signature,
)
from blueprints.edge import error_response, json_response
from tenancy import contracts
from tenancy.errors import (
    AuthenticationError,
    InvalidInputError,
    MlopsError,
    PayloadTooLargeError,
)

bp = func.Blueprint()  # type: ignore[no-untyped-call]
logger = logging.getLogger("tenant_mlops.registry")
# MLflow's registry payloads are a few hundred bytes; a megabyte is not one of them.
MAX_WEBHOOK_BYTES = 256 * 1024


@bp.function_name(contracts.FUNCTION_MODEL_REGISTERED)
@bp.event_grid_trigger(arg_name="event")
def on_model_registered(event: func.EventGridEvent) -> None:
    app = services()
    try:
        registry_event = from_event_grid(event.id, event.event_type, event.get_json())
    except InvalidInputError as error:
        # Retrying a malformed event cannot help: it is recorded as poison, not raised.
        app.registration.record_refusal("eventgrid", event.id, error.message)
        logger.warning("refused event %s: %s", event.id, error.message)
        return
    outcome = app.registration.handle(registry_event)
    logger.info("event %s: %s (%s)", event.id, outcome.status, outcome.detail)


@bp.function_name("mlflow_registry_webhook")
@bp.route(route="registry/mlflow", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def mlflow_registry_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous at the host on purpose: the HMAC signature is the authentication."""
    app = services()
    secret = app.settings.webhook_secret
    body = req.get_body()
    delivery = req.headers.get("x-mlflow-delivery-id", "")[:MAX_NAME_LENGTH]
    try:
        if len(body) > MAX_WEBHOOK_BYTES:  # refused before the HMAC is even computed
            raise PayloadTooLargeError(
                f"the webhook body is {len(body)} bytes, above {MAX_WEBHOOK_BYTES}"
            )
        if not secret:
            raise AuthenticationError("the MLflow webhook secret is not configured")
        delivery = verify_mlflow_signature(secret, dict(req.headers), body, app.clock())
        event = from_mlflow(delivery, body)
    except (AuthenticationError, InvalidInputError, PayloadTooLargeError) as error:
        app.registration.record_refusal("mlflow", delivery, error.message)
        return error_response(error)
    if event is None:
        return json_response({"status": "ignored", "detail": "not a registry change"})
    try:
        return json_response(asdict(app.registration.handle(event)))
    except MlopsError as error:
        return error_response(error)
