"""Benchmark: one ONNX model served four ways, side by side, under the same load.

(a) the embedded platform's gateway with everything on (tenant key, rate limit, routing and
    traffic split, data collection to Azurite, per-deployment metrics) in front of one
    deployment process (``serving/lean_host.py`` running ``score.py``);
(b) azureml-inference-server-http running the project's ``score.py`` (what Azure ML runs);
(c) ``mlflow models serve`` of the same ONNX model (one onnxruntime thread, as the others);
(d) the floor: a minimal single-process uvicorn app calling onnxruntime directly.

One worker process each. Batch 1 and batch 100 of the same rows, 8 and 32 connections,
fixed duration, median of RUNS runs. Writes bench/results/serving.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlflow  # noqa: E402
import onnx  # noqa: E402

from bench import loadgen  # noqa: E402
from bench.machine import describe  # noqa: E402
from local.azurite import start_azurite  # noqa: E402
from local.inference_server import start_inference_server  # noqa: E402
from local.processes import free_port  # noqa: E402
from ml.data import split_kind  # noqa: E402
from ml.export import export  # noqa: E402
from ml.training import train_tenant_specific  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TENANT = "contoso"
ENDPOINT = "bench-contoso"


@dataclass
class Server:
    name: str
    url: str  # the scoring URL
    pid: int  # root of the process tree measured
    headers: dict[str, str]
    envelope: str  # "data" or "inputs": the request's top-level key


def build_model(work: Path) -> tuple[Path, Path, list[list[float]]]:
    """The platform's classical model (tenant-specific) as an ONNX folder, the same model as
    an MLflow ONNX model, and the rows the load sends."""
    data = split_kind("classical", [TENANT])[TENANT]
    train, holdout = data.split()
    exported = export(train_tenant_specific(train), holdout.X)
    model_dir = exported.write(work / "model")
    mlflow_dir = work / "mlflow-model"
    mlflow.onnx.save_model(
        onnx.load_from_string(exported.onnx_bytes),
        str(mlflow_dir),
        onnx_session_options={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
    )
    rows = [[float(v) for v in row] for row in holdout.X]
    return model_dir, mlflow_dir, rows


def spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A server in its own session (so its workers stop with it), output to ``log``."""
    with log.open("ab") as stream:
        return subprocess.Popen(
            command, stdout=stream, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop_group(process: subprocess.Popen[bytes], grace_seconds: float = 30) -> None:
    """The server and every worker it started (its session's process group)."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                return
        except OSError as error:
            if getattr(error, "code", None):  # any HTTP answer means it is listening
                return
            time.sleep(0.2)  # polling for readiness
    raise RuntimeError(f"the server did not start; see {log}")


@contextmanager
def gateway_process(
    work: Path, endpoints: list[dict[str, Any]], deployment_env: dict[str, str] | None = None
) -> Iterator[tuple[dict[str, Any], int]]:
    """Azurite and the gateway (``bench/gateway_server.py``) serving ``endpoints``: yields
    what the gateway wrote once ready (url, keys) and its pid."""
    azurite = start_azurite(work / "azurite")
    config = {
        "connection_string": azurite.connection_string,
        "port": free_port(),
        "data_dir": str(work / "deployments"),
        "endpoints": endpoints,
        "deployment_env": deployment_env or {},
    }
    config_file, ready = work / "gateway.json", work / "gateway-ready.json"
    config_file.write_text(json.dumps(config))
    log = work / "gateway.log"
    script = str(ROOT / "bench" / "gateway_server.py")
    process = spawn(
        [sys.executable, script, "--config", str(config_file), "--ready", str(ready)], log
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.is_file():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start; see {log}")
            time.sleep(0.2)  # polling for readiness
        yield json.loads(ready.read_text()), process.pid
    finally:
        stop_group(process)
        azurite.stop()


@contextmanager
def gateway(work: Path, model_dir: Path) -> Iterator[Server]:
    endpoint = {
        "name": ENDPOINT,
        "tenants": [TENANT],
        "deployments": {"blue": {"*": str(model_dir)}},
        "traffic": {"blue": 100},
    }
    with gateway_process(work, [endpoint]) as (started, pid):
        key = started["keys"][TENANT]
        url = f"{started['url']}/{ENDPOINT}/score"
        yield Server("gateway", url, pid, {"authorization": f"Bearer {key}"}, "data")


@contextmanager
def inference_server(work: Path, model_dir: Path) -> Iterator[Server]:
    server = start_inference_server(
        model_dir, work / "azmlinfsrv.log", workers=1, server="azmlinfsrv"
    )
    try:
        yield Server("azmlinfsrv", f"{server.url}/score", server.process.pid, {}, "data")
    finally:
        server.stop()


@contextmanager
def mlflow_serve(work: Path, mlflow_dir: Path) -> Iterator[Server]:
    port = free_port()
    log = work / "mlflow-serve.log"
    environment = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        # mlflow starts `uvicorn` by name: the interpreter's environment must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow_cli, "models", "serve", "-m", str(mlflow_dir), "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    process = spawn(command, log, environment)
    try:
        _wait(f"http://127.0.0.1:{port}/ping", process, log)
        yield Server(
            "mlflow_serve", f"http://127.0.0.1:{port}/invocations", process.pid, {}, "inputs"
        )
    finally:
        stop_group(process)


@contextmanager
def floor(work: Path, model_dir: Path) -> Iterator[Server]:
    port = free_port()
    log = work / "floor.log"
    script = str(ROOT / "bench" / "floor_server.py")
    model = str(model_dir / "model.onnx")
    process = spawn([sys.executable, script, "--model", model, "--port", str(port)], log)
    try:
        _wait(f"http://127.0.0.1:{port}/", process, log)
        yield Server("floor", f"http://127.0.0.1:{port}/", process.pid, {}, "data")
    finally:
        stop_group(process)


def body_of(envelope: str, rows: list[list[float]], batch: int) -> bytes:
    chosen = [rows[i % len(rows)] for i in range(batch)]
    return json.dumps({envelope: chosen}).encode()


def check(server: Server, body: bytes, batch: int) -> None:
    """One request before the load: a benchmark of error answers would measure nothing."""
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        server.url, body, {"content-type": "application/json", **server.headers}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        document = json.loads(answer.read())
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if isinstance(predictions, dict):  # mlflow: one list per ONNX output
        predictions = predictions.get("label")
    if not isinstance(predictions, list) or len(predictions) != batch:
        raise RuntimeError(f"{server.name} answered {str(document)[:200]}")


def measure(
    server: Server, rows: list[list[float]], plan: list[tuple[int, int]], runs: int, seconds: int
) -> list[dict[str, Any]]:
    results = []
    for batch, connections in plan:
        body = body_of(server.envelope, rows, batch)
        check(server, body, batch)
        headers = {"content-type": "application/json", **server.headers}
        warm = loadgen.Load(server.url, body, headers, connections, 2)
        loadgen.run(warm, server.pid)
        samples = [
            loadgen.run(loadgen.Load(server.url, body, headers, connections, seconds), server.pid)
            for _ in range(runs)
        ]
        median = {
            key: statistics.median(s[key] for s in samples)
            for key in ("requests_per_second", "p50_ms", "p99_ms", "cpu_ms_per_request", "rss_mb")
        }
        row = {
            "server": server.name,
            "batch": batch,
            "connections": connections,
            **median,
            "errors": sum(s["errors"] for s in samples),
            "runs": samples,
        }
        print(
            f"{server.name:13s} batch {batch:3d} c{connections:2d}: "
            f"{row['requests_per_second']:8.0f} req/s  p50 {row['p50_ms']:6.1f} ms  "
            f"p99 {row['p99_ms']:6.1f} ms  cpu {row['cpu_ms_per_request']:.2f} ms/req  "
            f"rss {row['rss_mb']:.0f} MB  errors {row['errors']}",
            flush=True,
        )
        results.append(row)
    return results


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gateway against each peer, per batch and connections, with the issue's targets."""
    index = {(r["server"], r["batch"], r["connections"]): r for r in rows}
    found = []
    for (name, batch, connections), ours in index.items():
        if name != "gateway":
            continue
        peers = {
            p: index.get((p, batch, connections)) for p in ("azmlinfsrv", "mlflow_serve", "floor")
        }
        entry: dict[str, Any] = {"batch": batch, "connections": connections}
        for peer, theirs in peers.items():
            if theirs:
                entry[f"throughput_vs_{peer}"] = round(
                    ours["requests_per_second"] / theirs["requests_per_second"], 2
                )
                entry[f"p99_vs_{peer}"] = round(ours["p99_ms"] / max(theirs["p99_ms"], 0.01), 2)
        entry["targets"] = targets(batch, entry)
        found.append(entry)
    return found


def targets(batch: int, entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    wanted: dict[str, tuple[str, Callable[[float], bool], str]] = (
        {
            "throughput >= 3x azmlinfsrv": ("throughput_vs_azmlinfsrv", lambda v: v >= 3, ">= 3"),
            "p99 <= 1/3 azmlinfsrv": ("p99_vs_azmlinfsrv", lambda v: v <= 1 / 3, "<= 0.33"),
            "throughput >= 0.7x floor": ("throughput_vs_floor", lambda v: v >= 0.7, ">= 0.7"),
        }
        if batch == 1
        else {
            "throughput >= 1.5x azmlinfsrv": (
                "throughput_vs_azmlinfsrv",
                lambda v: v >= 1.5,
                ">= 1.5",
            )
        }
    )
    return {
        name: {
            "ratio": entry.get(key),
            "target": text,
            "met": entry.get(key) is not None and bool(test(entry[key])),
        }
        for name, (key, test, text) in wanted.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--only", nargs="*", default=None, help="server names to run")
    arguments = parser.parse_args()
    plan = [(batch, connections) for batch in (1, 100) for connections in (8, 32)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        work = Path(scratch)
        model_dir, mlflow_dir, data = build_model(work)
        servers: dict[str, Callable[[], Any]] = {
            "gateway": lambda: gateway(work, model_dir),
            "azmlinfsrv": lambda: inference_server(work, model_dir),
            "mlflow_serve": lambda: mlflow_serve(work, mlflow_dir),
            "floor": lambda: floor(work, model_dir),
        }
        for name, start in servers.items():
            if arguments.only and name not in arguments.only:
                continue
            with start() as server:
                rows.extend(measure(server, data, plan, arguments.runs, arguments.seconds))
    result = {
        "benchmark": "serving",
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": describe(),
        "method": (
            f"bench/loadgen.py (its own process), {arguments.seconds} s per run after a 2 s "
            f"warm-up, median of "
            f"{arguments.runs} runs; one worker process per server; one onnxruntime thread; "
            "CPU and RSS of each server's whole process tree (gateway + deployment for (a))"
        ),
        "model": "the platform's classical tenant model (scaler + linear classifier, 30 "
        "features) exported to ONNX",
        "rows": [{k: v for k, v in r.items() if k != "runs"} for r in rows],
        "ratios": ratios(rows),
        "runs": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
