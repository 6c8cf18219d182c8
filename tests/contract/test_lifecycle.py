"""The lifecycle scenarios of the platform port, written once and run on both adapters:
the local one on the embedded platform's real parts, the Azure one through its SDK calls
over the stateful fake of Azure (tests/contract/fake_azure.py). A scenario that passes on
one and fails on the other is a defect of the product.

Time is a clock the scenario moves; the registry events, the model gate, the rollout
runner and the requests are real."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automation.budgets import BudgetAlert, BudgetHandler
from automation.costs import PooledBudgets, cost_report
from automation.drift_watch import DriftWatcher
from automation.quality_watch import QualityWatcher
from automation.registry_events import RegistrationHandler, RegistryEvent
from automation.rollout import Command, Phase
from automation.runner import RolloutRunner
from automation.store import MemoryStore
from ml.data import tenant_datasets
from ml.lifecycle import train_stack
from ml.registry import registry_of
from tenancy import PlatformSpec, contracts, parse_platform_spec, request_ids
from tests.contract.harness import (
    REQUEST_ID_KEY,
    AzureHarness,
    Clock,
    Harness,
    LocalHarness,
)
from tests.tenancy.conftest import stack_document

ROLLOUT = {
    "strategy": "canary",
    "steps": [50, 100],
    "smoke_test_requests": 3,
    "drain_delay_seconds": 60,
    "analysis": {"interval_seconds": 60, "min_requests": 10, "failure_threshold": 2},
}
REQUESTS_PER_INTERVAL = 30


def _document(**rollout: Any) -> dict[str, Any]:
    document = stack_document("local")
    document["rollout"] = {**ROLLOUT, **rollout}
    return document


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlatformSpec, Path, dict[str, Any]]:
    spec = parse_platform_spec(_document())
    data_dir = tmp_path_factory.mktemp("contract")
    return spec, data_dir, {r.tenant: r for r in train_stack(spec, data_dir)}


@pytest.fixture(scope="module", params=["local", "azure"])
def harness(
    request: pytest.FixtureRequest, trained: tuple[PlatformSpec, Path, dict[str, Any]]
) -> Iterator[Harness]:
    spec, data_dir, registered = trained
    kind = LocalHarness if request.param == "local" else AzureHarness
    built = kind(spec, data_dir, registered, Clock())
    yield built
    built.close()


@dataclass
class Automation:
    runner: RolloutRunner
    handler: RegistrationHandler
    store: MemoryStore


def _automation(h: Harness, spec: PlatformSpec | None = None) -> Automation:
    spec = spec or h.spec
    store = MemoryStore()
    runner = RolloutRunner(spec, store, h.port, h.clock.now)
    return Automation(runner, RegistrationHandler(spec, store, h.port, runner, h.clock.now), store)


def _drive(  # noqa: PLR0917 - a scenario's step
    h: Harness,
    auto: Automation,
    tenant: str,
    model: str,
    until: Callable[[Phase], bool] = lambda phase: phase.terminal,
    limit: int = 12,
) -> Phase:
    """Interval by interval: the platform settles, the tenant's requests flow (once its
    endpoint serves), the automation ticks."""
    interval = auto.runner.policy_for(tenant).analysis.interval_seconds
    for _ in range(limit):
        h.settle()
        h.clock.skip(interval / 2)
        endpoint = h.port.endpoint(tenant)
        if endpoint.serving and h.port.serves_tenant(tenant, endpoint.live):
            h.traffic(tenant, REQUESTS_PER_INTERVAL)
        h.clock.skip(interval / 2 + 1)
        auto.runner.tick(tenant, model)
        phase = auto.runner.get(tenant, model).phase
        if until(phase):
            return phase
    return auto.runner.get(tenant, model).phase


def _finish(h: Harness, auto: Automation, tenant: str, model: str) -> Phase:
    """To the end, blue's drain included."""
    phase = _drive(h, auto, tenant, model)
    for _ in range(4):
        if auto.runner.get(tenant, model).done:
            break
        h.clock.skip(61)
        auto.runner.tick(tenant, model)
    return phase


