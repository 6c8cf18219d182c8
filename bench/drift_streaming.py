"""Benchmark: the streaming drift code (ml.drift, the Function's own) over 1 million, 10
million and 100 million current rows of 10 features and a prediction, in 500k-row chunks,
each size in a process of its own: time, rows a second and the process's own peak memory
(``VmHWM``). Memory stays flat as rows grow: the monitor keeps counts on a grid of
reference quantiles, never rows.

This is what sets ``drift.function_max_rows`` (the spec's threshold above which a tenant's
drift runs on an Azure ML model monitor instead of the Function, automation.monitoring): the
rows one Function instance measures within its time limit, leaving headroom. Data are
generated in the same process, chunk by chunk (the generation's time is measured apart and
left out). Writes bench/results/drift_streaming.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FEATURES = 10
CHUNK = 500_000
REFERENCE_ROWS = 100_000
SIZES = (1_000_000, 10_000_000, 100_000_000)
#: Flex Consumption's default instance memory and the Functions host's default timeout for
#: it (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-memory,
#: https://learn.microsoft.com/azure/azure-functions/functions-host-json#functiontimeout).
FUNCTION_MEMORY_MB = 2048
FUNCTION_TIMEOUT_S = 30 * 60


def _own_peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(rows: int) -> dict[str, Any]:
    """In this process: fit the reference, stream ``rows`` through the monitor."""
    sys.path.insert(0, str(ROOT))
    from ml.drift import DriftMonitor, ReferenceProfile  # noqa: PLC0415

    rng = np.random.default_rng(7)
    columns = [f"f{i}" for i in range(FEATURES)] + ["prediction"]
    reference = np.column_stack(
        [rng.normal(size=(REFERENCE_ROWS, FEATURES)), rng.integers(0, 2, REFERENCE_ROWS)]
    )
    profile = ReferenceProfile.fit(reference, columns, categorical=["prediction"])
    monitor = DriftMonitor(profile, "streaming")
    generating = measuring = 0.0
    left = rows
    while left:
        size = min(CHUNK, left)
        started = time.perf_counter()
        # Two features drift (a 0.3 standard deviation shift); the rest do not.
        features = rng.normal(size=(size, FEATURES))
        features[:, :2] += 0.3
        chunk = np.column_stack([features, rng.integers(0, 2, size)])
        generated = time.perf_counter()
        monitor.update(chunk)
        measuring += time.perf_counter() - generated
        generating += generated - started
        left -= size
    started = time.perf_counter()
    result = monitor.result()
    measuring += time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": round(measuring, 2),
        "rows_per_second": round(rows / measuring),
        "generating_seconds": round(generating, 2),
        "peak_rss_mb": round(_own_peak_mb(), 1),
        "verdict": result.verdict,
        "drifted_features": result.drifted_features,
    }


def parse_rate(rows: int = 200_000, per_record: int = 10) -> tuple[float, float]:
    """Rows a second the Function reads collected JSON lines at (the data collector's
    records, ``per_record`` rows each, parsed by automation.drift_watch.rows_from_jsonl),
    and the bytes a parsed row takes at its peak (the Function holds an hour's rows)."""
    sys.path.insert(0, str(ROOT))
    from automation.drift_watch import rows_from_jsonl  # noqa: PLC0415

    rng = np.random.default_rng(3)
    columns = [f"f{i}" for i in range(FEATURES)]
    lines = []
    for index in range(rows // per_record):
        data = [
            dict(zip(columns, map(float, rng.normal(size=FEATURES)), strict=True))
            for _ in range(per_record)
        ]
        lines.append(json.dumps({"correlationid": f"c{index}", "data": data}))
    started = time.perf_counter()
    parsed = rows_from_jsonl(lines, columns)
    seconds = time.perf_counter() - started
    assert len(parsed) == rows
    sample = lines[: len(lines) // 10]
    tracemalloc.start()
    rows_from_jsonl(sample, columns)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return rows / seconds, peak / (len(sample) * per_record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    runs = []
    for rows in args.sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(rows)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    slowest = min(run["rows_per_second"] for run in runs)
    parsing, row_bytes = parse_rate()
    # A row costs its parsing and its measuring, one after the other.
    combined = 1 / (1 / slowest + 1 / parsing)
    # The Function holds an hour's parsed rows at once: half the instance's memory for them.
    hour_rows = int(FUNCTION_MEMORY_MB * 1024 * 1024 / 2 / row_bytes)
    day_rows_in_time = int(combined * FUNCTION_TIMEOUT_S / 3)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": sys.version},
        "method": f"{FEATURES} features + a categorical prediction, {CHUNK:,}-row chunks, "
        f"reference {REFERENCE_ROWS:,} rows, streaming mode, one process per size",
        "command": "python bench/drift_streaming.py",
        "runs": runs,
        "function": {
            "memory_mb": FUNCTION_MEMORY_MB,
            "timeout_seconds": FUNCTION_TIMEOUT_S,
            "parse_rows_per_second": round(parsing),
            "rows_per_second_parsed_and_measured": round(combined),
            # A third of the timeout at the combined rate: headroom for downloading the
            # collected files (not measured here) and for a slower instance.
            "rows_within_a_third_of_the_timeout": day_rows_in_time,
            "parsed_row_bytes": round(row_bytes),
            "rows_an_hour_within_half_the_memory": hour_rows,
            # What one Function instance can check a day: the lower of the two.
            "function_max_rows_per_day": min(day_rows_in_time, 24 * hour_rows),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift_streaming.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
