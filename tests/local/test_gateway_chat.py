"""Chat completions through the embedded gateway over HTTP (``POST /genai/{deployment}/chat/
completions``): the key decides the tenant, its payload limit and budget stop hold, and 50
concurrent first requests at a budget of three requests get exactly three answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from automation.store import MemoryStore
from genai.chat import ChatService
from genai.guardrails import count_tokens
from genai.tokens import TokenLedger, TokenLimits
from local.gateway import Gateway, TenantLimits
from local.keys import KeyRing
from local.serve import BackgroundServer
from tests.genai.conftest import MemoryTraces, genai_spec, standin

QUESTION = "In one word: the capital of Japan?"
#: max_tokens 1: the one-word answer uses all of it, so an answer costs its whole
#: reservation and the budget below holds exactly three.
WORST = count_tokens(QUESTION) + 1
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def served() -> Iterator[tuple[str, dict[str, str], Gateway, MemoryTraces]]:
    ring = KeyRing(MemoryStore())
    keys = {t: ring.issue(t)["primary"] for t in ("contoso", "fabrikam", "adatum")}
    limits = {t: TenantLimits(rate_per_minute=600_000, max_payload_bytes=2048) for t in keys}
    ledger = TokenLedger(
        {"contoso": TokenLimits(3 * WORST, 3 * WORST), "fabrikam": TokenLimits(10**5, 10**6)},
        clock=lambda: NOW,
    )
    traces = MemoryTraces()
    chat = ChatService(genai_spec(), ledger, standin(), traces, clock=lambda: NOW)
    gateway = Gateway(ring, limits, "admin-token", chat=chat)
    server = BackgroundServer(gateway.app).start()
    try:
        yield server.url, keys, gateway, traces
    finally:
        server.stop()


def _ask(url: str, key: str, deployment: str = "chat", **body: Any) -> requests.Response:
    document = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 1, **body}
    return requests.post(
        f"{url}/genai/{deployment}/chat/completions",
        json=document,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_fifty_concurrent_first_requests_at_a_budget_of_three_get_three_answers(
    served: tuple[str, dict[str, str], Gateway, MemoryTraces],
) -> None:
    url, keys, _, traces = served
    start = threading.Barrier(50)

    def first_request(_: int) -> int:
        start.wait()
        return _ask(url, keys["contoso"]).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(first_request, range(50)))
    assert statuses.count(200) == 3
    assert statuses.count(200) + statuses.count(403) + statuses.count(429) == 50
    answered = [t for t in traces.of("contoso") if t["status"] == 200]
    used = sum(t["usage"]["prompt_tokens"] + t["usage"]["completion_tokens"] for t in answered)
    assert used == 3 * WORST  # the budget, to the token, and not one more


def test_the_key_decides_the_tenant_and_the_answer_is_openais(
    served: tuple[str, dict[str, str], Gateway, MemoryTraces],
) -> None:
    url, keys, _, traces = served
    answer = _ask(url, keys["fabrikam"], max_tokens=8)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "Tokyo"
    assert answer.headers["x-trace-id"] == traces.of("fabrikam")[0]["trace_id"]
    assert traces.of("contoso") == []  # fabrikam's answer is in fabrikam's log only
    # API Management's header works as well as OpenAI's.
    by_header = requests.post(
        f"{url}/genai/chat/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}]},
        headers={"api-key": keys["fabrikam"]},
        timeout=30,
    )
    assert by_header.status_code == 200
    assert _ask(url, "not-a-key").status_code == 401
    assert _ask(url, keys["adatum"]).status_code == 404  # adatum has no generative AI
    assert _ask(url, keys["fabrikam"], deployment="gpt-5").status_code == 404
    too_big = _ask(url, keys["fabrikam"], padding="x" * 4096)
    assert too_big.status_code == 413


def test_a_tenant_whose_budget_is_stopped_gets_no_chat(
    served: tuple[str, dict[str, str], Gateway, MemoryTraces],
) -> None:
    url, keys, gateway, _ = served
    gateway.budget_stops["fabrikam"] = (gateway.clock() + 3600, "2027-01-01")
    refused = _ask(url, keys["fabrikam"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "budget_exceeded"