def _ensure_live(h: Harness, tenant: str) -> None:
    """The tenant serves a model of its own (its first, if it had none)."""
    endpoint = h.port.endpoint(tenant)
    if endpoint.serving and h.port.serves_tenant(tenant, endpoint.live):
        return
    auto = _automation(h)
    event = h.publish(tenant)
    assert auto.handler.handle(event).status == "started"
    assert _finish(h, auto, tenant, event.ref) == Phase.PROMOTED


def _azure(h: Harness) -> AzureHarness | None:
    return h if isinstance(h, AzureHarness) else None


def _puts(azure: AzureHarness, pattern: str) -> list[Any]:
    """The PUTs Azure received for paths matching ``pattern``, in order."""
    return [c for c in azure.fake.writes(pattern) if c.method == "PUT"]


# --- scenarios -------------------------------------------------------------------------------


def test_a_tenants_first_model_goes_live_in_one_switch(harness: Harness) -> None:
    h = harness
    auto = _automation(h)
    assert not h.port.endpoint("contoso").serving  # as `pulumi up` / `mlops up` leave it
    event = h.publish("contoso")
    outcome = auto.handler.handle(event)
    assert outcome.status == "started", outcome  # the gate passed on the registry's facts
    assert _finish(h, auto, "contoso", event.ref) == Phase.PROMOTED
    endpoint = h.port.endpoint("contoso")
    assert endpoint.traffic == {contracts.FIRST_DEPLOYMENT: 100}
    assert h.port.serves_tenant("contoso", endpoint.live)
    assert set(h.traffic("contoso", 5)) == {200}
    azure = _azure(h)
    if azure:  # Azure received the tenant's model for blue, replacing the bootstrap model
        puts = [c for c in azure.fake.writes(r"/deployments/blue$") if c.method == "PUT"]
        name, version = event.ref.split("/")
        assert puts[-1].body["properties"]["model"].endswith(f"/models/{name}/versions/{version}")
        # ... on as many scoring workers as `pulumi up` gave the first deployment.
        workers = puts[-1].body["properties"]["environmentVariables"]
        assert workers == {contracts.SETTING_SCORING_WORKERS: "4"}


def test_a_canary_promotes_step_by_step_and_deletes_blue(harness: Harness) -> None:
    h = harness
    _ensure_live(h, "contoso")
    before = h.port.endpoint("contoso").live
    auto = _automation(h)
    event = h.publish("contoso")
    assert auto.handler.handle(event).status == "started"
    assert _finish(h, auto, "contoso", event.ref) == Phase.PROMOTED
    state = auto.runner.get("contoso", event.ref)
    assert h.port.endpoint("contoso").traffic == {state.green: 100}
    assert h.port.deployment_status("contoso", before)[0] == "missing"
    assert set(h.traffic("contoso", 5)) == {200}
    # The registry's champion is what now serves: the gate compares the next with it.
    name, _, version = event.ref.rpartition("/")
    assert h.champion("contoso", name) == version
    azure = _azure(h)
    if azure:  # the traffic updates Azure received, in order, one PUT each
        bodies = [
            c.body["properties"]["traffic"]
            for c in azure.fake.writes(r"/onlineEndpoints/[^/]+$")
            if c.method == "PUT"
        ]
        green = state.green
        # azure-ai-ml leaves 0 % shares out of the request.
        assert bodies[-3:] == [{before: 100}, {before: 50, green: 50}, {green: 100}]


@pytest.mark.parametrize("status", [500, 503, 408, 424])
def test_a_failing_green_is_rolled_back_in_one_update(harness: Harness, status: int) -> None:
    """Azure ML answers 424 for a failed model and 408 for a timeout: both count against
    green, as server errors do (X3)."""
    h = harness
    if status not in h.failures:
        pytest.skip(f"the {h.name} platform never answers {status} for a deployment")
    _ensure_live(h, "contoso")
    live = h.port.endpoint("contoso").live
    auto = _automation(h)
    event = h.publish("contoso")
    name = event.ref.rpartition("/")[0]
    champion = h.champion("contoso", name)
    assert champion is not None  # the live model was crowned when it went live
    assert auto.handler.handle(event).status == "started"
    assert _drive(h, auto, "contoso", event.ref, lambda p: p == Phase.SHIFTING) == Phase.SHIFTING
    green = auto.runner.get("contoso", event.ref).green
    try:
        h.break_deployment("contoso", green, status)
        phase = _drive(h, auto, "contoso", event.ref)
        state = auto.runner.get("contoso", event.ref)
        assert phase == Phase.ROLLED_BACK, state.reason
        assert "analysis failed" in state.reason
        assert h.port.endpoint("contoso").traffic == {live: 100, green: 0}
        assert set(h.traffic("contoso", 5)) == {200}  # blue serves again
        assert h.champion("contoso", name) == champion  # and stays the champion
    finally:
        h.heal()


