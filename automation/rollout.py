"""The rollout state machine: pure Python, no I/O.

A rollout takes a tenant's endpoint from its live deployment (``blue``, whatever its name) to
a new one (``green``): create green at 0 % -> smoke test it through the deployment header ->
optionally mirror traffic to it -> shift live traffic in the policy's steps, analysing green
at every step -> wait for approval where the stack requires it -> promote (blue to 0, deleted
after the drain delay) or roll back (all traffic to blue in one update, green kept).

A tenant's *first* model has no live traffic of its own to protect: once smoke-tested it takes
all of the endpoint's traffic in one switch (behind approval where asked), and, on an endpoint
that serves nothing yet, there is no blue at all (``blue == ""``). One rollout runs per
endpoint at a time: another one waits ``queued`` until the endpoint is free (a pooled
endpoint's deployments carry every pool tenant's model, so two rollouts there would fight
over one green).

:func:`advance` takes the current state, what was observed since (deployment ready, smoke
results, per-deployment metrics), an optional command (approve, abort) and the time, and
returns the next state plus the actions that make the world match it. Actions are absolute
("traffic is now {blue: 90, green: 10}"), so applying one twice after a crash is applying it
once. :func:`check_invariants` is run on every transition: live traffic sums to 0 or 100,
at most one deployment mirrored, at most 50 %, never one with live traffic, and no
deployment with traffic is deleted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from tenancy import contracts
from tenancy.spec import AnalysisSpec, RolloutPolicy

Traffic = Mapping[str, int]


class Phase(StrEnum):
    QUEUED = "queued"
    CREATING = "creating"
    SMOKE_TESTING = "smoke_testing"
    MIRRORING = "mirroring"
    SHIFTING = "shifting"
    AWAITING_APPROVAL = "awaiting_approval"
    DRAINING = "draining"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    # A queued version that a newer version of the same model replaced before it started:
    # it is never rolled out.
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.SUPERSEDED)


class InvariantViolation(Exception):  # noqa: N818 - the name says what broke
    pass


@dataclass(frozen=True)
class Stats:
    """What one deployment served during an analysis interval."""

    requests: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Observation:
    """What the runner saw since the last step (only what the current phase needs)."""

    green_ready: bool | None = None
    green_failed: str | None = None
    smoke_passed: int | None = None
    smoke_failed: int | None = None
    green: Stats | None = None
    blue: Stats | None = None
    # Measured quality (metric value, labelled rows) of each, where the policy asks for it.
    green_quality: QualityStats | None = None
    blue_quality: QualityStats | None = None
    # A prompt rollout's live criteria (judge, feedback, tokens, cost) of each version.
    green_prompt: PromptStats | None = None
    blue_prompt: PromptStats | None = None


@dataclass(frozen=True)
class QualityStats:
    value: float | None  # the policy's metric; None when the window cannot give it
    labelled: int


@dataclass(frozen=True)
class PromptStats:
    """What one prompt version's live answers earned during an analysis interval (a
    prompt rollout): the judge's scores of the sampled ones, callers' feedback, and tokens
    and cost per request."""

    requests: int
    judged: int = 0
    judge_mean: float | None = None
    feedback: int = 0
    positive: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    @property
    def positive_rate(self) -> float | None:
        return self.positive / self.feedback if self.feedback else None

    @property
    def tokens_per_request(self) -> float | None:
        return self.tokens / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> float | None:
        return self.cost_usd / self.requests if self.requests else None


@dataclass(frozen=True)
class Command:
    kind: Literal["approve", "abort"]
    actor: str
    persona: str = ""
    reason: str = ""


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateDeployment:
    name: str
    model: str


@dataclass(frozen=True)
class SetTraffic:
    traffic: Traffic
    mirror: Traffic


@dataclass(frozen=True)
class SmokeTest:
    deployment: str
    requests: int


@dataclass(frozen=True)
class DeleteDeployment:
    name: str


@dataclass(frozen=True)
class Alert:
    severity: Literal["info", "warning", "critical"]
    message: str


@dataclass(frozen=True)
class Crown:
    """The registry's ``champion`` alias moves to ``model`` ("<name>/<version>") and its
    ``challenger`` alias is cleared: what serves all live traffic is the champion the gate
    compares the next version with."""

    model: str


Action = CreateDeployment | SetTraffic | SmokeTest | DeleteDeployment | Alert | Crown


# --- state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    tenant: str
    endpoint: str
    model: str  # "<name>/<version>"
    blue: str
    green: str
    phase: Phase
    traffic: Traffic
    mirror: Traffic = field(default_factory=dict)
    step: int = -1  # index into the policy's steps once shifting
    failures: int = 0  # consecutive failed analyses
    inconclusive: int = 0  # consecutive analyses without enough data
    paused: bool = False
    approved_by: str = ""
    approved_as: str = ""  # the approver's persona
    next_check_at: datetime | None = None
    delete_blue_at: datetime | None = None
    reason: str = ""
    revision: int = 0  # transitions applied; part of every action's idempotency key
    first: bool = False  # the tenant's first model: no canary, one switch

    @property
    def done(self) -> bool:
        return self.phase.terminal and self.delete_blue_at is None


@dataclass(frozen=True)
class Transition:
    before: RolloutState
    after: RolloutState
    actions: tuple[Action, ...]
    reason: str

    @property
    def changed(self) -> bool:
        return self.before != self.after or bool(self.actions)


def start(
    tenant: str,
    endpoint: str,
    model: str,
    live: str | None,
    now: datetime,
    *,
    first: bool = False,
    revision: int = 0,
) -> tuple[RolloutState, tuple[Action, ...]]:
    """A new rollout: the other colour is created at 0 % of live traffic (an endpoint that
    serves nothing yet gets its first deployment, and there is no blue)."""
    blue = live or ""
    green = "green" if blue == "blue" else "blue" if blue else contracts.FIRST_DEPLOYMENT
    traffic = {blue: 100, green: 0} if blue else {green: 0}
    state = RolloutState(
        tenant=tenant,
        endpoint=endpoint,
        model=model,
        blue=blue,
        green=green,
        phase=Phase.CREATING,
        traffic=traffic,
        next_check_at=now,
        reason=f"model {model} passed the gate" + ("; the tenant's first model" if first else ""),
        revision=revision,
        first=first or not blue,
    )
    return state, (CreateDeployment(green, model), SetTraffic(state.traffic, {}))


def queued(tenant: str, endpoint: str, model: str, busy_with: str, now: datetime) -> RolloutState:
    """A rollout waiting for another one on the same endpoint to finish (since ``now``:
    ``next_check_at`` orders the queue)."""
    return RolloutState(
        tenant=tenant,
        endpoint=endpoint,
        model=model,
        blue="",
        green="",
        phase=Phase.QUEUED,
        traffic={},
        next_check_at=now,
        reason=f"model {model} passed the gate; queued behind {busy_with}",
    )


# --- the machine ------------------------------------------------------------------------------


def advance(
    state: RolloutState,
    policy: RolloutPolicy,
    now: datetime,
    observation: Observation | None = None,
    command: Command | None = None,
) -> Transition:
    """The next state. A finished rollout only deletes blue once the drain delay is over."""
    observation = observation or Observation()
    if command is not None and not state.phase.terminal:
        result = _command(state, policy, command, now)
    elif state.phase == Phase.QUEUED:  # the runner starts it when the endpoint is free
        result = Transition(state, state, (), "queued")
    elif state.phase.terminal:
        result = _after_end(state, now)
    else:
        result = _PHASES[state.phase](state, policy, observation, now)
    check_invariants(result.after, result.actions)
    return result


def _command(
    state: RolloutState, policy: RolloutPolicy, command: Command, now: datetime
) -> Transition:
    if command.kind == "abort" and state.phase == Phase.QUEUED:
        after = _next(state, phase=Phase.ROLLED_BACK, reason=f"cancelled by {command.actor}")
        return Transition(state, after, (), after.reason)
    if command.kind == "abort":
        reason = f"aborted by {command.actor}" + (f": {command.reason}" if command.reason else "")
        return _rollback(state, reason)
    if state.phase != Phase.AWAITING_APPROVAL:
        return Transition(state, state, (), f"approval ignored: the rollout is {state.phase.value}")
    if command.persona not in policy.approver_personas:
        allowed = ", ".join(policy.approver_personas)
        return Transition(
            state, state, (), f"{command.actor} ({command.persona}) may not approve; {allowed} may"
        )
    return _promote(
        replace(state, approved_by=command.actor, approved_as=command.persona),
        policy,
        now,
        f"approved by {command.actor}",
    )


def _creating(
    state: RolloutState, policy: RolloutPolicy, seen: Observation, now: datetime
) -> Transition:
    if seen.green_failed:
        return _rollback(state, f"green deployment failed: {seen.green_failed}")
    if not seen.green_ready:
        return Transition(state, state, (), "waiting for green to be ready")
    after = _next(state, phase=Phase.SMOKE_TESTING, reason="green is ready")
    return Transition(
        state, after, (SmokeTest(state.green, policy.smoke_test_requests),), after.reason
    )


def _smoke_testing(
    state: RolloutState, policy: RolloutPolicy, seen: Observation, now: datetime
) -> Transition:
    if seen.smoke_passed is None:
        return Transition(
            state,
            state,
            (SmokeTest(state.green, policy.smoke_test_requests),),
            "smoke test pending",
        )
    if seen.smoke_failed:
        return _rollback(
            state,
            f"smoke test: {seen.smoke_failed} of {policy.smoke_test_requests} requests failed",
        )
    if policy.mirror_percent and not state.first:
        mirror = {state.green: policy.mirror_percent}
        after = _next(
            state,
            phase=Phase.MIRRORING,
            mirror=mirror,
            next_check_at=_later(now, policy.analysis),
            reason=f"mirroring {policy.mirror_percent} % to green",
        )
        return Transition(state, after, (SetTraffic(after.traffic, mirror),), after.reason)
    return _shift(state, policy, now, "smoke test passed")


def _mirroring(
    state: RolloutState, policy: RolloutPolicy, seen: Observation, now: datetime
) -> Transition:
    return _analysed(
        state,
        policy,
        seen,
        now,
        on_pass=lambda s, why: _shift(replace(s, mirror={}), policy, now, why),
    )


def _shifting(
    state: RolloutState, policy: RolloutPolicy, seen: Observation, now: datetime
) -> Transition:
    return _analysed(state, policy, seen, now, on_pass=lambda s, why: _shift(s, policy, now, why))


def _awaiting(
    state: RolloutState, policy: RolloutPolicy, seen: Observation, now: datetime
) -> Transition:
    # Green keeps being watched while a person decides: a failure still rolls back.
    return _analysed(
        state,
        policy,
        seen,
        now,
        on_pass=lambda s, why: Transition(state, _next(s), (), "waiting for approval"),
    )


def _draining(
    state: RolloutState, policy: RolloutPolicy, seen: Observation, now: datetime
) -> Transition:
    """Blue still exists until the drain delay ends: green is watched, and a failure sends
    traffic back to blue (which is what makes a blue-green switch safe)."""
    if state.delete_blue_at is not None and now >= state.delete_blue_at:
        return _after_end(state, now)
    return _analysed(
        state, policy, seen, now, on_pass=lambda s, why: Transition(state, _next(s), (), why)
    )


def _analysed(
    state: RolloutState,
    policy: RolloutPolicy,
    seen: Observation,
    now: datetime,
    on_pass: Callable[[RolloutState, str], Transition],
) -> Transition:
    if state.next_check_at is not None and now < state.next_check_at:
        return Transition(state, state, (), "analysis not due")
    verdict, why = analyse(
        policy.analysis,
        seen.green,
        seen.blue,
        seen.green_quality,
        seen.blue_quality,
        green_prompt=seen.green_prompt,
        blue_prompt=seen.blue_prompt,
    )
    later = _later(now, policy.analysis)
    if verdict == "fail":
        failures = state.failures + 1
        if failures >= policy.analysis.failure_threshold:
            return _rollback(state, f"analysis failed {failures} time(s): {why}")
        after = _next(
            state,
            failures=failures,
            inconclusive=0,
            next_check_at=later,
            reason=f"analysis failed ({failures}/{policy.analysis.failure_threshold}): {why}",
        )
        return Transition(
            state, after, (Alert("warning", f"{state.tenant}: {after.reason}"),), after.reason
        )
    if verdict == "inconclusive":
        count = state.inconclusive + 1
        pause = count >= policy.analysis.inconclusive_limit
        after = _next(
            state,
            inconclusive=count,
            paused=pause,
            next_check_at=later,
            reason=f"inconclusive: {why}",
        )
        alerts: tuple[Action, ...] = ()
        if pause and not state.paused:
            alerts = (Alert("warning", f"{state.tenant}: rollout of {state.model} paused, {why}"),)
        return Transition(state, after, alerts, after.reason)
    # Counted as a transition by whatever follows (a shift, or staying put).
    passed = replace(
        state,
        failures=0,
        inconclusive=0,
        paused=False,
        next_check_at=later,
        reason=f"analysis passed: {why}",
    )
    return on_pass(passed, passed.reason)


def analyse(
    spec: AnalysisSpec,
    green: Stats | None,
    blue: Stats | None,
    green_quality: QualityStats | None = None,
    blue_quality: QualityStats | None = None,
    *,
    green_prompt: PromptStats | None = None,
    blue_prompt: PromptStats | None = None,
) -> tuple[str, str]:
    """pass / fail / inconclusive, with the reason. Too little data is never a pass."""
    if green is None or green.requests < spec.min_requests:
        served = green.requests if green else 0
        return "inconclusive", f"green served {served} of the {spec.min_requests} requests needed"
    problems = []
    if green.error_rate > spec.max_error_rate:
        problems.append(f"error rate {green.error_rate:.2%} above {spec.max_error_rate:.2%}")
    if green.p99_ms is not None and green.p99_ms > spec.max_p99_latency_ms:
        problems.append(f"p99 {green.p99_ms:.0f} ms above {spec.max_p99_latency_ms:.0f} ms")
    if blue is not None and blue.requests >= spec.min_requests:
        if green.error_rate - blue.error_rate > spec.max_error_rate_increase:
            problems.append(f"error rate {green.error_rate:.2%} vs blue {blue.error_rate:.2%}")
        if (
            green.p99_ms
            and blue.p99_ms
            and green.p99_ms > blue.p99_ms * spec.max_p99_increase_ratio
            and green.p99_ms - blue.p99_ms > spec.p99_increase_tolerance_ms
        ):
            problems.append(f"p99 {green.p99_ms:.0f} ms vs blue {blue.p99_ms:.0f} ms")
    problems += _quality_problems(spec, green_quality, blue_quality)
    problems += _prompt_problems(spec, green_prompt, blue_prompt)
    if problems:
        return "fail", "; ".join(problems)
    passed = f"{green.requests} requests, error rate {green.error_rate:.2%}"
    return "pass", passed + _prompt_summary(green_prompt, blue_prompt)


def _prompt_summary(green: PromptStats | None, blue: PromptStats | None) -> str:
    """What a prompt canary's pass rests on, beside errors and latency."""
    if green is None:
        return ""
    parts = []
    if green.judge_mean is not None:
        against = f" vs {blue.judge_mean:.2f}" if blue and blue.judge_mean is not None else ""
        parts.append(f"judge {green.judge_mean:.2f}{against}")
    if green.tokens_per_request is not None:
        theirs = blue.tokens_per_request if blue else None
        against = f" vs {theirs:.1f}" if theirs is not None else ""
        parts.append(f"{green.tokens_per_request:.1f}{against} tokens a request")
    return "; " + ", ".join(parts) if parts else ""


