"""Bad and repeated deliveries to the Function App's triggers (real azure.functions objects):
poison is recorded and never raised (a raise is what makes Event Grid retry), nothing is
half-applied, and a repeated alert acts once."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from blueprints import budgets, registry
from services import Services

from tenancy import contracts
from tests.automation.test_budgets import common_schema
from tests.functions.test_triggers import _action_group, _event, _webhook

MALFORMED_DATA: list[Any] = [
    None,
    [],
    "modelName=contoso-classical",
    {"modelName": "contoso-classical"},
    {"modelName": "contoso-classical", "modelVersion": "two"},
    {"modelName": "contoso-classical", "modelVersion": True},
    {"modelName": 7.5, "modelVersion": "2"},
    {"modelName": "contoso-classical", "modelVersion": "2", "modelTags": ["tenant"]},
    # Oversized: a 900 kB name (Event Grid allows events up to 1 MB), a flood of tags, a
    # version longer than any number of versions.
    {"modelName": "c" * 900_000, "modelVersion": "2"},
    {
        "modelName": "contoso-classical",
        "modelVersion": "2",
        "modelTags": {f"t{i}": "x" for i in range(10_000)},
    },
    {
        "modelName": "contoso-classical",
        "modelVersion": "2",
        "modelTags": {"tenant": "contoso", "blob": "x" * 500_000},
    },
    {"modelName": "contoso-classical", "modelVersion": "9" * 5_000},
]


def _state(wired: Services) -> dict[str, list[Any]]:
    store = wired.store
    return {table: store.query(table) for table in contracts.PLATFORM_TABLES}


@pytest.mark.parametrize("data", MALFORMED_DATA, ids=range(len(MALFORMED_DATA)))
def test_a_malformed_or_oversized_event_is_poison_not_a_retry(
    wired: Services,
    data: Any,
) -> None:
    handler = registry.on_model_registered.build().get_user_function()
    for _ in range(3):  # redelivered: still one poison record, never an exception
        assert handler(_event("e-poison", "2", data=data if data is not None else 0)) is None
    state = _state(wired)
    refused = [r for r in state[contracts.TABLE_EVENTS] if r.partition == "refused-eventgrid"]
    assert len(refused) == 1 and refused[0].row == "e-poison"
    reason = refused[0].data["reason"]
    assert reason and len(reason) < 200  # names the problem, never echoes the payload
    # Nothing else was written and nothing was asked of the platform.
    assert len(state[contracts.TABLE_EVENTS]) == 1
    assert state[contracts.TABLE_ROLLOUTS] == [] and state[contracts.TABLE_AUDIT] == []
    assert wired.port.calls == []  # type: ignore[attr-defined]


def test_an_oversized_webhook_is_refused_before_its_signature(wired: Services) -> None:
    handler = registry.mlflow_registry_webhook.build().get_user_function()
    body = json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "data": {"name": "contoso-classical", "version": "2", "tags": {"blob": "x" * 400_000}},
        }
    ).encode()
    answer = handler(_webhook(body))
    assert answer.status_code == 413
    assert "above" in json.loads(answer.get_body())["error"]["message"]
    refused = wired.store.query(contracts.TABLE_EVENTS, "refused-mlflow")
    assert len(refused) == 1
    assert wired.store.query(contracts.TABLE_ROLLOUTS) == []


def test_a_budget_alert_delivered_three_times_acts_once(wired: Services) -> None:
    handler = budgets.on_budget_alert.build().get_user_function()
    body = json.dumps(common_schema("budget-tenant-contoso-budget", 1100, 1000, 1000)).encode()
    signed = {"x-ms-client-principal": _action_group()}
    statuses, notified = [], []
    for _ in range(3):
        answer = handler(
            func.HttpRequest(
                method="POST",
                url="http://localhost/api/alerts/budget",
                headers=signed,
                body=body,
            )
        )
        assert answer.status_code == 200
        statuses.append(json.loads(answer.get_body())["status"])
        notified.append(list(wired.port.notifications))  # type: ignore[attr-defined]
    assert statuses == ["stopped", "duplicate", "duplicate"]
    assert wired.port.scaled == {"contoso": 0}  # type: ignore[attr-defined]
    # The first delivery told the owners (spent, then stopped); the repeats told no one.
    assert [severity for _, severity, _ in notified[0]] == ["warning", "critical"]
    assert notified[0] == notified[1] == notified[2]
    assert [call for call in wired.port.calls if call[0] != "create"] == []  # type: ignore[attr-defined]
