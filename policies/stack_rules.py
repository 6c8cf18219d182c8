"""Rules over the whole stack: mandatory tags, tenant isolation, a budget for every tenant,
diagnostics for every workspace.

References between resources are followed through property dependencies (which input was
computed from which resource), not through resource ids: dependencies are known in a
preview, before any id exists, and the engine gives them to a pack as well.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from policies.core import (
    MANDATORY,
    ML,
    Finding,
    Resource,
    Rule,
    Setting,
    Settings,
    Stack,
    rule_type,
)
from policies.shared_settings import TENANT_POOLS, TENANT_TIERS
from tenancy import contracts

BUDGET = "azure-native:consumption:Budget"
DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting"
LOG_ANALYTICS = "azure-native:operationalinsights:Workspace"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"

#: What one tenant's resources must never point at when it belongs to another tenant.
GUARDED_TYPES = {
    "azure-native:managedidentity:UserAssignedIdentity": "identity",
    "azure-native:keyvault:Vault": "key vault",
    "azure-native:keyvault:Key": "key vault key",
    "azure-native:keyvault:Secret": "key vault secret",
    "azure-native:storage:StorageAccount": "storage account",
    "azure-native:storage:BlobContainer": "blob container",
    "azure-native:containerregistry:Registry": "container registry",
    f"{ML}:OnlineEndpoint": "online endpoint",
    f"{ML}:BatchEndpoint": "batch endpoint",
    f"{ML}:OnlineDeployment": "online deployment",
    f"{ML}:BatchDeployment": "batch deployment",
}


def _is_tenant(owner: str | None) -> bool:
    """Tenants and pools are isolated from each other; the platform serves them all."""
    return bool(owner) and owner != contracts.PLATFORM_TENANT_TAG


# --- mandatory tags -------------------------------------------------------------------------


@cache
def _sdk_taggable(type_token: str) -> bool | None:
    """Whether the provider's SDK gives this resource type an ARM ``tags`` input (a map);
    None when the SDK cannot say (module or class not found)."""
    parts = type_token.split(":")
    if len(parts) != 3 or parts[0] != "azure-native":
        return None
    module_path = "pulumi_azure_native." + parts[1].replace("/", ".")
    try:
        cls = getattr(importlib.import_module(module_path), parts[2])
        tags = inspect.signature(cls._internal_init).parameters.get("tags")
        # ARM tags are a map; a list of ``tags`` (API Management's named values, say) is
        # the service's own labels, not ARM tags.
        return tags is not None and "Mapping" in str(tags.annotation)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def taggable(resource: Resource) -> bool:
    if not resource.type.startswith("azure-native:"):
        return False
    known = _sdk_taggable(resource.type)
    # Types the SDK does not know (a pinned API version not shipped): trust the inputs.
    return known if known is not None else "tags" in resource.props.raw


def mandatory_tags(resource: Resource, settings: Settings) -> Iterator[str]:
    if not taggable(resource):
        return
    tags = resource.props.get_known("tags", {})
    required = settings["requiredTags"]
    missing = [tag for tag in required if not tags.get(tag)]
    if missing:
        yield f"missing tag(s): {', '.join(missing)}"
    environment = settings["environment"]
    env = tags.get(contracts.TAG_ENV)
    if environment and env and env != environment:
        yield f"tag {contracts.TAG_ENV}={env!r}, but the stack's environment is {environment!r}"
    known = settings[TENANT_TIERS.name]
    tenant = tags.get(contracts.TAG_TENANT)
    if known and tenant and tenant != contracts.PLATFORM_TENANT_TAG and tenant not in known:
        yield f"tag {contracts.TAG_TENANT}={tenant!r} names no tenant or pool of this stack"


# --- isolation ----------------------------------------------------------------------------


def tenant_isolation(stack: Stack, _: Settings) -> Iterator[Finding]:
    for resource in stack.resources:
        owner = stack.owner(resource)
        if not _is_tenant(owner):
            continue
        reported: set[str] = set()
        for prop, urn in resource.references():
            target = stack.by_urn.get(urn)
            if target is None or urn in reported:
                continue
            kind = GUARDED_TYPES.get(rule_type(target.type))
            theirs = stack.owner(target)
            if kind and _is_tenant(theirs) and theirs != owner:
                reported.add(urn)
                yield Finding(
                    f"'{resource.name}' of '{owner}' references the {kind} '{target.name}' "
                    f"of '{theirs}' (through .{prop})",
                    resource.urn,
                )


# --- budgets ------------------------------------------------------------------------------


def _budget_tenants(stack: Stack, budget: Resource, pools: Mapping[str, str]) -> list[str]:
    """The tenants a budget watches: its scope's owner, and a pool's pooled tenants (every
    resource of a pool carries the pool's tag, so the pool's cost holds theirs)."""
    owner = stack.owner(budget)
    if not owner:
        return []
    return [owner, *(tenant for tenant, pool in pools.items() if pool == owner)]


def _filter_problem(budget: Resource) -> str | None:
    """A tag filter naming a tenant-id no resource of the scope carries watches no cost."""
    tag_filter = budget.props.get_known("filter.tags", {})
    if tag_filter.get("name") != contracts.TAG_TENANT:
        return None
    values = [str(v) for v in tag_filter.get("values") or []]
    return f"filters on {contracts.TAG_TENANT} in {values}, a tag no resource of its scope has"


def _notification_problems(budget: Resource, minimum: int) -> list[str]:
    raw = budget.props.get_known("notifications", {})
    active = [n for n in raw.values() if isinstance(n, Mapping) and n.get("enabled") is not False]
    problems = []
    if len(active) < minimum:
        problems.append(f"{len(active)} notification(s), at least {minimum} required")
    if not any(n.get("thresholdType") == "Forecasted" for n in active):
        problems.append("no forecasted notification (an overrun is only seen after it happens)")
    return problems


def tenant_budgets(stack: Stack, settings: Settings) -> Iterator[Finding]:
    tiers: Mapping[str, Any] = settings[TENANT_TIERS.name]
    pools: Mapping[str, str] = settings[TENANT_POOLS.name]
    tenants = [tag for tag in tiers if not tag.startswith("pool:")]
    minimum = int(settings["minNotifications"])
    budgets: dict[str, list[Resource]] = {}
    for budget in stack.of_type(BUDGET):
        problem = _filter_problem(budget)
        if problem:
            yield Finding(f"budget '{budget.name}' {problem}", budget.urn)
            continue
        for tenant in _budget_tenants(stack, budget, pools):
            budgets.setdefault(tenant, []).append(budget)
    unwatched: dict[str, tuple[Resource, list[str], list[str]]] = {}
    for tenant in sorted(tenants):
        watched = budgets.get(tenant, [])
        if not watched:
            yield Finding(f"tenant '{tenant}' has no budget", _anchor(stack, tenant))
            continue
        checked = [(b, _notification_problems(b, minimum)) for b in watched]
        if all(problems for _, problems in checked):
            budget, problems = checked[0]
            unwatched.setdefault(budget.urn, (budget, problems, []))[2].append(tenant)
    # One finding per budget: a pool's budget speaks for all of its tenants.
    for budget, problems, of_tenants in unwatched.values():
        named = ", ".join(f"'{t}'" for t in of_tenants)
        yield Finding(
            f"tenant {named}: budget '{budget.name}' has {'; '.join(problems)}", budget.urn
        )


def _anchor(stack: Stack, tenant: str) -> str:
    """Where a missing budget is reported: the resource group of the tenant's stamp."""
    for group in stack.of_type(RESOURCE_GROUP):
        if group.tags.get(contracts.TAG_TENANT) == tenant:
            return group.urn
    return ""


