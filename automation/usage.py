"""Usage metered per tenant: what each tenant's requests took of the deployments that serve
it (requests, rows, scoring time), read from the collected data where every row names its
tenant (``automation.port.UsageSource``). Inside a pool, a tenant's share of the pool's
scoring time is its share of the pool's compute, and so of its cost: Azure's cost data
cannot split a shared endpoint (a tag filter sees the pool's resources only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automation.port import Usage


@dataclass(frozen=True)
class TenantUsage:
    tenant: str
    usage: Usage
    share: float  # of the endpoint's scoring time in the window (0 when nothing ran)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.usage.requests,
            "rows": self.usage.rows,
            "scoring_ms": round(self.usage.scoring_ms, 3),
            "share": round(self.share, 6),
        }


def shares(usage: Mapping[str, Usage]) -> dict[str, TenantUsage]:
    """Each tenant's usage with its share of the total scoring time."""
    total = sum(u.scoring_ms for u in usage.values())
    return {
        tenant: TenantUsage(tenant, used, used.scoring_ms / total if total > 0 else 0.0)
        for tenant, used in usage.items()
    }
