"""Stack rules (isolation, budgets, diagnostics) and the mandatory-tags rule, each with a
compliant and a violating stack built from plain resources."""

from __future__ import annotations

from typing import Any

from policies.catalogue import BY_NAME
from policies.core import Finding, Resource, Stack, run_stack_rule
from tests.policies.conftest import TAGS, messages, settings_for
from tests.policies.conftest import planned_resource as res

ML = "azure-native:machinelearningservices"


def tags(tenant: str) -> dict[str, Any]:
    return {"tags": {**TAGS, "tenant-id": tenant}}


def run(rule: str, resources: list[Resource], **given: Any) -> list[Finding]:
    return run_stack_rule(BY_NAME[rule], Stack(resources), settings_for(rule, **given))


# --- isolation ---------------------------------------------------------------------------


def _two_tenants() -> list[Resource]:
    return [
        res("resources:ResourceGroup", "rg-a", tags("a")),
        res("resources:ResourceGroup", "rg-b", tags("b")),
        res("resources:ResourceGroup", "rg-platform", tags("platform")),
        res("managedidentity:UserAssignedIdentity", "id-a", tags("a")),
        res("managedidentity:UserAssignedIdentity", "id-b", tags("b")),
        res("storage:StorageAccount", "st-platform", tags("platform")),
    ]


def test_a_tenant_may_reference_its_own_and_the_platforms_resources() -> None:
    workspace = res(
        "machinelearningservices:Workspace",
        "ws-a",
        tags("a"),
        {"identity": ["id-a"], "resourceGroupName": ["rg-a"], "storageAccount": ["st-platform"]},
    )
    assert run("tenant-isolation", [*_two_tenants(), workspace]) == []


def test_a_reference_to_another_tenants_identity_is_named() -> None:
    workspace = res(
        "machinelearningservices:Workspace",
        "ws-a",
        tags("a"),
        {"identity": ["id-a", "id-b"], "primaryUserAssignedIdentity": ["id-b"]},
    )
    assert run("tenant-isolation", [*_two_tenants(), workspace]) == [
        Finding(
            "'ws-a' of 'a' references the identity 'id-b' of 'b' (through .identity)",
            "urn:ws-a",
        )
    ]


def test_an_untagged_resource_belongs_to_what_it_extends() -> None:
    # A role assignment has no tags: it belongs to its scope's owner.
    assignment = res(
        "authorization:RoleAssignment",
        "ra",
        {},
        {"scope": ["rg-a"], "principalId": ["id-b"]},
    )
    assert [f.urn for f in run("tenant-isolation", [*_two_tenants(), assignment])] == ["urn:ra"]


def test_platform_resources_may_reference_every_tenant() -> None:
    route = res("apimanagement:Backend", "backend", {}, {"resourceGroupName": ["rg-platform"]})
    dead_letter = res(
        "eventgrid:SystemTopicEventSubscription",
        "sub",
        {},
        {"resourceGroupName": ["rg-a"], "deadLetterWithResourceIdentity": ["st-platform"]},
    )
    assert run("tenant-isolation", [*_two_tenants(), route, dead_letter]) == []


# --- budgets -----------------------------------------------------------------------------

NOTIFY = {
    "actual-80pct": {"enabled": True, "thresholdType": "Actual"},
    "forecasted-100pct": {"enabled": True, "thresholdType": "Forecasted"},
}
TENANTS = {
    "tenantTiers": {"a": "dedicated", "p1": "pooled", "pool:x": "pooled"},
    "tenantPools": {"p1": "pool:x"},
}


def _budgets(pool_notifications: dict[str, Any]) -> list[Resource]:
    return [
        res("resources:ResourceGroup", "rg-a", tags("a")),
        res("resources:ResourceGroup", "rg-x", tags("pool:x")),
        res("consumption:Budget", "b-a", {"notifications": NOTIFY}, {"scope": ["rg-a"]}),
        res(
            "consumption:Budget", "b-x", {"notifications": pool_notifications}, {"scope": ["rg-x"]}
        ),
    ]


def test_every_tenant_has_a_budget_a_pooled_one_its_pools() -> None:
    assert run("tenant-budgets", _budgets(NOTIFY), **TENANTS) == []


def test_a_budget_without_a_forecast_is_named() -> None:
    actual_only = {"actual-80pct": NOTIFY["actual-80pct"]}
    assert run("tenant-budgets", _budgets(actual_only), **TENANTS) == [
        Finding(
            "tenant 'p1': budget 'b-x' has 1 notification(s), at least 2 required; no "
            "forecasted notification (an overrun is only seen after it happens)",
            "urn:b-x",
        )
    ]


