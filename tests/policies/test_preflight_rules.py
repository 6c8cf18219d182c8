"""The preflight rules, each with a compliant and a violating fixture (the review's findings
that mocks let through)."""

from __future__ import annotations

from typing import Any

from policies.catalogue import BY_NAME
from policies.core import Props, Resource, Stack, run_resource_rule, run_stack_rule
from tests.policies.conftest import planned_resource as res
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


# --- creation order -------------------------------------------------------------------------


def order(resources: list[Resource]) -> list[str]:
    return [f.message for f in run_stack_rule(BY_NAME["creation-order"], Stack(resources), {})]


def endpoint_with(properties: dict[str, Any]) -> list[Resource]:
    return [
        res("machinelearningservices:OnlineEndpoint", "ep", {"properties": properties}),
        res(
            "machinelearningservices:OnlineDeployment",
            "blue",
            {"deploymentName": "blue"},
            {"endpointName": ["ep"]},
        ),
    ]


def test_an_endpoint_names_no_deployment_of_its_own() -> None:
    """D8: traffic naming blue, which is created under the endpoint, after it."""
    assert order(endpoint_with({"authMode": "AADToken"})) == []
    assert order(endpoint_with({"traffic": {"blue": 100}})) == [
        "'ep' names the deployment 'blue' in .properties.traffic, which is created after it"
    ]
    assert order(endpoint_with({"mirrorTraffic": {"green": 10}})) == [
        "'ep' names the deployment 'green' in .properties.mirrorTraffic, which the plan does "
        "not create"
    ]


def test_a_batch_default_is_set_after_its_deployment() -> None:
    endpoint = res(
        "machinelearningservices:BatchEndpoint",
        "bep",
        {"properties": {"defaults": {"deploymentName": "default"}}},
    )
    deployment = res(
        "machinelearningservices:BatchDeployment",
        "default",
        {"deploymentName": "default"},
        {"endpointName": ["bep"]},
    )
    [message] = order([endpoint, deployment])
    assert "names the deployment 'default' in .properties.defaults.deploymentName" in message
    plain = res("machinelearningservices:BatchEndpoint", "bep", {"properties": {}})
    setter = Resource(
        "pulumi-python:dynamic:Resource",
        "urn:setter",
        "setter",
        Props({"kind": "tenant-mlops:batch-default", "deploymentName": "default"}),
        property_dependencies={"endpointId": frozenset({"urn:bep"})},
    )
    assert order([plain, deployment, setter]) == [
        "'setter' makes 'default' the default of 'bep' without waiting for that deployment to exist"
    ]
    waiting = Resource(
        setter.type,
        setter.urn,
        setter.name,
        setter.props,
        property_dependencies=setter.property_dependencies,
        dependencies=frozenset({"urn:default"}),
    )
    assert order([plain, deployment, waiting]) == []


def test_a_function_subscription_waits_for_the_code_that_creates_the_function() -> None:
    app = res("web:WebApp", "func", {}, {"functionAppConfig": ["st"]})
    upload = Resource(
        "pulumi-python:dynamic:Resource",
        "urn:upload",
        "upload",
        Props({"kind": "tenant-mlops:function-package"}),
        property_dependencies={"accountName": frozenset({"urn:st"})},
    )

    def subscription(after: frozenset[str]) -> Resource:
        return Resource(
            "azure-native:eventgrid:SystemTopicEventSubscription",
            "urn:sub",
            "sub",
            Props({"destination": {"endpointType": "AzureFunction"}}),
            property_dependencies={"destination": frozenset({"urn:func"})},
            dependencies=after,
        )

    base = [res("storage:StorageAccount", "st"), app, upload]
    assert order([*base, subscription(frozenset({"urn:upload"}))]) == []
    [message] = order([*base, subscription(frozenset())])
    assert "without waiting for the app's code package" in message


# --- authentication coherence -----------------------------------------------------------------


def auth(resources: list[Resource]) -> list[str]:
    rule = BY_NAME["authentication-coherence"]
    return [f.message for f in run_stack_rule(rule, Stack(resources), {})]


KEYLESS = res("storage:StorageAccount", "st", {"allowSharedKeyAccess": False})


def test_no_blob_is_uploaded_with_the_key_of_a_keyless_account() -> None:
    """D1: azure-native's Blob signs with the account key."""
    blob = res("storage:Blob", "pkg", {}, {"accountName": ["st"]})
    assert auth([KEYLESS, blob]) == [
        "'pkg' is uploaded with the account key of 'st', whose shared keys are off"
    ]
    keyed = res("storage:StorageAccount", "st", {"allowSharedKeyAccess": True})
    assert auth([keyed, blob]) == []


def _app(settings: dict[str, str], deployment_auth: str = "UserAssignedIdentity") -> Resource:
    return res(
        "web:WebApp",
        "func",
        {
            "siteConfig": {"appSettings": [{"name": k, "value": v} for k, v in settings.items()]},
            "functionAppConfig": {
                "deployment": {"storage": {"authentication": {"type": deployment_auth}}}
            },
        },
        {"siteConfig": ["st", "appi"], "functionAppConfig": ["st"]},
    )


def test_no_app_uses_keys_against_keyless_storage_or_telemetry() -> None:
    appi = res("applicationinsights:Component", "appi", {"disableLocalAuth": True})
    good = {
        "AzureWebJobsStorage__accountName": "st",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=c;Authorization=AAD",
    }
    assert auth([KEYLESS, appi, _app(good)]) == []
    keyed = {**good, "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=abc"}
    [message] = auth([KEYLESS, appi, _app(keyed)])
    assert "connects with an account key (AzureWebJobsStorage)" in message
    no_entra = {k: v for k, v in good.items() if "AUTHENTICATION" not in k}
    [message] = auth([KEYLESS, appi, _app(no_entra)])
    assert "whose local authentication is off" in message
    [message] = auth([KEYLESS, appi, _app(good, "StorageAccountConnectionString")])
    assert "reads its package with a connection string" in message


def test_a_workspace_on_keyless_storage_uses_identity_datastores() -> None:
    """C3: the enum value is `Identity`."""

    def workspace(mode: str) -> Resource:
        return res(
            "machinelearningservices:Workspace",
            "ws",
            {"systemDatastoresAuthMode": mode},
            {"storageAccount": ["st"]},
        )

    assert auth([KEYLESS, workspace("Identity")]) == []
    [message] = auth([KEYLESS, workspace("identity")])
    assert "it must be 'Identity'" in message
