"""Preflight rules: what Azure would refuse although the plan is well typed.

Mocks accept any well-typed input, so `mlops plan` passed plans that `pulumi up` could not
apply (the review of 72c5684, ``../shared/reviews/azure-deployment.md``). Each rule here
stands for one class of refusal and says, beside its check, which Microsoft document states
the rule it enforces:

- ``time-bound-inputs``: budget periods and role eligibility schedules valid *now*;
- ``creation-order``: no input names a resource that is created after it;
- ``authentication-coherence``: no key-based client of an account or component whose keys
  are off;
- ``network-prerequisites``: what a private network needs before anything runs in it;
- ``identity-permissions`` (:mod:`policies.permission_rules`): every action an identity
  performs is granted by a role the plan assigns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

from policies.core import MANDATORY, Resource, Rule, Setting, Settings
from policies.resource_rules import duration_seconds

BUDGET = "azure-native:consumption:Budget"
PIM_ELIGIBILITY = "azure-native:authorization:PimRoleEligibilitySchedule"

# --- time-bound inputs ----------------------------------------------------------------------

#: Azure's BudgetTimePeriod: "The start date must be first of the month ... Budget start date
#: must be on or after June 1, 2017. Future start date should not be more than twelve months.
#: Past start date should be selected within the timegrain period."
#: https://learn.microsoft.com/rest/api/consumption/budgets/create-or-update#budgettimeperiod
EARLIEST_BUDGET_START = date(2017, 6, 1)
GRAIN_MONTHS = {"Monthly": 1, "Quarterly": 3, "Annually": 12}


def as_of(settings: Settings) -> date:
    """The day the rules judge time against: the setting, else today (UTC)."""
    given = settings.get("asOf") or ""
    return date.fromisoformat(given) if given else datetime.now(UTC).date()


def _months_between(earlier: date, later: date) -> int:
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _budget_problems(resource: Resource, today: date) -> Iterator[str]:
    props = resource.props
    raw_start = props.get("timePeriod.startDate")
    start = _timestamp(raw_start)
    if start is None:
        yield f"timePeriod.startDate {raw_start!r} is not a date"
        return
    day = start.date()
    if day.day != 1 or start.time() != datetime.min.time():
        yield f"timePeriod.startDate {raw_start} is not the first of a month at 00:00"
    if day < EARLIEST_BUDGET_START:
        yield f"timePeriod.startDate {day} is before {EARLIEST_BUDGET_START}"
    ahead = _months_between(today, day)
    if ahead > 12:
        yield f"timePeriod.startDate {day} is more than twelve months after {today}"
    grain = props.get("timeGrain") or "Monthly"
    period = GRAIN_MONTHS.get(grain, 1)
    # A start kept from the state (ignored on update) is the creation date Azure holds and
    # never changes; only a start the program sends for creation must lie in this period.
    if -ahead >= period and "timePeriod" not in resource.ignored:
        yield (
            f"timePeriod.startDate {day} lies before the current {grain.lower()} period of "
            f"{today}: Azure accepts a past start only within the time grain"
        )
    end = _timestamp(props.get("timePeriod.endDate"))
    if end is not None and end <= start:
        yield f"timePeriod.endDate {end.date()} is not after the start {day}"


def _eligibility_problems(resource: Resource, today: date) -> Iterator[str]:
    """A role eligibility schedule request must still be valid when it is made: an end in
    the past, or before the start, is refused.
    https://learn.microsoft.com/rest/api/authorization/role-eligibility-schedule-requests/create"""
    info = resource.props.get_known("scheduleInfo", {}) or {}
    start = _timestamp(info.get("startDateTime"))
    expiration = info.get("expiration") or {}
    kind = expiration.get("type")
    if kind == "AfterDateTime":
        end = _timestamp(expiration.get("endDateTime"))
        if end is None:
            yield "scheduleInfo.expiration.endDateTime is not a date"
        elif end.date() <= today:
            yield f"eligibility ends on {end.date()}, not after {today}"
        elif start is not None and end <= start:
            yield f"eligibility ends on {end.date()}, before it starts on {start.date()}"
    elif kind == "AfterDuration":
        duration = expiration.get("duration")
        if not duration_seconds(duration):
            yield f"scheduleInfo.expiration.duration {duration!r} is not a duration"


def time_bound_inputs(resource: Resource, settings: Settings) -> Iterator[str]:
    today = as_of(settings)
    if resource.type == BUDGET:
        yield from _budget_problems(resource, today)
    elif resource.type == PIM_ELIGIBILITY:
        yield from _eligibility_problems(resource, today)


AS_OF = Setting(
    "asOf",
    str,
    "the date (YYYY-MM-DD) time-bound inputs are judged at; empty: today, UTC",
    "",
)

RULES: tuple[Rule, ...] = (
    Rule(
        "time-bound-inputs",
        "Budget periods and role eligibility schedules are valid on the day they are sent.",
        "Azure refuses a budget whose start lies before the current period or more than a "
        "year ahead, and a schedule that has already ended; a fixed date in the code becomes "
        "such a refusal when the month turns.",
        MANDATORY,
        settings=(AS_OF,),
        resource_types=(BUDGET, PIM_ELIGIBILITY),
        check=time_bound_inputs,
    ),
)
