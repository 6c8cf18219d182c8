"""The offline gate of a prompt version: every example of the tenant's evaluation set is run
through the version, each answer scored by the scorers the tenant's spec holds it to, and
the version passes only when each scorer's mean reaches its threshold
(``genai.evaluation.thresholds``). A failing version is rejected with its evidence: for each
scorer below its threshold, the examples that pulled it down, their answers and why.

Scorers sit behind one interface (a name, and a score from 0 to 1 with a rationale for one
example and one answer):
- deterministic: ``exact`` (whitespace-normalized equality), ``contains`` (every expected
  phrase, case-insensitive), ``regex`` (the expected pattern matches), ``json_schema`` (the
  answer is JSON valid against the example's schema), ``rouge_l`` (ROUGE-L F1 over words:
  the longest common subsequence, Lin 2004);
- ``judge``: a model asked to grade the answer against the expected one with a rubric, its
  reply parsed for ``SCORE: <0..1>``; a reply without one scores 0 and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from tenancy.errors import InvalidInputError


@dataclass(frozen=True)
class Example:
    id: str
    inputs: Mapping[str, str]  # the prompt template's variables
    expected: str = ""  # the reference answer (exact, rouge_l, judge) or pattern (regex)
    must_contain: Sequence[str] = ()
    schema: Mapping[str, Any] | None = None  # json_schema


@dataclass(frozen=True)
class Score:
    value: float
    rationale: str


class Scorer(Protocol):
    name: str

    def __call__(self, example: Example, answer: str) -> Score: ...


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class ExactScorer:
    name = "exact"

    def __call__(self, example: Example, answer: str) -> Score:
        same = " ".join(answer.split()) == " ".join(example.expected.split())
        return Score(1.0 if same else 0.0, "equal" if same else "differs from the expected")


class ContainsScorer:
    name = "contains"

    def __call__(self, example: Example, answer: str) -> Score:
        if not example.must_contain:
            raise InvalidInputError(f"example {example.id} lists nothing it must contain")
        missing = [p for p in example.must_contain if p.lower() not in answer.lower()]
        found = len(example.must_contain) - len(missing)
        reason = "all present" if not missing else "missing: " + ", ".join(missing)
        return Score(found / len(example.must_contain), reason)


class RegexScorer:
    name = "regex"

    def __call__(self, example: Example, answer: str) -> Score:
        try:
            pattern = re.compile(example.expected)
        except re.error as error:
            raise InvalidInputError(f"example {example.id}'s pattern is invalid: {error}") from None
        matched = pattern.search(answer) is not None
        return Score(1.0 if matched else 0.0, "matches" if matched else "does not match")


class JsonSchemaScorer:
    name = "json_schema"

    def __call__(self, example: Example, answer: str) -> Score:
        if example.schema is None:
            raise InvalidInputError(f"example {example.id} has no schema")
        try:
            document = json.loads(answer)
        except json.JSONDecodeError as error:
            return Score(0.0, f"not JSON: {error.msg}")
        try:
            jsonschema.validate(document, example.schema)
        except jsonschema.ValidationError as error:
            return Score(0.0, f"against the schema: {error.message}")
        return Score(1.0, "valid")


def rouge_l(reference: str, candidate: str) -> float:
    """ROUGE-L F1 over lowercase words: the longest common subsequence's precision and
    recall, harmonically combined."""
    ref, cand = _words(reference), _words(candidate)
    if not ref or not cand:
        return 1.0 if ref == cand else 0.0
    previous = [0] * (len(cand) + 1)
    for word in ref:
        current = [0]
        for index, other in enumerate(cand):
            current.append(
                previous[index] + 1 if word == other else max(previous[index + 1], current[-1])
            )
        previous = current
    common = previous[-1]
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class RougeLScorer:
    name = "rouge_l"

    def __call__(self, example: Example, answer: str) -> Score:
        value = rouge_l(example.expected, answer)
        return Score(value, f"ROUGE-L F1 {value:.3f} against the expected answer")


JUDGE_RUBRIC = (
    "Grade the ANSWER against the EXPECTED answer for the QUESTION: 1 when it is correct and "
    "complete, 0 when it is wrong, in between when partly right. Reply with one line "
    "'SCORE: <a number from 0 to 1>' and one line of reason."
)
_SCORE_LINE = re.compile(r"SCORE:\s*(?P<value>[01](?:\.\d+)?|\.\d+)", re.IGNORECASE)


class JudgeScorer:
    """A model grades each answer; ``ask`` sends one prompt to the judge deployment and
    returns its reply."""

    name = "judge"

    def __init__(self, ask: Callable[[str], str]) -> None:
        self.ask = ask

    def __call__(self, example: Example, answer: str) -> Score:
        question = " ".join(f"{k}: {v}" for k, v in sorted(example.inputs.items()))
        reply = self.ask(
            f"{JUDGE_RUBRIC}\nQUESTION: {question}\nEXPECTED: {example.expected}\nANSWER: {answer}"
        )
        return graded(reply)


#: Live answers have no expected answer: the judge grades them on the question alone.
LIVE_JUDGE_RUBRIC = (
    "Grade the ANSWER to the QUESTION: 1 when it is correct and says only what was asked, 0 "
    "when it is wrong, in between when it is right but padded. Reply with one line "
    "'SCORE: <a number from 0 to 1>' and one line of reason."
)


def judge_live(ask: Callable[[str], str], question: str, answer: str) -> Score:
    """The judge's grade of one live answer (a prompt canary's sampled traffic)."""
    return graded(ask(f"{LIVE_JUDGE_RUBRIC}\nQUESTION: {question}\nANSWER: {answer}"))


def graded(reply: str) -> Score:
    """The score a judge's reply states (clipped to 0..1), or 0 naming the reply."""
    found = _SCORE_LINE.search(reply)
    if found is None:
        return Score(0.0, f"the judge gave no score: {reply[:200]!r}")
    value = min(1.0, max(0.0, float(found["value"])))
    return Score(value, reply.strip()[:300])


