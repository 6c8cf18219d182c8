"""Prompt rollouts: a tenant's prompt version that passed the gate (its ``challenger``) reaches
live traffic through the same state machine as a model (``automation.rollout``): smoke
tested, then given a growing share of callers, analysed at every step, promoted (the
``champion`` alias moves) or rolled back.

- The two "deployments" are slots of the prompt: ``blue`` serves the champion, ``green`` the
  challenger. Which one a request gets is sticky per caller (the OpenAI ``user`` field):
  a hash of the caller, the prompt and the version decides, so a caller keeps the version
  it started a conversation with while the share grows; callers who name nobody are split
  at random.
- Each interval is analysed on what the two slots served: errors and p99 latency (the
  policy's analysis), and the prompt criteria (``tenants[].genai.rollout.analysis.prompt``):
  the judge's grades of a sample of the live answers (graded at analysis time, off the
  request path, by the tenant's judge deployment), callers' feedback, and tokens and cost
  per request. A failing challenger is rolled back: all callers go back to the champion.

The gateway asks :meth:`PromptRollouts.choose` for a version, then reports what happened
(:meth:`record`, :meth:`feedback`); the timer calls :meth:`tick`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from automation import rollout
from automation.rollout import (
    Alert,
    Crown,
    DeleteDeployment,
    Observation,
    Phase,
    PromptStats,
    RolloutState,
    SetTraffic,
    SmokeTest,
    Stats,
    Transition,
)
from automation.runner import decode, encode
from genai.evaluation import judge_live
from genai.gate import JUDGE_MAX_TOKENS, ChatModel, content_of
from genai.prompts import ALIAS_CHALLENGER, ALIAS_CHAMPION, PromptStore, PromptVersion, render
from tenancy.errors import ConflictError, InvalidInputError, NotFoundError
from tenancy.spec import GenAISpec, PlatformSpec, PromptCriterion

BLUE, GREEN = "blue", "green"
#: The slot a prompt without a rollout serves from: its champion.
CHAMPION_SLOT = "champion"
#: Transitions one tick may take for one rollout (create, smoke, first shift...).
_MOST_STEPS = 8


@dataclass(frozen=True)
class Outcome:
    """One live answer of a prompt version, as the gateway saw it."""

    trace_id: str
    latency_ms: float
    tokens: int
    cost_usd: float
    error: bool
    question: str = ""  # the rendered prompt (PII redacted), for the judge
    answer: str = ""  # the completion the caller got


@dataclass
class _Rollout:
    state: RolloutState
    slots: dict[str, str]  # slot -> prompt version
    traffic: dict[str, int]
    smoke_inputs: list[dict[str, str]]
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    feedback: dict[str, list[bool]] = field(default_factory=dict)


def _key(tenant: str, prompt: str) -> str:
    return f"{tenant}/{prompt}"


class PromptRollouts:
    def __init__(
        self,
        spec: PlatformSpec,
        store_for: Callable[[str], PromptStore],
        model: ChatModel,
        *,
        path: Path | None = None,
        seed: int | None = None,
    ) -> None:
        self.spec = spec
        self.store_for = store_for
        self.model = model
        self.path = path  # where rollouts are kept across restarts (None: memory only)
        self.alerts: list[tuple[str, Alert]] = []
        self._random = random.Random(seed)  # noqa: S311 - a traffic split, not security
        self._lock = threading.Lock()
        self._rollouts: dict[str, _Rollout] = self._load()
        # trace id -> (rollout key, slot): feedback finds its way back to the version.
        self._traces: dict[str, tuple[str, str]] = {}

    # --- starting ------------------------------------------------------------------------

    def _genai(self, tenant: str) -> GenAISpec:
        genai = self.spec.tenant(tenant).genai
        if genai is None:
            raise InvalidInputError(f"tenant {tenant} has no generative AI enabled")
        return genai

    def start(
        self,
        tenant: str,
        prompt: str,
        version: str,
        now: datetime,
        smoke_inputs: Sequence[Mapping[str, str]],
    ) -> RolloutState:
        """Roll out ``version``, which must be the prompt's challenger (it passed the gate).
        ``smoke_inputs``: variables the smoke test renders it with (evaluation examples)."""
        self._genai(tenant)
        store = self.store_for(tenant)
        challenger = store.by_alias(prompt, ALIAS_CHALLENGER)
        if challenger is None or challenger.version != version:
            raise ConflictError(
                f"prompt {prompt}/{version} is not the challenger: only a version that passed "
                "the gate is rolled out"
            )
        if not smoke_inputs:
            raise InvalidInputError("a prompt rollout needs inputs to smoke-test with")
        key = _key(tenant, prompt)
        with self._lock:
            running = self._rollouts.get(key)
            if running is not None and not running.state.phase.terminal:
                raise ConflictError(f"prompt {prompt} of {tenant} is already rolling out")
            champion = store.by_alias(prompt, ALIAS_CHAMPION)
            state, actions = rollout.start(
                tenant,
                key,
                f"{prompt}/{version}",
                BLUE if champion else None,
                now,
                first=champion is None,
            )
            entry = _Rollout(
                state,
                {BLUE: champion.version} if champion else {},
                {BLUE: 100} if champion else {},
                [dict(i) for i in smoke_inputs],
            )
            self._rollouts[key] = entry
            self._apply(entry, actions)
            self._save()
        return state

    # --- serving -------------------------------------------------------------------------

    def choose(self, tenant: str, prompt: str, caller: str) -> tuple[PromptVersion, str]:
        """The version a caller gets, and its slot."""
        store = self.store_for(tenant)
        with self._lock:
            entry = self._rollouts.get(_key(tenant, prompt))
            live = entry is not None and not entry.state.phase.terminal
            slot = self._pick(entry, tenant, prompt, caller) if live and entry else None
            version = entry.slots.get(slot) if entry and slot else None
        if version is None:
            champion = store.by_alias(prompt, ALIAS_CHAMPION)
            if champion is None:
                raise NotFoundError(f"prompt {prompt} has no champion version yet")
            return champion, CHAMPION_SLOT
        return store.get(prompt, version), str(slot)

    def _pick(self, entry: _Rollout, tenant: str, prompt: str, caller: str) -> str | None:
        shares = {slot: share for slot, share in entry.traffic.items() if share > 0}
        if not shares:
            return None
        if caller:
            digest = hashlib.sha256(f"{tenant}/{prompt}/{entry.state.model}/{caller}".encode())
            point = int.from_bytes(digest.digest()[:8], "big") % 100
        else:
            point = self._random.randrange(100)
        for slot, share in sorted(shares.items()):
            if point < share:
                return slot
            point -= share
        return sorted(shares)[-1]

    def record(self, tenant: str, prompt: str, slot: str, outcome: Outcome) -> None:
        key = _key(tenant, prompt)
        with self._lock:
            entry = self._rollouts.get(key)
            if entry is None or entry.state.phase.terminal or slot not in entry.slots:
                return
            entry.outcomes.setdefault(slot, []).append(outcome)
            self._traces[outcome.trace_id] = (key, slot)

    def feedback(self, tenant: str, trace_id: str, positive: bool) -> bool:
        """A caller's verdict on an answer; False when the trace is not one of the tenant's
        answers under a rollout."""
        with self._lock:
            found = self._traces.get(trace_id)
            if found is None or not found[0].startswith(f"{tenant}/"):
                return False
            entry = self._rollouts.get(found[0])
            if entry is None:
                return False
            entry.feedback.setdefault(found[1], []).append(positive)
            return True

    def state(self, tenant: str, prompt: str) -> RolloutState | None:
        entry = self._rollouts.get(_key(tenant, prompt))
        return entry.state if entry else None

    def traffic(self, tenant: str, prompt: str) -> dict[str, str]:
        """Each slot's version and share (for status)."""
        entry = self._rollouts.get(_key(tenant, prompt))
        if entry is None:
            return {}
        return {
            f"{slot} ({entry.slots[slot]})": f"{share} %"
            for slot, share in entry.traffic.items()
            if slot in entry.slots  # a drained slot is gone
        }

    # --- analysis ------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[Transition]:
        """Advance every rollout that is not over."""
        taken = []
        for key in sorted(self._rollouts):
            entry = self._rollouts[key]
            if entry.state.done:
                continue
            taken += self._advance(entry, now)
        with self._lock:
            self._save()
        return taken

    def _advance(self, entry: _Rollout, now: datetime) -> list[Transition]:
        genai = self._genai(entry.state.tenant)
        policy = genai.rollout
        taken = []
        for _ in range(_MOST_STEPS):
            due = entry.state.next_check_at is None or now >= entry.state.next_check_at
            observation = self._observe(entry, genai, analysing=due)
            transition = rollout.advance(entry.state, policy, now, observation)
            if not transition.changed:
                break
            with self._lock:
                if due and entry.state.phase in _ANALYSED:
                    entry.outcomes, entry.feedback = {}, {}  # the next interval starts empty
                entry.state = transition.after
                self._apply(entry, transition.actions)
            taken.append(transition)
            if transition.after.phase in _ANALYSED or transition.after.phase.terminal:
                break
        return taken

    def _observe(self, entry: _Rollout, genai: GenAISpec, *, analysing: bool) -> Observation:
        state = entry.state
        smoke = None
        if state.phase == Phase.SMOKE_TESTING:
            smoke = self._smoke(entry, genai)
        if not analysing or state.phase not in _ANALYSED:
            return Observation(
                green_ready=state.green in entry.slots,
                smoke_passed=smoke[0] if smoke else None,
                smoke_failed=smoke[1] if smoke else None,
            )
        with self._lock:
            outcomes = {slot: list(found) for slot, found in entry.outcomes.items()}
            feedback = {slot: list(found) for slot, found in entry.feedback.items()}
        green = outcomes.get(state.green, [])
        blue = outcomes.get(state.blue, [])
        return Observation(
            green_ready=True,
            green=_stats(green),
            blue=_stats(blue) if state.blue else None,
            green_prompt=self._prompt_stats(state.tenant, genai, green, feedback.get(state.green)),
            blue_prompt=self._prompt_stats(state.tenant, genai, blue, feedback.get(state.blue))
            if state.blue
            else None,
        )

    def _smoke(self, entry: _Rollout, genai: GenAISpec) -> tuple[int, int]:
        """The challenger rendered with the smoke inputs and answered by its deployment."""
        tenant, prompt_name = entry.state.tenant, entry.state.model.split("/")[0]
        version = self.store_for(tenant).get(prompt_name, entry.slots[entry.state.green])
        count = genai.rollout.smoke_test_requests
        passed = failed = 0
        for variables in (entry.smoke_inputs * count)[:count]:
            try:
                turn = [{"role": "user", "content": render(version, variables)}]
                content_of(self.model(tenant, version.lineage.model, turn, 16))
                passed += 1
            except Exception:  # a smoke test counts failures, whatever they are
                failed += 1
        return passed, failed

    def _prompt_stats(
        self,
        tenant: str,
        genai: GenAISpec,
        outcomes: Sequence[Outcome],
        feedback: Sequence[bool] | None,
    ) -> PromptStats:
        criterion = genai.rollout.analysis.prompt
        judge = genai.evaluation.judge_deployment
        grades: list[float] = []
        if criterion is not None and judge is not None:
            sampled = [o for o in outcomes if not o.error and _sampled(o.trace_id, criterion)]
            for outcome in sampled:

                def ask(text: str) -> str:
                    turn = [{"role": "user", "content": text}]
                    return content_of(self.model(tenant, judge, turn, JUDGE_MAX_TOKENS))

                grades.append(judge_live(ask, outcome.question, outcome.answer).value)
        votes = list(feedback or [])
        return PromptStats(
            requests=len(outcomes),
            judged=len(grades),
            judge_mean=sum(grades) / len(grades) if grades else None,
            feedback=len(votes),
            positive=sum(votes),
            tokens=sum(o.tokens for o in outcomes),
            cost_usd=sum(o.cost_usd for o in outcomes),
        )

    # --- actions -------------------------------------------------------------------------

    def _apply(self, entry: _Rollout, actions: Sequence[rollout.Action]) -> None:
        """Make the prompt's slots match the state (caller holds the lock)."""
        tenant = entry.state.tenant
        prompt_name, _, version = entry.state.model.partition("/")
        for action in actions:
            if isinstance(action, rollout.CreateDeployment):
                entry.slots[action.name] = version
            elif isinstance(action, SetTraffic):
                entry.traffic = dict(action.traffic)
            elif isinstance(action, Crown):
                store = self.store_for(tenant)
                store.set_alias(prompt_name, ALIAS_CHAMPION, version)
                store.delete_alias(prompt_name, ALIAS_CHALLENGER)
            elif isinstance(action, DeleteDeployment):
                entry.slots.pop(action.name, None)
            elif isinstance(action, Alert):
                self.alerts.append((tenant, action))
            elif isinstance(action, SmokeTest):
                continue  # run when the state is observed (_smoke)

    # --- persistence ---------------------------------------------------------------------

    def _save(self) -> None:
        if self.path is None:
            return
        document = {
            key: {
                "state": encode(entry.state),
                "slots": entry.slots,
                "traffic": entry.traffic,
                "smoke_inputs": entry.smoke_inputs,
            }
            for key, entry in self._rollouts.items()
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, sort_keys=True))
        temporary.replace(self.path)  # whole or not at all

    def _load(self) -> dict[str, _Rollout]:
        if self.path is None or not self.path.is_file():
            return {}
        document: dict[str, Any] = json.loads(self.path.read_text())
        return {
            key: _Rollout(
                decode(item["state"])[0],
                dict(item["slots"]),
                {k: int(v) for k, v in item["traffic"].items()},
                list(item["smoke_inputs"]),
            )
            for key, item in document.items()
        }


_ANALYSED = (Phase.MIRRORING, Phase.SHIFTING, Phase.AWAITING_APPROVAL, Phase.DRAINING)


def _stats(outcomes: Sequence[Outcome]) -> Stats:
    latencies = sorted(o.latency_ms for o in outcomes)
    p99 = (
        latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
        if latencies
        else None
    )
    return Stats(len(outcomes), sum(o.error for o in outcomes), p99)


def _sampled(trace_id: str, criterion: PromptCriterion) -> bool:
    """Whether the judge grades this answer: a fixed share of traces, the same ones on
    every replay (a hash of the trace id, not a draw)."""
    point = int.from_bytes(hashlib.sha256(trace_id.encode()).digest()[:4], "big") / 2**32
    return point < criterion.judge_sample_rate
