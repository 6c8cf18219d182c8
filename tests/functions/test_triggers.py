"""Every trigger with real azure.functions objects, host-free."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from blueprints import budgets, registry, rollouts
from blueprints.identity import ACTION_GROUP_APP_ID, ACTION_GROUP_ROLE
from services import Services

from automation.costs import MAX_HOURS_PER_RUN
from policies.live import LiveResource
from tenancy import contracts
from tests.automation.test_registry_events import TAGS, _facts
from tests.functions.conftest import APP_ID, NOW, SECRET


def _event(event_id: str, version: str, data: object = None) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=event_id,
        data=data
        if data is not None
        else {"modelName": "contoso-classical", "modelVersion": version, "modelTags": TAGS},
        topic="/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w",
        subject=f"models/contoso-classical:{version}",
        event_type=contracts.EVENT_MODEL_REGISTERED,
        event_time=datetime(2026, 11, 22, 12, 0),
        data_version="2",
    )


def _facts_for(wired: Services, *versions: str) -> None:
    for version in versions:
        wired.port.facts[("contoso-classical", version)] = _facts(version)  # type: ignore[attr-defined]


def test_model_registered_starts_a_rollout_once(wired: Services) -> None:
    _facts_for(wired, "2")
    handler = registry.on_model_registered.build().get_user_function()
    handler(_event("e-1", "2"))
    handler(_event("e-1", "2"))  # Event Grid delivers at least once
    creates = [c for c in wired.port.calls if c[0] == "create"]  # type: ignore[attr-defined]
    assert creates == [("create", ("contoso", "green", "contoso-classical/2"))]


def test_a_malformed_event_is_recorded_not_raised(wired: Services) -> None:
    handler = registry.on_model_registered.build().get_user_function()
    handler(_event("e-bad", "2", data={"modelVersion": "2"}))
    refused = wired.store.query(contracts.TABLE_EVENTS, "refused-eventgrid")
    assert [r.data["reason"] for r in refused] == ["data.modelName is missing or not text"]


def _webhook(body: bytes, secret: str = SECRET) -> func.HttpRequest:
    stamp = str(int(NOW.timestamp()))
    digest = hmac.new(secret.encode(), f"d-1.{stamp}.".encode() + body, hashlib.sha256).digest()
    return func.HttpRequest(
        method="POST",
        url="http://localhost/api/registry/mlflow",
        headers={
            "Content-Type": "application/json",
            "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
            "X-MLflow-Timestamp": stamp,
            "X-MLflow-Delivery-Id": "d-1",
        },
        body=body,
    )


def test_the_mlflow_webhook_checks_the_signature_then_handles(wired: Services) -> None:
    _facts_for(wired, "3")
    handler = registry.mlflow_registry_webhook.build().get_user_function()
    body = json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "data": {"name": "contoso-classical", "version": "3", "tags": TAGS},
        }
    ).encode()
    forged = handler(_webhook(body, secret="guess"))
    assert forged.status_code == 401
    assert json.loads(forged.get_body())["error"]["code"] == "unauthenticated"
    answer = handler(_webhook(body))
    assert answer.status_code == 200
    assert json.loads(answer.get_body())["status"] == "started"
    malformed = handler(_webhook(b"{not json"))
    assert malformed.status_code == 400


def _principal(
    *groups: str,
    audience: str = f"api://{APP_ID}",
    application: str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46",  # the Azure CLI
    roles: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
) -> str:
    """The x-ms-client-principal App Service authentication writes for a signed-in caller."""
    claims = [
        {"typ": "aud", "val": audience},
        {"typ": "azp", "val": application},
        {"typ": "name", "val": "lee"},
        *({"typ": "groups", "val": g} for g in groups),
        *(
            {"typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "val": r}
            for r in roles
        ),
        *({"typ": typ, "val": val} for typ, val in extra),
    ]
    principal = {
        "auth_typ": "aad",
        "claims": claims,
        "name_typ": "name",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    }
    return base64.b64encode(json.dumps(principal).encode()).decode()


def _action_group(**overrides: Any) -> str:
    """The principal of Azure Monitor's action group posting a secure webhook."""
    return _principal(
        **{"application": ACTION_GROUP_APP_ID, "roles": (ACTION_GROUP_ROLE,), **overrides}
    )


