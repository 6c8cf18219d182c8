"""Drift from the plan: the expected state `pulumi up` writes holds the governed properties
of every governed resource, and comparing the live inventory with it finds what was made
outside the plan, what is gone, and each governed property changed, while what the
automation owns (deployments, traffic) and what ARM merely spells differently is not drift."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.offline import OfflineRun
from policies.live import LiveResource
from policies.plan_drift import drift, expected_state, judged, same
from tenancy import contracts
from tests.live_inventory import expected_of, inventory_of

ML = "azure-native:machinelearningservices"


def _edited(
    inventory: list[LiveResource],
    pick: Callable[[LiveResource], bool],
    edit: Callable[[dict[str, Any]], None],
) -> list[LiveResource]:
    """The inventory with the first resource ``pick`` chooses edited in place."""
    changed = []
    done = False
    for live in inventory:
        body = copy.deepcopy(dict(live.body))
        if not done and pick(live):
            edit(body)
            done = True
        changed.append(LiveResource(live.id, live.type, live.name, body))
    assert done, "nothing to edit"
    return changed


def _of(token: str) -> Callable[[LiveResource], bool]:
    return lambda live: live.type_token == token


@pytest.fixture(scope="module")
def dev(planned: dict[str, OfflineRun]) -> tuple[dict[str, Any], list[LiveResource]]:
    run = planned["dev"]
    return expected_of(run), inventory_of(run)


def test_the_document_holds_what_the_rules_read_and_no_app_setting(
    planned: dict[str, OfflineRun],
) -> None:
    document = expected_of(planned["prod"])
    entries = {e["id"]: e for e in document["resources"]}
    by_type: dict[str, set[str]] = {}
    for entry in entries.values():
        by_type.setdefault(entry["type"], set()).update(entry["governed"])
    assert {"allowBlobPublicAccess", "tags"} <= by_type["azure-native:storage:StorageAccount"]
    assert "properties.properties.scaleSettings.minNodeCount" in by_type[f"{ML}:Compute"]
    assert "properties.authMode" in by_type[f"{ML}:OnlineEndpoint"]
    # Inputs no rule reads, and app settings (plan-only rules), are not in it.
    text = json.dumps(document)
    assert "appSettings" not in text and "InstrumentationKey" not in text
    # The deployments are the automation's (every input ignored): never drift.
    deployments = [e for e in entries.values() if e["type"] == f"{ML}:OnlineDeployment"]
    assert deployments and all(e["automationOwned"] for e in deployments)
    # The grant that lets the deployer write the document is in it too (made before it).
    container = f"/containers/{contracts.CONTAINER_PLATFORM_STATE}"
    [grant] = [
        r for r in planned["prod"].records
        if r.type == "azure-native:authorization:RoleAssignment"
        and str(r.inputs.get("scope", "")).endswith(container)
    ]  # fmt: skip
    assert grant.id in entries


def test_a_plan_deployed_as_planned_has_no_drift(
    dev: tuple[dict[str, Any], list[LiveResource]],
) -> None:
    expected, inventory = dev
    assert drift(expected, inventory) == []


def test_a_governed_property_changed_in_the_portal_is_drift_with_the_difference(
    dev: tuple[dict[str, Any], list[LiveResource]],
) -> None:
    expected, inventory = dev

    def public_blobs(body: dict[str, Any]) -> None:
        body["properties"]["allowBlobPublicAccess"] = True

    live = _edited(inventory, _of("azure-native:storage:StorageAccount"), public_blobs)
    [found] = drift(expected, live)
    assert found.kind == "changed"
    assert [(d.path, d.planned, d.live) for d in found.differences] == [
        ("allowBlobPublicAccess", False, True)
    ]
    assert found.message == (
        "differs from the plan: allowBlobPublicAccess is True (the plan set False)"
    )


def test_a_cluster_scaled_up_and_a_tenant_tag_removed_are_drift(
    dev: tuple[dict[str, Any], list[LiveResource]],
) -> None:
    expected, inventory = dev

    def two_warm_nodes(body: dict[str, Any]) -> None:
        body["properties"]["properties"]["scaleSettings"]["minNodeCount"] = 2

    def untagged(body: dict[str, Any]) -> None:
        del body["tags"][contracts.TAG_TENANT]

    live = _edited(inventory, _of(f"{ML}:Compute"), two_warm_nodes)
    live = _edited(live, _of(f"{ML}:Workspace"), untagged)
    found = {d.type: d for d in drift(expected, live)}
    assert set(found) == {f"{ML}:Compute", f"{ML}:Workspace"}
    paths = [d.path for d in found[f"{ML}:Compute"].differences]
    assert paths == ["properties.properties", "properties.properties.scaleSettings.minNodeCount"]
    assert [d.path for d in found[f"{ML}:Workspace"].differences] == ["tags"]


def test_what_the_plan_does_not_know_and_what_is_gone_are_drift(
    dev: tuple[dict[str, Any], list[LiveResource]],
) -> None:
    expected, inventory = dev
    account = next(r for r in inventory if r.type_token == "azure-native:storage:StorageAccount")
    group = account.id.split("/providers/")[0]
    portal_grant = LiveResource(
        f"{group}/providers/Microsoft.Authorization/roleAssignments/made-in-the-portal",
        "Microsoft.Authorization/roleAssignments",
        "made-in-the-portal",
        {"properties": {"scope": group, "principalId": "someone", "roleDefinitionId": "Owner"}},
    )
    live = [r for r in inventory if r.id != account.id] + [portal_grant]
    found = sorted((d.kind, d.resource) for d in drift(expected, live))
    assert found == [("missing", account.id), ("unplanned", portal_grant.id)]
    missing = next(d for d in drift(expected, live) if d.kind == "missing")
    assert missing.tags.get(contracts.TAG_TENANT)  # told to its owner


def test_what_the_automation_owns_is_not_drift(
    dev: tuple[dict[str, Any], list[LiveResource]],
) -> None:
    """A rollout adds green, moves traffic and mirror, and deletes blue after promotion;
    a budget's start date is fixed at creation (ignore_changes)."""
    expected, inventory = dev
    blue = next(r for r in inventory if r.type_token == f"{ML}:OnlineDeployment")
    green_body = copy.deepcopy(dict(blue.body))
    green_body["properties"]["model"] = "azureml://models/m/versions/2"
    green = LiveResource(blue.id.rsplit("/", 1)[0] + "/green", blue.type, "green", green_body)

    def traffic(body: dict[str, Any]) -> None:
        body["properties"]["traffic"] = {"green": 100}
        body["properties"]["mirrorTraffic"] = {"green": 10}

    def restarted(body: dict[str, Any]) -> None:
        body["properties"]["timePeriod"] = {"startDate": "2027-01-01T00:00:00Z"}

    live = [r for r in inventory if r.id != blue.id] + [green]
    live = _edited(live, _of(f"{ML}:OnlineEndpoint"), traffic)
    live = _edited(live, _of("azure-native:consumption:Budget"), restarted)
    assert drift(expected, live) == []


