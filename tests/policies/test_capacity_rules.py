"""Azure's limits against a plan (policies.capacity_rules): counts per region, resource group
and endpoint, each pooled endpoint's load from its tenants' quotas, and grants that raise a
limit only when the stack says Azure granted it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies.capacity_rules import endpoint_load, limits_of, usage
from policies.catalogue import BY_NAME
from policies.core import Stack, run_stack_rule
from tenancy import parse_platform_spec
from tenancy.errors import ConfigError
from tenancy.limits import LIMITS
from tests.policies.conftest import planned_resource
from tests.tenancy.conftest import stack_document

ML = "machinelearningservices"


def _endpoints(count: int, region: str = "westeurope") -> list[Any]:
    return [
        planned_resource(
            f"{ML}:OnlineEndpoint",
            f"ep-{index}",
            {"endpointName": f"ep-{index}", "location": region},
        )
        for index in range(count)
    ]


def _messages(stack: Stack, **settings: Any) -> list[str]:
    given = {
        "limits": {k: v.default for k, v in LIMITS.items()},
        "endpointLoad": {},
        "placement": {},
        **settings,
    }
    return [f.message for f in run_stack_rule(BY_NAME["azure-limits"], stack, given)]


def test_a_region_over_its_endpoints_is_refused_naming_the_limit_and_its_document() -> None:
    assert _messages(Stack(_endpoints(50))) == []
    [message] = _messages(Stack(_endpoints(101)))
    assert message.startswith(
        "online and batch endpoints in westeurope: 101 over Azure's limit of 100 ("
    )
    assert "how-to-manage-quotas" in message and "capacity.granted.endpoints" in message
    # 101 online endpoints hold 202 deployments at their peak: within 500.
    assert not any("deployments in" in m for m in _messages(Stack(_endpoints(101))))
    # Two regions are counted apart.
    assert _messages(Stack(_endpoints(60) + _endpoints(60, "northeurope"))) == []


def test_a_granted_limit_lets_the_plan_through() -> None:
    raised = {k: v.default for k, v in LIMITS.items()} | {"endpoints": 200}
    assert _messages(Stack(_endpoints(150)), limits=raised) == []


def test_an_endpoint_is_held_to_its_tenants_declared_load() -> None:
    stack = Stack(_endpoints(1))
    load = {"ep-0": {"requests_per_second": 600.0, "connections": 40, "bandwidth_mb_per_second": 2}}
    findings = run_stack_rule(
        BY_NAME["azure-limits"],
        stack,
        {
            "limits": {k: v.default for k, v in LIMITS.items()},
            "endpointLoad": load,
            "placement": {},
        },
    )
    assert [(f.message.split(":")[0], f.urn) for f in findings] == [
        ("requests a second to an endpoint in ep-0", "urn:ep-0")
    ]


def test_workspaces_are_counted_per_resource_group() -> None:
    workspaces = [
        planned_resource(f"{ML}:Workspace", f"ws-{i}", {"resourceGroupName": "rg-one"})
        for i in range(3)
    ]
    rows = usage(Stack(workspaces), {k: v.default for k, v in LIMITS.items()}, {}, "westeurope")
    assert [(r.where, r.used, r.limit) for r in rows] == [("rg-one", 3, 800)]


def test_a_pools_load_is_the_sum_of_its_tenants_quotas() -> None:
    spec = parse_platform_spec(stack_document("prod"))
    load = endpoint_load(spec)
    retail = spec.online_endpoint_name("fabrikam")
    pooled = [t for t in spec.tenants if spec.online_endpoint_name(t.id) == retail]
    assert len(pooled) == 3
    assert load[retail]["requests_per_second"] == round(
        sum(t.quota.rate_limit_per_minute for t in pooled) / 60, 3
    )
    assert load[retail]["connections"] == sum(t.quota.max_concurrency for t in pooled)
    # Each request at the tenant's largest payload (32 KB by default).
    assert load[retail]["bandwidth_mb_per_second"] == round(150 * 32 / 1024, 3)


def test_a_grant_names_its_reference_and_only_raises_a_known_limit() -> None:
    document = stack_document("prod")
    document["capacity"] = {"granted": {"endpoints": {"value": 300, "reference": "SR-1234"}}}
    assert limits_of(parse_platform_spec(document))["endpoints"] == 300
    for granted, expected in (
        ({"endpoint": {"value": 300, "reference": "SR-1"}}, "'endpoint' is not a limit"),
        ({"endpoints": {"value": 80, "reference": "SR-1"}}, "not above Azure's default of 100"),
        ({"endpoints": {"value": 300}}, "reference"),
    ):
        broken = copy.deepcopy(document)
        broken["capacity"] = {"granted": granted}
        with pytest.raises(ConfigError, match=expected):
            parse_platform_spec(broken)
