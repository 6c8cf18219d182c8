"""Registry events: parsing, MLflow signatures, and the handler's gate -> rollout path under
duplicate, out-of-order, malformed and rejected deliveries."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from automation.registry_events import (
    RegistrationHandler,
    from_event_grid,
    from_mlflow,
    verify_mlflow_signature,
)
from automation.runner import RolloutRunner
from automation.store import MemoryStore
from policies.model_rules import ModelFacts
from tenancy import PlatformSpec, contracts
from tenancy.errors import AuthenticationError, InvalidInputError
from tests.automation.fakes import FakePlatform

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SECRET = "webhook-secret-for-tests"
DIGEST = "sha256:" + "ab" * 32
TAGS = {
    "tenant": "contoso",
    "training_run": "r1",
    "data_version": "v1",
    "owner": "ds",
    "intended_use": "scoring",
    "strategy": "tenant_specific",
    "artifact_digest": DIGEST,
    "baseline_dataset": "file:///b.npz",
}


def _facts(version: str, **changes: object) -> ModelFacts:
    facts = ModelFacts(
        name="contoso-classical", version=version, tags=TAGS, metrics={"accuracy": 0.95},
        flavors=("onnx",), artifact_format="onnx", packages=("onnxruntime",),
        computed_digest=DIGEST, size_bytes=2048,
    )  # fmt: skip
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


@pytest.fixture
def handler(
    specs: dict[str, PlatformSpec],
) -> tuple[RegistrationHandler, FakePlatform, MemoryStore]:
    platform, store = FakePlatform(), MemoryStore()
    platform.serve("contoso", "contoso-classical/1")
    for version in ("2", "3"):
        platform.facts[("contoso-classical", version)] = _facts(version)
    platform.facts[("contoso-classical", "4")] = _facts(
        "4", metrics={"accuracy": 0.5}, artifact_format="pkl"
    )
    runner = RolloutRunner(specs["local"], store, platform, lambda: NOW)
    return (
        RegistrationHandler(specs["local"], store, platform, runner, lambda: NOW),
        platform,
        store,
    )


def _grid(event_id: str, version: str) -> object:
    return from_event_grid(
        event_id,
        contracts.EVENT_MODEL_REGISTERED,
        {"modelName": "contoso-classical", "modelVersion": version, "modelTags": TAGS},
    )


def test_a_registered_model_that_passes_the_gate_starts_one_rollout(
    handler: tuple[RegistrationHandler, FakePlatform, MemoryStore],
) -> None:
    registration, platform, _ = handler
    outcome = registration.handle(_grid("e1", "2"))  # type: ignore[arg-type]
    assert (outcome.status, outcome.tenants) == ("started", ("contoso",))
    assert ("create", ("contoso", "green", "contoso-classical/2")) in platform.calls


def test_duplicates_and_out_of_order_deliveries_change_nothing(
    handler: tuple[RegistrationHandler, FakePlatform, MemoryStore],
) -> None:
    registration, platform, _ = handler
    assert registration.handle(_grid("e3", "3")).status == "started"  # type: ignore[arg-type]
    assert registration.handle(_grid("e3", "3")).status == "duplicate"  # type: ignore[arg-type]
    assert registration.handle(_grid("e3-again", "3")).status == "stale"  # type: ignore[arg-type]
    assert registration.handle(_grid("e2-late", "2")).status == "stale"  # type: ignore[arg-type]
    creates = [c for c in platform.calls if c[0] == "create"]
    assert creates == [("create", ("contoso", "green", "contoso-classical/3"))]


def test_a_model_failing_the_gate_is_rejected_with_every_reason(
    handler: tuple[RegistrationHandler, FakePlatform, MemoryStore],
) -> None:
    registration, platform, store = handler
    outcome = registration.handle(_grid("e4", "4"))  # type: ignore[arg-type]
    assert outcome.status == "rejected"
    assert outcome.reasons == (
        "[MODEL_FORMAT_NOT_ALLOWED] format pkl is not allowed (allowed: onnx)",
        "[MODEL_METRIC_BELOW_THRESHOLD] accuracy 0.5 is below the threshold 0.7",
    )
    record = store.get(contracts.TABLE_ROLLOUTS, "contoso", "contoso-classical-v4")
    assert record is not None and record.data["rejected"] is True
    assert not [c for c in platform.calls if c[0] == "create"]


def test_a_promoted_version_is_audited_as_it_reaches_the_gate(
    handler: tuple[RegistrationHandler, FakePlatform, MemoryStore],
) -> None:
    registration, _, store = handler
    promoted = {**TAGS, contracts.MODEL_TAG_PROMOTED_FROM: "staging:contoso-classical/7"}
    for event_id, version in (("e2", "2"), ("e4", "4")):  # 4 fails the gate
        event = from_event_grid(
            event_id,
            contracts.EVENT_MODEL_REGISTERED,
            {"modelName": "contoso-classical", "modelVersion": version, "modelTags": promoted},
        )
        registration.handle(event)
    records = [
        r.data
        for r in store.query(contracts.TABLE_AUDIT, "contoso")
        if r.data.get("event") == "promotion_received"
    ]
    assert [(r["event"], r["from"], r["to"], r["gate"]) for r in records] == [
        ("promotion_received", "staging:contoso-classical/7", "contoso-classical/2", "passed"),
        (
            "promotion_received",
            "staging:contoso-classical/7",
            "contoso-classical/4",
            ["MODEL_FORMAT_NOT_ALLOWED", "MODEL_METRIC_BELOW_THRESHOLD"],
        ),
    ]
    # A version of the environment's own is not a promotion: no such record is written.
    registration.handle(_grid("e5", "5"))  # type: ignore[arg-type]
    assert sum(
        r.data.get("event") == "promotion_received"
        for r in store.query(contracts.TABLE_AUDIT, "contoso")
    ) == 2


def test_a_model_of_no_known_tenant_is_rejected(
    handler: tuple[RegistrationHandler, FakePlatform, MemoryStore],
) -> None:
    registration, _, _ = handler
    event = from_event_grid(
        "e5",
        contracts.EVENT_MODEL_REGISTERED,
        {"modelName": "umbrella-x", "modelVersion": 1, "modelTags": {"tenant": "umbrella"}},
    )
    assert registration.handle(event).status == "rejected"


@pytest.mark.parametrize(
    ("event_type", "data", "message"),
    [
        (
            "Microsoft.Storage.BlobCreated",
            {},
            "is not Microsoft.MachineLearningServices.ModelRegistered",
        ),
        (contracts.EVENT_MODEL_REGISTERED, [], "event data must be an object"),
        (
            contracts.EVENT_MODEL_REGISTERED,
            {"modelVersion": "1"},
            "data.modelName is missing or not text",
        ),
        (
            contracts.EVENT_MODEL_REGISTERED,
            {"modelName": "m", "modelVersion": "v1"},
            "data.modelVersion must be a version number, got 'v1'",
        ),
        (
            contracts.EVENT_MODEL_REGISTERED,
            {"modelName": "m", "modelVersion": 1, "modelTags": []},
            "data.modelTags must be an object",
        ),
    ],
)
def test_malformed_event_grid_events_are_named(event_type: str, data: object, message: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        from_event_grid("e", event_type, data)
    assert message in raised.value.message


def _signed(
    body: bytes, delivery: str = "d-1", timestamp: int | None = None, secret: str = SECRET
) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(NOW.timestamp()))
    digest = hmac.new(
        secret.encode(), f"{delivery}.{stamp}.".encode() + body, hashlib.sha256
    ).digest()
    return {
        "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Delivery-Id": delivery,
    }


def test_mlflow_signatures_are_checked() -> None:
    body = json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "data": {"name": "m", "version": "2", "tags": {}},
        }
    ).encode()
    assert verify_mlflow_signature(SECRET, _signed(body), body, NOW) == "d-1"
    with pytest.raises(AuthenticationError, match="does not match"):
        verify_mlflow_signature(SECRET, _signed(body, secret="other"), body, NOW)
    with pytest.raises(AuthenticationError, match="does not match"):
        verify_mlflow_signature(SECRET, _signed(body), body + b" ", NOW)
    with pytest.raises(AuthenticationError, match="replay"):
        verify_mlflow_signature(
            SECRET, _signed(body, timestamp=int(NOW.timestamp()) - 3600), body, NOW
        )
    with pytest.raises(AuthenticationError, match="not signed"):
        verify_mlflow_signature(SECRET, {}, body, NOW)


def test_mlflow_payloads_map_to_registry_events() -> None:
    created = json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "data": {"name": "contoso-classical", "version": "2", "tags": TAGS},
        }
    ).encode()
    event = from_mlflow("d-2", created)
    assert event is not None and (event.ref, event.tags["tenant"]) == (
        "contoso-classical/2",
        "contoso",
    )
    alias = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": "contoso-classical", "alias": "challenger", "version": "3"},
        }
    ).encode()
    assert from_mlflow("d-3", alias).alias == "challenger"  # type: ignore[union-attr]
    tag = json.dumps({"entity": "model_version_tag", "action": "set", "data": {}}).encode()
    assert from_mlflow("d-4", tag) is None
    with pytest.raises(InvalidInputError, match="not JSON"):
        from_mlflow("d-5", b"{oops")


def test_a_challenger_alias_event_starts_a_rollout_and_other_aliases_do_not(
    handler: tuple[RegistrationHandler, FakePlatform, MemoryStore],
) -> None:
    registration, _, _ = handler
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": "contoso-classical", "alias": "champion", "version": "2"},
        }
    ).encode()
    assert registration.handle(from_mlflow("d-6", body)).status == "ignored"  # type: ignore[arg-type]
    body = body.replace(b"champion", b"challenger")
    assert registration.handle(from_mlflow("d-7", body)).status == "started"  # type: ignore[arg-type]


def test_refusals_are_recorded(
    handler: tuple[RegistrationHandler, FakePlatform, MemoryStore],
) -> None:
    registration, _, store = handler
    registration.record_refusal("mlflow", "d-9", "signature does not match")
    registration.record_refusal("mlflow", "d-9", "signature does not match")
    assert [r.data["reason"] for r in store.query(contracts.TABLE_EVENTS, "refused-mlflow")] == [
        "signature does not match"
    ]
