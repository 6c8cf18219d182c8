"""The embedded platform's stand-in for a chat model: written here, no weights, deterministic,
so that a test can assert on what it answers. It answers in the OpenAI chat completions
shape (``choices[0].message.content``, ``usage``), as the tenant's deployment does on Azure.

It knows a few facts (capitals) and how to follow two instructions a prompt version may
give ("one word", "JSON"); anything else it answers by restating the question. Its usage is
the shared token count (genai.guardrails.count_tokens) of the prompt and of the answer,
cut at ``max_tokens``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from genai.guardrails import count_tokens, tokens_of
from tenancy.errors import InvalidInputError

CAPITALS = {
    "france": "Paris",
    "germany": "Berlin",
    "italy": "Rome",
    "spain": "Madrid",
    "portugal": "Lisbon",
    "japan": "Tokyo",
}
_COUNTRY = re.compile(r"capital of (?P<country>[A-Za-z ]+?)(?:\?|\.|,|$)", re.IGNORECASE)


_JUDGE_PART = re.compile(r"^(?P<part>QUESTION|EXPECTED|ANSWER): (?P<text>.*)$", re.MULTILINE)
_WORD = re.compile(r"[^\w ]+")


def _capital_asked(question: str) -> str | None:
    found = _COUNTRY.search(question) or re.search(r"country: (?P<country>[A-Za-z ]+)", question)
    return CAPITALS.get(found["country"].strip().lower()) if found else None


def _judge(prompt: str) -> str:
    """A grade as a judge deployment gives one: 1 for the expected answer alone (the
    EXPECTED line, or the capital the question asks for), 0.5 when it is in a longer
    answer, 0 otherwise."""
    parts = {m["part"]: m["text"].strip() for m in _JUDGE_PART.finditer(prompt)}
    expected = parts.get("EXPECTED") or _capital_asked(parts.get("QUESTION", "")) or ""
    answer = _WORD.sub("", parts.get("ANSWER", "")).strip().casefold()
    if expected and answer == expected.casefold():
        return "SCORE: 1\nthe expected answer, nothing more"
    if expected and expected.casefold() in answer:
        return "SCORE: 0.5\nright, but padded"
    return f"SCORE: 0\nnot {expected or 'an answer to the question'}"


def _answer(system: str, question: str) -> str:
    if "Grade the ANSWER" in question:
        return _judge(question)
    found = _COUNTRY.search(question)
    country = found["country"].strip() if found else ""
    capital = CAPITALS.get(country.lower())
    instructions = f"{system} {question}".lower()
    if capital is None:
        return f"I cannot answer: {question.strip()}"
    if "json" in instructions:
        return json.dumps({"country": country, "capital": capital})
    if "one word" in instructions:
        return capital
    return f"The capital of {country} is {capital}."


def _cut(text: str, max_tokens: int) -> tuple[str, str]:
    """The text at most ``max_tokens`` long, and why it stopped."""
    tokens = tokens_of(text)
    if len(tokens) <= max_tokens:
        return text, "stop"
    return text[: tokens[max_tokens - 1].end()], "length"


def complete(
    messages: Sequence[Mapping[str, Any]], max_tokens: int, model: str = "standin"
) -> dict[str, Any]:
    """A chat completion for ``messages`` (system and user turns)."""
    if not messages:
        raise InvalidInputError("a chat completion needs at least one message")
    for index, message in enumerate(messages):
        if message.get("role") not in ("system", "user", "assistant"):
            raise InvalidInputError(f"messages[{index}].role must be system, user or assistant")
        if not isinstance(message.get("content"), str):
            raise InvalidInputError(f"messages[{index}].content must be a string")
    system = " ".join(str(m["content"]) for m in messages if m["role"] == "system")
    users = [str(m["content"]) for m in messages if m["role"] == "user"]
    if not users:
        raise InvalidInputError("a chat completion needs a user message")
    content, reason = _cut(_answer(system, users[-1]), max_tokens)
    prompt_tokens = sum(count_tokens(str(m["content"])) for m in messages)
    completion_tokens = count_tokens(content)
    return {
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
