"""The runner over a store and a platform: one rollout per version, rollback of a failing
green in one update, crash resume without a second advance, audit records."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from automation.rollout import Command, Phase
from automation.runner import RolloutRunner
from automation.store import MemoryStore
from ml.quality import LabelledWindow
from tenancy import PlatformSpec, contracts, parse_platform_spec
from tests.automation.fakes import FakeDeployment, FakePlatform
from tests.tenancy.conftest import stack_document

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def spec() -> PlatformSpec:
    document = stack_document("local")
    document["rollout"] = {
        "strategy": "canary",
        "steps": [10, 50, 100],
        "analysis": {"interval_seconds": 60, "min_requests": 20, "failure_threshold": 2},
        "drain_delay_seconds": 120,
    }
    return parse_platform_spec(document)


@pytest.fixture
def world(spec: PlatformSpec) -> tuple[RolloutRunner, FakePlatform, MemoryStore, Clock]:
    platform, store, clock = FakePlatform(), MemoryStore(), Clock()
    platform.serve("contoso", "contoso-classical/1")
    return RolloutRunner(spec, store, platform, clock), platform, store, clock


def _drive(
    runner: RolloutRunner, clock: Clock, model: str, until: Callable[[Phase], bool], limit: int = 30
) -> Phase:
    for _ in range(limit):
        clock.advance(60)
        runner.tick("contoso", model)
        phase = runner.get("contoso", model).phase
        if until(phase):
            return phase
    return runner.get("contoso", model).phase


def test_a_healthy_rollout_promotes_and_deletes_blue(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock],
) -> None:
    runner, platform, store, clock = world
    assert runner.begin("contoso", "contoso-classical/2", "automation", "c-1") is not None
    assert (
        _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.PROMOTED)
        == Phase.PROMOTED
    )
    assert platform.traffic["contoso"] == {"green": 100}
    assert "blue" not in platform.deployments["contoso"]
    traffic_calls = [args[1] for kind, args in platform.calls if kind == "traffic"]
    assert traffic_calls == [
        {"blue": 100, "green": 0},
        {"blue": 90, "green": 10},
        {"blue": 50, "green": 50},
        {"blue": 0, "green": 100},
    ]
    # The registry's champion follows what serves all live traffic, once, at promotion.
    assert platform.champions == {("contoso", "contoso-classical"): "2"}
    assert [args for kind, args in platform.calls if kind == "crown"] == [
        ("contoso", "contoso-classical/2")
    ]
    audit = store.query(contracts.TABLE_AUDIT, "contoso")
    assert [r.data["after"]["phase"] for r in audit][-1] == "promoted"
    assert all(
        {"actor", "tenant", "before", "after", "reason", "correlation_id"} <= set(r.data)
        for r in audit
    )


def test_a_failing_green_is_back_on_blue_within_interval_times_threshold(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock], spec: PlatformSpec
) -> None:
    runner, platform, _, clock = world
    platform.behaviour["contoso-classical/2"] = FakeDeployment(
        "contoso-classical/2", error_rate=0.2
    )
    runner.begin("contoso", "contoso-classical/2", "automation", "c-2")
    _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.SHIFTING)
    shifted_at = clock.now
    phase = _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.ROLLED_BACK)
    analysis = spec.rollout.analysis
    assert phase == Phase.ROLLED_BACK
    assert clock.now - shifted_at <= timedelta(
        seconds=analysis.interval_seconds * analysis.failure_threshold
    )
    assert platform.traffic["contoso"] == {"blue": 100, "green": 0}
    last_traffic = [args for kind, args in platform.calls if kind == "traffic"][-1]
    assert last_traffic == ("contoso", {"blue": 100, "green": 0}, {})  # one update
    assert "green" in platform.deployments["contoso"]  # kept for inspection
    assert any(severity == "critical" for _, severity, _ in platform.notifications)
    assert platform.champions == {}  # a rollback crowns nothing: the champion stays


def test_duplicate_deliveries_start_one_rollout(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock],
) -> None:
    runner, platform, _, _ = world
    assert runner.begin("contoso", "contoso-classical/2", "automation", "a") is not None
    assert runner.begin("contoso", "contoso-classical/2", "automation", "b") is None
    assert [c for c in platform.calls if c[0] == "create"] == [
        ("create", ("contoso", "green", "contoso-classical/2"))
    ]


def test_a_crash_mid_step_is_resumed_without_advancing_twice(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock],
) -> None:
    runner, platform, _store, clock = world
    runner.begin("contoso", "contoso-classical/2", "automation", "c")
    _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.SHIFTING)
    revision = runner.get("contoso", "contoso-classical/2").revision
    platform.fail_next = "set_traffic"
    clock.advance(60)
    with pytest.raises(RuntimeError, match="crash in set_traffic"):
        runner.tick("contoso", "contoso-classical/2")
    # The step is recorded with its actions pending; the platform has not moved yet.
    assert runner.get("contoso", "contoso-classical/2").traffic == {"blue": 50, "green": 50}
    assert platform.traffic["contoso"] == {"blue": 90, "green": 10}
    assert runner.resume() == 1
    assert platform.traffic["contoso"] == {"blue": 50, "green": 50}
    assert runner.resume() == 0
    assert runner.get("contoso", "contoso-classical/2").revision == revision + 1


def test_two_workers_never_apply_one_step_twice(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock], spec: PlatformSpec
) -> None:
    runner, platform, store, clock = world
    other = RolloutRunner(spec, store, platform, clock)
    runner.begin("contoso", "contoso-classical/2", "automation", "c")
    _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.SHIFTING)
    clock.advance(60)
    record = store.get(contracts.TABLE_ROLLOUTS, "contoso", "contoso-classical-v2")
    assert record is not None
    first = runner.tick("contoso", "contoso-classical/2")
    # The second worker read the same record before the first wrote: its write is refused.
    from automation.rollout import advance  # noqa: PLC0415
    from automation.runner import decode  # noqa: PLC0415

    stale = advance(
        decode(record.data)[0], spec.rollout, clock.now, other._observe(decode(record.data)[0])
    )
    assert other._commit(record, stale, "automation", "x") is None
    assert first is not None
    assert [c for c in platform.calls if c[0] == "traffic"].count(
        ("traffic", ("contoso", {"blue": 50, "green": 50}, {}))
    ) == 1


def _gated_world() -> tuple[RolloutRunner, FakePlatform, MemoryStore, Clock]:
    """A blue-green stack whose promotions wait for a project lead."""
    document = stack_document("local")
    document["rollout"] = {
        "strategy": "blue_green",
        "steps": [100],
        "approval_required": True,
        "approver_personas": ["project_lead"],
    }
    for tenant in document["tenants"]:
        tenant.setdefault("personas", {})["project_lead"] = ["33333333-0000-4000-8000-0000000000aa"]
    platform, store, clock = FakePlatform(), MemoryStore(), Clock()
    platform.serve("contoso", "contoso-classical/1")
    return (
        RolloutRunner(parse_platform_spec(document), store, platform, clock),
        platform,
        store,
        clock,
    )


def test_approval_and_abort_through_the_runner(spec: PlatformSpec) -> None:
    runner, _platform, store, clock = _gated_world()
    runner.begin("contoso", "contoso-classical/2", "automation", "c")
    _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.AWAITING_APPROVAL)
    runner.command("contoso", "contoso-classical/2", Command("approve", "eve", "data_scientist"))
    assert runner.get("contoso", "contoso-classical/2").phase == Phase.AWAITING_APPROVAL
    runner.command(
        "contoso", "contoso-classical/2", Command("approve", "lee", "project_lead"), "req-9"
    )
    assert runner.get("contoso", "contoso-classical/2").phase == Phase.DRAINING
    audit = store.query(contracts.TABLE_AUDIT, "contoso")[-1].data
    assert (audit["actor"], audit["correlation_id"]) == ("lee", "req-9")


def _drive_tenant(
    runner: RolloutRunner, clock: Clock, tenant: str, model: str, limit: int = 20
) -> Phase:
    for _ in range(limit):
        clock.advance(60)
        runner.tick(tenant, model)
        phase = runner.get(tenant, model).phase
        if phase.terminal and runner.get(tenant, model).done:
            return phase
    return runner.get(tenant, model).phase


def test_an_endpoint_serving_nothing_gets_its_first_deployment_in_one_switch(
    spec: PlatformSpec,
) -> None:
    platform, store, clock = FakePlatform(), MemoryStore(), Clock()
    runner = RolloutRunner(spec, store, platform, clock)
    state = runner.begin("adatum", "adatum-cv/1", "automation", "c-1")
    assert state is not None and (state.blue, state.green, state.first) == ("", "blue", True)
    assert _drive_tenant(runner, clock, "adatum", "adatum-cv/1") == Phase.PROMOTED
    traffic_calls = [args[1] for kind, args in platform.calls if kind == "traffic"]
    # No canary steps: there is no live traffic to split, only the first switch.
    assert traffic_calls == [{"blue": 0}, {"blue": 100}]
    assert not any(kind == "delete" for kind, _ in platform.calls)


def test_a_failing_first_deployment_leaves_the_endpoint_serving_nothing(
    spec: PlatformSpec,
) -> None:
    platform, store, clock = FakePlatform(), MemoryStore(), Clock()
    platform.behaviour["adatum-cv/1"] = FakeDeployment("adatum-cv/1", error_rate=1.0)
    runner = RolloutRunner(spec, store, platform, clock)
    runner.begin("adatum", "adatum-cv/1", "automation", "c-1")
    assert _drive_tenant(runner, clock, "adatum", "adatum-cv/1") == Phase.ROLLED_BACK
    assert platform.traffic["adatum"] == {"blue": 0}
    assert "smoke test" in runner.get("adatum", "adatum-cv/1").reason


def test_rollouts_on_one_pooled_endpoint_run_one_after_another_in_arrival_order(
    spec: PlatformSpec,
) -> None:
    platform, store, clock = FakePlatform(spec=spec), MemoryStore(), Clock()
    platform.endpoint_names = {"fabrikam": "ep-pool", "northwind": "ep-pool", "litware": "ep-pool"}
    runner = RolloutRunner(spec, store, platform, clock)
    first = runner.begin("fabrikam", "shared-classical/1", "automation", "c-1")
    clock.advance(1)
    second = runner.begin("northwind", "northwind-classical/1", "automation", "c-2")
    clock.advance(1)
    third = runner.begin("litware", "litware-nlp/1", "automation", "c-3")
    assert first is not None and first.phase == Phase.CREATING
    assert second is not None and second.phase == Phase.QUEUED
    assert third is not None and third.phase == Phase.QUEUED
    assert "fabrikam/shared-classical/1" in second.reason
    # The third may not jump the queue when the endpoint frees up.
    assert _drive_tenant(runner, clock, "fabrikam", "shared-classical/1") == Phase.PROMOTED
    runner.tick("litware", "litware-nlp/1")
    assert runner.get("litware", "litware-nlp/1").phase == Phase.QUEUED
    runner.tick("northwind", "northwind-classical/1")
    assert runner.get("northwind", "northwind-classical/1").phase == Phase.CREATING
    assert _drive_tenant(runner, clock, "northwind", "northwind-classical/1") == Phase.PROMOTED
    assert _drive_tenant(runner, clock, "litware", "litware-nlp/1") == Phase.PROMOTED


def test_a_queued_rollout_can_be_cancelled_and_changes_nothing(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock],
) -> None:
    runner, platform, _, _ = world
    runner.begin("contoso", "contoso-classical/2", "automation", "c-1")
    queued = runner.begin("contoso", "contoso-classical/3", "automation", "c-2")
    assert queued is not None and queued.phase == Phase.QUEUED
    calls = list(platform.calls)
    runner.command("contoso", "contoso-classical/3", Command("abort", "ops@example.com"))
    cancelled = runner.get("contoso", "contoso-classical/3")
    assert cancelled.phase == Phase.ROLLED_BACK and "cancelled" in cancelled.reason
    assert platform.calls == calls
    assert ("contoso", "contoso-classical/3") not in runner.active()


def test_the_gate_runs_again_before_promotion_and_a_refusal_rolls_back(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock],
) -> None:
    """X11: a version that lost its lineage while its canary ran is never promoted."""
    runner, platform, _, clock = world
    runner.begin("contoso", "contoso-classical/2", "automation", "c-1")
    _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.SHIFTING)
    good = platform.model_facts("contoso", "contoso-classical", "2")
    platform.facts[("contoso-classical", "2")] = dataclasses.replace(
        good, tags={k: v for k, v in good.tags.items() if k != "owner"}
    )
    phase = _drive(
        runner, clock, "contoso-classical/2", lambda p: p.terminal or p == Phase.DRAINING
    )
    state = runner.get("contoso", "contoso-classical/2")
    assert phase == Phase.ROLLED_BACK, state.reason
    assert "[MODEL_TAG_MISSING]" in state.reason and "promotion" in state.reason
    assert platform.traffic["contoso"] == {"blue": 100, "green": 0}


def test_the_promotion_gate_counts_the_rollouts_own_approval(spec: PlatformSpec) -> None:
    runner, _platform, _store, clock = _gated_world()
    runner.begin("contoso", "contoso-classical/2", "automation", "c")
    _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.AWAITING_APPROVAL)
    runner.command("contoso", "contoso-classical/2", Command("approve", "lee", "project_lead"))
    state = runner.get("contoso", "contoso-classical/2")
    assert (state.phase, state.approved_as) == (Phase.DRAINING, "project_lead")


def test_a_burst_of_versions_rolls_out_the_newest_and_supersedes_the_rest(
    world: tuple[RolloutRunner, FakePlatform, MemoryStore, Clock],
) -> None:
    runner, platform, _, clock = world
    models = [f"contoso-classical/{v}" for v in range(2, 10)]
    for model in models:  # eight registrations at once
        runner.begin("contoso", model, "automation", f"c-{model}")
        clock.advance(1)
    assert runner.get("contoso", models[0]).phase == Phase.CREATING
    superseded = [runner.get("contoso", m) for m in models[1:-1]]
    assert {s.phase for s in superseded} == {Phase.SUPERSEDED}
    # Each is superseded by the version registered after it.
    assert [s.reason.split()[2] for s in superseded] == models[2:]
    assert runner.get("contoso", models[-1]).phase == Phase.QUEUED
    assert _drive(runner, clock, models[0], lambda p: p.terminal) == Phase.PROMOTED
    clock.advance(300)
    runner.tick("contoso", models[0])  # blue drained and deleted: the endpoint is free
    for _ in range(40):
        clock.advance(60)
        for model in runner.active():
            runner.tick(*model)
    assert runner.get("contoso", models[-1]).phase == Phase.PROMOTED
    created = [args[2] for kind, args in platform.calls if kind == "create"]
    assert created == ["contoso-classical/2", "contoso-classical/9"]
    assert all(runner.get("contoso", m).phase == Phase.SUPERSEDED for m in models[1:-1])


class Labels:
    """Labelled rows per deployment: green right ``green`` of the time, blue ``blue``."""

    def __init__(self, green: float, blue: float, rows: int = 100) -> None:
        self.accuracy = {"green": green, "blue": blue}
        self.rows = rows

    def live_model(self, tenant: str, deployment: str) -> tuple[str, str]:
        return "contoso-classical", "1"

    def labelled(
        self, tenant: str, deployment: str, *, since: datetime, until: datetime
    ) -> LabelledWindow:
        right = round(self.rows * self.accuracy[deployment])
        return LabelledWindow(
            classes=[0, 1],
            scored=[[0.2, 0.8]] * self.rows,
            labels=[1] * right + [0] * (self.rows - right),
            predictions=[1] * self.rows,
            probabilities=[[0.2, 0.8]] * self.rows,
        )


def test_a_green_worse_than_blue_on_its_labels_is_rolled_back_where_the_policy_asks() -> None:
    document = stack_document("local")
    document["rollout"] = {
        "steps": [10, 50, 100],
        "analysis": {
            "interval_seconds": 60,
            "min_requests": 20,
            "failure_threshold": 2,
            "quality": {"metric": "accuracy", "min_labels": 50, "max_drop": 0.05},
        },
    }
    judged = parse_platform_spec(document)
    for labels, expected in ((Labels(green=0.6, blue=0.9), Phase.ROLLED_BACK),
                             (Labels(green=0.88, blue=0.9), Phase.PROMOTED)):  # fmt: skip
        platform, store, clock = FakePlatform(), MemoryStore(), Clock()
        platform.serve("contoso", "contoso-classical/1")
        runner = RolloutRunner(judged, store, platform, clock, quality=labels)
        runner.begin("contoso", "contoso-classical/2", "automation", "c-q")
        phase = _drive(runner, clock, "contoso-classical/2", lambda p: p.terminal)
        state = runner.get("contoso", "contoso-classical/2")
        assert phase == expected, state.reason
        if expected == Phase.ROLLED_BACK:
            assert "accuracy 0.600 vs blue 0.900 (100 and 100 labelled rows)" in state.reason


class _TickBetween(MemoryStore):
    """A store where the timer's tick writes the rollout once, between a command's read
    and its write (the race an approver loses under load)."""

    def __init__(self) -> None:
        super().__init__()
        self.interleave: Callable[[], object] | None = None

    def replace(self, record: Any, data: dict[str, Any]) -> Any:
        tick, self.interleave = self.interleave, None
        if tick is not None:
            tick()  # the timer commits first: our record is stale now
        return super().replace(record, data)


def test_an_approval_racing_the_timer_is_judged_again_not_lost() -> None:
    runner, platform, _store, clock = _gated_world()
    store = _TickBetween()
    runner = RolloutRunner(runner.spec, store, platform, clock)
    runner.begin("contoso", "contoso-classical/2", "automation", "c")
    _drive(runner, clock, "contoso-classical/2", lambda p: p == Phase.AWAITING_APPROVAL)
    clock.advance(60)
    store.interleave = lambda: runner.tick("contoso", "contoso-classical/2")
    approved = runner.command(
        "contoso", "contoso-classical/2", Command("approve", "lee", "project_lead")
    )
    assert approved is not None and approved.reason.startswith("approved by lee")
    assert runner.get("contoso", "contoso-classical/2").phase == Phase.DRAINING