def _quality_problems(
    spec: AnalysisSpec, green: QualityStats | None, blue: QualityStats | None
) -> list[str]:
    """Green worse than blue on labelled rows by more than the policy allows, beyond chance;
    nothing when either side has too few labels (quality then does not judge)."""
    criterion = spec.quality
    if criterion is None or green is None or blue is None:
        return []
    enough = min(green.labelled, blue.labelled) >= criterion.min_labels
    if not enough or green.value is None or blue.value is None:
        return []
    # Beyond the allowed drop by more than chance explains: each side's metric read as a
    # proportion of its labelled rows (exact for accuracy, a normal approximation for the
    # others), one-sided at 95 %. A canary's few labels must not roll back a model that is
    # only unlucky in its sample.
    spread = math.sqrt(
        _variance(green.value) / green.labelled + _variance(blue.value) / blue.labelled
    )
    if blue.value - green.value - criterion.max_drop > ONE_SIDED_95 * spread:
        return [
            f"{criterion.metric} {green.value:.3f} vs blue {blue.value:.3f} "
            f"({green.labelled} and {blue.labelled} labelled rows)"
        ]
    return []


def _prompt_problems(
    spec: AnalysisSpec, green: PromptStats | None, blue: PromptStats | None
) -> list[str]:
    """The challenger's live answers against the champion's over the same interval: each
    criterion judges only where both sides have enough of what it reads."""
    criterion = spec.prompt
    if criterion is None or green is None or blue is None:
        return []
    problems = []
    judged = min(green.judged, blue.judged) >= criterion.min_judged
    green_judge, blue_judge = green.judge_mean, blue.judge_mean
    if (
        judged
        and green_judge is not None
        and blue_judge is not None
        and blue_judge - green_judge > criterion.max_judge_drop
    ):
        problems.append(
            f"judge score {green_judge:.2f} vs champion {blue_judge:.2f} "
            f"({green.judged} and {blue.judged} answers judged)"
        )
    rated = min(green.feedback, blue.feedback) >= criterion.min_feedback
    green_rate, blue_rate = green.positive_rate, blue.positive_rate
    if (
        rated
        and green_rate is not None
        and blue_rate is not None
        and blue_rate - green_rate > criterion.max_feedback_drop
    ):
        problems.append(f"positive feedback {green_rate:.0%} vs champion {blue_rate:.0%}")
    for what, mine, theirs, ratio in (
        ("tokens", green.tokens_per_request, blue.tokens_per_request,
         criterion.max_tokens_increase_ratio),
        ("cost", green.cost_per_request, blue.cost_per_request,
         criterion.max_cost_increase_ratio),
    ):  # fmt: skip
        if mine is not None and theirs and mine > theirs * ratio:
            problems.append(f"{what} per request {mine:.4g} vs champion {theirs:.4g}")
    return problems


