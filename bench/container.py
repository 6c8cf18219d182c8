"""Benchmark: the scoring container against azureml-inference-server-http, at the same
worker counts, and the pool at 1,000 tenants.

Serving (``container.json``, ``serving``):
- ``container``: the container's entry point as Azure ML runs it (its build context
  assembled by ``serving.image``, the Dockerfile's command and environment, the model where
  Azure ML mounts one), run here as a process (no Docker on these machines);
- ``azmlinfsrv``: azureml-inference-server-http running the same score.py (what a
  deployment runs under the ``azureml-inference-server`` runtime), gunicorn workers;
- ``floor``: a minimal single-process uvicorn app calling onnxruntime directly.
Workers 1 and 2 (the floor: 1), batch 1 and 100, 8 and 32 connections, CPU ms a request and
p99, median of the runs.

Dense pool (``container.json``, ``pool``): one pooled deployment's folder with 1,000 tenants'
models (one folder per tenant, as the automation builds the pool asset), served by the
container's entry point with one worker:
- cold load: each tenant's first request (its model loaded on demand), p50 / p99 / max;
- memory: the process's RSS with every model loaded, and per loaded model;
- one tenant's p99 alone (only its model loaded) and beside 999 loaded neighbours.

Writes bench/results/container.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from bench.machine import describe  # noqa: E402
from bench.serving import (  # noqa: E402
    Server,
    _wait,
    body_of,
    build_model,
    floor,
    measure,
    spawn,
    stop_group,
)
from local.inference_server import scoring_python, start_inference_server  # noqa: E402
from local.processes import free_port  # noqa: E402
from serving.image import write_context  # noqa: E402

RESULTS = ROOT / "bench" / "results"
POOL_TENANTS = 1000
CACHE_BYTES = 2 * 2**30  # the pool's budget in this run: every model stays loaded


@contextmanager
def container(work: Path, model_dir: Path, workers: int, name: str = "") -> Iterator[Server]:
    """The container's entry point: its context's lean host, the image's environment."""
    context = write_context(ROOT, work / f"context-{workers}-{name}")
    port = free_port()
    log = work / f"container-{workers}-{name}.log"
    env = {
        **os.environ,
        "AML_APP_ROOT": str(context),
        "AZUREML_ENTRY_SCRIPT": "score.py",
        "AZUREML_MODEL_DIR": str(model_dir),
        "WORKER_COUNT": str(workers),
        "TENANT_MLOPS_MODEL_CACHE_BYTES": str(CACHE_BYTES),
    }
    command = [str(scoring_python()), "-P", str(context / "lean_host.py")]
    process = spawn([*command, "--host", "127.0.0.1", "--port", str(port)], log, env)
    try:
        _wait(f"http://127.0.0.1:{port}/ready", process, log, seconds=300)
        yield Server(
            f"container-w{workers}", f"http://127.0.0.1:{port}/score", process.pid, {}, "data"
        )
    finally:
        stop_group(process)


@contextmanager
def inference_server(work: Path, model_dir: Path, workers: int) -> Iterator[Server]:
    server = start_inference_server(
        model_dir, work / f"azmlinfsrv-{workers}.log", workers=workers, server="azmlinfsrv"
    )
    try:
        yield Server(
            f"azmlinfsrv-w{workers}", f"{server.url}/score", server.process.pid, {}, "data"
        )
    finally:
        server.stop()


def serving_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The container against the inference server at the same workers, and (1 worker)
    against the floor, with the issue's targets."""
    index = {(r["server"], r["batch"], r["connections"]): r for r in rows}
    found = []
    for (name, batch, connections), ours in sorted(index.items()):
        if not name.startswith("container-"):
            continue
        workers = name.rsplit("w", 1)[-1]
        theirs = index.get((f"azmlinfsrv-w{workers}", batch, connections))
        bare = index.get(("floor", batch, connections))
        entry: dict[str, Any] = {
            "workers": int(workers),
            "batch": batch,
            "connections": connections,
        }
        if theirs:
            entry["throughput_vs_azmlinfsrv"] = round(
                ours["requests_per_second"] / theirs["requests_per_second"], 2
            )
            entry["p99_vs_azmlinfsrv"] = round(ours["p99_ms"] / max(theirs["p99_ms"], 0.01), 2)
            entry["cpu_ms_vs_azmlinfsrv"] = round(
                ours["cpu_ms_per_request"] / max(theirs["cpu_ms_per_request"], 0.001), 2
            )
        if bare and workers == "1":
            entry["throughput_vs_floor"] = round(
                ours["requests_per_second"] / bare["requests_per_second"], 2
            )
        wanted = 4.0 if batch == 1 else 1.5
        entry["targets"] = {
            f"throughput >= {wanted:g}x azmlinfsrv": entry.get("throughput_vs_azmlinfsrv", 0)
            >= wanted,
            "p99 <= 1/3 azmlinfsrv": entry.get("p99_vs_azmlinfsrv", 9) <= 1 / 3,
            **(
                {"throughput >= 0.8x floor": entry["throughput_vs_floor"] >= 0.8}
                if "throughput_vs_floor" in entry
                else {}
            ),
        }
        found.append(entry)
    return found


