"""A tenant's chat completions, as the gateway serves them (``POST /genai/{deployment}/chat/
completions``, OpenAI's request and answer): the tenant is the key's, never the request's.

In order, each refusal leaving nothing spent:
1. the deployment must be one of the tenant's (404 naming its own);
2. the body: ``messages``, or a ``prompt`` of the tenant's registry with its ``variables``
   (the version the caller gets is the champion's, or, during a prompt rollout, the one its
   ``user`` is routed to); ``max_tokens`` within the tenant's cap (400);
3. guardrails on every message: a blocked term refuses (422), PII is redacted before the
   model sees it;
4. tokens: the worst case (the prompt's tokens plus ``max_tokens``) is reserved against the
   tenant's minute and month at once (429 with ``Retry-After``, 403 until next month), so
   concurrent first requests can never overshoot a budget;
5. the model's answer settles the reservation with its real usage; the completion is
   redacted (or withheld for a blocked term) before the caller sees it.

Every answer, refused or not, is traced to the tenant's own log: its trace id (also the
``x-trace-id`` header, what feedback names), deployment, prompt version, latency, usage,
cost, and the payload as the model saw it and as the caller got it, PII redacted.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from genai.gate import ChatModel, content_of
from genai.guardrails import Guardrails, count_tokens
from genai.prompts import render
from genai.rollout import CHAMPION_SLOT, Outcome, PromptRollouts
from genai.tokens import TokenLedger
from tenancy.errors import (
    InvalidInputError,
    MlopsError,
    ModelFailedError,
    NotFoundError,
    http_status_for,
)
from tenancy.spec import GenAISpec, PlatformSpec


class TraceSink(Protocol):
    """Where a tenant's traces go (one log per tenant)."""

    def write(self, tenant: str, record: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class ChatAnswer:
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class _Request:
    messages: list[dict[str, str]]
    max_tokens: int | None
    prompt: str | None
    variables: dict[str, str]
    caller: str


def guardrails_of(genai: GenAISpec) -> Guardrails:
    rails = genai.guardrails
    return Guardrails(rails.redact_pii, rails.blocked_terms, rails.max_tokens)


def _parse(body: bytes) -> _Request:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInputError("the body is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidInputError("the body must be a JSON object")
    prompt = document.get("prompt")
    messages = document.get("messages", [])
    if prompt is None and not messages:
        raise InvalidInputError("send messages, or a prompt of your registry with its variables")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidInputError("prompt must be a prompt's name")
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
    ):
        raise InvalidInputError("messages must be a list of {role, content} objects")
    variables = document.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise InvalidInputError("variables must map names to text")
    asked = document.get("max_tokens")
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int)):
        raise InvalidInputError("max_tokens must be a whole number")
    caller = document.get("user", "")
    return _Request(
        [{"role": str(m.get("role", "user")), "content": m["content"]} for m in messages],
        asked,
        prompt,
        {str(k): v for k, v in variables.items()},
        caller if isinstance(caller, str) else "",
    )


#: Statuses that count as the version failing: the model failed, timed out, or we did.
_FAILED = frozenset({408, 424, 500, 502, 503, 504})