def test_rollout_commands_need_an_approver_persona(wired: Services) -> None:
    _facts_for(wired, "2")
    registry.on_model_registered.build().get_user_function()(_event("e-2", "2"))
    handler = rollouts.rollout_command.build().get_user_function()
    route = {"tenant": "contoso", "model": "contoso-classical", "version": "2", "action": "abort"}

    def call(headers: dict[str, str], params: dict[str, str] | None = None) -> func.HttpResponse:
        return handler(
            func.HttpRequest(
                method="POST",
                url="http://localhost/api/rollouts/x",
                headers=headers,
                route_params=params or route,
                body=b"",
            )
        )

    assert call({}).status_code == 401
    assert call({"x-ms-client-principal": "!!!"}).status_code == 401
    assert call({"x-ms-client-principal": _principal("someone-else")}).status_code == 403
    lead = wired.settings.spec.tenant("contoso").personas.project_lead[0]
    # A lead's token for another application does not sign them in here.
    for_another_app = _principal(lead, audience="api://another-app")
    assert call({"x-ms-client-principal": for_another_app}).status_code == 401
    # Too many groups: Entra points to Graph instead of listing them, and the refusal says so.
    overage = _principal(extra=(("_claim_names", '{"groups": "src1"}'),))
    refused = call({"x-ms-client-principal": overage})
    assert (
        refused.status_code == 403
        and "too many" in json.loads(refused.get_body())["error"]["message"]
    )
    assert (
        call({"x-ms-client-principal": _principal(lead)}, {**route, "action": "delete"}).status_code
        == 400
    )
    answer = call({"x-ms-client-principal": _principal(lead)})
    assert answer.status_code == 200
    assert json.loads(answer.get_body())["phase"] == "rolled_back"


def test_the_timer_advances_active_rollouts(wired: Services) -> None:
    _facts_for(wired, "2")
    registry.on_model_registered.build().get_user_function()(_event("e-3", "2"))
    tick = rollouts.rollout_tick.build().get_user_function()
    tick(TimerRequest(past_due=False))
    assert wired.runner.get("contoso", "contoso-classical/2").phase.value == "smoke_testing"


def test_the_pooled_budget_timer_refuses_the_tenant_over_its_share_and_no_neighbour(
    wired: Services,
) -> None:
    check = budgets.pooled_budget_check.build().get_user_function()
    check(TimerRequest(past_due=False))
    platform: Any = wired.port
    # fabrikam: 60 % of the pool's 200 is 120, above its budget of 100; the others are not.
    assert list(platform.refused) == ["fabrikam"]
    assert [t for t, severity, _ in platform.notifications if severity == "critical"] == [
        "fabrikam"
    ]
    # Each run meters at most MAX_HOURS_PER_RUN of the month so far; later runs catch up,
    # and once caught up a run meters nothing twice and tells nobody again.
    metered = []
    for _ in range(15):
        check(TimerRequest(past_due=False))
        metered.append(len(wired.store.query(contracts.TABLE_USAGE)))
    settled_hours = 21 * 24 + 11  # 2026-11-01 00:00 to 11-22 11:00 (12:00 is still open)
    assert metered[0] == 2 * MAX_HOURS_PER_RUN and metered[-2:] == [settled_hours] * 2
    ledger = wired.store.query(contracts.TABLE_USAGE)
    assert {r.partition for r in ledger} == {"pool-shared|2026-11-01"}
    assert len([n for n in platform.notifications if n[1] == "critical"]) == 1


def test_the_budget_trigger_needs_a_signed_in_action_group(wired: Services) -> None:
    from tests.automation.test_budgets import common_schema  # noqa: PLC0415

    handler = budgets.on_budget_alert.build().get_user_function()
    body = json.dumps(common_schema("budget-tenant-contoso-budget", 1100, 1000, 1000)).encode()

    def call(headers: dict[str, str], payload: bytes = body) -> func.HttpResponse:
        return handler(
            func.HttpRequest(
                method="POST",
                url="http://localhost/api/alerts/budget",
                headers=headers,
                body=payload,
            )
        )

    assert call({}).status_code == 401
    # A person signed in for this app is not the action group; nor is a token for another app.
    lead = wired.settings.spec.tenant("contoso").personas.project_lead[0]
    assert call({"x-ms-client-principal": _principal(lead)}).status_code == 403
    other_app = _action_group(audience="api://another-app")
    assert call({"x-ms-client-principal": other_app}).status_code == 401
    without_role = _action_group(roles=())
    assert call({"x-ms-client-principal": without_role}).status_code == 403
    assert wired.port.scaled == {}  # type: ignore[attr-defined]
    signed = {"x-ms-client-principal": _action_group()}
    assert call(signed, b"{oops").status_code == 400
    answer = call(signed)
    assert answer.status_code == 200 and json.loads(answer.get_body())["status"] == "stopped"
    assert json.loads(call(signed).get_body())["status"] == "duplicate"
    assert wired.port.scaled == {"contoso": 0}  # type: ignore[attr-defined]


