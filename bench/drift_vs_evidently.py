"""Benchmark: drift over 100k reference x 1M current rows x 20 features.

Contenders, each in its own process (peak RSS is that process's), on the same data:

- ``ours``: ml.drift streaming mode, all five metrics (normalized Wasserstein, Jensen-Shannon,
  PSI, KS with p-value, and the chi-squared machinery unused here: all features numeric),
  current rows consumed in 100k-row chunks;
- ``scipy``: scipy called once per metric and feature on whole arrays (ks_2samp,
  wasserstein_distance, jensenshannon on histograms, PSI with numpy);
- ``evidently``: Evidently's DataDriftPreset (its own environment, .venv-bench: it needs
  pandas < 3), default per-column method (normalized Wasserstein for numeric columns, 0.1).

Five of the 20 features drift (a 0.3-standard-deviation shift). The verdict per feature is
"normalized Wasserstein > 0.1" for ours and Evidently's own for Evidently; they are compared.
Timings exclude generating the data (the same seeded generator feeds every contender).
Writes bench/results/drift_vs_evidently.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REFERENCE_ROWS = 100_000
CURRENT_ROWS = 1_000_000
FEATURES = 20
CHUNK = 100_000
DRIFTING = 5
NAMES = [f"f{i:02d}" for i in range(FEATURES)]


def _block(seed: int, rows: int, drift: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kinds = [
        rng.normal(size=rows),
        rng.exponential(size=rows),
        rng.uniform(-1, 1, size=rows),
        rng.lognormal(sigma=0.5, size=rows),
    ]
    columns = [kinds[i % 4] * (1 + i / 10) + i for i in range(FEATURES)]
    data = np.column_stack(columns)
    if drift:
        data[:, :DRIFTING] += 0.3 * data[:, :DRIFTING].std(axis=0)
    return data


def reference() -> np.ndarray:
    return _block(1, REFERENCE_ROWS, drift=False)


def current_chunks() -> list[int]:
    return list(range(CURRENT_ROWS // CHUNK))


def current_chunk(index: int) -> np.ndarray:
    return _block(1000 + index, CHUNK, drift=True)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- workers (run in their own process) --------------------------------------------------------


def work_ours() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from ml.drift import WASSERSTEIN, DriftMonitor, ReferenceProfile  # noqa: PLC0415

    ref = reference()
    started = time.perf_counter()
    monitor = DriftMonitor(ReferenceProfile.fit(ref, NAMES), "streaming")
    fitted = time.perf_counter() - started
    spent = fitted
    for index in current_chunks():
        chunk = current_chunk(index)
        started = time.perf_counter()
        monitor.update(chunk)
        spent += time.perf_counter() - started
        del chunk
    started = time.perf_counter()
    result = monitor.result()
    spent += time.perf_counter() - started
    values = {f.name: f.metrics[WASSERSTEIN] for f in result.features}
    return {
        "seconds": spent,
        "peak_mb": _peak_mb(),
        "drifted": sorted(result.drifted_features),
        "values": values,
        "max_wasserstein_bound": max(
            f.metrics["error_bounds"][WASSERSTEIN] for f in result.features
        ),
    }


def work_scipy() -> dict[str, Any]:
    from scipy import stats  # noqa: PLC0415
    from scipy.spatial import distance  # noqa: PLC0415

    ref = reference()
    cur = np.concatenate([current_chunk(i) for i in current_chunks()])
    started = time.perf_counter()
    drifted = []
    for column in range(FEATURES):
        r, c = ref[:, column], cur[:, column]
        stats.ks_2samp(r, c)
        w = stats.wasserstein_distance(r, c) / np.std(r)
        edges = np.quantile(r, np.linspace(0, 1, 21))
        p = np.histogram(r, edges)[0] + 1e-12
        q = np.histogram(np.clip(c, edges[0], edges[-1]), edges)[0] + 1e-12
        distance.jensenshannon(p, q, base=2)
        deciles = np.quantile(r, np.linspace(0, 1, 11))
        pr = np.maximum(np.histogram(r, deciles)[0] / len(r), 1e-4)
        pc = np.maximum(
            np.histogram(np.clip(c, deciles[0], deciles[-1]), deciles)[0] / len(c), 1e-4
        )
        float(np.sum((pc - pr) * np.log(pc / pr)))
        if w > 0.1:
            drifted.append(NAMES[column])
    return {"seconds": time.perf_counter() - started, "peak_mb": _peak_mb(), "drifted": drifted}


def work_evidently() -> dict[str, Any]:
    import pandas as pd  # noqa: PLC0415
    from evidently import Report  # noqa: PLC0415
    from evidently.presets import DataDriftPreset  # noqa: PLC0415

    ref = pd.DataFrame(reference(), columns=NAMES)
    cur = pd.DataFrame(np.concatenate([current_chunk(i) for i in current_chunks()]), columns=NAMES)
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    seconds = time.perf_counter() - started
    drifted, values = [], {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            values[config["column"]] = metric["value"]
            if metric["value"] > config["threshold"]:
                drifted.append(config["column"])
    return {"seconds": seconds, "peak_mb": _peak_mb(), "drifted": sorted(drifted), "values": values}


WORKERS = {"ours": work_ours, "scipy": work_scipy, "evidently": work_evidently}


# --- driver ----------------------------------------------------------------------------------


def _python_for(contender: str) -> str:
    if contender == "evidently":
        return str(ROOT / ".venv-bench" / "bin" / "python")
    return sys.executable


def run_once(contender: str) -> dict[str, Any]:
    answer = subprocess.run(
        [_python_for(contender), __file__, "--worker", contender],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker]()))
        return
    runs: dict[str, list[dict[str, Any]]] = {}
    for contender in ("ours", "scipy", "evidently"):
        runs[contender] = [run_once(contender) for _ in range(args.runs)]
        seconds = [r["seconds"] for r in runs[contender]]
        peak = max(r["peak_mb"] for r in runs[contender])
        print(f"{contender:10s} median {statistics.median(seconds):8.2f} s  peak {peak:8.0f} MB")
    summary = {
        name: {
            "seconds_median": round(statistics.median(r["seconds"] for r in results), 3),
            "seconds_runs": [round(r["seconds"], 3) for r in results],
            "peak_mb": round(max(r["peak_mb"] for r in results), 1),
            "drifted": results[0]["drifted"],
        }
        for name, results in runs.items()
    }
    ours, evidently, scipy_ = summary["ours"], summary["evidently"], summary["scipy"]
    ours_values = runs["ours"][0]["values"]
    their_values = runs["evidently"][0]["values"]
    result = {
        "benchmark": "drift_vs_evidently",
        "data": f"{REFERENCE_ROWS} reference x {CURRENT_ROWS} current rows x {FEATURES} features; "
        f"{DRIFTING} drifting (0.3 std shift)",
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "contenders": summary,
        "speedup_vs_evidently": round(evidently["seconds_median"] / ours["seconds_median"], 1),
        "memory_ratio_vs_evidently": round(ours["peak_mb"] / evidently["peak_mb"], 3),
        "speedup_vs_scipy": round(scipy_["seconds_median"] / ours["seconds_median"], 1),
        "verdicts_agree": ours["drifted"] == evidently["drifted"],
        "max_wasserstein_difference_vs_evidently": round(
            max(abs(ours_values[n] - their_values[n]) for n in NAMES), 6
        ),
        "max_wasserstein_error_bound": runs["ours"][0]["max_wasserstein_bound"],
        "targets": {
            "speedup_vs_evidently_at_least": 20,
            "memory_ratio_vs_evidently_at_most": 0.25,
            "faster_than_scipy": True,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift_vs_evidently.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "contenders"}, indent=2))


if __name__ == "__main__":
    main()