def test_a_disabled_notification_does_not_count() -> None:
    disabled = {**NOTIFY, "forecasted-100pct": {**NOTIFY["forecasted-100pct"], "enabled": False}}
    [finding] = run("tenant-budgets", _budgets(disabled), **TENANTS)
    assert "1 notification(s)" in finding.message


def test_a_tenant_without_a_budget_is_named_at_its_resource_group() -> None:
    resources = [r for r in _budgets(NOTIFY) if r.name != "b-a"]
    assert run("tenant-budgets", resources, **TENANTS) == [
        Finding("tenant 'a' has no budget", "urn:rg-a")
    ]


def test_a_pooled_tenants_budget_filtered_on_its_own_tag_watches_no_cost() -> None:
    """W8: every resource of a pool is tagged with the pool, so a budget filtered on a
    pooled tenant's tag matches no cost and would never fire."""
    filtered = res(
        "consumption:Budget",
        "b-p1",
        {
            "notifications": NOTIFY,
            "filter": {"tags": {"name": "tenant-id", "operator": "In", "values": ["p1"]}},
        },
        {"scope": ["rg-x"]},
    )
    assert run("tenant-budgets", [*_budgets(NOTIFY), filtered], **TENANTS) == [
        Finding(
            "budget 'b-p1' filters on tenant-id in ['p1'], a tag no resource of its scope has",
            "urn:b-p1",
        )
    ]


# --- diagnostics -------------------------------------------------------------------------


def _workspaces() -> list[Resource]:
    return [
        res("operationalinsights:Workspace", "logs", tags("platform")),
        res("machinelearningservices:Workspace", "ws-a", tags("a")),
        res("machinelearningservices/v20250101preview:Workspace", "ws-b", tags("b")),
    ]


def test_every_workspace_sends_diagnostics_to_log_analytics() -> None:
    external = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.OperationalInsights/workspaces/w"
    )
    settings = [
        res(
            "monitor:DiagnosticSetting",
            "d-a",
            {},
            {"resourceUri": ["ws-a"], "workspaceId": ["logs"]},
        ),
        res(
            "monitor:DiagnosticSetting", "d-b", {"workspaceId": external}, {"resourceUri": ["ws-b"]}
        ),
    ]
    assert run("workspace-diagnostics", [*_workspaces(), *settings]) == []


def test_a_workspace_whose_diagnostics_go_elsewhere_is_named() -> None:
    settings = [
        res(
            "monitor:DiagnosticSetting",
            "d-a",
            {},
            {"resourceUri": ["ws-a"], "workspaceId": ["logs"]},
        ),
        res(
            "monitor:DiagnosticSetting",
            "d-b",
            {"storageAccountId": "st"},
            {"resourceUri": ["ws-b"]},
        ),
    ]
    assert run("workspace-diagnostics", [*_workspaces(), *settings]) == [
        Finding("workspace 'ws-b' has no diagnostic setting sending to Log Analytics", "urn:ws-b")
    ]


# --- mandatory tags ----------------------------------------------------------------------

WS = f"{ML}:Workspace"
KNOWN = {"tenantTiers": {"contoso": "dedicated"}, "environment": "prod"}


def test_tags_compliant() -> None:
    assert messages("mandatory-tags", WS, {"tags": TAGS}, **KNOWN) == []


def test_missing_wrong_and_unknown_tags_are_named_together() -> None:
    props = {"tags": {"tenant-id": "umbrella", "env": "dev"}}
    assert messages("mandatory-tags", WS, props, **KNOWN) == [
        "missing tag(s): cost-center; tag env='dev', but the stack's environment is 'prod'; "
        "tag tenant-id='umbrella' names no tenant or pool of this stack"
    ]


def test_resources_that_cannot_carry_tags_are_not_asked_to() -> None:
    assert (
        messages("mandatory-tags", "azure-native:authorization:RoleAssignment", {}, **KNOWN) == []
    )
    assert messages("mandatory-tags", "azure-native:monitor:DiagnosticSetting", {}, **KNOWN) == []
    # A type the SDK does not ship is judged by whether it was given tags at all.
    preview = "azure-native:machinelearningservices/v20990101preview:Thing"
    assert messages("mandatory-tags", preview, {"tags": {}}, **KNOWN) == [
        "missing tag(s): tenant-id, env, cost-center"
    ]
    assert messages("mandatory-tags", preview, {}, **KNOWN) == []