def test_the_drift_timer_and_monitor_alerts_reach_one_decision(wired: Services) -> None:
    from blueprints import drift  # noqa: PLC0415

    wired.port.serve("adatum", "adatum-cv/1")  # type: ignore[attr-defined]
    wired.port.serve("fabrikam", "shared-classical/1")  # type: ignore[attr-defined]
    wired.port.serve("northwind", "northwind-classical/1")  # type: ignore[attr-defined]
    wired.port.serve("litware", "litware-nlp/1")  # type: ignore[attr-defined]
    drift.drift_check.build().get_user_function()(TimerRequest(past_due=False))
    source = wired.drift.source
    retrained = {tenant for tenant, _ in source.retrained}  # type: ignore[attr-defined]
    assert retrained == {"contoso", "fabrikam", "northwind"}  # classical models only
    reviews = {r.data["model"] for r in wired.store.query(contracts.TABLE_EVENTS, "review")}
    assert reviews == {"adatum-model/3", "litware-model/3"}
    alert = func.EventGridEvent(
        id="m-1",
        data={
            "runId": "r",
            "runTags": {
                "azureml_modelmonitor_threshold_breached": "true",
                "tenant": "contoso",
                "model": "contoso-model/3",
            },
        },
        topic="t", subject="s", event_type=contracts.EVENT_RUN_STATUS_CHANGED,
        event_time=datetime(2026, 11, 22, 12, 0), data_version="2",
    )  # fmt: skip
    drift.on_run_status_changed.build().get_user_function()(alert)
    assert len(source.retrained) == 3  # the same model, the same day: handled already


def test_identity_headers_are_refused_without_the_platforms_proof(
    wired: Services, monkeypatch: Any
) -> None:
    """With App Service authentication off, anyone can send x-ms-client-principal: a header
    naming the right groups and the action group's application changes nothing."""
    from tests.automation.test_budgets import common_schema  # noqa: PLC0415

    _facts_for(wired, "2")
    registry.on_model_registered.build().get_user_function()(_event("e-9", "2"))
    before = wired.runner.get("contoso", "contoso-classical/2")
    monkeypatch.setattr(wired, "settings", replace(wired.settings, auth_enabled=False))
    lead = wired.settings.spec.tenant("contoso").personas.project_lead[0]
    route = {"tenant": "contoso", "model": "contoso-classical", "version": "2", "action": "abort"}
    forged_approver = rollouts.rollout_command.build().get_user_function()(
        func.HttpRequest(
            method="POST",
            url="http://localhost/api/rollouts/x",
            headers={"x-ms-client-principal": _principal(lead)},
            route_params=route,
            body=b"",
        )
    )
    assert forged_approver.status_code == 401
    assert "WEBSITE_AUTH_ENABLED" in json.loads(forged_approver.get_body())["error"]["message"]
    assert wired.runner.get("contoso", "contoso-classical/2") == before
    body = json.dumps(common_schema("budget-tenant-contoso-budget", 1100, 1000, 1000)).encode()
    forged_alert = budgets.on_budget_alert.build().get_user_function()(
        func.HttpRequest(
            method="POST",
            url="http://localhost/api/alerts/budget",
            headers={"x-ms-client-principal": _action_group()},
            body=body,
        )
    )
    assert forged_alert.status_code == 401
    assert wired.port.scaled == {}  # type: ignore[attr-defined]