def test_a_pooled_green_serves_every_tenant_of_its_pool(harness: Harness) -> None:
    h = harness
    _ensure_live(h, "litware")
    _ensure_live(h, "northwind")  # the pool's second tenant: litware's model is carried
    auto = _automation(h)
    event = h.publish("litware")
    assert auto.handler.handle(event).status == "started"
    assert _finish(h, auto, "litware", event.ref) == Phase.PROMOTED
    live = h.port.endpoint("northwind").live
    assert h.port.serves_tenant("northwind", live)
    assert h.port.serves_tenant("litware", live)
    assert set(h.traffic("northwind", 5)) == {200}
    assert set(h.traffic("litware", 5)) == {200}
    azure = _azure(h)
    if azure:  # green's model is one asset with both tenants' models
        green_put = [c for c in azure.fake.writes(rf"/deployments/{live}$") if c.method == "PUT"][
            -1
        ]
        asset = green_put.body["properties"]["model"]
        assert contracts.pool_bundle_model("shared") in asset
        model_put = [
            c
            for c in azure.fake.writes(r"/models/shared-pool-models/versions/")
            if c.method == "PUT"
        ][-1]
        carried = json.loads(model_put.body["properties"]["tags"][contracts.MODEL_TAG_POOL_MODELS])
        assert carried["litware"] == event.ref and "northwind" in carried


def test_promotion_waits_for_an_approver(harness: Harness) -> None:
    h = harness
    _ensure_live(h, "contoso")
    document = _document(strategy="blue_green", steps=[100], approval_required=True)
    for tenant in document["tenants"]:
        tenant.setdefault("personas", {})["project_lead"] = ["33333333-0000-4000-8000-0000000000aa"]
    auto = _automation(h, parse_platform_spec(document))
    event = h.publish("contoso")
    assert auto.handler.handle(event).status == "started"
    waiting = _drive(h, auto, "contoso", event.ref, lambda p: p == Phase.AWAITING_APPROVAL)
    assert waiting == Phase.AWAITING_APPROVAL
    live = h.port.endpoint("contoso").live
    auto.runner.command("contoso", event.ref, Command("approve", "eve", "data_scientist"))
    assert auto.runner.get("contoso", event.ref).phase == Phase.AWAITING_APPROVAL
    assert h.port.endpoint("contoso").live == live  # nothing moved
    auto.runner.command("contoso", event.ref, Command("approve", "lee", "project_lead"))
    assert auto.runner.get("contoso", event.ref).phase == Phase.DRAINING
    assert _finish(h, auto, "contoso", event.ref) == Phase.PROMOTED


def test_duplicate_and_stale_events_change_nothing(harness: Harness) -> None:
    h = harness
    _ensure_live(h, "contoso")
    auto = _automation(h)
    older = h.publish("contoso")
    newer = h.publish("contoso")
    assert auto.handler.handle(newer).status == "started"
    assert auto.handler.handle(newer).status == "duplicate"
    redelivered = RegistryEvent(
        "another-delivery", newer.source, newer.model, newer.version, newer.tags
    )
    assert auto.handler.handle(redelivered).status == "stale"  # one rollout per version
    assert auto.handler.handle(older).status == "stale"
    assert [m for _, m in auto.runner.active()] == [newer.ref]
    auto.runner.command("contoso", newer.ref, Command("abort", "ops", reason="test over"))
    assert auto.runner.get("contoso", newer.ref).phase == Phase.ROLLED_BACK


