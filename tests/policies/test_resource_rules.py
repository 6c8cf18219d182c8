"""Every resource rule with a compliant and a violating fixture, and the exact violation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies import preflight_rules
from policies.catalogue import RULES
from policies.core import ML
from tenancy import contracts
from tests.policies.conftest import CONTOSO_ID, DELETE, TAGS, changed, findings, messages

WORKSPACE = f"{ML}:Workspace"
COMPUTE = f"{ML}:Compute"
ONLINE = f"{ML}:OnlineEndpoint"
BATCH = f"{ML}:BatchEndpoint"
DEPLOYMENT = f"{ML}:OnlineDeployment"

WORKSPACE_OK = {
    "tags": TAGS,
    "publicNetworkAccess": "Disabled",
    "identity": {"type": "UserAssigned", "userAssignedIdentities": [CONTOSO_ID]},
    "primaryUserAssignedIdentity": CONTOSO_ID,
    "managedNetwork": {
        "isolationMode": "AllowOnlyApprovedOutbound",
        "outboundRules": {
            "pypi": {"type": "FQDN", "destination": "pypi.org"},
            "storage": {"type": "PrivateEndpoint", "destination": {"serviceResourceId": "x"}},
        },
    },
    "encryption": {
        "status": "Enabled",
        "keyVaultProperties": {"keyIdentifier": "https://kv.vault.azure.net/keys/k/1"},
    },
}
CLUSTER_OK = {
    "tags": TAGS,
    "properties": {
        "computeType": "AmlCompute",
        "disableLocalAuth": True,
        "properties": {
            "vmSize": "Standard_NC4as_T4_v3",
            "enableNodePublicIp": False,
            "scaleSettings": {"minNodeCount": 0.0, "maxNodeCount": 4.0},
        },
    },
}
INSTANCE_OK = {
    "tags": TAGS,
    "properties": {
        "computeType": "ComputeInstance",
        "disableLocalAuth": True,
        "properties": {
            "vmSize": "Standard_DS3_v2",
            "enableNodePublicIp": False,
            "idleTimeBeforeShutdown": "PT30M",
        },
    },
}
ONLINE_OK = {
    "tags": TAGS,
    "properties": {
        "authMode": "AADToken",
        "publicNetworkAccess": "Disabled",
        "traffic": {"blue": 90.0, "green": 10.0},
        "mirrorTraffic": {},
    },
}
PROBE = {"initialDelay": "PT10S", "period": "PT10S", "timeout": "PT2S"}
DEPLOYMENT_OK = {
    "tags": TAGS,
    "sku": {"name": "Default", "capacity": 2.0},
    "properties": {
        "egressPublicNetworkAccess": "Disabled",
        "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 4.0},
        "livenessProbe": PROBE,
        "readinessProbe": PROBE,
        "appInsightsEnabled": True,
        "dataCollector": {
            "collections": {
                "model_inputs": {"dataCollectionMode": "Enabled"},
                "model_outputs": {"dataCollectionMode": "Enabled"},
            }
        },
    },
}
AI_ACCOUNT_OK = {
    "tags": TAGS,
    "kind": "AIServices",
    "properties": {"disableLocalAuth": True, "publicNetworkAccess": "Disabled"},
}
TIERS = {"tenantTiers": {"contoso": "dedicated", "pool:shared": "pooled"}}


def _app_with_steps(steps: list[int]) -> dict[str, Any]:
    spec = {"rollout": {"steps": [10, 50, 100]}, "tenants": [{"id": "contoso", "rollout": None}]}
    spec["tenants"].append({"id": "adatum", "rollout": {"steps": steps}})
    setting = {"name": contracts.SETTING_PLATFORM_SPEC, "value": json.dumps(spec)}
    return {"siteConfig": {"appSettings": [{"name": "OTHER", "value": "x"}, setting]}}


# (rule, type, compliant props, violating props, settings, expected message)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], str]] = [
    (
        "workspace-public-network-disabled",
        WORKSPACE,
        WORKSPACE_OK,
        changed(WORKSPACE_OK, publicNetworkAccess="Enabled"),
        {},
        "publicNetworkAccess is 'Enabled'; the workspace must be reached privately",
    ),
    (
        "workspace-user-assigned-identity",
        WORKSPACE,
        WORKSPACE_OK,
        changed(WORKSPACE_OK, identity__type="SystemAssigned", primaryUserAssignedIdentity=DELETE),
        {},
        "identity.type is 'SystemAssigned'; a user-assigned identity is required; "
        "primaryUserAssignedIdentity is not set",
    ),
    (
        "workspace-customer-managed-key",
        WORKSPACE,
        WORKSPACE_OK,
        changed(WORKSPACE_OK, encryption=DELETE),
        {"tenantClassifications": {"contoso": "restricted"}},
        "'contoso' holds restricted data: encryption with a customer-managed key is required "
        "(encryption.status None, key missing)",
    ),
    (
        "workspace-managed-network",
        WORKSPACE,
        WORKSPACE_OK,
        changed(
            WORKSPACE_OK,
            managedNetwork__outboundRules__exfil={"type": "FQDN", "destination": "evil.example"},
        ),
        {"approvedOutbound": ["pypi.org"]},
        "outbound rule 'exfil' to 'evil.example' is not an approved destination",
    ),
    (
        "compute-local-auth-disabled",
        COMPUTE,
        CLUSTER_OK,
        changed(CLUSTER_OK, properties__disableLocalAuth=False),
        {},
        "properties.disableLocalAuth must be true (Entra identities only, no keys)",
    ),
    (
        "compute-scales-to-zero",
        COMPUTE,
        CLUSTER_OK,
        changed(CLUSTER_OK, properties__properties__scaleSettings__minNodeCount=1.0),
        {},
        "scaleSettings.minNodeCount is 1; an idle cluster must scale to 0 nodes",
    ),
    (
        "compute-max-nodes-within-tier",
        COMPUTE,
        CLUSTER_OK,
        changed(CLUSTER_OK, properties__properties__scaleSettings__maxNodeCount=17.0),
        TIERS,
        "scaleSettings.maxNodeCount 17 is above the dedicated tier's cap of 16",
    ),
    (
        "compute-vm-size-allowed",
        COMPUTE,
        CLUSTER_OK,
        changed(CLUSTER_OK, properties__properties__vmSize="Standard_ND96asr_v4"),
        {**TIERS, "vmSizes": {"dedicated": ["Standard_NC4as_T4_v3"]}},
        "vmSize 'Standard_ND96asr_v4' is not allowed in the dedicated tier "
        "(allowed: Standard_NC4as_T4_v3)",
    ),
    (
        "compute-instance-idle-shutdown",
        COMPUTE,
        INSTANCE_OK,
        changed(INSTANCE_OK, properties__properties__idleTimeBeforeShutdown="PT2H"),
        {},
        "idleTimeBeforeShutdown PT2H is longer than 60 minutes",
    ),
    (
        "compute-no-node-public-ip",
        COMPUTE,
        INSTANCE_OK,
        changed(INSTANCE_OK, properties__properties__enableNodePublicIp=DELETE),
        {},
        "properties.properties.enableNodePublicIp must be false",
    ),
    (
        "endpoint-auth-mode",
        BATCH,
        {"properties": {"authMode": "AADToken"}},
        {"properties": {"authMode": "Key"}},
        {},
        "properties.authMode is 'Key' (allowed: AADToken)",
    ),
    (
        "endpoint-public-network-disabled",
        ONLINE,
        ONLINE_OK,
        changed(ONLINE_OK, properties__publicNetworkAccess="Enabled"),
        {**TIERS, "privateTiers": ["dedicated"]},
        "properties.publicNetworkAccess is 'Enabled'; the dedicated tier is private",
    ),
    (
        "deployment-egress-disabled",
        DEPLOYMENT,
        DEPLOYMENT_OK,
        changed(DEPLOYMENT_OK, properties__egressPublicNetworkAccess="Enabled"),
        {},
        "properties.egressPublicNetworkAccess is 'Enabled', not 'Disabled'",
    ),
    (
        "deployment-request-settings",
        DEPLOYMENT,
        DEPLOYMENT_OK,
        changed(DEPLOYMENT_OK, properties__requestSettings={"requestTimeout": "PT5M"}),
        {},
        "requestSettings.requestTimeout PT5M is above 180000 ms; "
        "requestSettings.maxConcurrentRequestsPerInstance is not set explicitly",
    ),
    (
        "deployment-probes",
        DEPLOYMENT,
        DEPLOYMENT_OK,
        changed(DEPLOYMENT_OK, properties__readinessProbe={}),
        {},
        "properties.readinessProbe is not set",
    ),
    (
        "deployment-min-instances",
        DEPLOYMENT,
        DEPLOYMENT_OK,
        changed(DEPLOYMENT_OK, sku__capacity=1.0),
        {},
        "sku.capacity is 1: below 2 instances, one failure is an outage",
    ),
    (
        "deployment-data-collection",
        DEPLOYMENT,
        DEPLOYMENT_OK,
        changed(DEPLOYMENT_OK, properties__dataCollector=DELETE),
        {},
        "dataCollector collection 'model_inputs' is not enabled: drift cannot be computed; "
        "dataCollector collection 'model_outputs' is not enabled: drift cannot be computed",
    ),
    (
        "endpoint-traffic-valid",
        ONLINE,
        ONLINE_OK,
        changed(ONLINE_OK, properties__traffic={"blue": 50.0, "green": 30.0}),
        {},
        "live traffic sums to 80; it must sum to 0 or 100 (blue 50, green 30)",
    ),
    (
        "endpoint-mirror-traffic",
        ONLINE,
        changed(
            ONLINE_OK,
            properties__traffic={"blue": 100.0},
            properties__mirrorTraffic={"green": 50.0},
        ),
        changed(ONLINE_OK, properties__mirrorTraffic={"green": 60.0}),
        {},
        "mirror to 'green' is 60 %, above 50 %; mirror target 'green' also carries live traffic",
    ),
    (
        "event-subscription-dead-letter",
        "azure-native:eventgrid:SystemTopicEventSubscription",
        {"deadLetterWithResourceIdentity": {"deadLetterDestination": {"blobContainerName": "dl"}}},
        {"deadLetterWithResourceIdentity": {"identity": {"type": "SystemAssigned"}}},
        {},
        "no dead-letter destination: undeliverable events would be dropped",
    ),
    (
        "storage-no-public-blob",
        "azure-native:storage:StorageAccount",
        {"allowBlobPublicAccess": False},
        {},
        {},
        "allowBlobPublicAccess must be false (set explicitly)",
    ),
    (
        "registry-admin-disabled",
        "azure-native:containerregistry:Registry",
        {"adminUserEnabled": False},
        {"adminUserEnabled": True},
        {},
        "adminUserEnabled is true: the registry would accept a shared admin password",
    ),
    (
        "ai-account-local-auth-disabled",
        "azure-native:cognitiveservices:Account",
        AI_ACCOUNT_OK,
        changed(AI_ACCOUNT_OK, properties__disableLocalAuth=False),
        {},
        "properties.disableLocalAuth must be true (keys bypass the gateway and RBAC)",
    ),
    (
        "ai-account-public-network-disabled",
        "azure-native:cognitiveservices:Account",
        AI_ACCOUNT_OK,
        changed(AI_ACCOUNT_OK, properties__publicNetworkAccess="Enabled"),
        {**TIERS, "privateTiers": ["dedicated"]},
        "properties.publicNetworkAccess must be Disabled (reached by private endpoint)",
    ),
    (
        "canary-steps",
        "azure-native:web:WebApp",
        _app_with_steps([5, 100]),
        _app_with_steps([10, 60]),
        {},
        "tenants[adatum].rollout.steps [10, 60] do not end at 100",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_rule_passes_compliant_and_names_the_violation(
    case: tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], str],
) -> None:
    rule, type_token, compliant, violating, settings, expected = case
    assert messages(rule, type_token, compliant, **settings) == []
    assert messages(rule, type_token, violating, **settings) == [expected]


def test_every_resource_rule_has_a_case() -> None:
    covered = {case[0] for case in CASES} | {"ml-no-preview-api", "mandatory-tags"}
    preflight = {rule.name for rule in preflight_rules.RULES}  # tests/policies/test_preflight
    resource_rules = {rule.name for rule in RULES if not rule.is_stack_rule} - preflight
    assert resource_rules <= covered


def test_preview_api_versions_of_ml_resources_are_refused_whatever_the_kind() -> None:
    pinned = "azure-native:machinelearningservices/v20250101preview:Workspace"
    stable = "azure-native:machinelearningservices/v20240401:Workspace"
    assert messages("ml-no-preview-api", pinned, {}) == [
        "pins the preview API version v20250101preview; use the provider's default version"
    ]
    assert messages("ml-no-preview-api", stable, {}) == []
    # A rule for workspaces applies to a workspace whatever API version it pins.
    assert messages("workspace-public-network-disabled", pinned, WORKSPACE_OK) == []


def test_customer_managed_key_is_required_only_where_the_classification_asks() -> None:
    no_key = changed(WORKSPACE_OK, encryption=DELETE)
    confidential = {"tenantClassifications": {"contoso": "confidential"}}
    assert messages("workspace-customer-managed-key", WORKSPACE, no_key, **confidential) == []
    stricter = {**confidential, "cmkClassifications": ["confidential", "restricted"]}
    assert len(messages("workspace-customer-managed-key", WORKSPACE, no_key, **stricter)) == 1


def test_tier_rules_name_a_tenant_missing_from_their_config() -> None:
    assert messages("compute-max-nodes-within-tier", COMPUTE, CLUSTER_OK) == [
        "belongs to 'contoso', which this policy's tenantTiers does not list "
        "(generate the pack config with `mlops policy-config`)"
    ]
    untagged = changed(CLUSTER_OK, tags=DELETE)
    assert messages("compute-vm-size-allowed", COMPUTE, untagged, **TIERS) == [
        "has no 'tenant-id' tag, so its tier is unknown"
    ]


def test_mirror_to_two_deployments_is_refused() -> None:
    props = changed(
        ONLINE_OK,
        properties__traffic={"blue": 100.0},
        properties__mirrorTraffic={"green": 10.0, "red": 10.0},
    )
    assert messages("endpoint-mirror-traffic", ONLINE, props) == [
        "traffic is mirrored to 2 deployments (green 10, red 10), not one"
    ]


def test_traffic_outside_a_percentage_is_named() -> None:
    props = changed(ONLINE_OK, properties__traffic={"blue": 150.0, "green": -50.0})
    assert messages("endpoint-traffic-valid", ONLINE, props) == [
        "traffic of blue, green is not a percentage in 0..100"
    ]
    assert (
        messages("endpoint-traffic-valid", ONLINE, changed(ONLINE_OK, properties__traffic={})) == []
    )


def test_idle_shutdown_must_be_set_on_compute_instances_only() -> None:
    no_idle = changed(INSTANCE_OK, properties__properties__idleTimeBeforeShutdown=DELETE)
    assert messages("compute-instance-idle-shutdown", COMPUTE, no_idle) == [
        "idleTimeBeforeShutdown is not set: an idle compute instance keeps billing"
    ]
    assert messages("compute-instance-idle-shutdown", COMPUTE, CLUSTER_OK) == []


def test_a_rule_reports_one_finding_per_resource() -> None:
    props = changed(
        DEPLOYMENT_OK, properties__livenessProbe=DELETE, properties__readinessProbe=DELETE
    )
    result = findings("deployment-probes", DEPLOYMENT, props)
    assert len(result) == 1
    assert result[0].urn.endswith("::r")
