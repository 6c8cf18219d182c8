"""Token limits hold under concurrency: a request reserves its worst case before the call,
so fifty first requests at once cannot overshoot a budget of a few."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from genai.tokens import TokenLedger, TokenLimits
from tenancy.errors import BudgetExceededError, InvalidInputError, RateLimitedError

START = datetime(2026, 12, 5, 21, 30, 10, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _race(ledger: TokenLedger, tenant: str, tokens: int, callers: int) -> list[object]:
    """``callers`` first requests released at the same moment; what each got."""
    barrier = threading.Barrier(callers)
    outcomes: list[object] = [None] * callers

    def call(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = ledger.reserve(tenant, tokens)
        except (BudgetExceededError, RateLimitedError) as refused:
            outcomes[index] = refused

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_fifty_concurrent_first_requests_never_overshoot_the_monthly_budget() -> None:
    ledger = TokenLedger({"contoso": TokenLimits(per_minute=100_000, per_month=500)}, Clock())
    outcomes = _race(ledger, "contoso", 100, 50)
    admitted = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert (len(admitted), len(refused)) == (5, 45)
    assert ledger.spent("contoso")["month"] == 500  # exactly the budget, never more
    assert refused[0].details["until"] == "2027-01-01"


def test_fifty_concurrent_requests_never_overshoot_the_minute() -> None:
    ledger = TokenLedger({"contoso": TokenLimits(per_minute=300, per_month=10_000)}, Clock())
    outcomes = _race(ledger, "contoso", 100, 50)
    limited = [o for o in outcomes if isinstance(o, RateLimitedError)]
    assert len(limited) == 47 and ledger.spent("contoso")["minute"] == 300
    assert limited[0].retry_after_seconds == pytest.approx(50)  # to 21:31:00


def test_usage_settles_the_reservation_and_windows_renew() -> None:
    clock = Clock()
    ledger = TokenLedger({"contoso": TokenLimits(per_minute=300, per_month=1_000)}, clock)
    reserved = ledger.reserve("contoso", 300)  # prompt and max_tokens: the worst case
    with pytest.raises(RateLimitedError):
        ledger.reserve("contoso", 1)
    ledger.settle(reserved, 120)  # it used 120: 180 come back to the minute and the month
    assert ledger.spent("contoso") == {"minute": 120, "month": 120}
    ledger.reserve("contoso", 180)
    clock.now += timedelta(seconds=60)  # the next minute
    assert ledger.spent("contoso") == {"minute": 0, "month": 300}
    over = ledger.reserve("contoso", 300)
    ledger.settle(over, 400)  # a call that used more than reserved is charged for it
    assert ledger.spent("contoso")["month"] == 700
    with pytest.raises(BudgetExceededError):
        ledger.reserve("contoso", 301)
    clock.now = datetime(2027, 1, 1, tzinfo=UTC)  # a new month
    assert ledger.spent("contoso") == {"minute": 0, "month": 0}
    ledger.reserve("contoso", 300)


def test_a_refusal_takes_nothing_and_names_the_problem() -> None:
    ledger = TokenLedger({"contoso": TokenLimits(per_minute=1_000, per_month=1_000)}, Clock())
    ledger.reserve("contoso", 900)
    with pytest.raises(BudgetExceededError) as refused:
        ledger.reserve("contoso", 200)
    assert "has 100 left, less than this request's 200" in refused.value.message
    assert ledger.spent("contoso")["month"] == 900
    with pytest.raises(InvalidInputError, match="no generative AI enabled"):
        ledger.reserve("adatum", 1)
    with pytest.raises(InvalidInputError, match="at least one token"):
        ledger.reserve("contoso", 0)


def test_a_restored_month_is_not_spent_again() -> None:
    clock = Clock()
    before = TokenLedger({"contoso": TokenLimits(1_000, 1_000)}, clock)
    before.settle(before.reserve("contoso", 900), 900)
    after = TokenLedger({"contoso": TokenLimits(1_000, 1_000)}, clock)
    after.restore(before.months())
    assert after.spent("contoso")["month"] == 900
    with pytest.raises(BudgetExceededError, match="has 100 left"):
        after.reserve("contoso", 101)
    # Restoring never lowers what is counted already.
    after.restore({"contoso": {"2026-12": 10}})
    assert after.spent("contoso")["month"] == 900
    with pytest.raises(InvalidInputError, match="tokens of contoso in 2026-12"):
        after.restore({"contoso": {"2026-12": -5}})
