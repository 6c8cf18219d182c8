"""Benchmark: in-process scoring latency of the exported ONNX model against the source
scikit-learn pipeline's predict_proba, at batch sizes 1, 10, 100 and 1000, for each model
kind (tabular, digits, text). One onnxruntime thread, as the serving workers use.

Writes bench/results/scoring_latency.json. Medians of 5 repeats of N calls each.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import sklearn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.data import split_kind  # noqa: E402
from ml.export import INPUT_NAME, export, onnx_input, session  # noqa: E402
from ml.training import train_tenant_specific  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BATCHES = (1, 10, 100, 1000)
REPEATS = 5


def _per_call_us(call: Any, calls: int) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


def measure(kind: str) -> list[dict[str, Any]]:
    data = split_kind(kind, ["bench"])["bench"]  # type: ignore[arg-type]
    train, holdout = data.split()
    model = train_tenant_specific(train)
    onnx = session(export(model, holdout.X).onnx_bytes)
    rows = []
    for batch in BATCHES:
        index = np.arange(batch) % len(holdout)
        X = holdout.X[index]  # noqa: N806
        feed = {INPUT_NAME: onnx_input(kind, X)}
        calls = max(20, 20_000 // batch)
        source = _per_call_us(lambda X=X: model.predict_proba(X), calls)  # noqa: N803
        runtime = _per_call_us(lambda feed=feed: onnx.run(None, feed), calls)
        rows.append(
            {
                "kind": kind,
                "batch": batch,
                "sklearn_us": round(source, 1),
                "onnx_us": round(runtime, 1),
                "speedup": round(source / runtime, 2),
            }
        )
        print(
            f"{kind:9s} batch {batch:5d}: sklearn {source:9.1f} us  onnx {runtime:9.1f} us  "
            f"x{source / runtime:.1f}"
        )
    return rows


def main() -> None:
    rows = [row for kind in ("classical", "cv", "nlp") for row in measure(kind)]
    result = {
        "benchmark": "scoring_latency",
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "versions": {"scikit-learn": sklearn.__version__, "onnxruntime": onnxruntime.__version__},
        "method": f"median of {REPEATS} repeats; microseconds per call; 1 onnxruntime thread",
        "rows": rows,
        "target": "ONNX faster than the source model at every batch size",
        "target_met": all(row["speedup"] > 1 for row in rows),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scoring_latency.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
