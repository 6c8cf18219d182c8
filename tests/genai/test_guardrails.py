"""Guardrails on a tenant's LLM calls: PII redacted, blocked terms refused or withheld,
completions capped."""

from __future__ import annotations

import pytest

from genai.guardrails import Guardrails, count_tokens, redact
from tenancy.errors import InvalidInputError, PolicyViolationError

RAILS = Guardrails(redact_pii=True, blocked_terms=["wire transfer", "password"], max_tokens=256)


def test_pii_is_redacted_by_kind_and_look_alikes_are_left() -> None:
    text = (
        "Mail ana.silva@contoso.example or call +44 20 7946 0958. Card 4111 1111 1111 1111, "
        "IBAN GB82 WEST 1234 5698 7654 32, SSN 123-45-6789. Order 1234567890123 ships today."
    )
    cleaned, found = redact(text)
    assert "ana.silva" not in cleaned and "4111" not in cleaned and "123-45-6789" not in cleaned
    assert "GB82" not in cleaned and "7946" not in cleaned
    assert found == {"EMAIL": 1, "PHONE": 1, "CARD": 1, "IBAN": 1, "SSN": 1}
    assert "Order 1234567890123 ships" in cleaned  # 13 digits that fail the Luhn check
    assert redact("Shipped 2026-12-05, ref 12 34 56.")[1] == {}  # a date, a short reference


def test_a_blocked_term_refuses_the_prompt_and_withholds_the_completion() -> None:
    with pytest.raises(PolicyViolationError) as refused:
        RAILS.prompt("Please make a Wire Transfer to this account")
    assert refused.value.details == {"blocked_terms": ["wire transfer"]}
    assert RAILS.prompt("a passwordless login, mail me at a@b.example") == (
        "a passwordless login, mail me at [EMAIL]"  # whole words only
    )
    withheld, was = RAILS.completion("Your password is hunter2")
    assert was and "hunter2" not in withheld
    assert RAILS.completion("Call 555-867-5309 today") == ("Call [PHONE] today", False)


def test_completions_are_capped_at_the_tenants_max_tokens() -> None:
    assert RAILS.max_tokens_for(None) == 256 and RAILS.max_tokens_for(100) == 100
    with pytest.raises(InvalidInputError, match="max_tokens 300 is above this tenant's limit"):
        RAILS.max_tokens_for(300)
    with pytest.raises(InvalidInputError, match="at least 1"):
        RAILS.max_tokens_for(0)
    assert count_tokens("Paris, France!") == 4  # two words, a comma, a bang
