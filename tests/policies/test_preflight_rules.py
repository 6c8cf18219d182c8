"""The preflight rules, each with a compliant and a violating fixture (the review's findings
that mocks let through)."""

from __future__ import annotations

from typing import Any

from policies.catalogue import BY_NAME
from policies.core import Props, Resource, run_resource_rule
from tests.policies.conftest import settings_for

BUDGET = "azure-native:consumption:Budget"
PIM = "azure-native:authorization:PimRoleEligibilitySchedule"
TODAY = "2026-12-03"


def budget(start: str, grain: str = "Monthly", ignored: frozenset[str] = frozenset()) -> Resource:
    props = {"timeGrain": grain, "timePeriod": {"startDate": start}}
    return Resource(BUDGET, "urn:budget", "budget", Props(props), ignored=ignored)


def time_bound(resource: Resource, **given: Any) -> list[str]:
    rule = BY_NAME["time-bound-inputs"]
    settings = settings_for("time-bound-inputs", asOf=TODAY, **given)
    return [f.message for f in run_resource_rule(rule, resource, settings)]


def test_a_budget_starting_this_month_is_accepted() -> None:
    assert time_bound(budget("2026-12-01T00:00:00Z")) == []
    assert time_bound(budget("2027-06-01T00:00:00Z")) == []  # within twelve months


def test_the_reviews_fixed_start_date_is_refused_after_its_month() -> None:
    """D2: 2026-01-01 with a monthly grain is valid only in January 2026."""
    [message] = time_bound(budget("2026-01-01T00:00:00Z"))
    assert "lies before the current monthly period of 2026-12-03" in message


def test_the_grain_decides_how_far_back_a_start_may_lie() -> None:
    assert time_bound(budget("2026-10-01T00:00:00Z", "Quarterly")) == []
    assert time_bound(budget("2026-09-01T00:00:00Z", "Quarterly")) != []
    assert time_bound(budget("2026-01-01T00:00:00Z", "Annually")) == []


def test_a_start_kept_from_the_state_is_the_creation_date_azure_holds() -> None:
    kept = budget("2026-01-01T00:00:00Z", ignored=frozenset({"timePeriod"}))
    assert time_bound(kept) == []


def test_every_other_budget_date_rule_is_named() -> None:
    [message] = time_bound(budget("2026-12-15T00:00:00Z"))
    assert "not the first of a month" in message
    [message] = time_bound(budget("2028-01-01T00:00:00Z"))
    assert "more than twelve months" in message
    [message] = time_bound(budget("2017-01-01T00:00:00Z", "Annually", frozenset({"timePeriod"})))
    assert "before 2017-06-01" in message


def eligibility(expiration: dict[str, Any]) -> Resource:
    props = {"scheduleInfo": {"startDateTime": "2026-11-01T00:00:00Z", "expiration": expiration}}
    return Resource(PIM, "urn:pim", "pim", Props(props))


def test_role_eligibility_must_not_have_ended() -> None:
    assert time_bound(eligibility({"type": "NoExpiration"})) == []
    assert time_bound(eligibility({"type": "AfterDuration", "duration": "P180D"})) == []
    ended = eligibility({"type": "AfterDateTime", "endDateTime": "2026-06-30T00:00:00Z"})
    assert time_bound(ended) == ["eligibility ends on 2026-06-30, not after 2026-12-03"]
    assert time_bound(eligibility({"type": "AfterDuration", "duration": "P"})) != []
