"""Registry events in, decisions out: Azure ML's ``ModelRegistered`` (Event Grid) and MLflow's
signed registry webhooks lead to one handler: model gate -> rollout, or a recorded rejection
with every reason.

Deliveries may repeat and arrive out of order: each event id is recorded once (a repeat is
answered "duplicate" and changes nothing), a version at or below the newest already handled
for the model is "stale" and changes nothing, and the rollout itself is keyed by model
version, so at most one starts per version whatever arrives. A malformed event or a bad
signature is refused with the reason and recorded; nothing is half-applied.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from automation.port import PlatformPort
from automation.runner import RolloutRunner, rollout_key
from automation.store import StateStore, append_audit
from policies.model_rules import evaluate_model
from tenancy import contracts
from tenancy.errors import AuthenticationError, ConflictError, InvalidInputError
from tenancy.spec import PlatformSpec

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
#: MLflow signs with a timestamp; older deliveries are refused as replays.
MAX_SIGNATURE_AGE_SECONDS = 300


@dataclass(frozen=True)
class RegistryEvent:
    event_id: str
    source: Literal["eventgrid", "mlflow"]
    model: str
    version: str
    tags: Mapping[str, str] = field(default_factory=dict)
    alias: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(frozen=True)
class Outcome:
    status: Literal["started", "rejected", "duplicate", "stale", "ignored"]
    detail: str
    tenants: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


# --- parsing ----------------------------------------------------------------------------------


# Azure ML's limits on names and tags, rounded up: anything longer is not a real
# registration and is refused whole, before it reaches the store or a message.
MAX_NAME_LENGTH = 255
MAX_TAGS = 64
MAX_TAG_LENGTH = 1024


def _text(value: Any, where: str, max_length: int = MAX_NAME_LENGTH) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{where} is missing or not text")
    if len(value) > max_length:
        raise InvalidInputError(f"{where} is longer than {max_length} characters")
    return value.strip()


def _tags(value: Any, where: str) -> dict[str, str]:
    tags = {} if value is None else value
    if not isinstance(tags, Mapping):
        raise InvalidInputError(f"{where} must be an object")
    if len(tags) > MAX_TAGS:
        raise InvalidInputError(f"{where} has {len(tags)} tags, more than {MAX_TAGS}")
    found = {str(k): str(v) for k, v in tags.items()}
    if any(len(k) > MAX_TAG_LENGTH or len(v) > MAX_TAG_LENGTH for k, v in found.items()):
        raise InvalidInputError(f"{where} has a tag longer than {MAX_TAG_LENGTH} characters")
    return found


def _version(value: Any, where: str) -> str:
    version = _text(value, where, max_length=20)
    if not version.isdigit():
        raise InvalidInputError(f"{where} must be a version number, got {version!r}")
    return version


def from_event_grid(event_id: str, event_type: str, data: Any) -> RegistryEvent:
    """Azure ML's ModelRegistered (``data``: modelName, modelVersion, modelTags)."""
    if event_type != contracts.EVENT_MODEL_REGISTERED:
        raise InvalidInputError(
            f"event type {event_type!r} is not {contracts.EVENT_MODEL_REGISTERED}"
        )
    if not isinstance(data, Mapping):
        raise InvalidInputError("event data must be an object")
    return RegistryEvent(
        event_id=_text(event_id, "id"),
        source="eventgrid",
        model=_text(data.get("modelName"), "data.modelName"),
        version=_version(data.get("modelVersion"), "data.modelVersion"),
        tags=_tags(data.get("modelTags"), "data.modelTags"),
    )


def verify_mlflow_signature(
    secret: str, headers: Mapping[str, str], body: bytes, now: datetime
) -> str:
    """The delivery id, if the HMAC-SHA256 signature (``v1,<base64>`` over
    ``<delivery id>.<timestamp>.<body>``) is right and fresh; else AuthenticationError."""
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER, "")
    timestamp = lower.get(TIMESTAMP_HEADER, "")
    delivery = lower.get(DELIVERY_HEADER, "")
    if not (signature and timestamp and delivery):
        raise AuthenticationError(
            "the webhook is not signed (X-MLflow-Signature, -Timestamp, -Delivery-Id)"
        )
    if not timestamp.isdigit() or abs(now.timestamp() - int(timestamp)) > MAX_SIGNATURE_AGE_SECONDS:
        raise AuthenticationError(
            "the webhook's timestamp is not within 5 minutes: refused as a replay"
        )
    content = f"{delivery}.{timestamp}.".encode() + body
    expected = base64.b64encode(
        hmac.new(secret.encode(), content, hashlib.sha256).digest()
    ).decode()
    version, _, given = signature.partition(",")
    if version != "v1" or not hmac.compare_digest(given, expected):
        raise AuthenticationError("the webhook's signature does not match")
    return delivery


