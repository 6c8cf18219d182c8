"""Prompt rollouts on real parts: prompt versions in a tenant's MLflow store, gated, then
canaried through the chat service on the rollout state machine, promoted on better judge
scores and fewer tokens, or rolled back when the judge grades them worse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.mlflow_prompts import MlflowPromptStore
from automation.rollout import Phase
from genai.chat import ChatService
from genai.evaluation import Example
from genai.gate import PromptGate
from genai.prompts import ALIAS_CHALLENGER, ALIAS_CHAMPION, PromptLineage
from genai.rollout import PromptRollouts
from genai.tokens import TokenLedger, TokenLimits
from tenancy import PlatformSpec
from tenancy.errors import ConflictError
from tests.genai.conftest import MemoryTraces, genai_spec, standin

COUNTRIES = ["France", "Germany", "Italy", "Spain", "Portugal", "Japan"]
CAPITALS = ["Paris", "Berlin", "Rome", "Madrid", "Lisbon", "Tokyo"]
EXAMPLES = [
    Example(c.lower(), {"country": c}, expected=capital, must_contain=[capital])
    for c, capital in zip(COUNTRIES, CAPITALS, strict=True)
]
LINEAGE = PromptLineage("chat", "capitals-v1", {"temperature": 0})
START = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _spec() -> PlatformSpec:
    return genai_spec(
        evaluation={
            "thresholds": {"contains": 1.0, "judge": 0.5},
            "judge_deployment": "judge",
            "min_examples": 5,
        },
        rollout={
            "steps": [50, 100],
            "analysis": {
                "interval_seconds": 60,
                "min_requests": 5,
                "max_p99_latency_ms": 10_000,
                "prompt": {"judge_sample_rate": 1.0, "min_judged": 5},
            },
            "smoke_test_requests": 2,
            "drain_delay_seconds": 0,
        },
    )


class Platform:
    def __init__(self, tmp_path: Path) -> None:
        self.spec = _spec()
        self.store = MlflowPromptStore(f"sqlite:///{tmp_path / 'tenant-contoso.db'}")
        stores = {"contoso": self.store}
        model = standin()
        self.gate = PromptGate(self.spec, stores.__getitem__, model)
        self.rollouts = PromptRollouts(
            self.spec, stores.__getitem__, model, path=tmp_path / "prompt-rollouts.json", seed=3
        )
        ledger = TokenLedger({"contoso": TokenLimits(10**6, 10**8)}, clock=lambda: START)
        self.traces = MemoryTraces()
        self.chat = ChatService(
            self.spec, ledger, model, self.traces, prompts=self.rollouts, clock=lambda: START
        )
        self.now = START

    def publish(self, template: str) -> str:
        """Register, gate and (when it passes) roll out a version; returns it."""
        version = self.store.register("capitals", template, LINEAGE, "test").version
        assert self.gate.judge("contoso", "capitals", version, EXAMPLES).passed
        inputs = [e.inputs for e in EXAMPLES[:2]]
        self.rollouts.start("contoso", "capitals", version, self.now, inputs)
        self.rollouts.tick(self.now)
        return version

    def traffic(self, callers: int) -> dict[str, str]:
        """One request from each caller; the version each got."""
        got = {}
        for index in range(callers):
            country = COUNTRIES[index % len(COUNTRIES)]
            body = {"prompt": "capitals", "variables": {"country": country}, "user": f"u{index}"}
            answer = self.chat.complete("contoso", "chat", json.dumps(body).encode())
            assert answer.status == 200, answer.body
            got[f"u{index}"] = answer.headers["x-prompt-version"]
        return got

    def interval(self) -> None:
        self.now += timedelta(seconds=61)
        self.rollouts.tick(self.now)

    def phase(self) -> Phase:
        state = self.rollouts.state("contoso", "capitals")
        assert state is not None
        return state.phase


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return Platform(tmp_path)


def _champion(platform: Platform) -> str | None:
    found = platform.store.by_alias("capitals", ALIAS_CHAMPION)
    return found.version if found else None


def test_the_first_version_goes_live_in_one_switch_after_its_smoke_test(
    platform: Platform,
) -> None:
    version = platform.publish("What is the capital of {{country}}?")
    assert platform.phase() == Phase.PROMOTED
    assert _champion(platform) == version
    assert platform.store.by_alias("capitals", ALIAS_CHALLENGER) is None
    assert set(platform.traffic(4).values()) == {f"capitals/{version}"}


def test_a_better_version_is_canaried_sticky_per_caller_and_promoted(
    platform: Platform,
) -> None:
    verbose = platform.publish("What is the capital of {{country}}?")
    terse = platform.publish("In one word: the capital of {{country}}?")
    assert platform.phase() == Phase.SHIFTING
    first = platform.traffic(40)
    assert set(first.values()) == {f"capitals/{verbose}", f"capitals/{terse}"}
    assert platform.traffic(40) == first  # each caller keeps its version
    platform.interval()  # judged 1.0 against 0.5, fewer tokens: promoted
    assert platform.phase() in (Phase.DRAINING, Phase.PROMOTED)
    platform.interval()
    assert platform.phase() == Phase.PROMOTED
    assert _champion(platform) == terse
    assert set(platform.traffic(10).values()) == {f"capitals/{terse}"}
    # The traces say which version answered each caller.
    traced = {t.get("prompt_version") for t in platform.traces.of("contoso")}
    assert {verbose, terse} <= traced


def test_a_version_the_judge_grades_worse_is_rolled_back(platform: Platform) -> None:
    terse = platform.publish("In one word: the capital of {{country}}?")
    chatty = platform.publish("Answer in JSON: the capital of {{country}}?")
    assert platform.phase() == Phase.SHIFTING
    for _ in range(2):  # the policy's failure threshold
        platform.traffic(30)
        platform.interval()
    state = platform.rollouts.state("contoso", "capitals")
    assert state is not None and state.phase == Phase.ROLLED_BACK
    assert "judge score 0.50 vs champion 1.00" in state.reason
    assert "tokens per request" in state.reason
    assert _champion(platform) == terse
    assert set(platform.traffic(10).values()) == {f"capitals/{terse}"}
    assert any(alert.severity == "critical" for _, alert in platform.rollouts.alerts)
    assert platform.store.by_alias("capitals", ALIAS_CHALLENGER) is not None  # kept to inspect
    assert platform.store.get("capitals", chatty).version == chatty


def test_feedback_counts_for_the_version_that_answered(platform: Platform) -> None:
    platform.publish("What is the capital of {{country}}?")
    platform.publish("In one word: the capital of {{country}}?")
    platform.traffic(6)
    trace = next(t for t in platform.traces.of("contoso") if t.get("slot") == "green")
    body = json.dumps({"trace_id": trace["trace_id"], "positive": True}).encode()
    assert platform.chat.feedback("contoso", body).body["counted_in_rollout"] is True
    # Another tenant cannot vote on contoso's answers.
    assert platform.chat.feedback("fabrikam", body).body["counted_in_rollout"] is False


def test_only_the_challenger_is_rolled_out_and_a_restart_keeps_the_rollout(
    platform: Platform, tmp_path: Path
) -> None:
    platform.publish("What is the capital of {{country}}?")
    version = platform.store.register("capitals", "Capital of {{country}}?", LINEAGE, "x").version
    with pytest.raises(ConflictError, match="not the challenger"):
        platform.rollouts.start("contoso", "capitals", version, START, [{"country": "Spain"}])
    terse = platform.publish("In one word: the capital of {{country}}?")
    stores = {"contoso": platform.store}
    again = PromptRollouts(
        platform.spec, stores.__getitem__, standin(), path=tmp_path / "prompt-rollouts.json"
    )
    state = again.state("contoso", "capitals")
    assert state is not None and state.phase == Phase.SHIFTING
    assert again.traffic("contoso", "capitals") == {"blue (1)": "50 %", f"green ({terse})": "50 %"}
