"""Azure's published limits that a stack's plan must stay within, as data: each with its
scope, its default and the Microsoft document that states it. A stack may raise a limit it
has been granted (``capacity.granted`` in its spec, with the grant's reference); it can
never lower one.

Scopes:
- ``subscription_region``: counted over one subscription in one region (a stack's);
- ``resource_group``: per resource group;
- ``endpoint``: per online endpoint (what the tenants it serves may send it at most,
  from their declared quotas);
- ``deployment``: per deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tenancy.spec import QuotaSpec

Scope = Literal["subscription_region", "resource_group", "endpoint", "deployment"]

_QUOTAS = (
    "https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas"
    "#azure-machine-learning-online-endpoints-and-batch-endpoints"
)
_STORAGE = (
    "https://learn.microsoft.com/azure/azure-resource-manager/management/"
    "azure-subscription-service-limits#storage-limits"
)
_ML_LIMITS = (
    "https://learn.microsoft.com/azure/azure-resource-manager/management/"
    "azure-subscription-service-limits#azure-machine-learning-limits"
)


@dataclass(frozen=True)
class AzureLimit:
    key: str
    resource: str  # what is counted, in words
    scope: Scope
    default: float
    doc: str


LIMITS: dict[str, AzureLimit] = {
    limit.key: limit
    for limit in (
        AzureLimit("endpoints", "online and batch endpoints", "subscription_region", 100, _QUOTAS),
        # A rollout runs green beside blue: every online endpoint counts two deployments.
        AzureLimit("deployments", "deployments", "subscription_region", 500, _QUOTAS),
        AzureLimit(
            "deployments_per_endpoint", "deployments of an endpoint", "endpoint", 20, _QUOTAS
        ),
        AzureLimit(
            "instances_per_deployment", "instances of a deployment", "deployment", 50, _QUOTAS
        ),
        AzureLimit(
            "requests_per_second", "requests a second to an endpoint", "endpoint", 500, _QUOTAS
        ),
        AzureLimit("connections", "connections to an endpoint", "endpoint", 500, _QUOTAS),
        AzureLimit("bandwidth_mb_per_second", "MB a second to an endpoint", "endpoint", 5, _QUOTAS),
        AzureLimit("storage_accounts", "storage accounts", "subscription_region", 250, _STORAGE),
        AzureLimit(
            "workspaces_per_resource_group",
            "workspaces of a resource group",
            "resource_group",
            800,
            _ML_LIMITS,
        ),
    )
}


#: The per-endpoint limits a tenant's declared quota loads (requests, connections, MB/s).
LOAD_KEYS = ("requests_per_second", "connections", "bandwidth_mb_per_second")


def tenant_load(quota: QuotaSpec) -> dict[str, float]:
    """What one tenant may send its online endpoint at most, by its declared quota: requests
    a second, connections (concurrent requests) and MB a second (each request at its
    largest payload)."""
    per_second = quota.rate_limit_per_minute / 60
    return {
        "requests_per_second": per_second,
        "connections": float(quota.max_concurrency),
        "bandwidth_mb_per_second": per_second * quota.max_payload_kb / 1024,
    }
