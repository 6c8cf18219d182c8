"""Stamps placed on the spec's subscriptions and regions (tenancy.placement): first fit within
Azure's limits, in the spec's order; stable against the stack's record (adding a tenant
moves no other); pins; every move named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tenancy import PlatformSpec, parse_platform_spec
from tenancy.errors import ConfigError
from tenancy.placement import HOME, place, read_record, record_file, write_record
from tests.tenancy.conftest import stack_document

SUB_B = "11111111-2222-4333-8444-555555555555"
TARGETS = [
    {"id": "weu-a", "region": "westeurope"},
    {"id": "neu-b", "subscription_id": SUB_B, "region": "northeurope"},
]


def _spec(
    dedicated: int, targets: list[dict[str, Any]] | None = TARGETS, **placement: Any
) -> PlatformSpec:
    """dev with ``dedicated`` dedicated tenants (contoso's settings) beside its pool."""
    document = stack_document("dev")
    model = next(t for t in document["tenants"] if t["id"] == "contoso")
    pooled = [t for t in document["tenants"] if t["tier"] == "pooled"]
    tenants = []
    for index in range(dedicated):
        tenant = copy.deepcopy(model)
        tenant.pop("genai", None)
        tenant.update(id=f"t{index:04d}", display_name=f"T{index}")
        tenants.append(tenant)
    document["tenants"] = tenants + pooled
    if targets is not None:
        document["placement"] = {"targets": targets, **placement}
        document["gateway"]["sku"] = "Premium"  # regional gateways for northeurope
    return parse_platform_spec(document)


def test_a_stack_without_targets_places_everything_at_home() -> None:
    placed = place(parse_platform_spec(stack_document("dev")))
    assert set(placed.assignments.values()) == {HOME}
    assert placed.targets[HOME].region == "westeurope"
    assert placed.targets[HOME].subscription_id is None


def test_first_fit_fills_a_subscription_to_its_endpoint_limit_then_the_next() -> None:
    placed = place(_spec(60))
    on_a = [s for s, t in placed.assignments.items() if t == "weu-a"]
    # Two endpoints a stamp, in the spec's order (dedicated tenants, then pools): the first
    # 50 tenants make weu-a's 100 endpoints; the rest and the pool go to neu-b.
    assert on_a == [f"tenant-t{i:04d}" for i in range(50)]
    assert placed.assignments["tenant-t0050"] == placed.assignments["pool-shared"] == "neu-b"
    assert placed.without_room == []


def test_adding_a_tenant_moves_no_other(tmp_path: Path) -> None:
    before = place(_spec(60))
    write_record(tmp_path, "dev", before)
    recorded = read_record(tmp_path, "dev").stamps
    spec = _spec(61)  # one more, and it comes first in nobody's order but its own
    after = place(spec, recorded)
    assert after.moves == []
    assert after.added == ["tenant-t0060"]
    assert {s: t for s, t in after.assignments.items() if s in recorded} == recorded
    assert after.assignments["tenant-t0060"] == "neu-b"  # weu-a is full


def test_pins_and_removed_targets_are_explicit_moves() -> None:
    recorded = place(_spec(3)).assignments
    assert set(recorded.values()) == {"weu-a"}
    pinned = place(_spec(3, pins={"tenant-t0001": "neu-b"}), recorded)
    assert [(m.stamp, m.origin, m.target, m.why) for m in pinned.moves] == [
        ("tenant-t0001", "weu-a", "neu-b", "pinned")
    ]
    gone = place(_spec(3, targets=[TARGETS[1]]), recorded)
    assert {m.why for m in gone.moves} == {"target weu-a is gone"}
    assert len(gone.moves) == len(recorded)


def test_a_thousand_tenants_on_one_subscription_leave_stamps_without_room() -> None:
    confined = place(_spec(1000, targets=[TARGETS[0]]))
    assert len(confined.without_room) == 1000 + 1 - 50
    enough = [
        {
            "id": f"t{i}",
            "subscription_id": f"11111111-2222-4333-8444-{i:012d}",
            "region": "westeurope",
        }
        for i in range(21)
    ]
    spread = place(_spec(1000, targets=enough))
    assert spread.without_room == []
    assert max(list(spread.assignments.values()).count(t["id"]) for t in enough) == 50


def test_bad_placement_is_named_at_parse_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'nowhere' is not a target"):
        _spec(2, pins={"tenant-t0000": "nowhere"})
    with pytest.raises(ConfigError, match="names stamps the stack has not: tenant-zzz"):
        _spec(2, pins={"tenant-zzz": "weu-a"})
    document = stack_document("prod")  # private: its network is regional
    document["placement"] = {"targets": TARGETS}
    with pytest.raises(ConfigError, match="neu-b are outside westeurope"):
        parse_platform_spec(document)
    record_file(tmp_path, "dev").write_text('{"stamps": [1]}')
    with pytest.raises(ConfigError, match="placement record"):
        read_record(tmp_path, "dev")
