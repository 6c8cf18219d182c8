"""Checks that relate parts of the platform document to each other.

They read the raw document (a dict straight from YAML) rather than the parsed models, so they
still run when some field elsewhere is invalid; every check tolerates values of the wrong type
(the field validation reports those). Together with the field errors this gives one error that
names every bad key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from itertools import pairwise
from typing import Any

from tenancy import naming
from tenancy.errors import ConfigIssue
from tenancy.spec import (
    DEDICATED_PROFILE,
    POOLED_PROFILE,
    Environment,
    OnlineEndpointSpec,
    TenantPersonas,
    TierProfile,
)
from tenancy.validators import endpoint_name_problem

_PERSONA_NAMES = frozenset(TenantPersonas.model_fields)


def _items(raw: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    value = raw.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, Mapping)]


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _tier_profile(raw: Mapping[str, Any], tier: str) -> TierProfile:
    """The tier's profile as the document sets it, falling back to the default when the
    document's own profile is missing or invalid (its field errors are reported elsewhere)."""
    default = DEDICATED_PROFILE if tier == "dedicated" else POOLED_PROFILE
    override = _get(raw, "tiers", tier)
    if not isinstance(override, Mapping):
        return default
    try:
        return TierProfile.model_validate({**default.model_dump(), **override})
    except ValueError:
        return default


def _environment(raw: Mapping[str, Any]) -> Environment | None:
    value = raw.get("environment")
    return Environment(str(value)) if value in Environment._value2member_map_ else None


def relational_issues(raw: Mapping[str, Any]) -> list[ConfigIssue]:
    return [
        *_duplicate_ids(raw),
        *_budget_threshold_order(raw),
        *_tenant_pool_links(raw),
        *_compute_fits_tier(raw),
        *_endpoint_names(raw),
        *_shared_models_have_contributors(raw),
        *_approver_personas(raw),
        *_local_stamps_priced(raw),
    ]


