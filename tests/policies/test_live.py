"""The pack's rules over deployed resources: the example stacks' plans, as Resource Graph
would return them once deployed, break no rule; the broken fixture's plan, deployed as it
is, shows every sabotage a live resource can show, each once and on the resource it broke."""

from __future__ import annotations

import inspect
from collections import Counter

import pytest

from infra.offline import OfflineRun, run_offline
from mlops.plan import project_program
from policies import stack_rules
from policies.catalogue import BY_NAME, LIVE_RULES, PLAN_ONLY, RULES
from policies.config import PackConfig
from policies.evaluation import evaluate_resources
from policies.live import (
    ARM_TYPES,
    NESTED_PROPERTIES,
    UNTAGGED_TYPES,
    LiveResource,
    as_resources,
    inputs_of,
)
from tenancy import PlatformSpec, load_stack
from tests.conftest import STACKS
from tests.live_inventory import inventory_of
from tests.policies.test_stacks_against_pack import BROKEN, BROKEN_AT


@pytest.fixture(scope="module")
def broken() -> tuple[PlatformSpec, OfflineRun]:
    spec = load_stack("broken", BROKEN)
    return spec, run_offline(project_program(BROKEN, "broken"), stack="broken")


def test_the_property_shapes_follow_the_provider_sdk() -> None:
    """azure-native keeps ``properties`` as an input exactly for the types listed, and gives
    a ``tags`` input to every type but those listed."""
    import importlib  # noqa: PLC0415 - the SDK's modules, read here only

    for token in ARM_TYPES.values():
        _, module, kind = token.split(":")
        cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), kind)
        parameters = inspect.signature(cls._internal_init).parameters
        assert ("properties" in parameters) == (token in NESTED_PROPERTIES), token
        assert ("tags" in parameters) == (token not in UNTAGGED_TYPES), token


@pytest.mark.parametrize("stack", STACKS)
def test_an_example_stack_deployed_as_planned_breaks_no_rule(
    specs: dict[str, PlatformSpec], planned: dict[str, OfflineRun], stack: str
) -> None:
    resources = as_resources(inventory_of(planned[stack]))
    assert evaluate_resources(resources, PackConfig.from_spec(specs[stack]), LIVE_RULES) == []


def test_each_sabotage_a_live_resource_can_show_is_found_once_where_it_was_made(
    broken: tuple[PlatformSpec, OfflineRun],
) -> None:
    spec, run = broken
    names = {record.id: record.name for record in run.records if record.id}
    violations = evaluate_resources(
        as_resources(inventory_of(run)), PackConfig.from_spec(spec), LIVE_RULES
    )
    assert Counter(v.policy for v in violations) == {rule.name: 1 for rule in LIVE_RULES}
    for violation in violations:
        assert names[violation.urn] == BROKEN_AT[violation.policy], violation
    assert {r.name for r in RULES} == {r.name for r in LIVE_RULES} | set(PLAN_ONLY)


def test_arm_shapes_are_read_as_the_inputs_the_rules_know() -> None:
    workspace = LiveResource(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w",
        "Microsoft.MachineLearningServices/workspaces",
        "w",
        {
            "location": "westeurope",
            "tags": {"tenant-id": "contoso"},
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": {"/id/a": {"principalId": "p"}},
            },
            "properties": {"publicNetworkAccess": "Disabled", "provisioningState": "Succeeded"},
        },
    )
    assert inputs_of(workspace) == {
        "location": "westeurope",
        "tags": {"tenant-id": "contoso"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": ["/id/a"]},
        "publicNetworkAccess": "Disabled",
        "provisioningState": "Succeeded",
    }
    deployment = LiveResource(
        f"{workspace.id}/onlineEndpoints/e/deployments/blue",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
        "blue",
        {"sku": {"capacity": 2}, "properties": {"appInsightsEnabled": True}},
    )
    assert inputs_of(deployment) == {
        "sku": {"capacity": 2},
        "tags": {},  # a taggable type: untagged, not "tags unknown"
        "properties": {"appInsightsEnabled": True},
    }
    [ws, dep] = as_resources([workspace, deployment])
    assert dep.property_dependencies == {"workspaceName": frozenset({workspace.id})}
    assert ws.property_dependencies == {}
    assert as_resources([LiveResource("/x", "Microsoft.Unknown/things", "x", {})]) == []


def test_an_untagged_live_resource_is_judged_untagged(
    specs: dict[str, PlatformSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the provider's SDK (the Function App), a taggable type with no tags in ARM's
    answer is still judged by mandatory-tags."""
    monkeypatch.setattr(stack_rules, "_sdk_taggable", lambda _: None)  # no SDK to ask
    account = LiveResource(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
        "Microsoft.Storage/storageAccounts",
        "st",
        {"tags": None, "properties": {"allowBlobPublicAccess": False}},
    )
    [resource] = as_resources([account])
    assert resource.props.raw["tags"] == {}
    found = evaluate_resources(
        [resource], PackConfig.from_spec(specs["local"]), [BY_NAME["mandatory-tags"]]
    )
    assert [v.policy for v in found] == ["mandatory-tags"]


def test_a_grant_to_another_tenants_identity_is_found_live(specs: dict[str, PlatformSpec]) -> None:
    """A role assignment names its principal by object id; live, that id leads to the
    identity whose principal it is, so tenant-isolation sees a grant across tenants."""
    group = "/subscriptions/s/resourceGroups/rg-tmlops-local-tenant-"
    workspace = LiveResource(
        f"{group}contoso/providers/Microsoft.MachineLearningServices/workspaces/w",
        "Microsoft.MachineLearningServices/workspaces",
        "w",
        {"tags": {"tenant-id": "contoso"}, "properties": {}},
    )
    adatum = LiveResource(
        f"{group}adatum/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-adatum",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "id-adatum",
        {"tags": {"tenant-id": "adatum"}, "properties": {"principalId": "AAAA-1"}},
    )
    grant = LiveResource(
        f"{workspace.id}/providers/Microsoft.Authorization/roleAssignments/g",
        "Microsoft.Authorization/roleAssignments",
        "g",
        {"properties": {"principalId": "aaaa-1", "scope": workspace.id, "roleDefinitionId": "r"}},
    )
    resources = as_resources([workspace, adatum, grant])
    found = evaluate_resources(
        resources, PackConfig.from_spec(specs["local"]), [BY_NAME["tenant-isolation"]]
    )
    assert [(v.policy, v.urn) for v in found] == [("tenant-isolation", grant.id)]
    assert "id-adatum" in found[0].message
