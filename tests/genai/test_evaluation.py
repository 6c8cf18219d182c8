"""The evaluation gate: every scorer behind one interface, thresholds from the spec, and a
failing prompt version rejected with the examples that failed it."""

from __future__ import annotations

import pytest

from genai.evaluation import (
    DETERMINISTIC,
    ContainsScorer,
    ExactScorer,
    Example,
    JsonSchemaScorer,
    JudgeScorer,
    RegexScorer,
    evaluate,
    rouge_l,
)
from tenancy.errors import InvalidInputError

CAPITALS = [
    Example("fr", {"country": "France"}, expected="Paris", must_contain=["Paris"]),
    Example("de", {"country": "Germany"}, expected="Berlin", must_contain=["Berlin"]),
    Example("it", {"country": "Italy"}, expected="Rome", must_contain=["Rome"]),
    Example("es", {"country": "Spain"}, expected="Madrid", must_contain=["Madrid"]),
]
KNOWN = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid"}


def good_prompt(example: Example) -> str:
    """A prompt version answering with the capital alone (a deterministic stand-in model)."""
    return KNOWN[example.inputs["country"]]


def chatty_prompt(example: Example) -> str:
    """A worse version: wraps the answer, and gets Spain wrong."""
    capital = "Barcelona" if example.inputs["country"] == "Spain" else good_prompt(example)
    return f"The capital of {example.inputs['country']} is {capital}."


def test_each_deterministic_scorer() -> None:
    paris = CAPITALS[0]
    assert ExactScorer()(paris, "  Paris ").value == 1.0
    assert ExactScorer()(paris, "paris").value == 0.0
    assert ContainsScorer()(paris, "It is paris.").value == 1.0
    both = Example("x", {}, must_contain=["Paris", "Seine"])
    score = ContainsScorer()(both, "Paris")
    assert score.value == 0.5 and score.rationale == "missing: Seine"
    assert RegexScorer()(Example("r", {}, expected=r"^\d{4}-\d{2}$"), "2026-12").value == 1.0
    assert RegexScorer()(Example("r", {}, expected=r"^\d{4}$"), "twenty").value == 0.0
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    typed = Example("j", {}, schema=schema)
    assert JsonSchemaScorer()(typed, '{"city": "Paris"}').value == 1.0
    assert "not JSON" in JsonSchemaScorer()(typed, "Paris").rationale
    assert "'city' is a required property" in JsonSchemaScorer()(typed, "{}").rationale
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS "the cat the mat" (4 words) of 6 and 7: F1 = 2 * 4/7 * 4/6 / (4/7 + 4/6)
    assert rouge_l("the cat sat on the mat", "the cat lay under the red mat") == pytest.approx(
        2 * (4 / 7) * (4 / 6) / (4 / 7 + 4 / 6)
    )
    assert rouge_l("paris", "berlin") == 0.0


def test_the_judge_scores_from_its_reply_and_a_reply_without_one_scores_zero() -> None:
    asked: list[str] = []

    def judge(prompt: str) -> str:
        asked.append(prompt)
        return "SCORE: 0.75\npartly right" if "Barcelona" in prompt else "SCORE: 1"

    scorer = JudgeScorer(judge)
    assert scorer(CAPITALS[3], "Barcelona").value == 0.75
    assert scorer(CAPITALS[0], "Paris").value == 1.0
    assert "EXPECTED: Madrid" in asked[0] and "ANSWER: Barcelona" in asked[0]
    silent = JudgeScorer(lambda prompt: "I think it is fine")(CAPITALS[0], "Paris")
    assert silent.value == 0.0 and "no score" in silent.rationale


def test_a_version_meeting_every_threshold_passes() -> None:
    scorers = {
        name: make() for name, make in DETERMINISTIC.items() if name in ("exact", "contains")
    }
    verdict = evaluate(CAPITALS, good_prompt, scorers, {"exact": 0.9, "contains": 1.0})
    assert verdict.passed and verdict.means == {"exact": 1.0, "contains": 1.0}
    assert verdict.evidence == []


def test_a_failing_version_is_rejected_with_per_example_evidence() -> None:
    judge = JudgeScorer(lambda prompt: "SCORE: 0" if "Barcelona" in prompt else "SCORE: 1")
    scorers = {"exact": ExactScorer(), "contains": ContainsScorer(), "judge": judge}
    thresholds = {"exact": 0.5, "contains": 0.9, "judge": 0.7}
    verdict = evaluate(CAPITALS, chatty_prompt, scorers, thresholds)
    assert not verdict.passed
    assert verdict.means == {"exact": 0.0, "contains": 0.75, "judge": 0.75}
    assert verdict.failed_scorers == ["exact", "contains"]  # judge 0.75 >= 0.7 passes
    spain = [e for e in verdict.evidence if e.scorer == "contains"]
    assert [(e.example, e.score, e.rationale) for e in spain] == [("es", 0.0, "missing: Madrid")]
    assert spain[0].answer == "The capital of Spain is Barcelona."
    assert {e.example for e in verdict.evidence if e.scorer == "exact"} == {"fr", "de", "it", "es"}


def test_a_gate_that_cannot_judge_says_why() -> None:
    with pytest.raises(InvalidInputError, match="no scorer for the thresholds judge"):
        evaluate(CAPITALS, good_prompt, {"exact": ExactScorer()}, {"judge": 0.5})
    with pytest.raises(InvalidInputError, match="4 examples, fewer than 10"):
        evaluate(CAPITALS, good_prompt, {"exact": ExactScorer()}, {"exact": 0.5}, min_examples=10)