#: The standard normal's 95th percentile: a one-sided test at 95 %.
ONE_SIDED_95 = 1.6449


def _variance(proportion: float) -> float:
    clipped = min(max(proportion, 0.0), 1.0)
    return clipped * (1.0 - clipped)


def _shift(state: RolloutState, policy: RolloutPolicy, now: datetime, why: str) -> Transition:
    """The next traffic step; the last step (100 %) is promotion, behind approval if asked."""
    following = state.step + 1
    final = state.first or following >= len(policy.steps) - 1
    if final:
        if policy.approval_required and not state.approved_by:
            after = _next(
                state,
                phase=Phase.AWAITING_APPROVAL,
                mirror={},
                reason=f"{why}; waiting for approval",
            )
            actions: tuple[Action, ...] = (
                Alert("info", f"{state.tenant}: rollout of {state.model} awaits approval"),
            )
            if after.mirror != state.mirror:
                actions = (SetTraffic(after.traffic, {}), *actions)
            return Transition(state, after, actions, after.reason)
        return _promote(state, policy, now, why)
    share = policy.steps[following]
    traffic = {state.blue: 100 - share, state.green: share}
    after = _next(
        state,
        phase=Phase.SHIFTING,
        step=following,
        traffic=traffic,
        mirror={},
        next_check_at=_later(now, policy.analysis),
        reason=f"{why}; green at {share} %",
    )
    return Transition(state, after, (SetTraffic(traffic, {}),), after.reason)