def test_a_burst_of_versions_rolls_out_the_newest_only(harness: Harness) -> None:
    h = harness
    _ensure_live(h, "contoso")
    auto = _automation(h)
    events = [h.publish("contoso") for _ in range(8)]
    outcomes = [auto.handler.handle(e).status for e in events]
    assert outcomes == ["started"] * 8  # each passed the gate and was queued
    first, newest = events[0].ref, events[-1].ref
    assert _finish(h, auto, "contoso", first) == Phase.PROMOTED
    for _ in range(3):
        for tenant, model in auto.runner.active():
            auto.runner.tick(tenant, model)
    assert _finish(h, auto, "contoso", newest) == Phase.PROMOTED
    phases = [auto.runner.get("contoso", e.ref).phase for e in events[1:-1]]
    assert phases == [Phase.SUPERSEDED] * 6
    azure = _azure(h)
    if azure:  # Azure received deployments of the first and the newest version only
        models = {
            c.body["properties"]["model"].rsplit("/", 1)[-1]
            for c in azure.fake.writes(r"/deployments/[^/]+$")
            if c.method == "PUT" and events[0].model in c.body["properties"]["model"]
        }
        versions = {e.version for e in events}
        assert models & versions == {events[0].version, events[-1].version}


def _compute_cap(h: Harness, tenant: str) -> int | None:
    """The GPU cluster's node cap as the platform holds it."""
    azure = _azure(h)
    if azure is None:
        return h.port.compute_caps.get(h.spec.tenant(tenant).stamp_key)  # type: ignore[attr-defined]
    cluster = azure.fake.resource(f"{azure._workspace(tenant)}/computes/gpu-cluster")
    assert cluster is not None
    return int(cluster["properties"]["properties"]["scaleSettings"]["maxNodeCount"])


def _retraining_requests(h: Harness, tenant: str) -> int:
    """Azure: the command jobs it received. Locally the job is a thread that trains and
    registers a version: once it ends, the registry's versions of the model."""
    azure = _azure(h)
    if azure is not None:
        return len(_puts(azure, r"/jobs/[^/]+$"))
    for job in [t for t in threading.enumerate() if t.name == f"retrain-{tenant}"]:
        job.join(timeout=300)
    local: LocalHarness = h  # type: ignore[assignment]
    name = local.versions[tenant][0]
    registry = registry_of(local.layout, tenant, name)
    return len(registry.client.search_model_versions(f"name='{name}'"))


def _send_rows(h: Harness, tenant: str, rows: np.ndarray, per_request: int = 50) -> None:
    for start in range(0, len(rows), per_request):
        body = {"data": rows[start : start + per_request].tolist()}
        assert h.score(tenant, body) == 200, body
    h.collected()


def test_drift_in_a_tenants_inputs_starts_a_retraining_job(harness: Harness) -> None:
    """What the live deployment was asked is collected (score.py's collector on Azure, the
    gateway's locally), read back over the drift window against the model's baseline: the
    training distribution is no drift, a shifted one retrains the classical model, once."""
    h = harness
    _ensure_live(h, "contoso")
    drift = DriftWatcher(h.spec, MemoryStore(), h.port, h.port, h.clock.now)  # type: ignore[arg-type]
    window = h.spec.drift.window_hours * 3600
    h.clock.skip(window + 60)  # earlier scenarios' requests leave the window
    assert drift.check("contoso").action == "insufficient_data"
    live = h.port.endpoint("contoso").live
    _, features, reference = h.port.baseline("contoso", live)  # type: ignore[attr-defined]
    inputs = reference[:, : len(features)]
    _send_rows(h, "contoso", inputs)
    calm = drift.check("contoso")
    assert calm.action == "none", calm
    assert calm.result is not None and calm.result.current_rows == len(inputs)

    h.clock.skip(window + 60)
    shifted = inputs + 3 * inputs.std(axis=0)
    _send_rows(h, "contoso", shifted)
    before = _retraining_requests(h, "contoso")
    drifted = drift.check("contoso")
    assert drifted.action == "retrain", drifted
    assert drifted.reason.startswith("drift in ")
    assert _retraining_requests(h, "contoso") == before + 1
    assert drift.check("contoso").action == "duplicate"  # the next tick changes nothing
    assert _retraining_requests(h, "contoso") == before + 1
    azure = _azure(h)
    if azure:  # W5: score.py's own collector wrote the rows, keyed by the model's columns
        collected = [
            json.loads(data)
            for (_, _, name), data in azure.fake.blobs.items()
            if name.startswith(
                f"modelDataCollector/{h.port.endpoint_name('contoso')}/{live}/model_inputs/"
            )
        ]
        assert sum(len(r["data"]) for r in collected) >= 2 * len(inputs)
        assert set(collected[-1]["data"][0]) == {*features, contracts.TENANT_COLUMN}


