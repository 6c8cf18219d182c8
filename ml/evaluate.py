"""Evaluation: the candidate against the champion on the same held-out rows, through the
exported ONNX model (what ships is what is measured). Metrics are higher-is-better, as the
model gate reads them; the champion's appear as ``champion_<metric>``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from ml.export import INPUT_NAME, onnx_input, session

GATE_METRICS = ("accuracy", "f1_macro")


def onnx_probabilities(onnx_bytes: bytes, kind: str, X: np.ndarray) -> np.ndarray:  # noqa: N803
    _, probabilities = session(onnx_bytes).run(None, {INPUT_NAME: onnx_input(kind, X)})
    return np.asarray(probabilities, dtype=np.float64)


def metrics(probabilities: np.ndarray, y: np.ndarray, classes: Sequence[int]) -> dict[str, float]:
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    result = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_macro": float(f1_score(y, predicted, average="macro", labels=list(classes))),
    }
    if len(classes) == 2 and len(set(y.tolist())) == 2:
        result["roc_auc"] = float(roc_auc_score(y, probabilities[:, 1]))
    return result


def compare(
    kind: str,
    candidate: bytes,
    champion: bytes | None,
    *,
    X: np.ndarray,  # noqa: N803
    y: np.ndarray,
    classes: Sequence[int],
) -> dict[str, Any]:
    """The candidate's metrics and, when a champion exists, the champion's on the same rows."""
    result: dict[str, Any] = metrics(onnx_probabilities(candidate, kind, X), y, classes)
    result["holdout_rows"] = len(y)
    if champion is not None:
        theirs = metrics(onnx_probabilities(champion, kind, X), y, classes)
        result.update({f"champion_{key}": value for key, value in theirs.items()})
    return result