def _promote(state: RolloutState, policy: RolloutPolicy, now: datetime, why: str) -> Transition:
    if not state.blue:  # nothing to drain: the endpoint's first deployment goes live
        after = _next(
            state,
            phase=Phase.PROMOTED,
            step=len(policy.steps) - 1,
            traffic={state.green: 100},
            mirror={},
            failures=0,
            inconclusive=0,
            reason=f"{why}; the endpoint's first deployment is live",
        )
        actions = (SetTraffic(after.traffic, {}), Crown(state.model))
        return Transition(state, after, actions, after.reason)
    traffic = {state.blue: 0, state.green: 100}
    after = _next(
        state,
        phase=Phase.DRAINING,
        step=len(policy.steps) - 1,
        traffic=traffic,
        mirror={},
        delete_blue_at=now + timedelta(seconds=policy.drain_delay_seconds),
        next_check_at=_later(now, policy.analysis),
        failures=0,
        inconclusive=0,
        reason=f"{why}; promoted, blue drains",
    )
    return Transition(state, after, (SetTraffic(traffic, {}), Crown(state.model)), after.reason)


def _after_end(state: RolloutState, now: datetime) -> Transition:
    if state.delete_blue_at is None or now < state.delete_blue_at:
        return Transition(state, state, (), "nothing to do")
    after = _next(
        state, phase=Phase.PROMOTED, delete_blue_at=None, reason="blue drained and deleted"
    )
    return Transition(state, after, (DeleteDeployment(state.blue),), after.reason)