def from_mlflow(delivery_id: str, body: bytes) -> RegistryEvent | None:
    """``model_version.created`` and ``model_version_alias.created``; other entities and
    actions are not registry changes the automation acts on (None)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInputError("the webhook body is not JSON") from None
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), Mapping):
        raise InvalidInputError("the webhook body must be an object with 'data'")
    entity, action, data = payload.get("entity"), payload.get("action"), payload["data"]
    if (entity, action) == ("model_version", "created"):
        return RegistryEvent(
            delivery_id,
            "mlflow",
            _text(data.get("name"), "data.name"),
            _version(data.get("version"), "data.version"),
            _tags(data.get("tags"), "data.tags"),
        )
    if (entity, action) == ("model_version_alias", "created"):
        alias = _text(data.get("alias"), "data.alias")
        return RegistryEvent(
            delivery_id,
            "mlflow",
            _text(data.get("name"), "data.name"),
            _version(data.get("version"), "data.version"),
            alias=alias,
        )
    return None


# --- handling ---------------------------------------------------------------------------------


class RegistrationHandler:
    def __init__(
        self,
        spec: PlatformSpec,
        store: StateStore,
        port: PlatformPort,
        runner: RolloutRunner,
        clock: Callable[[], datetime],
    ) -> None:
        self.spec = spec
        self.store = store
        self.port = port
        self.runner = runner
        self.clock = clock

    def record_refusal(self, source: str, event_id: str, reason: str) -> None:
        """A malformed or unsigned delivery is kept (poison), never acted on."""
        row = event_id or f"unknown-{self.clock().timestamp()}"
        record = {"at": self.clock().isoformat(), "reason": reason}
        with contextlib.suppress(ConflictError):  # the same refused delivery again
            self.store.insert(contracts.TABLE_EVENTS, f"refused-{source}", row, record)

    def handle(self, event: RegistryEvent) -> Outcome:
        if event.alias is not None and event.alias != contracts.ALIAS_CHALLENGER:
            return Outcome("ignored", f"alias {event.alias!r} is not a rollout request")
        try:
            self.store.insert(
                contracts.TABLE_EVENTS,
                event.source,
                event.event_id,
                {"model": event.ref, "at": self.clock().isoformat()},
            )
        except ConflictError:
            return Outcome("duplicate", f"event {event.event_id} was handled already")
        tenants = self._targets(event)
        if not tenants:
            return self._reject(
                event, (), ("the model names no tenant of this stack (tag 'tenant')",)
            )
        if self._stale(event):
            return Outcome(
                "stale", f"{event.ref} is not newer than the last version handled", tuple(tenants)
            )
        return self._gate_and_start(event, tenants)

    def _gate_and_start(self, event: RegistryEvent, tenants: list[str]) -> Outcome:
        started, rejected = [], []
        for tenant in tenants:
            facts = self.port.model_facts(tenant, event.model, event.version)
            violations = evaluate_model(facts, tenant, self.spec)
            self._record_promotion(event, tenant, [v.code for v in violations])
            if violations:
                rejected.append((tenant, tuple(f"[{v.code}] {v.message}" for v in violations)))
                continue
            if self.runner.begin(tenant, event.ref, "automation", event.event_id) is not None:
                started.append(tenant)
        self._remember(event)
        if rejected and not started:
            reasons = tuple(r for _, rs in rejected for r in rs)
            return self._reject(event, tuple(t for t, _ in rejected), reasons)
        if not started:
            return Outcome("duplicate", f"a rollout of {event.ref} exists already", tuple(tenants))
        return Outcome("started", f"rollout of {event.ref} started", tuple(started))

    def _record_promotion(self, event: RegistryEvent, tenant: str, violations: list[str]) -> None:
        """A version promoted from another environment is written in the tenant's audit log
        as it reaches this one's gate: where it came from, and the gate's verdict. On Azure
        this is the record (`mlops promote` runs as the pipeline, which writes no state)."""
        origin = event.tags.get(contracts.MODEL_TAG_PROMOTED_FROM)
        if not origin:
            return
        append_audit(
            self.store,
            tenant,
            self.clock(),
            {
                "event": "promotion_received",
                "actor": "automation",
                "from": origin,
                "to": event.ref,
                "registry_asset": event.tags.get(contracts.MODEL_TAG_REGISTRY_ASSET, ""),
                "gate": violations or "passed",
            },
        )

    def _targets(self, event: RegistryEvent) -> list[str]:
        """A tenant's own model goes to that tenant; a shared model to every tenant of its
        kind that serves shared models as they are."""
        owner = event.tags.get(contracts.MODEL_TAG_TENANT)
        if owner is None:  # an alias event carries no tags: the model's name says whose it is
            owner = event.model.rsplit("-", 1)[0]
        if owner == "shared":
            kind = event.tags.get("kind") or event.model.rsplit("-", 1)[-1]
            return [
                t.id
                for t in self.spec.tenants
                if t.model_strategy == "shared" and t.model_kind == kind
            ]
        return [t.id for t in self.spec.tenants if t.id == owner]

    def _stale(self, event: RegistryEvent) -> bool:
        newest = self.store.get(contracts.TABLE_EVENTS, "newest", event.model)
        return newest is not None and int(newest.data["version"]) >= int(event.version)

    def _remember(self, event: RegistryEvent) -> None:
        """Raise the model's newest handled version (optimistic: a lost race retries)."""
        for _ in range(5):
            newest = self.store.get(contracts.TABLE_EVENTS, "newest", event.model)
            try:
                if newest is None:
                    self.store.insert(
                        contracts.TABLE_EVENTS, "newest", event.model, {"version": event.version}
                    )
                elif int(newest.data["version"]) < int(event.version):
                    self.store.replace(newest, {"version": event.version})
                return
            except ConflictError:
                continue

    def _reject(
        self, event: RegistryEvent, tenants: tuple[str, ...], reasons: tuple[str, ...]
    ) -> Outcome:
        record = {
            "rejected": True,
            "model": event.ref,
            "reasons": list(reasons),
            "at": self.clock().isoformat(),
            "event": event.event_id,
        }
        for tenant in tenants or ("(none)",):
            with contextlib.suppress(ConflictError):  # the rejection is recorded already
                self.store.insert(contracts.TABLE_ROLLOUTS, tenant, rollout_key(event.ref), record)
        return Outcome("rejected", f"{event.ref} failed the model gate", tenants, reasons)
