"""The preflight rules, each with a compliant and a violating fixture (the review's findings
that mocks let through)."""

from __future__ import annotations

from typing import Any

from policies.catalogue import BY_NAME
from policies.core import Props, Resource, Stack, run_resource_rule, run_stack_rule
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


# --- network prerequisites ----------------------------------------------------------------


def res(
    type_name: str,
    name: str,
    props: dict[str, Any] | None = None,
    deps: dict[str, list[str]] | None = None,
) -> Resource:
    return Resource(
        f"azure-native:{type_name}",
        f"urn:{name}",
        name,
        Props(props or {}),
        property_dependencies={
            k: frozenset(f"urn:{v}" for v in vs) for k, vs in (deps or {}).items()
        },
    )


def network(resources: list[Resource]) -> list[str]:
    return [
        f.message for f in run_stack_rule(BY_NAME["network-prerequisites"], Stack(resources), {})
    ]


APIM_RULES = [
    {
        "direction": "Inbound",
        "access": "Allow",
        "destinationPortRanges": ["3443"],
        "sourceAddressPrefix": "ApiManagement",
    },
    {
        "direction": "Inbound",
        "access": "Allow",
        "destinationPortRange": "6390",
        "sourceAddressPrefix": "AzureLoadBalancer",
    },
]


def gateway(nsg_rules: list[dict[str, Any]] | None) -> list[Resource]:
    subnet_deps = {"networkSecurityGroup": ["nsg"]} if nsg_rules is not None else {}
    resources = [
        res("network:Subnet", "snet", {}, subnet_deps),
        res(
            "apimanagement:ApiManagementService",
            "apim",
            {},
            {"virtualNetworkConfiguration": ["snet"]},
        ),
    ]
    if nsg_rules is not None:
        resources.append(res("network:NetworkSecurityGroup", "nsg", {"securityRules": nsg_rules}))
    return resources


def test_api_managements_subnet_needs_an_nsg_that_lets_its_own_traffic_in() -> None:
    """D3: the load balancer API Management uses rejects all inbound traffic without one."""
    assert network(gateway(APIM_RULES)) == []
    [message] = network(gateway(None))
    assert "subnet 'snet', which has no network security group" in message
    [message] = network(gateway(APIM_RULES[:1]))
    assert "does not allow inbound 6390 from AzureLoadBalancer" in message


def managed_workspace(props: dict[str, Any], network_deps: list[str]) -> list[Resource]:
    base = {"managedNetwork": {"isolationMode": "AllowOnlyApprovedOutbound"}} | props
    return [
        res("storage:StorageAccount", "st"),
        res("machinelearningservices:Registry", "mlr", {"publicNetworkAccess": "Disabled"}),
        res(
            "machinelearningservices:Workspace",
            "ws",
            base,
            {"storageAccount": ["st"], "managedNetwork": network_deps},
        ),
        res(
            "machinelearningservices:OnlineDeployment",
            "blue",
            {},
            {"workspaceName": ["ws"], "properties": ["mlr"]},
        ),
        res("machinelearningservices:BatchEndpoint", "batch", {}, {"workspaceName": ["ws"]}),
    ]


def _rule(subresource: str) -> dict[str, Any]:
    return {"type": "PrivateEndpoint", "destination": {"subresourceTarget": subresource}}


def test_a_managed_network_is_provisioned_and_reaches_every_private_dependency() -> None:
    """D6: provisioned before the first deployment, a rule to the private registry of the
    serving assets, and queue and table rules for batch endpoints."""
    rules = {"mlr": _rule("amlregistry"), "q": _rule("queue"), "t": _rule("table")}
    complete = {
        "provisionNetworkNow": True,
        "managedNetwork": {"isolationMode": "AllowOnlyApprovedOutbound", "outboundRules": rules},
    }
    assert network(managed_workspace(complete, ["mlr", "st"])) == []
    [message] = network(managed_workspace({}, []))
    assert "is not provisioned before its online deployments" in message
    assert "no private endpoint rule to the private registry 'mlr'" in message
    assert "no private endpoint rule to queues of 'st'" in message
    assert "no private endpoint rule to tables of 'st'" in message


def test_dead_letters_need_an_account_event_grid_can_pass() -> None:
    """W12: trusted services pass "Enabled from selected networks", never "Disabled"."""

    def plan(account: dict[str, Any]) -> list[Resource]:
        return [
            res("storage:StorageAccount", "st", account),
            res(
                "eventgrid:SystemTopicEventSubscription",
                "sub",
                {},
                {"deadLetterWithResourceIdentity": ["st"]},
            ),
        ]

    selected = {
        "publicNetworkAccess": "Enabled",
        "networkRuleSet": {"defaultAction": "Deny", "bypass": "AzureServices"},
    }
    assert network(plan(selected)) == []
    [message] = network(plan({"publicNetworkAccess": "Disabled"}))
    assert "which no trusted service passes" in message
    no_bypass = {"publicNetworkAccess": "Enabled", "networkRuleSet": {"defaultAction": "Deny"}}
    assert "without the AzureServices bypass" in network(plan(no_bypass))[0]
