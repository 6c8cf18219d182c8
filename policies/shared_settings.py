"""Settings several rules need, derived from the platform spec: which tenant-id tags exist,
their tier and their data classification. Pools appear under their tag (``pool:<id>``)."""

from __future__ import annotations

from typing import Literal

from policies.core import Resource, Setting, Settings
from tenancy import contracts
from tenancy.spec import DataClassification, PlatformSpec, Tier

_CLASSIFICATION_ORDER: tuple[DataClassification, ...] = (
    "public",
    "internal",
    "confidential",
    "restricted",
)


def tenant_tiers(spec: PlatformSpec) -> dict[str, str]:
    tiers: dict[str, str] = {t.id: t.tier for t in spec.tenants}
    tiers.update({contracts.pool_tenant_tag(p.id): "pooled" for p in spec.pools})
    return tiers


def tenant_classifications(spec: PlatformSpec) -> dict[str, str]:
    """A pool holds the strictest classification among its tenants."""
    classes: dict[str, str] = {t.id: t.data_classification for t in spec.tenants}
    for pool in spec.pools:
        members = [t.data_classification for t in spec.tenants_in_pool(pool.id)] or ["internal"]
        classes[contracts.pool_tenant_tag(pool.id)] = max(members, key=_CLASSIFICATION_ORDER.index)
    return classes


TENANT_TIERS = Setting(
    "tenantTiers",
    dict[str, Literal["dedicated", "pooled"]],
    "tier of every tenant-id tag value (tenants, and pools as pool:<id>)",
    {},
    tenant_tiers,
)


def private_tiers(what: str) -> Setting:
    """The tiers whose ``what`` must be private: every tier of a private stack, none of a
    public one."""
    return Setting(
        "privateTiers",
        list[str],
        f"tiers whose {what} must be private",
        ["dedicated", "pooled"],
        lambda spec: ["dedicated", "pooled"] if spec.networking.private else [],
    )


def tenant_pools(spec: PlatformSpec) -> dict[str, str]:
    """Each pooled tenant's pool, under the pool's tag (``pool:<id>``)."""
    return {
        t.id: contracts.pool_tenant_tag(str(t.pool)) for t in spec.tenants if t.tier == "pooled"
    }


TENANT_POOLS = Setting(
    "tenantPools",
    dict[str, str],
    "the pool (as pool:<id>) of every pooled tenant",
    {},
    tenant_pools,
)
TENANT_CLASSIFICATIONS = Setting(
    "tenantClassifications",
    dict[str, Literal["public", "internal", "confidential", "restricted"]],
    "data classification of every tenant-id tag value (a pool: its strictest tenant's)",
    {},
    tenant_classifications,
)


class NotConfigured(Exception):  # noqa: N818 - reported as a finding, not raised to users
    pass


def tenant_tag(resource: Resource) -> str:
    tag = resource.tags.get(contracts.TAG_TENANT)
    if not isinstance(tag, str) or not tag:
        raise NotConfigured(f"has no '{contracts.TAG_TENANT}' tag, so its tier is unknown")
    return tag


def tier_of(resource: Resource, settings: Settings) -> Tier:
    """The tier of the tenant (or pool) a resource is tagged with."""
    tag = tenant_tag(resource)
    tiers = settings[TENANT_TIERS.name]
    if tag not in tiers:
        raise NotConfigured(
            f"belongs to '{tag}', which this policy's {TENANT_TIERS.name} does not list "
            "(generate the pack config with `mlops policy-config`)"
        )
    tier: Tier = tiers[tag]
    return tier
