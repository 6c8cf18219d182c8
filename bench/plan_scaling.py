"""Benchmark: `mlops plan` time and peak memory at 10, 100 and 1000 tenants, each planned
twice: confined to the stack's one subscription, and placed on as many subscriptions as
Azure's limits need (tenancy.placement). The confined plan of 1000 tenants is refused by
`azure-limits`, naming the limits; the placed one is clean.

Each plan runs in its own process (so peak RSS is that run's), on a synthetic stack built
from the local stack: one tenant in ten dedicated, the rest pooled fifty to a pool (without
generative AI, as the first runs were). Writes bench/results/plan_scaling.json and prints a
table. Not a test: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import resource
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


def synthetic_stack(tenants: int, *, placed: bool) -> dict[str, Any]:
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
        tenant["id"] = f"t{i:04d}"
        tenant["model_strategy"] = "tenant_specific"
        tenant.pop("genai", None)
        generated.append(tenant)
    platform_spec["tenants"] = generated
    platform_spec["pools"] = pools
    if placed:
        stamps = len(pools) + sum(t["tier"] == "dedicated" for t in generated)
        # Two endpoints a stamp, 100 a subscription and region.
        needed = max(1, math.ceil(2 * stamps / 100))
        platform_spec["placement"] = {
            "targets": [
                {
                    "id": f"sub{index}",
                    "subscription_id": f"00000000-0000-4000-8000-{index:012d}",
                    "region": platform_spec["location"],
                }
                for index in range(needed)
            ]
        }
    return document


def measure(tenants: int, workdir: Path, *, placed: bool) -> dict[str, Any]:
    stack = f"bench{tenants}{'placed' if placed else ''}"
    document = synthetic_stack(tenants, placed=placed)
    (workdir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mlops", "plan", "--stack", stack, "--json", "--root", str(workdir)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: the plan has a mandatory violation
        raise SystemExit(f"plan of {tenants} tenants failed:\n{result.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    plan = json.loads(result.stdout)
    refused = [v["message"] for v in plan["violations"] if v["policy"] == "azure-limits"]
    targets = document["config"]["tenant-mlops:platform"].get("placement", {}).get("targets", [])
    return {
        "tenants": tenants,
        "subscriptions": max(1, len(targets)),
        "mandatory_violations": plan["summary"]["violations"]["mandatory"],
        "azure_limits": refused[:3],
        "resources": plan["summary"]["resources"],
        "seconds": round(elapsed, 2),
        "ms_per_resource": round(1000 * elapsed / plan["summary"]["resources"], 2),
        # ru_maxrss of children is the largest child so far: sizes run in increasing order.
        "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        # The synthetic stacks live in a scratch folder; the program is still this project's.
        project["main"] = str(ROOT / project.get("main", "."))
        (workdir / "Pulumi.yaml").write_text(yaml.safe_dump(project))
        for size in sorted(args.sizes):
            for placed in (False, True):
                rows.append(measure(size, workdir, placed=placed))
                print(rows[-1], flush=True)
    report = {
        "benchmark": "plan_scaling",
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "command": "python -m mlops plan --stack <synthetic> --json",
        "results": rows,
    }
    (RESULTS / "plan_scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        "| tenants | subscriptions | resources | mandatory violations | seconds | ms/resource "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['tenants']} | {row['subscriptions']} | {row['resources']} | "
            f"{row['mandatory_violations']} | {row['seconds']} | {row['ms_per_resource']} | "
            f"{row['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
