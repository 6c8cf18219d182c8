"""The embedded platform's stand-in chat model: deterministic answers in the chat
completions shape, instructions followed, usage counted, completions cut at max_tokens."""

from __future__ import annotations

import json

import pytest

from genai.guardrails import count_tokens
from genai.standin import complete
from tenancy.errors import InvalidInputError


def _content(answer: dict[str, object]) -> str:
    return str(answer["choices"][0]["message"]["content"])  # type: ignore[index]


def test_it_answers_deterministically_and_follows_the_prompts_instructions() -> None:
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    assert _content(complete(ask, 64)) == "The capital of France is Paris."
    assert complete(ask, 64) == complete(ask, 64)
    terse = [{"role": "system", "content": "Answer in one word."}, *ask]
    assert _content(complete(terse, 64)) == "Paris"
    typed = [{"role": "system", "content": "Reply in JSON."}, *ask]
    assert json.loads(_content(complete(typed, 64))) == {"country": "France", "capital": "Paris"}
    unknown = [{"role": "user", "content": "Who won in 1954?"}]
    assert _content(complete(unknown, 64)).startswith("I cannot answer")


def test_usage_is_the_shared_token_count_and_max_tokens_cuts() -> None:
    ask = [{"role": "user", "content": "What is the capital of Spain?"}]
    answer = complete(ask, 3)
    assert _content(answer) == "The capital of"
    assert answer["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
    usage = answer["usage"]
    assert usage == {"prompt_tokens": count_tokens(ask[0]["content"]), "completion_tokens": 3,
                     "total_tokens": count_tokens(ask[0]["content"]) + 3}  # fmt: skip


def test_malformed_messages_are_named() -> None:
    with pytest.raises(InvalidInputError, match="at least one message"):
        complete([], 10)
    with pytest.raises(InvalidInputError, match=r"messages\[0\].role"):
        complete([{"role": "tool", "content": "x"}], 10)
    with pytest.raises(InvalidInputError, match="needs a user message"):
        complete([{"role": "system", "content": "be brief"}], 10)
