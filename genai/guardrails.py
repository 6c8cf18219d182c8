"""A tenant's guardrails on every LLM call (``tenants[].genai.guardrails``), applied by the
gateway before the call and to what comes back:

- PII is redacted from prompts, completions and what is logged: e-mail addresses, card
  numbers (13 to 19 digits that pass the Luhn check, so an order number is left alone),
  IBANs, phone numbers and US social security numbers, each replaced by ``[<KIND>]``;
- a blocked term in a prompt refuses the request (422, naming the term), and one in a
  completion withholds it;
- ``max_tokens`` caps a completion: a request asking for more is refused, one asking for
  none gets the cap.

Tokens are counted the same way everywhere a limit applies (:func:`count_tokens`): words,
numbers and each punctuation mark, a stand-in for the model's tokenizer that never counts
fewer tokens than a word-level tokenizer would.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tenancy.errors import InvalidInputError, PolicyViolationError

_TOKEN = re.compile(r"\w+|[^\w\s]")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
#: Digit groups joined by spaces, dots or dashes (an optional +country prefix); between 9
#: and 15 digits in all (E.164's maximum), so a date or a bare order number is left alone.
_PHONE = re.compile(r"(?<!\w)(?:\+\d{1,3}[ .-]?)?\(?\d{2,4}\)?(?:[ .-]\d{2,4}){2,4}(?!\w)")


def tokens_of(text: str) -> list[re.Match[str]]:
    """The text's tokens, where each is (words, numbers, each punctuation mark)."""
    return list(_TOKEN.finditer(text))


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _luhn(digits: str) -> bool:
    total, double = 0, False
    for char in reversed(digits):
        value = int(char) * (2 if double else 1)
        total += value - 9 if value > 9 else value
        double = not double
    return total % 10 == 0


def redact(text: str) -> tuple[str, dict[str, int]]:
    """The text with PII replaced, and how many of each kind were."""
    found: dict[str, int] = {}

    def replace(kind: str) -> Callable[[re.Match[str]], str]:
        def substitute(match: re.Match[str]) -> str:
            digits = re.sub(r"\D", "", match.group())
            if kind == "CARD" and not _luhn(digits):
                return match.group()
            if kind == "PHONE" and not 9 <= len(digits) <= 15:
                return match.group()
            found[kind] = found.get(kind, 0) + 1
            return f"[{kind}]"

        return substitute

    for kind, pattern in (("EMAIL", _EMAIL), ("IBAN", _IBAN), ("CARD", _CARD), ("SSN", _SSN),
                          ("PHONE", _PHONE)):  # fmt: skip
        text = pattern.sub(replace(kind), text)
    return text, found


@dataclass(frozen=True)
class Guardrails:
    redact_pii: bool
    blocked_terms: Sequence[str]
    max_tokens: int

    def _blocked_in(self, text: str) -> list[str]:
        lowered = text.casefold()
        return [
            term
            for term in self.blocked_terms
            if re.search(rf"(?<!\w){re.escape(term.casefold())}(?!\w)", lowered)
        ]

    def prompt(self, text: str) -> str:
        """A prompt as it may go to the model: refused if it holds a blocked term, PII
        redacted."""
        blocked = self._blocked_in(text)
        if blocked:
            raise PolicyViolationError(
                f"the prompt holds a blocked term: {', '.join(blocked)}",
                details={"blocked_terms": blocked},
            )
        return redact(text)[0] if self.redact_pii else text

    def completion(self, text: str) -> tuple[str, bool]:
        """A completion as the caller may see it, and whether it was withheld."""
        if self._blocked_in(text):
            return "[withheld: the completion held a blocked term]", True
        return (redact(text)[0] if self.redact_pii else text), False

    def max_tokens_for(self, asked: int | None) -> int:
        if asked is None:
            return self.max_tokens
        if asked < 1:
            raise InvalidInputError("max_tokens must be at least 1")
        if asked > self.max_tokens:
            raise InvalidInputError(
                f"max_tokens {asked} is above this tenant's limit of {self.max_tokens}"
            )
        return asked
