"""Request ids prove for whom and when they were issued, so labels need no lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenancy.request_ids import issue, issued_at, labellable, new_key

KEY = new_key()
AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_an_id_is_labellable_by_its_tenant_within_the_horizon() -> None:
    request_id = issue(KEY, "contoso", AT)
    assert issued_at(KEY, "contoso", request_id) == AT
    assert labellable(KEY, "contoso", request_id, AT + timedelta(hours=23), DAY)
    assert not labellable(KEY, "contoso", request_id, AT + timedelta(hours=25), DAY)
    assert len({issue(KEY, "contoso", AT) for _ in range(100)}) == 100  # a nonce each


def test_an_id_of_another_tenant_is_not() -> None:
    request_id = issue(KEY, "contoso", AT)
    assert issued_at(KEY, "fabrikam", request_id) is None
    assert not labellable(KEY, "fabrikam", request_id, AT, DAY)


@pytest.mark.parametrize(
    "change",
    [
        lambda rid: rid.replace(rid.split("-")[0], "0", 1),  # its time moved
        lambda rid: rid[:-1] + ("0" if rid[-1] != "0" else "1"),  # its MAC changed
        lambda rid: "not-an-id",
        lambda rid: "",
    ],
)
def test_an_id_tampered_with_is_not(change: object) -> None:
    request_id = change(issue(KEY, "contoso", AT))  # type: ignore[operator]
    assert issued_at(KEY, "contoso", request_id) is None
    assert not labellable(KEY, "contoso", request_id, AT, DAY)


def test_an_id_made_with_another_key_is_not() -> None:
    assert issued_at(KEY, "contoso", issue(new_key(), "contoso", AT)) is None
