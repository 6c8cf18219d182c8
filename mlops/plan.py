"""`mlops plan`: what `pulumi up` would provision for a stack, per tenant, with no CLI and
no cloud (the program runs under Pulumi's mocks)."""

from __future__ import annotations

import dataclasses
import json
import resource
import runpy
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from infra.offline import SUBSCRIPTION_ID, OfflineRun, run_offline
from infra.program import deploy
from policies.capacity_rules import Usage, endpoint_load, limits_of, placement_tags, usage
from policies.config import PackConfig
from policies.core import Stack
from policies.offline import Violation, as_resource, evaluate
from tenancy.load import read_yaml, stack_file
from tenancy.placement import Placement, Record, read_record, resolve
from tenancy.pool_shards import PoolSplit
from tenancy.spec import PlatformSpec

SHARED = "(shared)"


#: A policy runner reads the recorded plan and returns its violations.
PolicyRunner = Callable[[PlatformSpec, OfflineRun], Sequence[Violation]]


@dataclass
class Plan:
    stack: str
    resources: list[dict[str, Any]]
    violations: list[Violation] = field(default_factory=list)
    # What Azure's limits hold, counted over the plan (policies.capacity_rules).
    capacity: list[Usage] = field(default_factory=list)
    placement: Placement | None = None  # where each stamp went (tenancy.placement)
    pools: PoolSplit | None = None  # each pooled tenant's shard (tenancy.pool_shards)
    # With placement.shard_stacks: this is the shared stack's plan, and each target's
    # stamps are a shard stack's (mlops.shard_plans), planned after it.
    shards: list[Plan] = field(default_factory=list)
    seconds: float = 0.0  # how long this stack's plan took
    peak_rss_mb: float = 0.0  # its process's peak memory (a shard's: its own process)
    counted: dict[str, Any] | None = None  # the summary, kept when resources are dropped

    @property
    def has_mandatory_violation(self) -> bool:
        return any(v.level == "mandatory" for v in self.violations) or any(
            shard.has_mandatory_violation for shard in self.shards
        )

    def compact(self) -> Plan:
        """This plan without its resources' inputs (its summary kept): what a large
        environment's shard plans send back."""
        self.counted = self.summary()
        self.resources = []
        return self

    def summary(self) -> dict[str, Any]:
        if self.counted is not None:
            return self.counted
        by_tenant = Counter(r["tenant"] or SHARED for r in self.resources)
        levels = Counter(v.level for v in self.violations)
        return {
            "resources": len(self.resources),
            "by_type": dict(sorted(Counter(r["type"] for r in self.resources).items())),
            "by_tenant": dict(sorted(by_tenant.items())),
            "violations": {"mandatory": levels["mandatory"], "advisory": levels["advisory"]},
        }

    def to_dict(self) -> dict[str, Any]:
        document = {
            "stack": self.stack,
            "resources": self.resources,
            "violations": [v.to_dict() for v in self.violations],
            "capacity": [u.to_dict() for u in self.capacity],
            "placement": _placement_document(self.placement, self.pools),
            "summary": self.summary(),
            "seconds": round(self.seconds, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }
        if self.shards:
            document["shards"] = [shard.to_dict() for shard in self.shards]
            document["total"] = self.total()
        return document

    def total(self) -> dict[str, Any]:
        """The environment's totals over its shared and shard stacks."""
        plans = [self, *self.shards]
        summaries = [plan.summary() for plan in plans]
        return {
            "stacks": len(plans),
            "resources": sum(s["resources"] for s in summaries),
            "violations": {
                level: sum(s["violations"][level] for s in summaries)
                for level in ("mandatory", "advisory")
            },
            "seconds": round(sum(plan.seconds for plan in plans), 2),
            "peak_rss_mb": round(max(plan.peak_rss_mb for plan in plans), 1),
        }


def _jsonable(value: Any) -> Any:
    """Inputs as JSON: assets and archives become their paths, unknowns a marker."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": sorted(value.assets)}
    if isinstance(value, pulumi.FileAsset):
        return {"file": value.path}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return "<unknown>"


def pack_policies(spec: PlatformSpec, run: OfflineRun) -> list[Violation]:
    """The policy pack's rules, configured for the stack as `pulumi preview` would be."""
    return evaluate(run, PackConfig.from_spec(spec))


def project_program(root: Path, stack: str) -> Callable[[], None]:
    """The program `pulumi up` would run for this project and stack: ``main`` of
    ``Pulumi.yaml``, with the stack file's config set as the engine would set it."""
    project = read_yaml(root / "Pulumi.yaml")
    entry = root / str(project.get("main") or ".")
    document = read_yaml(stack_file(stack, root))
    values = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in (document.get("config") or {}).items()
    }

    def program() -> None:
        pulumi.runtime.set_all_config(values)
        try:
            runpy.run_path(str(entry), run_name="__main__")
        finally:
            pulumi.runtime.set_all_config({})

    return program