def _rollback(state: RolloutState, why: str) -> Transition:
    """All live traffic back to blue in one update; green stays for inspection (with no blue,
    the endpoint serves nothing, as before the rollout)."""
    traffic = {state.blue: 100, state.green: 0} if state.blue else {state.green: 0}
    after = _next(
        state,
        phase=Phase.ROLLED_BACK,
        traffic=traffic,
        mirror={},
        paused=False,
        delete_blue_at=None,
        reason=f"rolled back: {why}",
    )
    actions = (SetTraffic(traffic, {}), Alert("critical", f"{state.tenant}: {after.reason}"))
    return Transition(state, after, actions, after.reason)


def promotes(transition: Transition) -> bool:
    """Whether ``transition`` gives green all live traffic (the end of a rollout)."""
    finished = (Phase.DRAINING, Phase.PROMOTED)
    return transition.after.phase in finished and transition.before.phase not in finished


def refuse_promotion(state: RolloutState, reasons: Sequence[str]) -> Transition:
    """The model gate, run again at promotion, refused the model: traffic goes back to blue
    (a model may lose an approval or a tag while its canary ran)."""
    return _rollback(state, "the model gate refused promotion: " + "; ".join(reasons))


def supersede(state: RolloutState, newer: str) -> Transition:
    """A queued version that ``newer`` replaces: it ends without touching the endpoint."""
    after = _next(state, phase=Phase.SUPERSEDED, reason=f"superseded by {newer} before it started")
    return Transition(state, after, (), after.reason)


