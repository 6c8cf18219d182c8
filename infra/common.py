"""Small helpers every component uses: tags, role assignments, diagnostic settings."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import pulumi
from pulumi_azure_native import authorization, monitor

from tenancy import contracts
from tenancy.permissions import NEEDS, Condition, Identity, Target
from tenancy.rbac import ROLE_IDS, Column, Grant, Persona
from tenancy.spec import PlatformSpec

#: Namespace for deterministic role assignment names (a GUID per scope/role/principal).
_ASSIGNMENT_NAMESPACE = uuid.UUID("6f1d3c1e-5a0b-4c55-9d8c-1b7e2f3a9c40")


def standard_tags(spec: PlatformSpec, tenant_tag: str, cost_center: str) -> dict[str, str]:
    """The mandatory tags (tenant-id, env, cost-center) plus the product marker."""
    return {
        contracts.TAG_TENANT: tenant_tag,
        contracts.TAG_ENV: spec.environment.value,
        contracts.TAG_COST_CENTER: cost_center,
        "managed-by": "tenant-mlops",
    }


def role_definition_id(subscription_id: pulumi.Input[str], role_code: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/",
        subscription_id,
        "/providers/Microsoft.Authorization/roleDefinitions/",
        ROLE_IDS[role_code],
    )


@dataclass(frozen=True)
class Principal:
    """Who receives a role: an Entra group of a persona, or a managed identity."""

    key: str  # stable, for names: the group id, or the identity's logical name
    object_id: pulumi.Input[str]
    # None: whoever runs `pulumi up` (a user or a pipeline's service principal; Azure looks
    # the type up itself).
    kind: Literal["Group", "ServicePrincipal"] | None


def assign_role(
    name: str,
    *,
    principal: Principal,
    role_code: str,
    scope: pulumi.Input[str],
    scope_key: str,
    subscription_id: pulumi.Input[str],
    parent: pulumi.Resource,
    just_in_time: bool = False,
    description: str = "",
    custom_role_id: pulumi.Input[str] | None = None,
) -> pulumi.CustomResource:
    """A standing role assignment, or a PIM eligibility where the guidance asks for
    just-in-time access (production platform support and CI/CD). ``role_code`` names a
    built-in role, or labels ``custom_role_id`` when one is given."""
    role_id = custom_role_id or role_definition_id(subscription_id, role_code)
    opts = pulumi.ResourceOptions(parent=parent)
    if just_in_time:
        return authorization.PimRoleEligibilitySchedule(
            name,
            principal_id=principal.object_id,
            role_definition_id=role_id,
            scope=scope,
            justification=description or "tenant-mlops just-in-time access",
            schedule_info={"expiration": {"type": "NoExpiration"}},
            opts=opts,
        )
    assignment_id = uuid.uuid5(_ASSIGNMENT_NAMESPACE, f"{scope_key}|{role_code}|{principal.key}")
    return authorization.RoleAssignment(
        name,
        role_assignment_name=str(assignment_id),
        principal_id=principal.object_id,
        principal_type=principal.kind,
        role_definition_id=role_id,
        scope=scope,
        description=description or None,
        opts=opts,
    )


def apply_grants(
    name: str,
    *,
    grants: Sequence[Grant],
    principals: Mapping[Persona, Sequence[Principal]],
    scopes: Mapping[Column, tuple[str, pulumi.Input[str]]],
    subscription_id: pulumi.Input[str],
    parent: pulumi.Resource,
) -> list[pulumi.CustomResource]:
    """Turn persona grants into role assignments on the scopes given (column -> (key, id)).
    Columns without a scope here are not this component's to grant."""
    created = []
    for grant in grants:
        if grant.column not in scopes:
            continue
        scope_key, scope_id = scopes[grant.column]
        for principal in principals.get(grant.persona, ()):
            created.append(
                assign_role(
                    f"{name}-{grant.persona}-{grant.column}-{grant.role_code}-{principal.key[:8]}",
                    principal=principal,
                    role_code=grant.role_code,
                    scope=scope_id,
                    scope_key=scope_key,
                    subscription_id=subscription_id,
                    parent=parent,
                    just_in_time=grant.just_in_time,
                    description=f"MLOps v2 persona {grant.persona}: {grant.column}",
                )
            )
    return created


@dataclass(frozen=True)
class GrantTarget:
    """Where a need's role goes: a stable key (for the assignment's name), the scope, and
    whether it lies in the holder's own resource group (a grant there then covers it)."""

    key: str
    scope: pulumi.Input[str]
    in_group: bool = True


def grant_needs(
    name: str,
    *,
    identities: Sequence[Identity],
    principal: Principal,
    targets: Mapping[Target, GrantTarget],
    conditions: Sequence[Condition],
    subscription_id: pulumi.Input[str],
    parent: pulumi.Resource,
) -> list[pulumi.CustomResource]:
    """The role assignments ``tenancy.permissions`` asks for ``identities`` on ``targets``:
    for each need, its first role, unless a role it accepts is granted already on the same
    target or, for a target of the group, on the group."""
    granted: list[tuple[Target, str]] = []
    created = []
    for need in NEEDS:
        target = targets.get(need.target)
        if need.identity not in identities or need.when not in conditions or target is None:
            continue
        covered = any(
            role in need.roles
            and (where == need.target or (where == "resource_group" and target.in_group))
            for where, role in granted
        )
        if covered:
            continue
        role = need.roles[0]
        created.append(
            assign_role(
                f"{name}-{need.target.replace('_', '')}-{role}",
                principal=principal,
                role_code=role,
                scope=target.scope,
                scope_key=target.key,
                subscription_id=subscription_id,
                parent=parent,
                description=f"tenant-mlops {need.identity} identity: {need.action}",
            )
        )
        granted.append((need.target, role))
    return created


def group_principals(
    groups_by_persona: Mapping[str, Sequence[str]],
) -> dict[Persona, list[Principal]]:
    return {
        cast(Persona, persona): [Principal(group, group, "Group") for group in groups]
        for persona, groups in groups_by_persona.items()
        if groups
    }


def send_diagnostics(
    name: str,
    *,
    resource_id: pulumi.Input[str],
    workspace_id: pulumi.Input[str],
    parent: pulumi.Resource,
    logs: bool = True,
) -> monitor.DiagnosticSetting:
    """All logs and metrics of a resource to the environment's Log Analytics workspace."""
    return monitor.DiagnosticSetting(
        name,
        name="to-log-analytics",
        resource_uri=resource_id,
        workspace_id=workspace_id,
        log_analytics_destination_type="Dedicated",
        logs=[{"category_group": "allLogs", "enabled": True}] if logs else None,
        metrics=[{"category": "AllMetrics", "enabled": True}],
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class DeployerWrite:
    """The deployer's right to write one blob container of the platform account during
    `pulumi up` (data-plane access, as the account takes no shared key)."""

    account_id: pulumi.Input[str]
    container: str
    deployer_object_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    scope_key: str  # the stable part of the assignment's name
    description: str


def grant_deployer_write(
    name: str, write: DeployerWrite, parent: pulumi.Resource
) -> pulumi.CustomResource:
    scope = pulumi.Output.concat(
        write.account_id, "/blobServices/default/containers/", write.container
    )
    return assign_role(
        name,
        principal=Principal("deployer", write.deployer_object_id, None),
        role_code="BlobDataContributor",
        scope=scope,
        scope_key=write.scope_key,
        subscription_id=write.subscription_id,
        parent=parent,
        description=write.description,
    )