def build_plan(
    spec: PlatformSpec,
    stack: str,
    policies: PolicyRunner | None = pack_policies,
    program: Callable[[], None] | None = None,
    root: Path | None = None,
    *,
    workers: int = 2,
    keep_resources: bool = True,
) -> Plan:
    """Run ``program`` (default: the platform program for ``spec``) under mocks, then the
    policies over what it registered. ``root``: where the stack's placement record is kept
    (the program reads the same one: ``infra.program.deploy``).

    With ``placement.shard_stacks`` the program is the environment's shared stack; then
    each target's shard stack is planned over its exports, ``workers`` at a time, each in
    a process of its own (``keep_resources``: whether their resources come back)."""
    started = time.perf_counter()
    resolved = resolve(spec, read_record(root, stack) if root else Record())
    spec, split, placement = resolved.spec, resolved.pools, resolved.placement

    def platform() -> None:
        deploy(spec, stack=stack, placement=placement)

    run = run_offline(program or platform, stack=stack)
    sharded = spec.placement.shard_stacks
    # The shared stack of a sharded environment holds no tenant: its rules judge none.
    view = spec.restricted_to([]) if sharded else spec
    plan = plan_of_run(stack, run, view, placement, policies)
    plan.placement, plan.pools = placement, split
    plan.seconds, plan.peak_rss_mb = time.perf_counter() - started, peak_rss_mb()
    if sharded:
        from mlops.shard_plans import plan_shards  # noqa: PLC0415 (it reads this module)

        plan.shards = plan_shards(
            resolved,
            stack,
            run.outputs,
            root or Path.cwd(),
            workers=workers,
            policies=policies is not None,
            keep_resources=keep_resources,
        )
    return plan


def plan_of_run(
    stack: str,
    run: OfflineRun,
    spec: PlatformSpec,
    placement: Placement,
    policies: PolicyRunner | None,
) -> Plan:
    """One stack's plan from its offline run: resources, the rules' violations (``spec``:
    as the stack holds it) and its capacity counts."""
    resources = [
        {
            "urn": record.urn,
            "type": record.type,
            "name": record.name,
            "tenant": run.attribution(record, "tenantId"),
            "stamp": run.attribution(record, "stamp"),
            "inputs": _jsonable(record.inputs),
        }
        for record in run.custom_resources()
    ]
    violations = list(policies(spec, run)) if policies else []
    return Plan(stack, resources, violations, capacity_of(spec, run, placement))


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB: Linux's ``VmHWM``. (``ru_maxrss``
    would not do for a shard's process: Linux keeps it across ``exec``, so a spawned
    process starts with its parent's peak.)"""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def capacity_of(spec: PlatformSpec, run: OfflineRun, placement: Placement) -> list[Usage]:
    """Every count Azure's limits hold, per subscription (the stack's own: the one the plan
    signed in to) and region."""
    stack = Stack([as_resource(r) for r in run.custom_resources()])
    tags = placement_tags(placement)
    found = usage(stack, limits_of(spec), endpoint_load(spec), spec.location, tags)
    return [dataclasses.replace(u, subscription=u.subscription or SUBSCRIPTION_ID) for u in found]


def _placement_document(placement: Placement | None, pools: PoolSplit | None) -> dict[str, Any]:
    if placement is None:
        return {}
    return {
        "pools": {
            "shards": pools.split if pools else {},
            "members": dict(sorted(placement.members.items())),
            "moves": [dataclasses.asdict(m) for m in pools.moves] if pools else [],
        },
        "targets": {
            t.id: {"subscription": t.subscription_id, "region": t.region}
            for t in placement.targets.values()
        },
        "stamps": dict(sorted(placement.assignments.items())),
        "moves": [dataclasses.asdict(m) for m in placement.moves],
        "added": placement.added,
        "removed": placement.removed,
        "without_room": placement.without_room,
    }


