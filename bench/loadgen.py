"""The load generator of `make bench`: fixed connections, fixed duration, 127.0.0.1 only; it
stops by itself.

Each connection sends one request, reads the whole answer, and sends the next (no
pipelining). A server that closes the connection after each answer (gunicorn's sync
workers, azureml-inference-server-http) is reconnected, and the connect counts in that
request's latency, as a real client pays it. (autocannon was tried first: with servers that
close connections it reported a p50 of 600 ms for a server answering in 1.3 ms.)

It runs in its own process (asyncio on uvloop) so its CPU is not the server's; while it
runs, the CPU time and resident memory of the server's whole process tree are read from
/proc, so each result carries CPU milliseconds per request and RSS.

    python bench/loadgen.py --url http://127.0.0.1:8000/score --body body.json \
        --connections 8 --seconds 10 [-H "authorization: Bearer ..."]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Load:
    url: str
    body: bytes
    headers: dict[str, str]
    connections: int
    seconds: float
    # Several callers (a pool's tenants): connection i sends callers[i % n]'s headers too.
    callers: list[dict[str, str]] | None = None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited while we looked
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total / 2**20


def run(load: Load, server_pid: int) -> dict[str, Any]:
    """Drive ``load`` from a separate process; the server's CPU and RSS are read meanwhile."""
    with tempfile.TemporaryDirectory() as scratch:
        cpu_before = cpu_seconds(process_tree(server_pid))
        finished = subprocess.run(
            command_for(load, Path(scratch)),
            capture_output=True,
            check=True,
            timeout=load.seconds + 60,
        )
        cpu_after = cpu_seconds(process_tree(server_pid))
        memory = rss_mb(process_tree(server_pid))
    report = json.loads(finished.stdout)
    total = report["requests"]
    return {
        **report,
        "requests_per_second": round(total / load.seconds, 1),
        "cpu_ms_per_request": round((cpu_after - cpu_before) * 1000 / max(1, total), 3),
        "rss_mb": round(memory, 1),
    }


def command_for(load: Load, scratch: Path) -> list[str]:
    """The command line of this file driving ``load`` (files written under ``scratch``)."""
    _loopback_only(load.url)
    body = scratch / "body.json"
    body.write_bytes(load.body)
    command = [
        sys.executable,
        __file__,
        "--url",
        load.url,
        "--body",
        str(body),
        "--connections",
        str(load.connections),
        "--seconds",
        str(load.seconds),
    ]
    for name, value in load.headers.items():
        command += ["-H", f"{name}: {value}"]
    if load.callers:
        callers = scratch / "callers.json"
        callers.write_text(json.dumps(load.callers))
        command += ["--callers", str(callers)]
    return command


def _loopback_only(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise ValueError(f"the load generator only targets http://127.0.0.1, not {url!r}")
    return parts.hostname, parts.port or 80


# --- the client (in its own process) -----------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float]
    statuses: dict[int, int]
    errors: int = 0


async def _connection(host: str, port: int, request: bytes, deadline: float, tally: Tally) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            status, keep_alive = await _answer(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        tally.latencies.append((time.perf_counter() - started) * 1000)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if not keep_alive:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError("answers without Content-Length are not measured")
    await reader.readexactly(int(headers["content-length"]))
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return int(status), keep_alive


async def drive(
    url: str,
    body: bytes,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    *,
    callers: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    host, port = _loopback_only(url)
    path = urlsplit(url).path or "/"

    def request_of(extra: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in {**headers, **extra}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    requests = [request_of(extra) for extra in (callers or [{}])]
    tally = Tally([], {})
    deadline = time.perf_counter() + seconds
    await asyncio.gather(
        *(
            _connection(host, port, requests[i % len(requests)], deadline, tally)
            for i in range(connections)
        )
    )
    latencies = sorted(tally.latencies)

    def percentile(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    ok = tally.statuses.get(200, 0)
    return {
        "connections": connections,
        "seconds": seconds,
        "requests": len(latencies),
        "p50_ms": percentile(0.50) if latencies else None,
        "p99_ms": percentile(0.99) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": tally.errors + len(latencies) - ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP load at fixed connections and duration")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("-H", dest="headers", action="append", default=[])
    parser.add_argument("--callers", type=Path, help="JSON list of header sets, one per caller")
    arguments = parser.parse_args()
    callers = json.loads(arguments.callers.read_text()) if arguments.callers else None
    headers = {"content-type": "application/json"}
    for header in arguments.headers:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        import uvloop  # noqa: PLC0415 - the faster loop when installed

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    report = runner(
        drive(
            arguments.url,
            arguments.body.read_bytes(),
            headers,
            arguments.connections,
            arguments.seconds,
            callers=callers,
        )
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