class ChatService:
    def __init__(
        self,
        spec: PlatformSpec,
        ledger: TokenLedger,
        model: ChatModel,
        traces: TraceSink,
        *,
        prompts: PromptRollouts | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.spec = spec
        self.ledger = ledger
        self.model = model
        self.traces = traces
        self.prompts = prompts
        self.clock = clock
        self._spend: dict[tuple[str, str], float] = {}  # (tenant, "YYYY-MM") -> USD
        self._spend_lock = threading.Lock()

    def usage(self, tenant: str) -> dict[str, Any]:
        """The tenant's tokens this minute and month against its limits, and its spend
        this month in USD (at its deployments' prices)."""
        genai = self._genai(tenant)
        month = self.clock().strftime("%Y-%m")
        with self._spend_lock:
            spend = self._spend.get((tenant, month), 0.0)
        return {
            "tokens": self.ledger.spent(tenant),
            "limits": {"minute": genai.tokens_per_minute, "month": genai.tokens_per_month},
            "usd_this_month": round(spend, 6),
        }

    def complete(self, tenant: str, deployment: str, body: bytes) -> ChatAnswer:
        """The answer to one request of ``tenant``; never raises for a bad request."""
        started = time.perf_counter()
        trace: dict[str, Any] = {
            "trace_id": uuid.uuid4().hex,
            "time": self.clock().isoformat(),
            "tenant": tenant,
            "deployment": deployment,
        }
        try:
            answer = self._complete(tenant, deployment, body, trace)
        except MlopsError as refused:
            answer = ChatAnswer(http_status_for(refused), {"error": refused.to_dict()}, {})
            retry = refused.details.get("retry_after_seconds")
            if retry is not None:
                answer = ChatAnswer(
                    answer.status, answer.body, {"Retry-After": str(max(1, round(retry)))}
                )
        trace["status"] = answer.status
        trace["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        self._record_prompt(trace)
        self.traces.write(tenant, trace)
        return ChatAnswer(
            answer.status, answer.body, {**answer.headers, "x-trace-id": trace["trace_id"]}
        )

    def _complete(
        self, tenant: str, deployment: str, body: bytes, trace: dict[str, Any]
    ) -> ChatAnswer:
        genai = self._genai(tenant)
        model = genai.model(deployment)
        rails = guardrails_of(genai)
        request = _parse(body)
        max_tokens = rails.max_tokens_for(request.max_tokens)
        messages = self._messages(tenant, deployment, request, trace)
        guarded = [{**m, "content": rails.prompt(m["content"])} for m in messages]
        trace["request"] = guarded  # as the model sees it: PII redacted
        worst_case = sum(count_tokens(m["content"]) for m in guarded) + max_tokens
        reservation = self.ledger.reserve(tenant, worst_case)
        try:
            completion = self.model(tenant, deployment, guarded, max_tokens)
            content = content_of(completion)
            usage = completion.get("usage", {})
            prompt_tokens = int(usage.get("prompt_tokens", 0))
            completion_tokens = int(usage.get("completion_tokens", 0))
        except MlopsError:
            self.ledger.settle(reservation, 0)
            raise
        except Exception as failed:  # the model's failure is the tenant's 502, not ours
            self.ledger.settle(reservation, 0)
            raise ModelFailedError(f"deployment {deployment} failed: {failed}") from None
        self.ledger.settle(reservation, prompt_tokens + completion_tokens)
        shown, withheld = rails.completion(content)
        cost = model.cost(prompt_tokens, completion_tokens)
        with self._spend_lock:
            key = (tenant, self.clock().strftime("%Y-%m"))
            self._spend[key] = self._spend.get(key, 0.0) + cost
        trace.update(
            response=shown,
            withheld=withheld,
            usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            cost_usd=round(cost, 8),
        )
        answer = dict(completion)
        answer["choices"] = [
            {**completion["choices"][0], "message": {"role": "assistant", "content": shown}}
        ]
        headers = {}
        if "prompt_version" in trace:
            headers["x-prompt-version"] = f"{trace['prompt']}/{trace['prompt_version']}"
        return ChatAnswer(200, answer, headers)

    def _genai(self, tenant: str) -> GenAISpec:
        genai = self.spec.tenant(tenant).genai
        if genai is None:
            raise NotFoundError(f"tenant {tenant} has no generative AI enabled")
        return genai

    def _messages(
        self, tenant: str, deployment: str, request: _Request, trace: dict[str, Any]
    ) -> list[dict[str, str]]:
        if request.prompt is None:
            return request.messages
        if self.prompts is None:
            raise NotFoundError("this gateway serves no prompts")
        version, slot = self.prompts.choose(tenant, request.prompt, request.caller)
        if version.lineage.model != deployment:
            raise InvalidInputError(
                f"prompt {version.ref} is written for deployment {version.lineage.model!r}, "
                f"not {deployment!r}"
            )
        trace.update(prompt=version.name, prompt_version=version.version, slot=slot)
        return [*request.messages, {"role": "user", "content": render(version, request.variables)}]

    def _record_prompt(self, trace: Mapping[str, Any]) -> None:
        """A prompt answer counts in its version's rollout (judge, tokens, cost, errors)."""
        if self.prompts is None or "prompt" not in trace or trace.get("slot") == CHAMPION_SLOT:
            return
        usage = trace.get("usage", {})
        question = next(
            (m["content"] for m in reversed(trace.get("request", [])) if m["role"] == "user"),
            "",
        )
        self.prompts.record(
            str(trace["tenant"]),
            str(trace["prompt"]),
            str(trace["slot"]),
            Outcome(
                trace_id=str(trace["trace_id"]),
                latency_ms=float(trace["latency_ms"]),
                tokens=int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)),
                cost_usd=float(trace.get("cost_usd", 0.0)),
                # The version's own failures (a refusal of the request is not one).
                error=int(trace["status"]) in _FAILED,
                question=question,
                answer=str(trace.get("response", "")),
            ),
        )

    def feedback(self, tenant: str, body: bytes) -> ChatAnswer:
        """``{"trace_id": ..., "positive": true|false}`` on one of the tenant's answers."""
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            document = None
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("trace_id"), str)
            or not isinstance(document.get("positive"), bool)
        ):
            refused = InvalidInputError('send {"trace_id": "...", "positive": true or false}')
            return ChatAnswer(400, {"error": refused.to_dict()}, {})
        counted = self.prompts is not None and self.prompts.feedback(
            tenant, document["trace_id"], document["positive"]
        )
        self.traces.write(
            tenant,
            {
                "feedback_for": document["trace_id"],
                "positive": document["positive"],
                "time": self.clock().isoformat(),
                "tenant": tenant,
            },
        )
        return ChatAnswer(200, {"accepted": True, "counted_in_rollout": counted}, {})