DETERMINISTIC: dict[str, Callable[[], Scorer]] = {
    "exact": ExactScorer,
    "contains": ContainsScorer,
    "regex": RegexScorer,
    "json_schema": JsonSchemaScorer,
    "rouge_l": RougeLScorer,
}


@dataclass(frozen=True)
class Evidence:
    example: str
    scorer: str
    score: float
    answer: str
    rationale: str


@dataclass
class Verdict:
    means: dict[str, float]
    thresholds: dict[str, float]
    evidence: list[Evidence] = field(default_factory=list)  # below-threshold scorers' worst

    @property
    def passed(self) -> bool:
        return all(self.means[name] >= t for name, t in self.thresholds.items())

    @property
    def failed_scorers(self) -> list[str]:
        return [name for name, t in self.thresholds.items() if self.means[name] < t]


def evaluate(
    examples: Sequence[Example],
    generate: Callable[[Example], str],
    scorers: Mapping[str, Scorer],
    thresholds: Mapping[str, float],
    *,
    min_examples: int = 1,
    evidence_per_scorer: int = 5,
) -> Verdict:
    """Run each example through ``generate`` (the prompt version and its model), score it
    with every scorer that has a threshold, and judge the means."""
    missing = sorted(set(thresholds) - set(scorers))
    if missing:
        raise InvalidInputError(f"no scorer for the thresholds {', '.join(missing)}")
    if len(examples) < min_examples:
        raise InvalidInputError(
            f"the evaluation set has {len(examples)} examples, fewer than {min_examples}"
        )
    scored: dict[str, list[tuple[Score, Example, str]]] = {name: [] for name in thresholds}
    for example in examples:
        answer = generate(example)
        for name in thresholds:
            scored[name].append((scorers[name](example, answer), example, answer))
    means = {n: sum(s.value for s, _, _ in rows) / len(rows) for n, rows in scored.items()}
    verdict = Verdict(means, dict(thresholds))
    for name in verdict.failed_scorers:
        worst = sorted(scored[name], key=lambda row: (row[0].value, row[1].id))
        verdict.evidence += [
            Evidence(example.id, name, score.value, answer[:500], score.rationale)
            for score, example, answer in worst[:evidence_per_scorer]
            if score.value < 1.0
        ]
    return verdict
