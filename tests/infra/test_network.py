"""Private networking in the prod plan: what Azure needs before anything runs in it (the
review's D3, D6 and W12; each test fails on 72c5684)."""

from __future__ import annotations

from typing import Any

from infra.network import GATEWAY_NSG_RULES
from infra.offline import OfflineRun
from policies.core import Stack
from policies.offline import as_resource
from policies.preflight_rules import network_prerequisites
from tests.infra.conftest import of_type


def _named(run: OfflineRun, name: str) -> dict[str, Any]:
    [record] = [r for r in run.custom_resources() if r.name == name]
    return record.inputs


def test_api_managements_subnet_has_an_nsg_with_the_documented_ports(
    planned: dict[str, OfflineRun],
) -> None:
    """D3: an NSG on snet-gateway, allowing API Management's management endpoint (3443 from
    ApiManagement) and load balancer (6390 from AzureLoadBalancer)."""
    run = planned["prod"]
    subnet = _named(run, "platform-network-snet-gateway")
    [nsg] = of_type(run, "network:NetworkSecurityGroup")
    assert subnet["networkSecurityGroup"]["id"].endswith("/networkSecurityGroups/nsg-gateway")
    inbound = {
        (port, rule["sourceAddressPrefix"])
        for rule in nsg.inputs["securityRules"]
        if rule["direction"] == "Inbound" and rule["access"] == "Allow"
        for port in rule["destinationPortRanges"]
    }
    assert {("3443", "ApiManagement"), ("6390", "AzureLoadBalancer")} <= inbound
    priorities = [rule["priority"] for rule in nsg.inputs["securityRules"]]
    assert len(set(priorities)) == len(priorities) == len(GATEWAY_NSG_RULES)


def test_private_workspaces_provision_their_network_and_reach_every_private_dependency(
    planned: dict[str, OfflineRun],
) -> None:
    """D6 (b, c, d): provisioned with the workspace, a private endpoint rule to the private
    registry holding the serving assets, queue and table rules for batch endpoints."""
    run = planned["prod"]
    [registry] = of_type(run, "machinelearningservices:Registry")
    assert registry.inputs["publicNetworkAccess"] == "Disabled"
    workspaces = of_type(run, "machinelearningservices:Workspace")
    assert workspaces
    for workspace in workspaces:
        assert workspace.inputs["provisionNetworkNow"] is True, workspace.urn
        rules = workspace.inputs["managedNetwork"]["outboundRules"]
        targets = {
            (rule["destination"]["subresourceTarget"], rule["destination"]["serviceResourceId"])
            for rule in rules.values()
            if rule["type"] == "PrivateEndpoint"
        }
        registry_ids = {t[1] for t in targets if t[0] == "amlregistry"}
        assert registry_ids and all(
            i.endswith(f"/{registry.inputs['registryName']}") for i in registry_ids
        ), workspace.urn
        storage = workspace.inputs["storageAccount"]
        assert {("queue", storage), ("table", storage)} <= targets, workspace.urn


def test_dead_letters_reach_the_platform_account_through_its_firewall(
    planned: dict[str, OfflineRun],
) -> None:
    """W12: Event Grid passes a storage firewall as a trusted service only when the account
    is "Enabled from selected networks" with the AzureServices bypass."""
    account = _named(planned["prod"], "platform-st")
    assert account["publicNetworkAccess"] == "Enabled"
    assert account["networkRuleSet"]["defaultAction"] == "Deny"
    assert account["networkRuleSet"]["bypass"] == "AzureServices"
    assert account["allowSharedKeyAccess"] is False
    # Every other account of a private stack stays off the public network.
    for other in of_type(planned["prod"], "storage:StorageAccount"):
        if other.name != "platform-st":
            assert other.inputs["publicNetworkAccess"] == "Disabled", other.urn


def test_the_prod_plan_meets_every_network_prerequisite(planned: dict[str, OfflineRun]) -> None:
    stack = Stack([as_resource(r) for r in planned["prod"].custom_resources()])
    assert list(network_prerequisites(stack, {})) == []
