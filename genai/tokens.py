"""Token limits per tenant, enforced before the model is called: a minute's rate
(``tokens_per_minute``) and a month's budget (``tokens_per_month``).

A request reserves its worst case (its prompt's tokens plus the completion's ``max_tokens``)
against both windows at once, under one lock, before the call; the call's usage then settles
the reservation, giving back what was not used. Reserve-then-settle is what keeps a budget
from being overshot under concurrency: fifty first requests at once see one ledger, and only
those whose worst case fits are let through. (Checking the spend after the call, as a
gateway that counts usage from responses does, lets every concurrent request in while the
budget still looks unspent: LiteLLM's issue tracker reports such overshoots.)

This ledger is the embedded gateway's; on Azure, API Management's ``llm-token-limit``
policy is what holds a limit per subscription key.

Windows are calendar ones: a minute of the clock, a month of the calendar (UTC), as the
budgets of the spec are stated.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tenancy.errors import BudgetExceededError, InvalidInputError, RateLimitedError


@dataclass(frozen=True)
class TokenLimits:
    per_minute: int
    per_month: int


@dataclass(frozen=True)
class Reservation:
    tenant: str
    tokens: int
    minute: int  # the minute window it was taken from
    month: str  # "YYYY-MM"


def _month(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _next_month(moment: datetime) -> datetime:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


class TokenLedger:
    def __init__(self, limits: Mapping[str, TokenLimits], clock: Callable[[], datetime]) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._lock = threading.Lock()
        self._minute: dict[tuple[str, int], int] = {}
        self._month: dict[tuple[str, str], int] = {}

    def reserve(self, tenant: str, tokens: int) -> Reservation:
        """Take ``tokens`` from the tenant's minute and month, or refuse without taking
        anything: 429 with the seconds to the next minute, or 403 until next month."""
        limits = self._limits.get(tenant)
        if limits is None:
            raise InvalidInputError(f"tenant {tenant} has no generative AI enabled")
        if tokens < 1:
            raise InvalidInputError("a request reserves at least one token")
        now = self._clock().astimezone(UTC)
        minute, month = math.floor(now.timestamp() / 60), _month(now)
        with self._lock:
            spent_month = self._month.get((tenant, month), 0)
            if spent_month + tokens > limits.per_month:
                until = _next_month(now).date().isoformat()
                raise BudgetExceededError(
                    f"the monthly token budget of tenant {tenant} ({limits.per_month}) "
                    f"has {limits.per_month - spent_month} left, less than this request's "
                    f"{tokens}: refused until {until}",
                    details={"tenant": tenant, "until": until},
                )
            spent_minute = self._minute.get((tenant, minute), 0)
            if spent_minute + tokens > limits.per_minute:
                wait = (minute + 1) * 60 - now.timestamp()
                raise RateLimitedError(
                    f"tenant {tenant} has used {spent_minute} of its {limits.per_minute} "
                    f"tokens this minute; this request needs {tokens}",
                    retry_after_seconds=round(max(wait, 0.001), 3),
                )
            self._minute[(tenant, minute)] = spent_minute + tokens
            self._month[(tenant, month)] = spent_month + tokens
            self._forget_before(minute)
        return Reservation(tenant, tokens, minute, month)

    def settle(self, reservation: Reservation, used: int) -> None:
        """The call's actual usage: the unused part of the reservation goes back (a call
        that used more than it reserved is charged the excess, never refunded below 0)."""
        if used < 0:
            raise InvalidInputError("a call cannot use a negative number of tokens")
        change = used - reservation.tokens
        with self._lock:
            month_key = (reservation.tenant, reservation.month)
            self._month[month_key] = max(0, self._month.get(month_key, 0) + change)
            minute_key = (reservation.tenant, reservation.minute)
            if minute_key in self._minute:
                self._minute[minute_key] = max(0, self._minute[minute_key] + change)

    def spent(self, tenant: str) -> dict[str, int]:
        """This minute's and this month's tokens, reservations in flight included."""
        now = self._clock().astimezone(UTC)
        minute, month = math.floor(now.timestamp() / 60), _month(now)
        with self._lock:
            return {
                "minute": self._minute.get((tenant, minute), 0),
                "month": self._month.get((tenant, month), 0),
            }

    def months(self) -> dict[str, dict[str, int]]:
        """Every tenant's tokens per month so far (reservations in flight included): what a
        restart must not forget, or a tenant could spend its budget again."""
        with self._lock:
            found: dict[str, dict[str, int]] = {}
            for (tenant, month), spent in self._month.items():
                found.setdefault(tenant, {})[month] = spent
            return found

    def restore(self, months: Mapping[str, Mapping[str, int]]) -> None:
        """Months spent before a restart (as :meth:`months` gave them); a month already
        counted here keeps the larger of the two."""
        with self._lock:
            for tenant, spent_by_month in months.items():
                for month, spent in spent_by_month.items():
                    if not isinstance(spent, int) or spent < 0:
                        raise InvalidInputError(f"tokens of {tenant} in {month}: {spent!r}")
                    key = (tenant, month)
                    self._month[key] = max(self._month.get(key, 0), spent)

    def _forget_before(self, minute: int) -> None:
        """Past minutes are kept no longer than they matter (caller holds the lock)."""
        stale = [key for key in self._minute if key[1] < minute - 1]
        for key in stale:
            del self._minute[key]