def _placement_lines(placement: Placement | None, pools: PoolSplit | None) -> list[str]:
    """Where each target's stamps go, how pools split, and every change against the stack's
    record."""
    if placement is None:
        return []
    lines = ["Placement:"]
    for pool, shards in (pools.split if pools else {}).items():
        sizes = [sum(1 for s in placement.members.values() if s == shard) for shard in shards]
        counts = " + ".join(str(n) for n in sizes)
        lines.append(
            f"  pool {pool} split in {len(shards)}: {', '.join(shards)} ({counts} tenants)"
        )
    for move in pools.moves if pools else []:
        lines.append(f"  MOVE tenant {move.tenant}: {move.origin} -> {move.shard} ({move.why})")
    for target in placement.targets.values():
        stamps = sorted(s for s, t in placement.assignments.items() if t == target.id)
        subscription = target.subscription_id or "the stack's subscription"
        lines.append(f"  {target.id} ({subscription}, {target.region}): {len(stamps)} stamps")
    lines += [f"  MOVE {m.stamp}: {m.origin} -> {m.target} ({m.why})" for m in placement.moves]
    if placement.added:
        lines.append(f"  new: {', '.join(placement.added)}")
    if placement.removed:
        lines.append(f"  gone from the spec: {', '.join(placement.removed)}")
    if placement.without_room:
        lines.append(f"  no target has room for: {', '.join(placement.without_room)}")
    return [*lines, ""]


def _capacity_lines(capacity: list[Usage]) -> list[str]:
    """The fullest count of each limit (and every one over its limit)."""
    fullest: dict[str, Usage] = {}
    for found in capacity:
        best = fullest.get(found.key)
        if best is None or found.used / found.limit > best.used / best.limit:
            fullest[found.key] = found
    shown = {id(u) for u in fullest.values()} | {id(u) for u in capacity if u.over}
    lines = ["Capacity (Azure's limits; the fullest of each):"]
    for found in capacity:
        if id(found) in shown:
            mark = "  OVER" if found.over else ""
            lines.append(
                f"  {found.resource:34s} {found.used:>9g} of {found.limit:<7g} {found.where}{mark}"
            )
    return [*lines, ""]


def _group(resource: dict[str, Any]) -> str:
    """Text grouping: a tenant's own resources, else the stamp (a pool, or the platform)."""
    return resource["tenant"] or resource["stamp"] or SHARED


def render_text(plan: Plan, spec: PlatformSpec) -> str:
    """The inventory per tenant (platform and pools first), then violations and a summary."""
    spec = plan.pools.spec if plan.pools else spec  # with its pools split, as planned
    stacks = [plan, *plan.shards]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for planned in (r for stack in stacks for r in stack.resources):
        groups[_group(planned)].append(planned)
    headings = {"platform": "platform (shared by every tenant)"}
    for pool in spec.pools:
        member_ids = ", ".join(t.id for t in spec.tenants_in_pool(pool.id))
        headings[f"pool-{pool.id}"] = f"pool {pool.id} (shared by {member_ids})"
    for tenant in spec.tenants:
        where = "own stamp" if tenant.tier == "dedicated" else f"pool '{tenant.pool}'"
        headings[tenant.id] = (
            f"tenant {tenant.id} ({tenant.tier}, {where}, {tenant.model_strategy})"
        )
    lines = [f"Plan for stack '{plan.stack}' ({spec.environment.value}, {spec.location})", ""]
    for group, heading in headings.items():
        members = groups.get(group, [])
        lines.append(f"{heading}: {len(members)} resources")
        for type_name, count in sorted(Counter(r["type"] for r in members).items()):
            lines.append(f"    {count:4d}  {type_name.removeprefix('azure-native:')}")
        lines.append("")
    violations = [(stack.stack, v) for stack in stacks for v in stack.violations]
    if violations:
        lines.append("Policy violations:")
        for name, v in violations:
            where = f"{name}: " if plan.shards else ""
            lines.append(f"  [{v.level}] {where}{v.policy}: {v.message}\n      {v.urn}")
        lines.append("")
    lines += _placement_lines(plan.placement, plan.pools)
    lines += _stack_lines(plan)
    lines += _capacity_lines([u for stack in stacks for u in stack.capacity])
    summary = plan.total() if plan.shards else plan.summary()
    lines.append(
        f"{summary['resources']} resources; violations: "
        f"{summary['violations']['mandatory']} mandatory, "
        f"{summary['violations']['advisory']} advisory"
    )
    return "\n".join(lines)


def _stack_lines(plan: Plan) -> list[str]:
    """A sharded environment's stacks: the shared one, then each shard, with what its plan
    made and took."""
    if not plan.shards:
        return []
    lines = ["Stacks (the shared stack first; each shard planned in a process of its own):"]
    for stack in [plan, *plan.shards]:
        summary = stack.summary()
        lines.append(
            f"  {stack.stack:28s} {summary['resources']:>6d} resources, "
            f"{summary['violations']['mandatory']} mandatory violations, "
            f"{stack.seconds:6.1f} s, {stack.peak_rss_mb:6.0f} MB peak"
        )
    return [*lines, ""]
