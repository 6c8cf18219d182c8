"""The prompt gate end to end on real parts: prompt versions in a tenant's MLflow store, the
tenant's spec (thresholds, guardrails, deployments), the deterministic stand-in model."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.mlflow_prompts import MlflowPromptStore
from genai.evaluation import Example
from genai.gate import PromptGate
from genai.prompts import ALIAS_CHALLENGER, PromptLineage
from genai.standin import complete
from tenancy import PlatformSpec, parse_platform_spec
from tenancy.errors import InvalidInputError
from tests.tenancy.conftest import GENAI, stack_document

COUNTRIES = ["France", "Germany", "Italy", "Spain", "Portugal", "Japan"]
CAPITALS = ["Paris", "Berlin", "Rome", "Madrid", "Lisbon", "Tokyo"]
EXAMPLES = [
    Example(c.lower(), {"country": c}, expected=capital, must_contain=[capital])
    for c, capital in zip(COUNTRIES, CAPITALS, strict=True)
]


def _spec() -> PlatformSpec:
    document = stack_document("local")
    section = copy.deepcopy(GENAI)
    section["evaluation"] = {"thresholds": {"exact": 0.9, "contains": 1.0}, "min_examples": 5}
    next(t for t in document["tenants"] if t["id"] == "contoso")["genai"] = section
    return parse_platform_spec(document)


def _model(calls: list[tuple[str, str]]) -> Any:
    def model(
        tenant: str, deployment: str, messages: Sequence[Mapping[str, str]], max_tokens: int
    ) -> Mapping[str, Any]:
        calls.append((tenant, deployment))
        return complete(messages, max_tokens, deployment)

    return model


@pytest.fixture
def gate(tmp_path: Path) -> tuple[PromptGate, MlflowPromptStore, list[tuple[str, str]]]:
    store = MlflowPromptStore(f"sqlite:///{tmp_path / 'tenant-contoso.db'}")
    calls: list[tuple[str, str]] = []
    stores = {"contoso": store}
    return PromptGate(_spec(), stores.__getitem__, _model(calls)), store, calls


def test_a_passing_version_becomes_the_challenger(
    gate: tuple[PromptGate, MlflowPromptStore, list[tuple[str, str]]],
) -> None:
    check, store, calls = gate
    lineage = PromptLineage("chat", "capitals-v1", {"temperature": 0})
    store.register("capitals", "In one word: the capital of {{country}}?", lineage, "terse")
    verdict = check.judge("contoso", "capitals", "1", EXAMPLES)
    assert verdict.passed and verdict.means == {"exact": 1.0, "contains": 1.0}
    challenger = store.by_alias("capitals", ALIAS_CHALLENGER)
    assert challenger is not None and challenger.version == "1"
    assert set(calls) == {("contoso", "chat")}  # through the deployment its lineage names


def test_a_failing_version_is_rejected_with_evidence_and_moves_no_alias(
    gate: tuple[PromptGate, MlflowPromptStore, list[tuple[str, str]]],
) -> None:
    check, store, _ = gate
    lineage = PromptLineage("chat", "capitals-v1")
    store.register("capitals", "In one word: the capital of {{country}}?", lineage, "terse")
    check.judge("contoso", "capitals", "1", EXAMPLES)
    store.register("capitals", "Tell me about the capital of {{country}}.", lineage, "chatty")
    verdict = check.judge("contoso", "capitals", "2", EXAMPLES)
    assert not verdict.passed and verdict.failed_scorers == ["exact"]
    assert verdict.means["exact"] == 0.0 and verdict.means["contains"] == 1.0
    evidence = {e.example: e.answer for e in verdict.evidence}
    assert evidence["france"] == "The capital of France is Paris."
    still = store.by_alias("capitals", ALIAS_CHALLENGER)
    assert still is not None and still.version == "1"  # the rejected version moved nothing


def test_the_gate_refuses_what_it_cannot_judge(
    gate: tuple[PromptGate, MlflowPromptStore, list[tuple[str, str]]],
) -> None:
    check, store, calls = gate
    store.register("capitals", "{{country}}?", PromptLineage("gpt-5", "v1"), "elsewhere")
    with pytest.raises(InvalidInputError, match="written for 'gpt-5', not one of"):
        check.judge("contoso", "capitals", "1", EXAMPLES)
    store.register("capitals", "{{country}}?", PromptLineage("chat", "v1"), "few")
    with pytest.raises(InvalidInputError, match="fewer than 5"):
        check.judge("contoso", "capitals", "2", EXAMPLES[:3])
    with pytest.raises(InvalidInputError, match="tenant adatum has no generative AI"):
        check.judge("adatum", "capitals", "1", EXAMPLES)
    assert calls == []  # nothing was sent to a model for a refused evaluation