def test_a_budget_stop_blocks_retraining_until_the_next_period(harness: Harness) -> None:
    h = harness
    _ensure_live(h, "contoso")
    store = MemoryStore()
    budgets = BudgetHandler(h.spec, store, h.port, h.clock.now)
    drift = DriftWatcher(h.spec, store, h.port, h.port, h.clock.now)  # type: ignore[arg-type]
    budget = h.spec.tenant("contoso").budget
    start = h.clock.now().date().replace(day=1)
    alert = BudgetAlert(
        "budget-tenant-contoso-budget", budget.amount, budget.amount, budget.amount, start
    )
    assert budgets.handle(alert).status == "stopped"
    assert budgets.handle(alert).status == "duplicate"
    assert _compute_cap(h, "contoso") == 0
    model = "/".join(h.versions["contoso"])  # type: ignore[attr-defined]
    before = _retraining_requests(h, "contoso")
    assert drift.act("contoso", model, "drift in f1").action == "blocked"
    assert _retraining_requests(h, "contoso") == before
    assert budgets.resume_due() == []  # the period has not ended
    h.clock.skip(32 * 86_400)  # into the next period
    assert budgets.resume_due() == ["contoso"]
    assert budgets.resume_due() == []  # once
    assert _compute_cap(h, "contoso") == h.spec.tenant("contoso").compute.max_nodes  # type: ignore[union-attr]
    assert drift.act("contoso", model, "drift in f1").action == "retrain"
    assert _retraining_requests(h, "contoso") == before + 1
    azure = _azure(h)
    if azure:
        _the_job_carries_its_code_and_spec(azure, h.spec)


def _the_job_carries_its_code_and_spec(azure: AzureHarness, spec: PlatformSpec) -> None:
    """W11: the job Azure received runs the training entry point on the stamp's cluster,
    with a workspace code asset the automation uploaded from its package (nothing has to be
    published first), and the spec the automation runs with."""
    job = _puts(azure, r"/jobs/[^/]+$")[-1].body["properties"]
    assert "ml.retrain --tenant" in job["command"] and job["computeId"].endswith("gpu-cluster")
    code = azure.fake.resource(job["codeId"])
    assert code is not None, f"the job names code Azure does not hold: {job['codeId']}"
    uri = code["properties"]["codeUri"]
    account, _, rest = uri.removeprefix("https://").partition(".blob.core.windows.net/")
    container, _, folder = rest.partition("/")
    uploaded = {n for (a, c, n) in azure.fake.blobs if (a, c) == (account, container)}
    assert f"{folder}/ml/retrain.py" in uploaded
    assert f"{folder}/tenancy/spec.py" in uploaded
    assert not any("/local/" in n or "/bench/" in n for n in uploaded)
    sent = json.loads(job["environmentVariables"][contracts.SETTING_PLATFORM_SPEC])
    assert parse_platform_spec(sent) == spec
    # A second job finds the same code by its content hash and uploads nothing.
    before = len(azure.fake.blobs)
    azure.port.request_retraining("contoso", "drift again")
    assert len(azure.fake.blobs) == before
    assert _puts(azure, r"/jobs/[^/]+$")[-1].body["properties"]["codeId"] == job["codeId"]


