"""Which subscription and region each stamp goes to (``placement.targets`` of the spec), within
Azure's limits per subscription and region (tenancy.limits), deterministically and stably.

- A pinned stamp (``placement.pins``) goes to its pin.
- A stamp the stack's placement record already places stays there: adding a tenant never
  moves another. The record is kept with the stack (``Pulumi.<stack>.placement.json``,
  written by ``mlops plan --write-placement``); a later plan names every stamp that would
  move (a pin changed, a target removed) as an explicit change, never silently.
- A new stamp goes to the first target, in the spec's order, with room for it: its
  endpoints, deployments (two per online endpoint at a rollout's peak) and storage account
  beside what is there already. When no target has room it goes to the last one, where the
  ``azure-limits`` rule names the limit it crosses.

A stack that lists no target has one: its own subscription, in its location.

The record also keeps each pooled tenant's pool shard (tenancy.pool_shards), so a pool's
split is as stable as the stamps' placement.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tenancy import naming
from tenancy.errors import ConfigError, ConfigIssue
from tenancy.pool_shards import PoolSplit, split_pools
from tenancy.spec import EndpointsSpec, PlatformSpec

HOME = "home"
#: What a stamp takes of its target's limits, beside its endpoints.
_COUNTED = ("endpoints", "deployments", "storage_accounts")


@dataclass(frozen=True)
class Target:
    id: str
    subscription_id: str | None  # None: the stack's own subscription
    region: str


@dataclass(frozen=True)
class Move:
    stamp: str
    origin: str
    target: str
    why: str


@dataclass(frozen=True)
class Record:
    """What the stack's record keeps: each stamp's target, each pooled tenant's shard."""

    stamps: dict[str, str] = field(default_factory=dict)
    pools: dict[str, str] = field(default_factory=dict)


@dataclass
class Placement:
    targets: dict[str, Target]
    assignments: dict[str, str]  # stamp key -> target id
    moves: list[Move] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # stamps the record did not hold
    removed: list[str] = field(default_factory=list)  # recorded stamps the spec dropped
    without_room: list[str] = field(default_factory=list)
    # Each pooled tenant's pool (its shard, tenancy.pool_shards), kept with the stamps.
    members: dict[str, str] = field(default_factory=dict)

    def targets_in_use(self) -> list[str]:
        """The targets that hold a stamp, in the spec's order: one shard stack each."""
        used = set(self.assignments.values())
        return [target for target in self.targets if target in used]

    def target_of(self, stamp: str) -> Target:
        return self.targets[self.assignments[stamp]]

    def record(self) -> dict[str, object]:
        return {
            "stamps": dict(sorted(self.assignments.items())),
            "pools": dict(sorted(self.members.items())),
        }


def targets_of(spec: PlatformSpec) -> list[Target]:
    listed = [Target(t.id, t.subscription_id, t.region) for t in spec.placement.targets]
    return listed or [Target(HOME, None, spec.location)]


def footprint(endpoints: EndpointsSpec) -> Counter[str]:
    online, batch = int(endpoints.online.enabled), int(endpoints.batch.enabled)
    return Counter(
        {"endpoints": online + batch, "deployments": 2 * online + batch, "storage_accounts": 1}
    )


def stamps_of(spec: PlatformSpec) -> dict[str, Counter[str]]:
    """Every stamp of the spec, in the program's order, with what it takes."""
    found = {
        naming.stamp_key("tenant", t.id): footprint(t.endpoints) for t in spec.dedicated_tenants
    }
    found |= {naming.stamp_key("pool", p.id): footprint(p.endpoints) for p in spec.pools}
    return found