def test_the_audit_timer_records_a_live_violation_and_its_drift_once_and_tells_its_owner(
    wired: Services,
) -> None:
    from blueprints import audit  # noqa: PLC0415

    account = (
        "/subscriptions/s/resourceGroups/rg-tmlops-local-tenant-contoso/providers/"
        "Microsoft.Storage/storageAccounts/stcontoso"
    )
    public = LiveResource(
        account,
        "Microsoft.Storage/storageAccounts",
        "stcontoso",
        {
            "tags": {"tenant-id": "contoso", "env": "local", "cost-center": "cc-1001"},
            "properties": {"allowBlobPublicAccess": True},  # someone turned it on
        },
    )

    class Inventory:
        judged_rules = None
        inventoried_types = None

        def live_resources(self) -> list[LiveResource]:
            return [public]

        def expected_state(self) -> dict[str, Any]:  # what `pulumi up` set
            governed = {"allowBlobPublicAccess": False, "tags": {"tenant-id": "contoso"}}
            resource = {
                "id": account,
                "type": "azure-native:storage:StorageAccount",
                "governed": governed,
            }
            return {"version": 1, "resources": [resource]}

    wired.inventory = Inventory()
    timer = audit.policy_audit.build().get_user_function()
    timer(TimerRequest(past_due=False))
    timer(TimerRequest(past_due=False))  # the next run: nothing new to tell
    on_account = [f for f in wired.audit.open_findings() if f.resource == account]
    [finding] = [f for f in on_account if f.level != "drift"]
    assert (finding.policy, finding.tenant) == ("storage-no-public-blob", "contoso")
    told = [n for n in wired.port.notifications if "storage-no-public-blob" in n[2]]  # type: ignore[attr-defined]
    assert [(tenant, severity) for tenant, severity, _ in told] == [("contoso", "error")]
    # The same change is drift from the plan, recorded and told apart, once.
    [drift] = [f for f in on_account if f.level == "drift"]
    assert (drift.policy, drift.resource, drift.tenant) == ("changed", account, "contoso")
    assert "allowBlobPublicAccess is True (the plan set False)" in drift.message
    drifts = [n for n in wired.port.notifications if n[2].startswith("drift")]  # type: ignore[attr-defined]
    assert [(tenant, severity) for tenant, severity, _ in drifts] == [("contoso", "warning")]


def test_the_quality_timer_measures_each_tenant_and_a_fall_retrains_or_opens_a_review(
    wired: Services,
) -> None:
    from blueprints import quality  # noqa: PLC0415

    timer = quality.quality_check.build().get_user_function()
    timer(TimerRequest(past_due=False))
    latest = wired.quality.latest()
    contoso = latest["contoso"]
    assert contoso["labelled"] == 500 and contoso["action"] == "retrain"
    assert contoso["measured"]["accuracy"] < 0.6 and contoso["estimated"]["rows"] == 2000
    # Every tenant fell in this window: classical models retrain, cv and nlp get a review.
    retrained = wired.drift.source.retrained  # type: ignore[attr-defined]
    classical = sorted(t for t, reason in retrained if reason.startswith("quality of"))
    assert classical == ["contoso", "fabrikam", "northwind"]
    assert {latest[t]["action"] for t in ("adatum", "litware")} == {"review"}
    timer(TimerRequest(past_due=False))  # the next run the same day: acted on once
    assert len(retrained) == 3


def test_a_large_tenants_drift_is_an_azure_ml_monitor_whose_breach_acts(
    monkeypatch: Any,
) -> None:
    """dev with contoso over the Function's rows a day: the timer keeps its model monitor on
    the live deployment (and measures the others); the monitor's breach event, whose run
    names no tenant, is contoso's by its workspace, and retrains once."""
    from blueprints import drift  # noqa: PLC0415
    from services import compose  # noqa: PLC0415
    from settings import Settings  # noqa: PLC0415

    from automation.store import MemoryStore  # noqa: PLC0415
    from tenancy import naming  # noqa: PLC0415
    from tests.automation.fakes import FakePlatform  # noqa: PLC0415
    from tests.automation.test_drift_watch import FakeSource, _large  # noqa: PLC0415
    from tests.functions.conftest import environment  # noqa: PLC0415
    from tests.tenancy.conftest import stack_document  # noqa: PLC0415

    spec = _large(stack_document("dev"))
    platform = FakePlatform()
    for tenant in ("contoso", "adatum", "fabrikam", "northwind"):
        platform.serve(tenant, f"{tenant}-classical/1")
    source = FakeSource(shift=0.8)
    composed = compose(
        Settings.from_env(environment(spec)), MemoryStore(), platform, lambda: NOW,
        drift_source=source,
    )  # fmt: skip
    monkeypatch.setattr(drift, "services", lambda: composed)
    drift.drift_check.build().get_user_function()(TimerRequest(past_due=False))
    assert platform.monitors == {"contoso": "blue"}
    assert "contoso" not in {tenant for tenant, _ in source.retrained}
    workspace = naming.workspace(spec.environment, "tenant-contoso")
    breach = func.EventGridEvent(
        id="m-2",
        data={"runId": "r", "runTags": {contracts.MODEL_MONITOR_BREACH_TAG: "true"}},
        topic=f"/subscriptions/s/resourceGroups/g/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{workspace}",
        subject="experiments/e/runs/r", event_type=contracts.EVENT_RUN_STATUS_CHANGED,
        event_time=datetime(2026, 11, 22, 12, 0), data_version="2",
    )  # fmt: skip
    handler = drift.on_run_status_changed.build().get_user_function()
    handler(breach)
    handler(breach)  # delivered twice
    assert [t for t, _ in source.retrained].count("contoso") == 1
