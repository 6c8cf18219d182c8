"""Planning an environment's shard stacks (``placement.shard_stacks``): after the shared
stack's plan, each target's stamps are planned as the stack ``<environment>.<target>``
would be by `pulumi up`: ``infra.program.deploy_shard`` under mocks, its
``StackReference`` answered with the shared plan's exports.

Each shard is planned in a fresh process of its own, ``workers`` at a time: a shard's plan
never loads another's, so its time and memory follow its own stamps, not the
environment's size, and its peak memory is measured alone.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from infra.offline import ORGANIZATION, run_offline
from infra.program import deploy_shard
from mlops.plan import Plan, pack_policies, peak_rss_mb, plan_of_run
from tenancy.load import PROJECT, parse_platform_spec
from tenancy.placement import Resolved, resolve, shard_stack


@dataclass(frozen=True)
class ShardJob:
    """What a shard's process needs: the resolved spec (as JSON), whose shard it is, and
    the shared stack's exports its reference reads."""

    document: dict[str, Any]
    environment: str
    target: str
    root: str
    shared_outputs: dict[str, Any]
    policies: bool
    keep_resources: bool


def plan_shards(
    resolved: Resolved,
    environment: str,
    shared_outputs: dict[str, Any],
    root: Path,
    *,
    workers: int = 2,
    policies: bool = True,
    keep_resources: bool = True,
) -> list[Plan]:
    """Every shard stack's plan, in the targets' order."""
    document = resolved.spec.model_dump(mode="json")
    jobs = [
        ShardJob(
            document,
            environment,
            target,
            str(root),
            shared_outputs,
            policies,
            keep_resources,
        )
        for target in resolved.placement.targets_in_use()
    ]
    if not jobs:
        return []
    # A fresh process per shard ("spawn", one task each): Pulumi's runtime is global to a
    # process, and a shard's peak memory is its own.
    context = get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=max(1, min(workers, len(jobs))), mp_context=context, max_tasks_per_child=1
    ) as pool:
        return list(pool.map(plan_shard, jobs))


def plan_shard(job: ShardJob) -> Plan:
    """One shard stack's plan (in its own process)."""
    started = time.perf_counter()
    spec = parse_platform_spec(job.document, source=f"stack '{job.environment}' (resolved)")
    placement = resolve(spec).placement  # the resolved spec pins every stamp
    stack = shard_stack(job.environment, job.target)
    references = {f"{ORGANIZATION}/{PROJECT}/{job.environment}": job.shared_outputs}

    def program() -> None:
        deploy_shard(
            spec, environment=job.environment, target=job.target, project_root=Path(job.root)
        )

    run = run_offline(program, stack=stack, references=references)
    keys = [key for key, target in placement.assignments.items() if target == job.target]
    rules = pack_policies if job.policies else None
    plan = plan_of_run(stack, run, spec.restricted_to(keys), placement, rules)
    plan.seconds, plan.peak_rss_mb = time.perf_counter() - started, peak_rss_mb()
    return plan if job.keep_resources else plan.compact()