def place(spec: PlatformSpec, recorded: Mapping[str, str] | None = None) -> Placement:
    targets = {t.id: t for t in targets_of(spec)}
    order = list(targets)
    recorded = dict(recorded or {})
    stamps = stamps_of(spec)
    used: dict[str, Counter[str]] = {t: Counter() for t in order}
    placement = Placement(targets, {})
    placement.members = {t.id: str(t.pool) for t in spec.tenants if t.tier == "pooled"}
    undecided = []
    for stamp, takes in stamps.items():
        pin = spec.placement.pins.get(stamp)
        kept = recorded.get(stamp)
        if pin is not None:
            chosen = pin
        elif kept in targets:
            chosen = str(kept)
        else:
            undecided.append(stamp)
            continue
        placement.assignments[stamp] = chosen
        used[chosen] += takes
    for stamp in undecided:  # new stamps (or ones whose target went), in the spec's order
        takes = stamps[stamp]
        roomy = [t for t in order if _fits(spec, used[t], takes)]
        if not roomy:
            placement.without_room.append(stamp)
        target = roomy[0] if roomy else order[-1]
        placement.assignments[stamp] = target
        used[target] += takes
    for stamp, chosen in placement.assignments.items():
        origin = recorded.get(stamp)
        if origin is None:
            placement.added.append(stamp)
        elif origin != chosen:
            why = "pinned" if stamp in spec.placement.pins else f"target {origin} is gone"
            placement.moves.append(Move(stamp, origin, chosen, why))
    placement.removed = sorted(set(recorded) - set(stamps))
    return placement


@dataclass
class Resolved:
    """A stack's spec as everything reads it: its pools split (tenancy.pool_shards) and each
    stamp's target settled (``placement.pins`` holds every stamp), so the spec alone
    answers who serves a tenant, in which subscription and region."""

    spec: PlatformSpec
    pools: PoolSplit
    placement: Placement


def resolve(spec: PlatformSpec, record: Record | None = None) -> Resolved:
    """Split ``spec``'s pools and place its stamps, against the stack's ``record``.
    Resolving a resolved spec again changes nothing."""
    record = record or Record()
    pools = split_pools(spec, record.pools)
    placement = place(pools.spec, record.stamps)
    derived = pools.spec
    if derived.placement.targets:  # a stack without targets has nothing to pin to
        pins = dict(placement.assignments)
        settled = derived.placement.model_copy(update={"pins": pins})
        derived = derived.model_copy(update={"placement": settled})
    return Resolved(derived, pools, placement)


def _fits(spec: PlatformSpec, used: Counter[str], takes: Counter[str]) -> bool:
    return all(used[key] + takes[key] <= spec.capacity.limit(key) for key in _COUNTED)


# --- the record kept with the stack ---------------------------------------------------------


def record_file(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.placement.json"


def read_record(root: Path, stack: str) -> Record:
    path = record_file(root, stack)
    if not path.is_file():
        return Record()
    try:
        document = json.loads(path.read_text())
        stamps = _string_map(document["stamps"], "stamps must map stamp keys to target ids")
        # Records written before pools were split hold no "pools".
        pools = _string_map(document.get("pools", {}), "pools must map tenants to pools")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError("placement record", [ConfigIssue(str(path), str(error))]) from None
    return Record(stamps, pools)


def _string_map(value: object, problem: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(problem)
    return dict(value)


def write_record(root: Path, stack: str, placement: Placement) -> Path:
    path = record_file(root, stack)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(placement.record(), indent=2) + "\n")
    temporary.replace(path)
    return path


# --- shard stacks (placement.shard_stacks) ---------------------------------------------------


def shard_stack(environment: str, target: str) -> str:
    """A shard stack's name: its environment's, then its target (Pulumi stack names take
    letters, digits, dashes, underscores and dots)."""
    return f"{environment}.{target}"


def write_shard_stacks(root: Path, environment: str, placement: Placement) -> list[Path]:
    """A stack file for each target that holds stamps (``Pulumi.<env>.<target>.yaml``): it
    names its environment and target, and the program reads the environment's spec."""
    written = []
    for target in placement.targets_in_use():
        path = root / f"Pulumi.{shard_stack(environment, target)}.yaml"
        shard = {"environment": environment, "target": target}
        document = {"config": {"tenant-mlops:shard": shard}}
        header = (
            f"# The stamps of stack {environment} placed on target {target}: a shard stack\n"
            "# (placement.shard_stacks). Written by `mlops plan --write-placement`; its spec\n"
            f"# is Pulumi.{environment}.yaml's. `pulumi up` it after the {environment} stack.\n"
        )
        path.write_text(header + json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written