# --- diagnostics --------------------------------------------------------------------------


def _to_log_analytics(stack: Stack, setting: Resource) -> bool:
    destinations = setting.property_dependencies.get("workspaceId", frozenset())
    if any(
        (target := stack.by_urn.get(urn)) is not None and target.type == LOG_ANALYTICS
        for urn in destinations
    ):
        return True
    # A Log Analytics workspace outside this stack is given by its id.
    workspace_id = setting.props.get("workspaceId") or ""
    return "/providers/microsoft.operationalinsights/workspaces/" in str(workspace_id).lower()


def workspace_diagnostics(stack: Stack, _: Settings) -> Iterator[Finding]:
    covered: set[str] = set()
    for setting in stack.of_type(DIAGNOSTIC_SETTING):
        if _to_log_analytics(stack, setting):
            covered |= setting.property_dependencies.get("resourceUri", frozenset())
    for workspace in stack.resources:
        if rule_type(workspace.type) == f"{ML}:Workspace" and workspace.urn not in covered:
            yield Finding(
                f"workspace '{workspace.name}' has no diagnostic setting sending to Log Analytics",
                workspace.urn,
            )


RULES: tuple[Rule, ...] = (
    Rule(
        "mandatory-tags",
        "Every taggable resource carries the tenant-id, env and cost-center tags.",
        "Cost is reported and budgets filter by these tags; an untagged resource is cost "
        "nobody owns.",
        MANDATORY,
        settings=(
            TENANT_TIERS,
            Setting(
                "requiredTags",
                list[str],
                "tags every taggable resource must carry",
                list(contracts.MANDATORY_TAGS),
            ),
            Setting(
                "environment",
                str,
                "the value the env tag must have (any, when empty)",
                "",
                lambda spec: spec.environment.value,
            ),
        ),
        check=mandatory_tags,
    ),
    Rule(
        "tenant-isolation",
        "No resource of one tenant references an identity, key vault, storage account, "
        "registry or endpoint of another tenant.",
        "A reference across tenants is a path for one tenant's data, secrets or traffic "
        "to reach another's.",
        MANDATORY,
        stack_check=tenant_isolation,
    ),
    Rule(
        "tenant-budgets",
        "Every tenant has a budget with at least two notifications, one of them forecasted "
        "(a pooled tenant: its pool's), and no budget filters on a tag that matches no cost.",
        "A budget is how the automation learns to stop a tenant's spending; a forecasted "
        "notification warns before the money is gone; a filter matching nothing never fires.",
        MANDATORY,
        settings=(
            TENANT_TIERS,
            TENANT_POOLS,
            Setting("minNotifications", int, "notifications each budget needs", 2),
        ),
        stack_check=tenant_budgets,
    ),
    Rule(
        "workspace-diagnostics",
        "Every Azure ML workspace sends diagnostic logs to Log Analytics.",
        "Audit, incident and cost investigations need the workspace's own logs.",
        MANDATORY,
        stack_check=workspace_diagnostics,
    ),
)
