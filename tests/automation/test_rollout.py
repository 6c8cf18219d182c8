"""The rollout state machine: the paths of a rollout, and its invariants under random
sequences of observations, commands, duplicates and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automation.rollout import (
    Alert,
    Command,
    CreateDeployment,
    DeleteDeployment,
    InvariantViolation,
    Observation,
    Phase,
    PromptStats,
    QualityStats,
    RolloutState,
    SetTraffic,
    SmokeTest,
    Stats,
    advance,
    analyse,
    check_invariants,
    start,
)
from tenancy.spec import AnalysisSpec, PromptCriterion, QualityCriterion, RolloutPolicy

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ANALYSIS = AnalysisSpec(
    interval_seconds=60, min_requests=20, failure_threshold=2, inconclusive_limit=3
)
CANARY = RolloutPolicy(steps=[10, 50, 100], analysis=ANALYSIS, drain_delay_seconds=300)
HEALTHY = Stats(requests=200, errors=0, p99_ms=40)
BROKEN = Stats(requests=200, errors=40, p99_ms=40)


def _begin(policy: RolloutPolicy = CANARY) -> RolloutState:
    state, actions = start("contoso", "ep", "contoso-classical/2", "blue", T0)
    assert actions == (
        CreateDeployment("green", "contoso-classical/2"),
        SetTraffic({"blue": 100, "green": 0}, {}),
    )
    state = advance(state, policy, T0, Observation(green_ready=True)).after
    return advance(state, policy, T0, Observation(smoke_passed=5, smoke_failed=0)).after


def test_a_healthy_canary_walks_its_steps_and_promotes() -> None:
    state = _begin()
    assert state.phase == Phase.SHIFTING and state.traffic == {"blue": 90, "green": 10}
    now = T0 + timedelta(seconds=60)
    step = advance(state, CANARY, now, Observation(green=HEALTHY, blue=HEALTHY))
    assert step.after.traffic == {"blue": 50, "green": 50}
    assert step.actions == (SetTraffic({"blue": 50, "green": 50}, {}),)
    now += timedelta(seconds=60)
    step = advance(step.after, CANARY, now, Observation(green=HEALTHY, blue=HEALTHY))
    assert step.after.phase == Phase.DRAINING and step.after.traffic == {"blue": 0, "green": 100}
    # Blue is deleted once the drain delay is over, not before.
    early = advance(step.after, CANARY, now + timedelta(seconds=299))
    assert early.actions == ()
    done = advance(step.after, CANARY, now + timedelta(seconds=300))
    assert done.actions == (DeleteDeployment("blue"),) and done.after.phase == Phase.PROMOTED


def test_a_failing_green_rolls_back_within_interval_times_threshold_in_one_update() -> None:
    state = _begin()
    started = T0
    now = T0
    while state.phase != Phase.ROLLED_BACK:
        now += timedelta(seconds=ANALYSIS.interval_seconds)
        transition = advance(state, CANARY, now, Observation(green=BROKEN, blue=HEALTHY))
        state = transition.after
    assert now - started <= timedelta(
        seconds=ANALYSIS.interval_seconds * ANALYSIS.failure_threshold
    )
    traffic_updates = [a for a in transition.actions if isinstance(a, SetTraffic)]
    assert traffic_updates == [SetTraffic({"blue": 100, "green": 0}, {})]
    assert not any(isinstance(a, DeleteDeployment) for a in transition.actions)  # green kept
    assert "error rate 20.00% above 1.00%" in state.reason


def test_no_data_pauses_and_alerts_but_never_promotes() -> None:
    state = _begin()
    alerts = []
    for minute in range(1, 10):
        transition = advance(
            state, CANARY, T0 + timedelta(minutes=minute), Observation(green=Stats(3, 0, 10))
        )
        alerts += [a for a in transition.actions if isinstance(a, Alert)]
        state = transition.after
        assert state.traffic == {"blue": 90, "green": 10}
    assert state.paused and len(alerts) == 1 and "paused" in alerts[0].message


def test_green_is_compared_with_blue() -> None:
    slow = Stats(requests=200, errors=0, p99_ms=300)
    fast_blue = Stats(requests=200, errors=0, p99_ms=100)
    state = _begin()
    transition = advance(
        state, CANARY, T0 + timedelta(seconds=60), Observation(green=slow, blue=fast_blue)
    )
    assert "p99 300 ms vs blue 100 ms" in transition.reason


def test_approval_gates_promotion_and_only_approver_personas_pass_it() -> None:
    policy = RolloutPolicy(
        steps=[100],
        strategy="blue_green",
        approval_required=True,
        approver_personas=["project_lead"],
        analysis=ANALYSIS,
    )
    state = _begin(policy)
    assert state.phase == Phase.AWAITING_APPROVAL and state.traffic == {"blue": 100, "green": 0}
    refused = advance(state, policy, T0, command=Command("approve", "eve", "data_scientist"))
    assert refused.after == state and "may not approve" in refused.reason
    approved = advance(state, policy, T0, command=Command("approve", "lee", "project_lead"))
    assert approved.after.phase == Phase.DRAINING and approved.after.approved_by == "lee"
    assert approved.after.traffic == {"blue": 0, "green": 100}


def test_abort_rolls_back_from_any_live_phase() -> None:
    state = _begin()
    aborted = advance(
        state, CANARY, T0, command=Command("abort", "lee", reason="customer complaint")
    )
    assert aborted.after.phase == Phase.ROLLED_BACK
    assert aborted.after.traffic == {"blue": 100, "green": 0}
    assert aborted.reason == "rolled back: aborted by lee: customer complaint"


def test_mirroring_precedes_live_traffic() -> None:
    policy = RolloutPolicy(steps=[20, 100], mirror_percent=30, analysis=ANALYSIS)
    state = _begin(policy)
    assert state.phase == Phase.MIRRORING
    assert state.mirror == {"green": 30} and state.traffic == {"blue": 100, "green": 0}
    shifted = advance(state, policy, T0 + timedelta(seconds=60), Observation(green=HEALTHY))
    assert shifted.after.mirror == {} and shifted.after.traffic == {"blue": 80, "green": 20}


def test_a_failed_smoke_test_or_deployment_rolls_back() -> None:
    state, _ = start("contoso", "ep", "m/2", "blue", T0)
    failed = advance(state, CANARY, T0, Observation(green_failed="image pull error"))
    assert failed.after.phase == Phase.ROLLED_BACK
    ready = advance(state, CANARY, T0, Observation(green_ready=True))
    assert ready.actions == (SmokeTest("green", CANARY.smoke_test_requests),)
    smoke = advance(ready.after, CANARY, T0, Observation(smoke_passed=2, smoke_failed=3))
    assert smoke.after.phase == Phase.ROLLED_BACK


def test_the_next_rollout_uses_the_other_colour() -> None:
    state, actions = start("contoso", "ep", "m/3", "green", T0)
    assert (state.blue, state.green) == ("green", "blue")
    assert actions[0] == CreateDeployment("blue", "m/3")


@pytest.mark.parametrize(
    ("traffic", "mirror", "message"),
    [
        ({"blue": 60, "green": 30}, {}, "sums to 90"),
        ({"blue": 100, "green": 0}, {"green": 60}, "above 50 %"),
        ({"blue": 100, "green": 0}, {"green": 10, "red": 10}, "more than one"),
        ({"blue": 90, "green": 10}, {"green": 10}, "also carries live traffic"),
    ],
)
def test_invariants_refuse_bad_traffic(
    traffic: dict[str, int], mirror: dict[str, int], message: str
) -> None:
    state = RolloutState("t", "ep", "m/1", "blue", "green", Phase.SHIFTING, traffic, mirror)
    with pytest.raises(InvariantViolation, match=message):
        check_invariants(state, ())


def test_a_deployment_with_traffic_is_never_deleted() -> None:
    state = RolloutState(
        "t", "ep", "m/1", "blue", "green", Phase.SHIFTING, {"blue": 100, "green": 0}
    )
    with pytest.raises(InvariantViolation, match="still has traffic"):
        check_invariants(state, (DeleteDeployment("blue"),))


# --- properties ------------------------------------------------------------------------------

stats = st.builds(
    Stats,
    requests=st.integers(0, 500),
    errors=st.integers(0, 50),
    p99_ms=st.one_of(st.none(), st.floats(1, 2000)),
)
observations = st.builds(
    Observation,
    green_ready=st.one_of(st.none(), st.booleans()),
    green_failed=st.one_of(st.none(), st.just("boom")),
    smoke_passed=st.one_of(st.none(), st.integers(0, 5)),
    smoke_failed=st.one_of(st.none(), st.integers(0, 2)),
    green=st.one_of(st.none(), stats),
    blue=st.one_of(st.none(), stats),
)
commands = st.one_of(
    st.none(),
    st.builds(
        Command,
        kind=st.sampled_from(["approve", "abort"]),
        actor=st.just("someone"),
        persona=st.sampled_from(["project_lead", "data_scientist"]),
    ),
)
policies = st.builds(
    RolloutPolicy,
    strategy=st.just("canary"),
    steps=st.sampled_from([[100], [10, 100], [5, 25, 50, 100], [1, 2, 3, 100]]),
    mirror_percent=st.sampled_from([0, 10, 50]),
    approval_required=st.booleans(),
    analysis=st.just(ANALYSIS),
    drain_delay_seconds=st.integers(0, 600),
)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    steps=st.lists(
        st.tuples(st.integers(0, 400), observations, commands, st.booleans()), max_size=40
    ),
)
def test_invariants_hold_under_any_sequence(
    policy: RolloutPolicy, steps: list[tuple[int, Observation, Command | None, bool]]
) -> None:
    state, actions = start("contoso", "ep", "m/2", "blue", T0)
    check_invariants(state, actions)
    now = T0
    for seconds, observation, command, duplicate in steps:
        now += timedelta(seconds=seconds)
        transition = advance(state, policy, now, observation, command)  # checks invariants
        if duplicate:  # a duplicate delivery of the same input after the same state
            assert advance(state, policy, now, observation, command) == transition
        after = transition.after
        assert after.revision >= state.revision
        if state.phase.terminal:
            assert after.phase.terminal  # an ended rollout never restarts
        if after.phase in (Phase.DRAINING, Phase.PROMOTED) and state.phase not in (
            Phase.DRAINING,
            Phase.PROMOTED,
        ):
            # Promotion needs a passing analysis or an approval, never just time or no data.
            assert (
                command is not None
                or (
                    observation.green is not None
                    and observation.green.requests >= ANALYSIS.min_requests
                )
                or state.phase == Phase.SMOKE_TESTING
            )
            if policy.approval_required:
                assert after.approved_by
        state = after


def test_a_green_failing_after_promotion_goes_back_to_blue_before_blue_is_deleted() -> None:
    policy = RolloutPolicy(
        steps=[100], strategy="blue_green", analysis=ANALYSIS, drain_delay_seconds=600
    )
    state = _begin(policy)
    assert state.phase == Phase.DRAINING and state.traffic == {"blue": 0, "green": 100}
    for minute in (1, 2):
        state = advance(
            state, policy, T0 + timedelta(minutes=minute), Observation(green=BROKEN)
        ).after
    assert state.phase == Phase.ROLLED_BACK and state.traffic == {"blue": 100, "green": 0}
    # Nothing is deleted after a rollback, however long we wait.
    assert advance(state, policy, T0 + timedelta(days=1)).actions == ()


def test_latency_jitter_on_a_fast_model_is_not_a_regression() -> None:
    spec = AnalysisSpec(min_requests=10, max_p99_increase_ratio=1.5, p99_increase_tolerance_ms=25)
    blue = Stats(50, 0, 4.0)
    assert analyse(spec, Stats(50, 0, 16.0), blue)[0] == "pass"  # 4x, but 12 ms
    verdict, why = analyse(spec, Stats(50, 0, 40.0), blue)
    assert verdict == "fail" and "vs blue" in why  # 10x and 36 ms


def test_green_worse_than_blue_on_labelled_rows_fails_when_it_is_beyond_chance() -> None:
    spec = AnalysisSpec(
        min_requests=10, quality=QualityCriterion(metric="accuracy", min_labels=30, max_drop=0.05)
    )
    ok = Stats(50, 0, 20.0)
    verdict, why = analyse(spec, ok, ok, QualityStats(0.70, 400), QualityStats(0.90, 600))
    assert verdict == "fail" and why == "accuracy 0.700 vs blue 0.900 (400 and 600 labelled rows)"
    # A gap a canary's few labels explain by chance is not a failure (this one was seen in a
    # demo: two models equally wrong on shifted data, green with 34 labels).
    assert analyse(spec, ok, ok, QualityStats(0.206, 34), QualityStats(0.319, 772))[0] == "pass"
    assert analyse(spec, ok, ok, QualityStats(0.80, 40), QualityStats(0.90, 60))[0] == "pass"
    # Within the allowed drop, or too few labels on either side: quality does not judge.
    assert analyse(spec, ok, ok, QualityStats(0.86, 4000), QualityStats(0.90, 6000))[0] == "pass"
    assert analyse(spec, ok, ok, QualityStats(0.10, 29), QualityStats(0.90, 600))[0] == "pass"
    assert analyse(spec, ok, ok, QualityStats(None, 400), QualityStats(0.90, 600))[0] == "pass"
    # A policy without the criterion never reads quality.
    plain = AnalysisSpec(min_requests=10)
    assert analyse(plain, ok, ok, QualityStats(0.1, 999), QualityStats(0.9, 999))[0] == "pass"


# --- prompt canaries -------------------------------------------------------------------------


def _prompt_spec(**criterion: float) -> AnalysisSpec:
    return AnalysisSpec(
        min_requests=10,
        prompt=PromptCriterion(min_judged=5, min_feedback=5, **criterion),  # type: ignore[arg-type]
    )


def _served(requests: int = 20) -> Stats:
    return Stats(requests, 0, 100.0)


def test_a_prompt_canary_is_judged_on_judge_feedback_tokens_and_cost() -> None:
    spec = _prompt_spec()
    champion = PromptStats(20, judged=10, judge_mean=0.9, feedback=10, positive=8,
                           tokens=400, cost_usd=0.02)  # fmt: skip
    better = PromptStats(20, judged=10, judge_mean=0.95, feedback=10, positive=9,
                         tokens=200, cost_usd=0.01)  # fmt: skip
    verdict, why = analyse(spec, _served(), _served(), green_prompt=better, blue_prompt=champion)
    assert verdict == "pass" and "judge 0.95 vs 0.90" in why and "10.0 vs 20.0 tokens" in why
    worse = PromptStats(20, judged=10, judge_mean=0.6, feedback=10, positive=3,
                        tokens=700, cost_usd=0.05)  # fmt: skip
    verdict, why = analyse(spec, _served(), _served(), green_prompt=worse, blue_prompt=champion)
    assert verdict == "fail"
    assert why == (
        "judge score 0.60 vs champion 0.90 (10 and 10 answers judged); positive feedback 30% "
        "vs champion 80%; tokens per request 35 vs champion 20; cost per request 0.0025 vs "
        "champion 0.001"
    )


def test_too_few_judged_answers_or_votes_do_not_decide() -> None:
    spec = _prompt_spec()
    champion = PromptStats(20, judged=10, judge_mean=0.9, feedback=10, positive=9, tokens=400)
    few = PromptStats(20, judged=4, judge_mean=0.1, feedback=4, positive=0, tokens=400)
    verdict, _ = analyse(spec, _served(), _served(), green_prompt=few, blue_prompt=champion)
    assert verdict == "pass"
    # Without the prompt criteria (a model's rollout), prompt stats are not read.
    verdict, _ = analyse(AnalysisSpec(min_requests=10), _served(), _served(),
                         green_prompt=few, blue_prompt=champion)  # fmt: skip
    assert verdict == "pass"


def test_every_genai_rollout_policy_judges_prompts() -> None:
    """A tenant's prompt rollout policy always carries the prompt criteria, even when its
    stack sets the analysis without them."""
    from tests.genai.conftest import genai_spec  # noqa: PLC0415

    spec = genai_spec(rollout={"steps": [100], "analysis": {"min_requests": 3}})
    genai = spec.tenant("contoso").genai
    assert genai is not None and genai.rollout.analysis.prompt == PromptCriterion()
    assert genai.rollout.analysis.min_requests == 3
