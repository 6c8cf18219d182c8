"""Pools split into shards when their tenants do not fit one endpoint (tenancy.pool_shards):
by ``max_tenants`` and by Azure's per-endpoint limits against declared quotas; stable
against the stack's record; the derived spec answers who serves each tenant."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tenancy import PlatformSpec, load_stack, parse_platform_spec
from tenancy.errors import ConfigError
from tenancy.limits import tenant_load
from tenancy.placement import Record, place, read_record, write_record
from tenancy.pool_shards import split_pools
from tests.tenancy.conftest import stack_document


def _pooled(count: int, *, rate: int = 600, max_tenants: int = 50) -> dict[str, Any]:
    """The local stack with ``count`` pooled tenants (litware's settings) in pool shared."""
    document = stack_document("local")
    model = next(t for t in document["tenants"] if t["id"] == "litware")
    others = [t for t in document["tenants"] if t["tier"] == "dedicated"]
    tenants = []
    for index in range(count):
        tenant = copy.deepcopy(model)
        tenant.pop("genai", None)
        tenant.update(id=f"p{index:03d}", display_name=f"P{index}")
        tenant["quota"].update(rate_limit_per_minute=rate, max_concurrency=10, max_payload_kb=4)
        tenants.append(tenant)
    document["tenants"] = others + tenants
    document["pools"][0]["max_tenants"] = max_tenants
    return document


def _shards(spec: PlatformSpec) -> dict[str, list[str]]:
    return {p.id: [t.id for t in spec.tenants_in_pool(p.id)] for p in spec.pools}


def test_a_pool_over_max_tenants_splits_in_order_and_each_shard_is_a_pool() -> None:
    split = split_pools(parse_platform_spec(_pooled(7, max_tenants=3)))
    assert split.split == {"shared": ["shared", "shared-2", "shared-3"]}
    assert _shards(split.spec) == {
        "shared": ["p000", "p001", "p002"],
        "shared-2": ["p003", "p004", "p005"],
        "shared-3": ["p006"],
    }
    # Who serves a tenant is answered by the derived spec, each shard its own endpoint.
    spec = split.spec
    assert spec.serving_of("p004")[0] == "shared-2"
    names = {spec.online_endpoint_name(t.id) for t in spec.tenants if t.tier == "pooled"}
    assert len(names) == 3
    assert spec.pool("shared-2").compute == spec.pool("shared").compute
    assert split.members["p006"] == "shared-3"


def test_a_pool_whose_quotas_exceed_one_endpoint_splits_by_load() -> None:
    # 40 tenants at 1,200 requests a minute: 800 a second against the endpoint's 500.
    split = split_pools(parse_platform_spec(_pooled(40, rate=1_200)))
    assert [len(members) for members in _shards(split.spec).values()] == [25, 15]
    # At 32 KB a request (the default payload), bandwidth binds first: 0.625 MB/s a tenant.
    document = _pooled(40, rate=1_200)
    for tenant in document["tenants"]:
        tenant["quota"].pop("max_payload_kb", None)
    split = split_pools(parse_platform_spec(document))
    assert [len(members) for members in _shards(split.spec).values()] == [8] * 5
    for pool in split.spec.pools:
        tenants = split.spec.tenants_in_pool(pool.id)
        for key, limit in {"requests_per_second": 500, "bandwidth_mb_per_second": 5}.items():
            assert sum(tenant_load(t.quota)[key] for t in tenants) <= limit, (pool.id, key)


def test_a_spec_that_fits_comes_back_as_it_is_and_a_derived_one_splits_no_further() -> None:
    spec = load_stack("local")
    assert split_pools(spec).spec is spec
    derived = split_pools(parse_platform_spec(_pooled(7, max_tenants=3))).spec
    again = split_pools(derived)
    assert again.spec is derived
    assert again.moves == []


def test_adding_a_tenant_moves_no_other_and_fills_the_first_shard_with_room() -> None:
    before = split_pools(parse_platform_spec(_pooled(7, max_tenants=3)))
    document = _pooled(8, max_tenants=3)
    newcomer = document["tenants"].pop()  # p007, put first in the spec's order
    document["tenants"].insert(0, newcomer)
    after = split_pools(parse_platform_spec(document), before.members)
    assert after.moves == []
    assert {t: s for t, s in after.members.items() if t in before.members} == before.members
    assert after.members["p007"] == "shared-3"  # shared and shared-2 are full


def test_a_lowered_max_tenants_moves_tenants_and_names_each_move() -> None:
    before = split_pools(parse_platform_spec(_pooled(6, max_tenants=3)))
    after = split_pools(parse_platform_spec(_pooled(6, max_tenants=2)), before.members)
    moved = {(m.tenant, m.origin, m.shard) for m in after.moves}
    assert moved == {("p002", "shared", "shared-3"), ("p005", "shared-2", "shared-3")}
    assert all("max_tenants of 2" in m.why for m in after.moves)
    assert max(len(ts) for ts in _shards(after.spec).values()) == 2


def test_a_new_shard_never_takes_another_pools_id() -> None:
    document = _pooled(4, max_tenants=3)
    other = {**copy.deepcopy(document["pools"][0]), "id": "shared-2"}
    document["pools"].append(other)
    split = split_pools(parse_platform_spec(document))
    assert split.split == {"shared": ["shared", "shared-3"]}
    assert _shards(split.spec)["shared-2"] == []
    # A record naming the other pool's id as a shard of shared is not followed.
    again = split_pools(parse_platform_spec(document), {"p000": "shared-2"})
    assert again.members["p000"] == "shared"


def test_the_record_keeps_shards_and_load_stack_reads_them(tmp_path: Path) -> None:
    document = _pooled(5, max_tenants=2)
    stack_file = tmp_path / "Pulumi.big.yaml"
    stack_file.write_text(json.dumps({"config": {"tenant-mlops:platform": document}}))
    (tmp_path / "Pulumi.yaml").write_text("name: tenant-mlops\nruntime: python\n")
    spec = load_stack("big", tmp_path)
    placed = place(spec)
    write_record(tmp_path, "big", placed)
    record = read_record(tmp_path, "big")
    assert record.pools == {"p000": "shared", "p001": "shared", "p002": "shared-2",
                            "p003": "shared-2", "p004": "shared-3"}  # fmt: skip
    assert set(record.stamps) >= {"pool-shared", "pool-shared-2", "pool-shared-3"}
    # Recorded shards hold, whatever the spec's order becomes.
    document["tenants"].reverse()
    stack_file.write_text(json.dumps({"config": {"tenant-mlops:platform": document}}))
    assert load_stack("big", tmp_path).tenant("p004").pool == "shared-3"


def test_a_record_whose_pools_are_not_a_map_is_named(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.placement.json").write_text('{"stamps": {}, "pools": ["a"]}')
    with pytest.raises(ConfigError, match="pools must map tenants to pools"):
        read_record(tmp_path, "dev")
    assert read_record(tmp_path, "missing") == Record()


def test_tenants_are_found_by_index_and_a_restricted_copy_indexes_its_own() -> None:
    spec = split_pools(parse_platform_spec(_pooled(7, max_tenants=3))).spec
    twin = parse_platform_spec(spec.model_dump(mode="json"))
    assert spec.tenant("p004").pool == "shared-2"  # builds spec's index, not twin's
    assert spec == twin
    assert [t.id for t in spec.tenants_in_pool("shared-3")] == ["p006"]
    shard = spec.restricted_to(["pool-shared-2"])
    assert [t.id for t in shard.tenants] == ["p003", "p004", "p005"]
    assert shard.tenants_in_pool("shared") == []
    with pytest.raises(KeyError):
        shard.tenant("p000")
    assert spec.tenant("p000").id == "p000"  # the environment's own index is unchanged
