"""The load generator of `make bench`: autocannon (Node, pinned in package.json) at a fixed
number of connections for a fixed duration against 127.0.0.1 only; it stops by itself.

While it runs, the CPU time and resident memory of the server's whole process tree are read
from /proc, so each result carries CPU milliseconds per request and RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
AUTOCANNON = ROOT / "node_modules" / ".bin" / "autocannon"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Load:
    url: str
    body: bytes
    headers: dict[str, str]
    connections: int
    seconds: int


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
    host = urlsplit(load.url).hostname
    if host != "127.0.0.1":
        raise ValueError(f"the load generator only targets 127.0.0.1, not {host!r}")
    with tempfile.NamedTemporaryFile(suffix=".json") as body_file:
        body_file.write(load.body)
        body_file.flush()
        command = [
            str(AUTOCANNON),
            "--connections",
            str(load.connections),
            "--duration",
            str(load.seconds),
            "--method",
            "POST",
            "--input",
            body_file.name,
            "--timeout",
            "10",
            "--json",
            *[arg for name, value in load.headers.items() for arg in ("-H", f"{name}={value}")],
            load.url,
        ]
        pids = process_tree(server_pid)
        cpu_before = cpu_seconds(pids)
        finished = subprocess.run(
            command, capture_output=True, check=True, timeout=load.seconds + 60
        )
        cpu_after = cpu_seconds(process_tree(server_pid))
        memory = rss_mb(process_tree(server_pid))
    report = json.loads(finished.stdout)
    total = int(report["requests"]["total"])
    failed = int(report["errors"]) + int(report["timeouts"]) + int(report["non2xx"])
    return {
        "connections": load.connections,
        "seconds": load.seconds,
        "requests": total,
        "requests_per_second": round(total / load.seconds, 1),
        "p50_ms": report["latency"]["p50"],
        "p99_ms": report["latency"]["p99"],
        "errors": failed,
        "cpu_ms_per_request": round((cpu_after - cpu_before) * 1000 / max(1, total), 3),
        "rss_mb": round(memory, 1),
    }
