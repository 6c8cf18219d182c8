"""Notifications reach people on Azure (X6): log search alert rules over the Function App's
traces, one per severity, e-mailing the stack's contacts through the operations action
group; and the lines the Azure adapter logs are the lines the rules parse."""

from __future__ import annotations

import logging
import re

import pytest

from adapters.azure import AzurePlatform
from infra.alerting import notification_query
from infra.offline import OfflineRun
from tenancy import PlatformSpec, contracts
from tests.adapters.fake_arm import FakeCredential
from tests.conftest import STACKS
from tests.infra.conftest import of_type


def _kql_parse(query: str) -> re.Pattern[str]:
    """The query's ``parse message with "lit" col "lit" col ...`` as a regular expression
    (KQL's parse: literals in order, each column the text up to the next literal)."""
    found = re.search(r"\| parse message with (.+)", query)
    assert found, query
    parts = re.findall(r'"([^"]*)"|(\w+)', found[1])
    pattern = "".join(re.escape(lit) if lit else f"(?P<{col}>.*?)" for lit, col in parts)
    return re.compile(pattern.removesuffix("(?P<text>.*?)") + "(?P<text>.*)$")


@pytest.mark.parametrize("stack", STACKS)
def test_each_severity_has_a_log_alert_to_the_contacts(
    planned: dict[str, OfflineRun], stack: str
) -> None:
    run = planned[stack]
    rules = of_type(run, "monitor:ScheduledQueryRule")
    groups = {g.urn: g for g in of_type(run, "monitor:ActionGroup")}
    operations = next(
        g for g in groups.values() if g.inputs["actionGroupName"].startswith("ag-ops-")
    )
    assert len(rules) == len(contracts.NOTIFICATION_SEVERITIES)
    for rule in rules:
        inputs = rule.inputs
        assert inputs["kind"] == "LogAlert", rule.urn
        [condition] = inputs["criteria"]["allOf"]
        assert condition["query"].startswith("traces\n"), rule.urn
        assert {d["name"] for d in condition["dimensions"]} == {"tenant", "text"}, rule.urn
        assert (condition["operator"], condition["threshold"]) == ("GreaterThan", 0), rule.urn
        assert inputs["windowSize"] == inputs["evaluationFrequency"] == "PT5M", rule.urn
        # The rule's action is the group holding the stack's alert contacts.
        assert len(inputs["actions"]["actionGroups"]) == 1, rule.urn
        assert operations.inputs["emailReceivers"], operations.urn
    assert sorted(r.inputs["severity"] for r in rules) == [1, 2, 3]


def test_the_adapters_notifications_are_the_lines_the_rules_parse(
    specs: dict[str, PlatformSpec], caplog: pytest.LogCaptureFixture
) -> None:
    platform = AzurePlatform(specs["prod"], FakeCredential(), "sub")  # type: ignore[arg-type]
    message = "rollout of contoso-classical/7 rolled back:\nanalysis failed 2 time(s)"
    with caplog.at_level(logging.WARNING, logger="tenant_mlops.azure"):
        platform.notify("contoso", "critical", message)
    [line] = [r.getMessage() for r in caplog.records]
    critical = notification_query("critical")
    assert line.startswith(re.search(r'startswith "([^"]+)"', critical)[1])  # type: ignore[index]
    parsed = _kql_parse(critical).match(line)
    assert parsed, line
    assert parsed["severity"] == "critical" and parsed["tenant"] == "contoso"
    assert parsed["text"] == "rollout of contoso-classical/7 rolled back: analysis failed 2 time(s)"
    # Another severity's rule does not pick it up.
    assert not line.startswith(re.search(r'startswith "([^"]+)"', notification_query("info"))[1])  # type: ignore[index]