def test_labels_for_scored_requests_measure_the_live_models_quality(harness: Harness) -> None:
    """Each request answers with an id signed for its tenant (the embedded gateway, or API
    Management's policy); the tenant's labels for those ids are stored beside what was
    collected (score.py's collector on Azure, keyed by that id), and the quality check joins
    them: accuracy as the answers and labels say, a label for another tenant's id unknown."""
    h = harness
    _ensure_live(h, "contoso")
    h.clock.skip(h.spec.quality.window_hours * 3600 + 60)  # earlier scenarios leave the window
    _, holdout = tenant_datasets(h.spec)["contoso"].split()
    answers = [h.scored("contoso", {"data": [row.tolist()]}) for row in holdout.X[:40]]
    assert all(status == 200 and rid for status, rid, _ in answers), answers
    truth = [int(y) for y in holdout.y[:40]]
    labels = [(rid, label) for (_, rid, _), label in zip(answers, truth, strict=True)]
    # adatum's request id (issued as the gateway issues it), labelled with contoso's key:
    foreign = request_ids.issue(REQUEST_ID_KEY, "adatum", h.clock.now())
    sent = h.send_labels("contoso", [*labels, (foreign, 1)])
    assert sent == {"accepted": 40, "unknown": [foreign]}
    h.collected()
    enough = h.spec.quality.model_copy(update={"min_labels": 40})
    spec = h.spec.model_copy(update={"quality": enough})
    store = MemoryStore()
    drift = DriftWatcher(spec, store, h.port, h.port, h.clock.now)  # type: ignore[arg-type]
    watcher = QualityWatcher(spec, store, h.port, h.port, h.clock.now, drift=drift)  # type: ignore[arg-type]
    check = watcher.check("contoso")
    predicted = [answer["predictions"][0] for _, _, answer in answers]
    expected = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    assert (check.labelled, check.scored) == (40, 40), check
    assert check.measured is not None and check.measured.accuracy == pytest.approx(expected)
    assert check.estimated is not None and check.estimated.rows == 40


def test_a_pooled_tenant_over_its_metered_budget_is_refused_alone(harness: Harness) -> None:
    """Azure's cost data sees the pool, never its tenants: the automation meters each
    tenant's share of the pool's scoring time, and refuses the one whose share of the
    pool's spend is over its budget, at the gateway, until the next period."""
    h = harness
    _ensure_live(h, "fabrikam")
    _ensure_live(h, "northwind")
    assert set(h.traffic("fabrikam", 120)) == {200}  # after both rollouts' traffic
    assert set(h.traffic("northwind", 4)) == {200}
    h.collected()
    h.clock.skip(2 * 3600)  # the hour settles
    store = MemoryStore()
    enforcer = PooledBudgets(h.spec, store, h.port, h.clock.now, usage=h.port, costs=h.port)  # type: ignore[arg-type]
    h.bill("pool-shared", 1.0)
    for _ in range(10):  # each run meters up to a week of the period's hours: catch up
        before = len(store.query(contracts.TABLE_USAGE))
        enforcer.run()
        if len(store.query(contracts.TABLE_USAGE)) == before:
            break
    shares = {
        c.tenant: c.share
        for c in cost_report(h.spec, h.port, enforcer.meter, h.clock.now()).tenants  # type: ignore[arg-type]
        if c.pooled
    }
    assert shares["fabrikam"] > 1.5 * shares["northwind"] > 0, shares
    # The pool has cost enough that fabrikam's share is 120 % of its budget, and
    # northwind's (of the same budget) below it.
    budget = h.spec.tenant("fabrikam").budget.amount
    assert h.spec.tenant("northwind").budget.amount == budget
    h.bill("pool-shared", 1.2 * budget / shares["fabrikam"])
    outcomes = {o.tenant: o for o in enforcer.run()}
    assert outcomes["fabrikam"].status == "stopped"
    assert outcomes["northwind"].status != "stopped"
    status, body = h.answer("fabrikam")
    assert status == 403 and body["error"]["code"] == "budget_exceeded", body
    assert "the budget of tenant fabrikam is spent" in body["error"]["message"]
    assert h.answer("northwind")[0] == 200  # its neighbour is served as before
    azure = _azure(h)
    if azure:  # the named value its product policy reads, replaced whatever its version
        put = _puts(azure, r"/namedValues/budget-stop-fabrikam$")[-1]
        assert put.body["properties"]["value"] == body["error"]["message"].rsplit(" ", 1)[-1]
        assert not _puts(azure, r"/namedValues/budget-stop-northwind$")
    # A new period: fabrikam is served again.
    today = h.clock.now()
    first = (today.replace(day=1) + timedelta(days=32)).replace(day=1, hour=1)
    h.clock.skip((first - today).total_seconds())
    h.bill("pool-shared", 0.0)
    enforcer.run()
    assert h.answer("fabrikam")[0] == 200
