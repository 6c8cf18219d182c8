"""Pools split into shards when one endpoint cannot serve them all: a pool holds at most its
``max_tenants``, and its online endpoint at most what Azure lets one endpoint take
(requests, connections and MB a second, tenancy.limits) against its tenants' declared
quotas.

A pool ``retail`` whose tenants do not fit becomes the shards ``retail``, ``retail-2``,
``retail-3``...: each a pool of its own (its own stamp, endpoints and budget, with the
pool's settings), and each pooled tenant belongs to exactly one. The split is stable:
each tenant's shard is kept in the stack's placement record (``pools``), a tenant stays in
its recorded shard while it fits there, and a new tenant goes to the first shard with room,
else to a new one. Adding a tenant never moves another; a tenant that must move (its
shard's ``max_tenants`` or a limit was lowered) is named.

The split produces the derived spec every reader uses (the program, the automation's spec
setting, ``mlops``), so "who serves tenant X" is still answered once: its ``pool``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tenancy.limits import LOAD_KEYS, tenant_load
from tenancy.spec import PlatformSpec, PoolSpec, TenantSpec


@dataclass(frozen=True)
class TenantMove:
    tenant: str
    origin: str
    shard: str
    why: str


@dataclass
class PoolSplit:
    spec: PlatformSpec  # the derived spec: one pool per shard, each tenant in its shard
    members: dict[str, str]  # pooled tenant -> its shard
    shards: dict[str, list[str]] = field(default_factory=dict)  # pool -> its shards, in order
    moves: list[TenantMove] = field(default_factory=list)

    @property
    def split(self) -> dict[str, list[str]]:
        """The pools that were split, with their shards."""
        return {pool: shards for pool, shards in self.shards.items() if len(shards) > 1}


def split_pools(spec: PlatformSpec, recorded: Mapping[str, str] | None = None) -> PoolSplit:
    """Each pool's tenants in shards that fit (``recorded``: tenant -> shard, from the
    stack's placement record). A spec whose pools all fit comes back as it is, so splitting
    a derived spec again changes nothing."""
    recorded = dict(recorded or {})
    pool_ids = {pool.id for pool in spec.pools}
    members: dict[str, str] = {}
    shards: dict[str, dict[str, list[TenantSpec]]] = {}
    moves: list[TenantMove] = []
    for pool in spec.pools:
        filler = _Shards(spec, pool, pool_ids)
        moves += filler.fill(spec.tenants_in_pool(pool.id), recorded)
        shards[pool.id] = filler.members
        members |= {t.id: shard for shard, ts in filler.members.items() for t in ts}
    order = {pool: list(found) for pool, found in shards.items()}
    if all(found == [pool] for pool, found in order.items()):
        return PoolSplit(spec, members, order, moves)
    return PoolSplit(_derived(spec, shards), members, order, moves)


class _Shards:
    """One pool's shards as they fill, with what each one's tenants load its endpoint with."""

    def __init__(self, spec: PlatformSpec, pool: PoolSpec, taken: set[str]) -> None:
        self.pool = pool
        self.taken = taken  # every pool id of the spec: a new shard's id must be free
        self.online = pool.endpoints.online.enabled
        self.limits = {key: spec.capacity.limit(key) for key in LOAD_KEYS}
        self.members: dict[str, list[TenantSpec]] = {pool.id: []}
        self.load: dict[str, dict[str, float]] = {pool.id: dict.fromkeys(LOAD_KEYS, 0.0)}

    def fill(self, tenants: list[TenantSpec], recorded: Mapping[str, str]) -> list[TenantMove]:
        moves, undecided = [], []
        for tenant in tenants:  # first those the record keeps, while they fit
            kept = recorded.get(tenant.id)
            if kept is None or not self._is_own(kept):
                undecided.append(tenant)
                continue
            self._open(kept)
            if self._fits(kept, tenant):
                self._add(kept, tenant)
                continue
            undecided.append(tenant)
            moves.append((tenant, kept))
        for tenant in undecided:  # then new ones, in the spec's order, first fit
            roomy = next((s for s in self._ordered() if self._fits(s, tenant)), None)
            self._add(roomy or self._new_shard(), tenant)
        for shard in [s for s, ts in self.members.items() if not ts and s != self.pool.id]:
            del self.members[shard]
        if not self.members[self.pool.id] and len(self.members) > 1:
            del self.members[self.pool.id]
        self.members = {s: self.members[s] for s in self._ordered() if s in self.members}
        return [
            TenantMove(tenant.id, origin, self._shard_of(tenant), self._why(origin))
            for tenant, origin in moves
        ]

    def _is_own(self, shard: str) -> bool:
        """A shard id this pool made: its own id, or ``<id>-<n>`` that no other pool has."""
        if shard == self.pool.id:
            return True
        base, _, number = shard.rpartition("-")
        return base == self.pool.id and number.isdigit() and shard not in self.taken

    def _open(self, shard: str) -> None:
        self.members.setdefault(shard, [])
        self.load.setdefault(shard, dict.fromkeys(LOAD_KEYS, 0.0))

    def _fits(self, shard: str, tenant: TenantSpec) -> bool:
        if len(self.members[shard]) >= self.pool.max_tenants:
            return False
        if not self.online:
            return True
        adds = tenant_load(tenant.quota)
        return all(self.load[shard][k] + adds[k] <= self.limits[k] for k in LOAD_KEYS)

    def _add(self, shard: str, tenant: TenantSpec) -> None:
        self.members[shard].append(tenant)
        for key, value in tenant_load(tenant.quota).items():
            self.load[shard][key] += value

    def _new_shard(self) -> str:
        number = 2
        while (
            f"{self.pool.id}-{number}" in self.members or f"{self.pool.id}-{number}" in self.taken
        ):
            number += 1
        shard = f"{self.pool.id}-{number}"
        self._open(shard)
        return shard

    def _ordered(self) -> list[str]:
        def number(shard: str) -> int:
            return 1 if shard == self.pool.id else int(shard.rpartition("-")[2])

        return sorted(self.members, key=number)

    def _shard_of(self, tenant: TenantSpec) -> str:
        return next(s for s, ts in self.members.items() if tenant in ts)

    def _why(self, origin: str) -> str:
        return (
            f"{origin} is over its max_tenants of {self.pool.max_tenants} or its endpoint's limits"
        )


def _derived(
    spec: PlatformSpec, shards: Mapping[str, Mapping[str, list[TenantSpec]]]
) -> PlatformSpec:
    """The spec with one pool per shard and each pooled tenant in its shard."""
    from tenancy.load import parse_platform_spec  # noqa: PLC0415 (load reads this module)

    document = spec.model_dump(mode="json")
    pools: list[dict[str, Any]] = []
    shard_of: dict[str, str] = {}
    for raw in document["pools"]:
        for shard, tenants in shards[raw["id"]].items():
            pools.append(_shard_document(raw, shard))
            shard_of |= {tenant.id: shard for tenant in tenants}
    document["pools"] = pools
    for tenant in document["tenants"]:
        if tenant["tier"] == "pooled":
            tenant["pool"] = shard_of[tenant["id"]]
    split = ", ".join(p for p, found in shards.items() if len(found) > 1 or p not in found)
    return parse_platform_spec(document, source=f"the spec with pools {split} split")


def _shard_document(pool: dict[str, Any], shard: str) -> dict[str, Any]:
    if shard == pool["id"]:
        return pool
    suffix = shard.removeprefix(pool["id"])  # "-2"
    document = {**pool, "id": shard}
    document["display_name"] = f"{pool.get('display_name') or pool['id']} ({suffix[1:]})"
    endpoints = {kind: dict(value) for kind, value in pool["endpoints"].items()}
    for endpoint in endpoints.values():
        if endpoint.get("name"):
            endpoint["name"] = f"{endpoint['name']}{suffix}"
    document["endpoints"] = endpoints
    return document
