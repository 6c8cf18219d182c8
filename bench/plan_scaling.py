"""Benchmark: `mlops plan` time and peak memory at 10, 100 and 1000 tenants as one stack,
confined to the stack's one subscription and placed on as many subscriptions as Azure's
limits need (tenancy.placement); then at 1000 and 10000 tenants as shard stacks
(``placement.shard_stacks``: the shared stack, then one stack per subscription, each planned
in a process of its own, two at a time), with each stack's time and own peak memory.

The confined plan of 1000 tenants is refused by `azure-limits`, naming the limits; placed,
its pools are split where their tenants' quotas exceed one endpoint (tenancy.pool_shards)
and it plans clean. The synthetic stack is built from the local stack: one tenant in ten
dedicated, the rest pooled fifty to a pool (without generative AI); each pooled tenant may
send 1,200 requests a minute of 32 KB, so eight fill one endpoint's 5 MB a second.

Each `mlops plan` runs in its own process. Writes bench/results/plan_scaling.json and prints
a table. Not a test: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
POOL_SIZE = 50


def synthetic_stack(tenants: int, mode: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())
    platform_spec = document["config"]["tenant-mlops:platform"]
    dedicated = next(t for t in platform_spec["tenants"] if t["tier"] == "dedicated")
    pooled = next(t for t in platform_spec["tenants"] if t["tier"] == "pooled")
    pool = platform_spec["pools"][0]
    generated, pools = [], []
    for i in range(tenants):
        if i % 10 == 0:
            tenant = copy.deepcopy(dedicated)
        else:
            tenant = copy.deepcopy(pooled)
            pool_id = f"pool{len([t for t in generated if t['tier'] == 'pooled']) // POOL_SIZE}"
            tenant["pool"] = pool_id
            if pool_id not in {p["id"] for p in pools}:
                pools.append({**copy.deepcopy(pool), "id": pool_id})
        tenant["id"] = f"t{i:05d}"
        tenant["model_strategy"] = "tenant_specific"
        tenant.pop("genai", None)
        generated.append(tenant)
    platform_spec["tenants"] = generated
    platform_spec["pools"] = pools
    if mode != "confined":
        platform_spec["placement"] = {
            "targets": _targets_needed(platform_spec),
            "shard_stacks": mode == "sharded",
        }
    return document


def _targets_needed(platform_spec: dict[str, Any]) -> list[dict[str, str]]:
    """As many subscriptions as the placement fills (tenancy.placement itself decides)."""
    sys.path.insert(0, str(ROOT))
    from tenancy import parse_platform_spec  # noqa: PLC0415
    from tenancy.placement import resolve  # noqa: PLC0415

    def target(index: int) -> dict[str, str]:
        return {
            "id": f"sub{index}",
            "subscription_id": f"00000000-0000-4000-8000-{index:012d}",
            "region": platform_spec["location"],
        }

    stamps = len(platform_spec["tenants"])  # at most one stamp a tenant
    trial = {**platform_spec, "placement": {"targets": [target(i) for i in range(stamps)]}}
    used = set(resolve(parse_platform_spec(trial)).placement.assignments.values())
    return [target(i) for i in range(len(used))]


def measure(tenants: int, workdir: Path, mode: str) -> dict[str, Any]:
    stack = f"bench{tenants}{mode}"
    document = synthetic_stack(tenants, mode)
    (workdir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    command = [sys.executable, "-m", "mlops", "plan", "--stack", stack, "--json", "--summary"]
    result = subprocess.run(
        [*command, "--root", str(workdir)], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: the plan has a mandatory violation
        raise SystemExit(f"plan of {tenants} tenants failed:\n{result.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    plan = json.loads(result.stdout)
    stacks = [plan, *plan.get("shards", [])]
    violations = [v for stack in stacks for v in stack["violations"]]
    refused = [v["message"] for v in violations if v["policy"] == "azure-limits"]
    total = plan.get("total") or {
        "resources": plan["summary"]["resources"],
        "violations": plan["summary"]["violations"],
    }
    targets = document["config"]["tenant-mlops:platform"].get("placement", {}).get("targets", [])
    row = {
        "tenants": tenants,
        "mode": mode,
        "subscriptions": max(1, len(targets)),
        "stamps": len(plan["placement"]["stamps"]),
        "mandatory_violations": total["violations"]["mandatory"],
        "azure_limits": refused[:3],
        "resources": total["resources"],
        "seconds": round(elapsed, 2),
        "ms_per_resource": round(1000 * elapsed / total["resources"], 2),
        # One stack: its process's peak (ru_maxrss of children is the largest child so far;
        # the one-stack sizes run in increasing order).
        "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
    }
    if plan.get("shards"):
        shards = plan["shards"]
        seconds = sorted(shard["seconds"] for shard in shards)
        peaks = sorted(shard["peak_rss_mb"] for shard in shards)
        row["shared_stack"] = {"seconds": plan["seconds"], "peak_rss_mb": plan["peak_rss_mb"]}
        row["shards"] = {
            "count": len(shards),
            "resources_median": statistics.median(s["summary"]["resources"] for s in shards),
            "seconds_median": round(statistics.median(seconds), 2),
            "seconds_max": seconds[-1],
            "peak_rss_mb_median": round(statistics.median(peaks), 1),
            "peak_rss_mb_max": peaks[-1],
        }
        # The largest of the plan's own processes (the shared stack's or a shard's): the
        # children's ru_maxrss would carry an earlier, larger run's.
        row["peak_rss_mb"] = max(plan["peak_rss_mb"], peaks[-1])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--sharded-sizes", type=int, nargs="*", default=[1000, 10000])
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        # The synthetic stacks live in a scratch folder; the program is still this project's.
        project["main"] = str(ROOT / project.get("main", "."))
        (workdir / "Pulumi.yaml").write_text(yaml.safe_dump(project))
        runs = [(size, mode) for size in sorted(args.sizes) for mode in ("confined", "placed")]
        runs += [(size, "sharded") for size in sorted(args.sharded_sizes)]
        for size, mode in runs:
            rows.append(measure(size, workdir, mode))
            print(rows[-1], flush=True)
    report = {
        "benchmark": "plan_scaling",
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "command": "python -m mlops plan --stack <synthetic> --json --summary",
        "results": rows,
    }
    (RESULTS / "plan_scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    for row in rows:
        print(
            f"| {row['tenants']} | {row['mode']} | {row['subscriptions']} | {row['stamps']} | "
            f"{row['resources']} | {row['mandatory_violations']} | {row['seconds']} | "
            f"{row['peak_rss_mb']} | {row.get('shards', '')} |"
        )


if __name__ == "__main__":
    main()