def _score(url: str, body: bytes, tenant: str) -> float:
    """One request for ``tenant``; its latency in ms."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, body, {"content-type": "application/json", "x-tenant-id": tenant}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - loopback
        answer.read()
    return (time.perf_counter() - started) * 1000


def _rss_mb(pid: int) -> float:
    return loadgen.rss_mb(loadgen.process_tree(pid))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def dense_pool(
    work: Path, model_dir: Path, rows: list[list[float]], seconds: int, runs: int
) -> dict[str, Any]:
    pool = work / "pool"
    tenants = [f"tenant{index:04d}" for index in range(POOL_TENANTS)]
    for tenant in tenants:
        shutil.copytree(model_dir, pool / tenant)
    body = body_of("data", rows, 1)
    measured = tenants[0]

    def p99_of(server: Server) -> dict[str, float]:
        headers = {"content-type": "application/json", "x-tenant-id": measured}
        loadgen.run(loadgen.Load(server.url, body, headers, 8, 2), server.pid)
        samples = [
            loadgen.run(loadgen.Load(server.url, body, headers, 8, seconds), server.pid)
            for _ in range(runs)
        ]
        return {
            k: statistics.median(s[k] for s in samples)
            for k in ("requests_per_second", "p50_ms", "p99_ms")
        }

    with container(work, pool, 1, "alone") as server:
        baseline_mb = _rss_mb(server.pid)
        alone = p99_of(server)  # only the measured tenant's model is loaded
    with container(work, pool, 1, "dense") as server:
        empty_mb = _rss_mb(server.pid)
        cold = [_score(server.url, body, tenant) for tenant in tenants]
        loaded_mb = _rss_mb(server.pid)
        beside = p99_of(server)
    per_model_kb = (loaded_mb - empty_mb) * 1024 / POOL_TENANTS
    return {
        "tenants": POOL_TENANTS,
        "model_file_bytes": (model_dir / "model.onnx").stat().st_size,
        "cold_load_ms": {
            "p50": round(_percentile(cold, 0.5), 2),
            "p99": round(_percentile(cold, 0.99), 2),
            "max": round(max(cold), 2),
        },
        "rss_mb": {
            "serving_one_model": round(baseline_mb, 1),
            "started": round(empty_mb, 1),
            "all_loaded": round(loaded_mb, 1),
        },
        "memory_per_loaded_model_kb": round(per_model_kb, 1),
        "one_tenant_alone": alone,
        "one_tenant_beside_999": beside,
        "p99_beside_vs_alone": round(beside["p99_ms"] / max(alone["p99_ms"], 0.01), 2),
        "targets": {
            "1,000 models in <= 2 GB": loaded_mb <= 2048,
            "p99 beside 999 within 20 % of alone": beside["p99_ms"] <= alone["p99_ms"] * 1.2,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--skip-pool", action="store_true")
    arguments = parser.parse_args()
    plan = [(batch, connections) for batch in (1, 100) for connections in (8, 32)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-container-") as scratch:
        work = Path(scratch)
        model_dir, _, data = build_model(work)
        # Azure ML mounts the model under a folder of its name and version.
        mounted = work / "mounted"
        shutil.copytree(model_dir, mounted / "contoso-classical" / "1")
        servers: list[Callable[[], Any]] = [
            lambda: floor(work, model_dir),
            *[
                starter
                for workers in (1, 2)
                for starter in (
                    lambda w=workers: container(work, mounted, w),
                    lambda w=workers: inference_server(work, mounted, w),
                )
            ],
        ]
        for start in servers:
            with start() as server:
                rows.extend(measure(server, data, plan, arguments.runs, arguments.seconds))
        pool = (
            None
            if arguments.skip_pool
            else dense_pool(work, model_dir, data, arguments.seconds, arguments.runs)
        )
    result = {
        "benchmark": "container",
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": describe(),
        "method": (
            f"bench/loadgen.py (its own process), {arguments.seconds} s per run after a 2 s "
            f"warm-up, median of {arguments.runs} runs; CPU and RSS of each server's whole "
            "process tree; workers as named (container: WORKER_COUNT, azmlinfsrv: gunicorn "
            "-w); one onnxruntime thread a worker"
        ),
        "serving": {
            "rows": [{k: v for k, v in r.items() if k != "runs"} for r in rows],
            "ratios": serving_ratios(rows),
        },
        "pool": pool,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "container.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"ratios": result["serving"]["ratios"], "pool": pool}, indent=2))


if __name__ == "__main__":
    main()