def _duplicate_ids(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    for key in ("tenants", "pools"):
        ids = Counter(
            item.get("id") for _, item in _items(raw, key) if isinstance(item.get("id"), str)
        )
        for i, item in _items(raw, key):
            if ids[item.get("id")] > 1:
                yield ConfigIssue(f"{key}[{i}].id", f"duplicate id '{item['id']}'")


def _budget_threshold_order(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    """Thresholds of one type must rise: Azure fires them in order, and a repeated or falling
    threshold is a notification that can never mean anything new."""
    for key in ("tenants", "pools"):
        for i, node in _items(raw, key):
            thresholds = _get(node, "budget", "thresholds")
            if not isinstance(thresholds, list):
                continue
            for kind in ("Actual", "Forecasted"):
                values = [
                    t["percent"]
                    for t in thresholds
                    if isinstance(t, Mapping)
                    and t.get("type", "Actual") == kind
                    and isinstance(t.get("percent"), int | float)
                ]
                if any(b <= a for a, b in pairwise(values)):
                    yield ConfigIssue(
                        f"{key}[{i}].budget.thresholds",
                        f"{kind} thresholds {values} must be strictly increasing",
                    )


def _tenant_pool_links(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    pool_ids = {item.get("id") for _, item in _items(raw, "pools")}
    for i, tenant in _items(raw, "tenants"):
        tier, pool = tenant.get("tier"), tenant.get("pool")
        if tier == "pooled" and pool is None:
            yield ConfigIssue(f"tenants[{i}].pool", "a pooled tenant must name its pool")
        elif tier == "pooled" and pool not in pool_ids:
            known = ", ".join(sorted(str(p) for p in pool_ids)) or "none"
            yield ConfigIssue(
                f"tenants[{i}].pool", f"pool '{pool}' does not exist (pools: {known})"
            )
        elif tier == "dedicated" and pool is not None:
            yield ConfigIssue(
                f"tenants[{i}].pool", "a dedicated tenant has its own stamp and names no pool"
            )
        if tier == "dedicated" and tenant.get("compute") is None:
            yield ConfigIssue(f"tenants[{i}].compute", "a dedicated tenant needs a compute block")
        if tier == "pooled" and _get(tenant, "endpoints", "online", "name") is not None:
            yield ConfigIssue(
                f"tenants[{i}].endpoints.online.name",
                "a pooled tenant is served by its pool's endpoint and cannot name its own",
            )


def _compute_blocks(raw: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    for i, tenant in _items(raw, "tenants"):
        if isinstance(tenant.get("compute"), Mapping) and tenant.get("tier") in (
            "dedicated",
            "pooled",
        ):
            yield f"tenants[{i}]", tenant["tier"], tenant
    for i, pool in _items(raw, "pools"):
        yield f"pools[{i}]", "pooled", pool


def _compute_fits_tier(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    for path, tier, node in _compute_blocks(raw):
        profile = _tier_profile(raw, tier)
        sku = _get(node, "compute", "gpu_sku")
        if isinstance(sku, str) and sku not in profile.allowed_gpu_skus:
            yield ConfigIssue(
                f"{path}.compute.gpu_sku",
                f"GPU SKU '{sku}' is not allowed for the {tier} tier "
                f"(allowed: {', '.join(profile.allowed_gpu_skus)})",
            )
        max_nodes = _get(node, "compute", "max_nodes")
        if isinstance(max_nodes, int) and max_nodes > profile.max_nodes_cap:
            yield ConfigIssue(
                f"{path}.compute.max_nodes",
                f"{max_nodes} nodes is above the {tier} tier's cap of {profile.max_nodes_cap}",
            )
        instance_type = _get(node, "endpoints", "online", "instance_type")
        if isinstance(instance_type, str) and instance_type not in profile.allowed_instance_types:
            yield ConfigIssue(
                f"{path}.endpoints.online.instance_type",
                f"instance type '{instance_type}' is not allowed for the {tier} tier "
                f"(allowed: {', '.join(profile.allowed_instance_types)})",
            )


def _stamps(raw: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(path, id, node) of everything that gets its own endpoints: dedicated tenants, pools."""
    for i, tenant in _items(raw, "tenants"):
        if tenant.get("tier") == "dedicated" and isinstance(tenant.get("id"), str):
            yield f"tenants[{i}]", tenant["id"], tenant
    for i, pool in _items(raw, "pools"):
        if isinstance(pool.get("id"), str):
            yield f"pools[{i}]", pool["id"], pool


def _endpoint_names(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    env = _environment(raw)
    prefix = raw.get("prefix", "tmlops")
    installation = raw.get("installation")
    if env is None or not isinstance(prefix, str) or not isinstance(installation, str):
        return  # a missing or bad installation id is reported by its own key
    seen: dict[str, str] = {}
    derive = {"online": naming.online_endpoint, "batch": naming.batch_endpoint}
    for path, stamp_id, node in _stamps(raw):
        for kind, derive_name in derive.items():
            if _get(node, "endpoints", kind, "enabled") is False:
                continue
            explicit = _get(node, "endpoints", kind, "name")
            if explicit is not None:
                name, key = explicit, f"{path}.endpoints.{kind}.name"
            else:
                name, key = derive_name(prefix, env, stamp_id, installation), f"{path}.id"
                problem = endpoint_name_problem(name)
                if problem:
                    yield ConfigIssue(
                        key, f"derived {kind} {problem}; set {path}.endpoints.{kind}.name"
                    )
                    continue
            if not isinstance(name, str):
                continue
            if name in seen:
                yield ConfigIssue(
                    key, f"{kind} endpoint name '{name}' is also used by {seen[name]}"
                )
            seen[name] = key


def _local_stamps_priced(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    """The embedded platform charges a stamp's endpoint by its instance type's price
    (``budget_policy.instance_hour_prices``): a local stack must price each type it uses."""
    if _environment(raw) is not Environment.LOCAL:
        return
    prices = _get(raw, "budget_policy", "instance_hour_prices")
    priced = set(prices) if isinstance(prices, Mapping) else set()
    default = OnlineEndpointSpec.model_fields["instance_type"].default
    for path, _, node in _stamps(raw):
        if _get(node, "endpoints", "online", "enabled") is False:
            continue
        instance_type = _get(node, "endpoints", "online", "instance_type") or default
        if isinstance(instance_type, str) and instance_type not in priced:
            yield ConfigIssue(
                "budget_policy.instance_hour_prices",
                f"no price for {instance_type}, the online instance type of {path}: the "
                "embedded platform charges budgets by it",
            )


def _shared_models_have_contributors(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    tenants = _items(raw, "tenants")
    if any(t.get("shared_training_consent") is True for _, t in tenants):
        return
    for i, tenant in tenants:
        if tenant.get("model_strategy") in ("shared", "tuned_shared"):
            yield ConfigIssue(
                f"tenants[{i}].model_strategy",
                f"'{tenant['model_strategy']}' needs a shared model, but no tenant consents to "
                "shared training",
            )


def _approver_personas(raw: Mapping[str, Any]) -> Iterator[ConfigIssue]:
    """An approval gate that nobody can pass would stall every rollout of a tenant."""
    platform_policy = raw.get("rollout")
    for i, tenant in _items(raw, "tenants"):
        policy = tenant.get("rollout")
        path = f"tenants[{i}].rollout"
        if not isinstance(policy, Mapping):
            policy, path = platform_policy, "rollout"
        if not isinstance(policy, Mapping) or policy.get("approval_required") is not True:
            continue
        approvers = policy.get("approver_personas", ["project_lead"])
        if not isinstance(approvers, list):
            continue
        if not approvers:
            yield ConfigIssue(
                f"{path}.approver_personas", "approval is required but no persona may approve"
            )
            continue
        personas = tenant.get("personas")
        groups = [
            group
            for name in approvers
            if name in _PERSONA_NAMES and isinstance(personas, Mapping)
            for group in (personas.get(name) or [])
        ]
        if not groups:
            yield ConfigIssue(
                f"tenants[{i}].personas",
                f"rollouts need approval by {', '.join(map(str, approvers))}, but the tenant "
                "has no group in those personas",
            )