def _next(state: RolloutState, **changes: object) -> RolloutState:
    return replace(state, revision=state.revision + 1, **changes)  # type: ignore[arg-type]


def _later(now: datetime, analysis: AnalysisSpec) -> datetime:
    return now + timedelta(seconds=analysis.interval_seconds)


_PHASES = {
    Phase.CREATING: _creating,
    Phase.SMOKE_TESTING: _smoke_testing,
    Phase.MIRRORING: _mirroring,
    Phase.SHIFTING: _shifting,
    Phase.AWAITING_APPROVAL: _awaiting,
    Phase.DRAINING: _draining,
}


# --- invariants ----------------------------------------------------------------------------


def check_invariants(state: RolloutState, actions: Sequence[Action]) -> None:
    _check_traffic(state.traffic, state.mirror)
    for action in actions:
        if isinstance(action, SetTraffic):
            _check_traffic(action.traffic, action.mirror)
        if isinstance(action, DeleteDeployment) and state.traffic.get(action.name, 0) > 0:
            raise InvariantViolation(
                f"deployment {action.name} still has traffic and cannot be deleted"
            )


def _check_traffic(traffic: Traffic, mirror: Traffic) -> None:
    if any(not 0 <= share <= 100 for share in traffic.values()):
        raise InvariantViolation(f"traffic {dict(traffic)} holds a share outside 0..100")
    if sum(traffic.values()) not in (0, 100):
        raise InvariantViolation(f"live traffic {dict(traffic)} sums to {sum(traffic.values())}")
    mirrored = {name: share for name, share in mirror.items() if share}
    if len(mirrored) > 1:
        raise InvariantViolation(f"mirror {mirrored} targets more than one deployment")
    for name, share in mirrored.items():
        if not 0 < share <= 50:
            raise InvariantViolation(f"mirror to {name} is {share} %, above 50 %")
        if traffic.get(name, 0) > 0:
            raise InvariantViolation(f"mirror target {name} also carries live traffic")
