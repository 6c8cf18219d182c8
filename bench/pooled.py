"""Benchmark: one pooled deployment serving 50 tenants' models through the gateway.

Each tenant has its own model folder (its own ONNX session in the deployment's cache; the
weights are one classical model copied, training 50 models would only slow the bench).
Measured, each a median of RUNS runs:

- cold load: the first request of each tenant (its model loaded into the cache) against its
  second (cached);
- warm cache: 50 connections, one per tenant, all models cached: requests/s, p50, p99 and the
  RSS of the gateway + deployment;
- noisy neighbours: one tenant alone (8 connections), then the same tenant while the other
  49 send load on 49 connections: its requests/s and p99 both ways.

Writes bench/results/pooled.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from bench.machine import describe  # noqa: E402
from bench.serving import body_of, build_model, gateway_process  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TENANTS = [f"tenant-{i:02d}" for i in range(50)]
ENDPOINT = "bench-pool"


def _timed_request(url: str, body: bytes, key: str) -> float:
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        url, body, {"content-type": "application/json", "authorization": f"Bearer {key}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        answer.read()
    return (time.perf_counter() - started) * 1000


def cold_and_warm(url: str, body: bytes, keys: dict[str, str]) -> dict[str, Any]:
    cold = [_timed_request(url, body, keys[t]) for t in TENANTS]
    warm = [_timed_request(url, body, keys[t]) for t in TENANTS]
    return {
        "cold_first_request_ms_median": round(statistics.median(cold), 2),
        "cold_first_request_ms_max": round(max(cold), 2),
        "warm_second_request_ms_median": round(statistics.median(warm), 2),
    }


def _median(samples: list[dict[str, Any]], *keys: str) -> dict[str, Any]:
    return {key: statistics.median(s[key] for s in samples) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pooled-") as scratch:
        work = Path(scratch)
        model_dir, _, rows = build_model(work)
        folders = {}
        for tenant in TENANTS:
            folders[tenant] = str(shutil.copytree(model_dir, work / "models" / tenant))
        endpoint = {
            "name": ENDPOINT,
            "tenants": TENANTS,
            "pooled": True,
            "deployments": {"blue": folders},
            "traffic": {"blue": 100},
        }
        # Every tenant's model fits in the deployment's cache (256 MiB by default).
        env = {"TENANT_MLOPS_MODEL_CACHE_BYTES": str(256 * 2**20)}
        with gateway_process(work, [endpoint], env) as (started, pid):
            url = f"{started['url']}/{ENDPOINT}/score"
            keys = started["keys"]
            body = body_of("data", rows, 1)
            cold = cold_and_warm(url, body, keys)
            print(f"cold load {cold}", flush=True)
            base = {"content-type": "application/json"}
            callers = [{"authorization": f"Bearer {keys[t]}"} for t in TENANTS]
            everyone = loadgen.Load(url, body, base, len(TENANTS), arguments.seconds, callers)
            loadgen.run(loadgen.Load(url, body, base, len(TENANTS), 2, callers), pid)  # warm
            warm = [loadgen.run(everyone, pid) for _ in range(arguments.runs)]
            warm_row = _median(
                warm, "requests_per_second", "p50_ms", "p99_ms", "rss_mb", "cpu_ms_per_request"
            )
            print(f"warm, 50 tenants: {warm_row}", flush=True)
            one = {**base, **callers[0]}
            alone = [
                loadgen.run(loadgen.Load(url, body, one, 8, arguments.seconds), pid)
                for _ in range(arguments.runs)
            ]
            noisy = [
                _with_neighbours(
                    url,
                    body,
                    base=base,
                    one=one,
                    neighbours=callers[1:],
                    seconds=arguments.seconds,
                    pid=pid,
                )
                for _ in range(arguments.runs)
            ]
    alone_row = _median(alone, "requests_per_second", "p50_ms", "p99_ms")
    noisy_row = _median(noisy, "requests_per_second", "p50_ms", "p99_ms")
    print(f"one tenant alone {alone_row}; with 49 neighbours {noisy_row}", flush=True)
    result = {
        "benchmark": "pooled",
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": describe(),
        "method": (
            f"one pooled deployment (one process) with {len(TENANTS)} tenants' models behind "
            f"the gateway (everything on); our load generator, {arguments.seconds} s per run, "
            f"median of {arguments.runs} runs; batch 1"
        ),
        "cold_load": cold,
        "warm_cache_50_tenants": {**warm_row, "errors": sum(s["errors"] for s in warm)},
        "single_tenant_alone": alone_row,
        "single_tenant_with_49_neighbours": {
            **noisy_row,
            "throughput_share_kept": round(
                noisy_row["requests_per_second"] / alone_row["requests_per_second"], 2
            ),
        },
        "runs": {"warm": warm, "alone": alone, "noisy": noisy},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pooled.json").write_text(json.dumps(result, indent=2))


def _with_neighbours(
    url: str,
    body: bytes,
    *,
    base: dict[str, str],
    one: dict[str, str],
    neighbours: list[dict[str, str]],
    seconds: float,
    pid: int,
) -> dict[str, Any]:
    """The single tenant's load while the 49 others send theirs (started just before)."""
    with tempfile.TemporaryDirectory() as scratch:
        others = loadgen.Load(url, body, base, len(neighbours), seconds + 2, neighbours)
        background = subprocess.Popen(
            loadgen.command_for(others, Path(scratch)), stdout=subprocess.DEVNULL
        )
        try:
            time.sleep(1)  # the neighbours' load is running before the measured one starts
            return loadgen.run(loadgen.Load(url, body, one, 8, seconds), pid)
        finally:
            background.wait(timeout=seconds + 60)


if __name__ == "__main__":
    main()