def test_an_inventory_that_reads_some_types_is_compared_on_those_only(
    dev: tuple[dict[str, Any], list[LiveResource]],
) -> None:
    expected, inventory = dev
    serving = {f"{ML}:OnlineEndpoint", f"{ML}:OnlineDeployment"}
    endpoints = [r for r in inventory if r.type_token in serving]
    assert drift(judged(expected, serving), endpoints) == []
    assert {d.kind for d in drift(expected, endpoints)} == {"missing"}


def test_an_expected_state_of_another_release_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="version 2: this audit reads version 1"):
        drift({"version": 2, "resources": []}, [])


@pytest.mark.parametrize(
    ("planned", "live", "equal"),
    [
        ("Disabled", "disabled", True),  # ARM enums and ids ignore case
        ("PT120S", "PT2M", True),  # ISO 8601 durations by length
        ("PT5S", "PT0.5S", False),
        (4.0, 4, True),  # the wire's numbers are floats
        (False, 0, False),  # a boolean is not a number
        (["a", "b"], ["b", "a"], True),  # lists in any order
        (["a"], ["a", "b"], False),  # an identity added is drift
        ({"a": 1}, {"a": 1, "currentNodeCount": 3}, True),  # keys ARM adds are not
        ({"a": 1}, {}, False),  # a key removed is
        ({}, None, True),
        ("Enabled", None, False),
    ],
)
def test_values_compare_as_arm_returns_them(planned: Any, live: Any, equal: bool) -> None:
    assert same(planned, live) is equal


def test_the_document_is_built_from_the_program_inputs_without_what_is_ignored() -> None:
    from policies.config import PackConfig  # noqa: PLC0415
    from policies.plan_drift import PlannedResource  # noqa: PLC0415
    from tenancy import load_stack  # noqa: PLC0415

    group = "/subscriptions/s/resourceGroups/rg-tmlops-local-tenant-contoso"
    account = PlannedResource(
        f"{group}/providers/Microsoft.Storage/storageAccounts/st1",
        "azure-native:storage:StorageAccount",
        {
            "resourceGroupName": "rg-tmlops-local-tenant-contoso",
            "accountName": "st1",
            "allowBlobPublicAccess": False,
            "tags": {contracts.TAG_TENANT: "contoso"},
            "networkRuleSet": {"defaultAction": "Deny"},
        },
        ignored=("tags",),
    )
    document = expected_state([account], PackConfig.from_spec(load_stack("local")))
    [entry] = document["resources"]
    assert entry["governed"] == {"allowBlobPublicAccess": False}
    assert not entry["automationOwned"]
