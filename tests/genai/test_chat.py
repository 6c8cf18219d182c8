"""Chat completions as the gateway serves them (genai.chat): the tenant's deployments only,
guardrails before and after the model, tokens reserved before the call and settled after,
refusals that spend nothing, traces with redacted payloads, and budgets that hold under 50
concurrent first requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import Any

import pytest

from genai.chat import ChatService
from genai.guardrails import count_tokens
from genai.tokens import TokenLedger, TokenLimits
from tenancy import PlatformSpec
from tests.genai.conftest import MemoryTraces, genai_spec, standin

NOW = datetime(2026, 12, 5, 12, 0, 30, tzinfo=UTC)


def _service(
    spec: PlatformSpec, model: Any = None, *, per_minute: int = 10_000, per_month: int = 10**6
) -> tuple[ChatService, TokenLedger, MemoryTraces]:
    ledger = TokenLedger({"contoso": TokenLimits(per_minute, per_month)}, clock=lambda: NOW)
    traces = MemoryTraces()
    return ChatService(spec, ledger, model or standin(), traces, clock=lambda: NOW), ledger, traces


def _ask(text: str, **extra: Any) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": text}], **extra}).encode()


def test_an_answer_in_openai_shape_is_settled_at_its_real_usage_and_traced() -> None:
    service, ledger, traces = _service(genai_spec())
    answer = service.complete("contoso", "chat", _ask("In one word: the capital of Italy?"))
    assert answer.status == 200
    assert answer.body["choices"][0]["message"] == {"role": "assistant", "content": "Rome"}
    usage = answer.body["usage"]
    # Reserved: the prompt plus max_tokens (the cap, 512); kept: what was used.
    assert ledger.spent("contoso")["month"] == usage["total_tokens"]
    [trace] = traces.of("contoso")
    assert trace["trace_id"] == answer.headers["x-trace-id"]
    assert trace["status"] == 200 and trace["usage"]["completion_tokens"] == 1
    price = genai_spec().tenant("contoso").genai.model("chat")  # type: ignore[union-attr]
    assert trace["cost_usd"] == pytest.approx(
        price.cost(usage["prompt_tokens"], usage["completion_tokens"])
    )


def test_pii_never_reaches_the_model_the_caller_or_the_log() -> None:
    seen: list[str] = []

    def model(
        tenant: str, deployment: str, messages: Sequence[Mapping[str, str]], max_tokens: int
    ) -> Mapping[str, Any]:
        seen.append(messages[-1]["content"])
        text = "Write to ada@example.com or call +44 20 7946 0958."
        return {"choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 12}}  # fmt: skip

    service, _, traces = _service(genai_spec(), model)
    answer = service.complete(
        "contoso", "chat", _ask("I am bob@example.org, IBAN DE89 3704 0044 0532 0130 00")
    )
    assert seen == ["I am [EMAIL], IBAN [IBAN]"]
    shown = answer.body["choices"][0]["message"]["content"]
    assert shown == "Write to [EMAIL] or call [PHONE]."
    logged = json.dumps(traces.of("contoso"))
    assert "example.org" not in logged and "example.com" not in logged and "DE89" not in logged


def test_refusals_name_the_problem_and_spend_nothing() -> None:
    service, ledger, traces = _service(genai_spec())
    blocked = service.complete("contoso", "chat", _ask("my password is hunter2"))
    assert blocked.status == 422 and "password" in blocked.body["error"]["message"]
    too_long = service.complete("contoso", "chat", _ask("hi", max_tokens=10_000))
    assert too_long.status == 400 and "512" in too_long.body["error"]["message"]
    unknown = service.complete("contoso", "gpt-5", _ask("hi"))
    assert unknown.status == 404 and "chat, judge" in unknown.body["error"]["message"]
    assert service.complete("contoso", "chat", b"{not json").status == 400
    assert service.complete("adatum", "chat", _ask("hi")).status == 404  # no genai there
    assert ledger.spent("contoso") == {"minute": 0, "month": 0}
    assert [t["status"] for t in traces.of("contoso")] == [422, 400, 404, 400]


def test_a_failing_model_is_a_424_and_gives_its_reservation_back() -> None:
    def broken(*_: Any) -> Mapping[str, Any]:
        raise ConnectionError("deployment unreachable")

    service, ledger, _ = _service(genai_spec(), broken)
    answer = service.complete("contoso", "chat", _ask("hi"))
    assert answer.status == 424 and "unreachable" in answer.body["error"]["message"]
    assert ledger.spent("contoso")["month"] == 0


def test_the_minute_limit_answers_429_with_retry_after() -> None:
    question = "In one word: the capital of Spain?"
    worst = count_tokens(question) + 100
    service, ledger, _ = _service(genai_spec(), per_minute=worst + 5)
    assert service.complete("contoso", "chat", _ask(question, max_tokens=100)).status == 200
    used = ledger.spent("contoso")["minute"]
    assert 5 < used < worst  # the unused part of the reservation came back...
    refused = service.complete("contoso", "chat", _ask(question, max_tokens=100))
    # ... but not enough for a second worst case: refused until the next minute.
    assert refused.status == 429 and refused.headers["Retry-After"] == "30"
    assert "this minute" in refused.body["error"]["message"]


def test_fifty_concurrent_first_requests_never_overshoot_the_monthly_budget() -> None:
    """The budget fits exactly three worst cases. Fifty first requests start together; the
    three admitted are held inside the model until the other 47 have been answered, so
    every request was decided while the budget still looked unspent. Three answers, 47
    refusals, and the month never holds more than the budget."""
    question = "In one word: the capital of Japan?"
    worst = count_tokens(question) + 64
    budget = 3 * worst
    start = threading.Barrier(50)
    release = threading.Event()
    spent_seen: list[int] = []

    def held(
        tenant: str, deployment: str, messages: Sequence[Mapping[str, str]], max_tokens: int
    ) -> Mapping[str, Any]:
        release.wait(timeout=30)
        spent_seen.append(ledger.spent("contoso")["month"])
        return standin()(tenant, deployment, messages, max_tokens)

    service, ledger, traces = _service(genai_spec(), held, per_minute=budget, per_month=budget)

    def first_request() -> int:
        start.wait()
        return service.complete("contoso", "chat", _ask(question, max_tokens=64)).status

    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(first_request) for _ in range(50)]
        refused = []
        for finished in as_completed(futures):  # the 47 that are not held in the model
            refused.append(finished.result())
            if len(refused) == 47:
                break
        release.set()
        statuses = [f.result() for f in futures]
    assert len(refused) == 47 and set(refused) <= {403, 429}
    assert statuses.count(200) == 3
    assert max(spent_seen) <= budget
    answered = [t for t in traces.of("contoso") if t["status"] == 200]
    total = sum(t["usage"]["prompt_tokens"] + t["usage"]["completion_tokens"] for t in answered)
    assert ledger.spent("contoso")["month"] == total <= budget


def test_feedback_names_a_bad_body_and_is_logged() -> None:
    service, _, traces = _service(genai_spec())
    assert service.feedback("contoso", b'{"trace_id": 3}').status == 400
    answer = service.feedback("contoso", b'{"trace_id": "abc", "positive": true}')
    assert answer.status == 200 and answer.body["counted_in_rollout"] is False
    assert traces.of("contoso")[-1]["feedback_for"] == "abc"
