"""Model quality: measured from ground truth, and estimated from the model's confidence
before labels arrive.

**Measured** (labels joined to predictions): accuracy, precision, recall, F1 and ROC AUC, as
scikit-learn computes them (binary: the positive class is the second of ``classes``;
several classes: the unweighted mean over classes, ROC AUC one-vs-rest). numpy only: the
Function App carries no scikit-learn; the tests check every number against it.

**Estimated** (confidence-based performance estimation, NannyML's CBPE,
https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html): with
calibrated probabilities, a row predicted as class c is right with probability p(c), so the
expected confusion matrix is the sum of each row's probabilities; every metric follows from
it, ROC AUC from each row counting as a positive with weight p and a negative with weight
1 - p. The estimate is only as good as the calibration, which is why it is reported beside
the measured value, with its error, once labels come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "f1_macro", "roc_auc")


@dataclass
class LabelledWindow:
    """A window's scored rows of one tenant, and those of them labelled."""

    classes: list[Any] = field(default_factory=list)
    scored: list[list[float]] = field(default_factory=list)  # every row's probabilities
    labels: list[Any] = field(default_factory=list)  # the labelled rows: truth,
    predictions: list[Any] = field(default_factory=list)  # what was predicted,
    probabilities: list[list[float]] = field(default_factory=list)  # and with what confidence

    @property
    def rows(self) -> int:
        return len(self.scored)


@dataclass(frozen=True)
class Quality:
    rows: int
    accuracy: float
    precision: float
    recall: float
    f1: float  # the positive class's (binary), else the mean over classes
    roc_auc: float | None  # None when the window holds a single class
    f1_macro: float = float("nan")  # the mean over classes (what the evaluation reports)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metric(self, name: str) -> float | None:
        value = getattr(self, name, None)
        return None if value is None else float(value)


def measure(
    labels: Sequence[Any], predictions: Sequence[Any], probabilities: np.ndarray, classes: list[Any]
) -> Quality:
    """Quality of ``predictions`` against the true ``labels``; ``probabilities`` has a
    column per class, in ``classes`` order."""
    truth = _indices(labels, classes)
    predicted = _indices(predictions, classes)
    known = (truth >= 0) & (predicted >= 0)  # a label naming no class of the model is skipped
    truth, predicted, scores = truth[known], predicted[known], probabilities[known]
    confusion = np.zeros((len(classes), len(classes)))
    np.add.at(confusion, (truth, predicted), 1.0)
    onehot = np.eye(len(classes))[truth]
    return _from_confusion(confusion, onehot, scores, len(truth))


def estimate(probabilities: np.ndarray, classes: list[Any]) -> Quality:
    """Expected quality of the predictions ``probabilities`` make (their argmax), were the
    probabilities calibrated."""
    scores = np.asarray(probabilities, dtype=np.float64)
    predicted = scores.argmax(axis=1)
    confusion = np.zeros((len(classes), len(classes)))
    for column in range(len(classes)):
        # The rows predicted as this class: each is truly of class c with probability p(c).
        confusion[:, column] = scores[predicted == column].sum(axis=0)
    return _from_confusion(confusion, scores, scores, len(scores))


def _indices(values: Sequence[Any], classes: list[Any]) -> np.ndarray:
    """Each value's class index (-1 when it is none of them). Labels may come as text
    ("1") or booleans for classes that are numbers: matched by their text."""
    index = {str(c).lower(): i for i, c in enumerate(classes)}
    if len(classes) == 2 and {str(c) for c in classes} == {"0", "1"}:
        index.update({"false": 0, "true": 1})
    out = np.full(len(values), -1, dtype=np.int64)
    for row, value in enumerate(values):
        key = str(value).lower()
        if isinstance(value, float) and value.is_integer():
            key = str(int(value))
        out[row] = index.get(key, -1)
    return out


def _from_confusion(
    confusion: np.ndarray, truth_weights: np.ndarray, scores: np.ndarray, rows: int
) -> Quality:
    """Metrics of a (possibly expected) confusion matrix, rows true, columns predicted;
    ``truth_weights`` is each row's membership of each class (one-hot, or probabilities)."""
    total = confusion.sum()
    if rows == 0 or total == 0:
        return Quality(0, float("nan"), float("nan"), float("nan"), float("nan"), None)
    present = confusion.sum(axis=1) > 0
    tp = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0
    )
    accuracy = float(tp.sum() / total)
    binary = confusion.shape[0] == 2
    if binary:  # the positive class's, as scikit-learn's average="binary"
        p, r, f = float(precision[1]), float(recall[1]), float(f1[1])
        auc = _weighted_auc(scores[:, 1], truth_weights[:, 1])
    else:
        # scikit-learn's macro average over the labels seen
        p, r, f = (float(m[present].mean()) for m in (precision, recall, f1))
        aucs = [_weighted_auc(scores[:, c], truth_weights[:, c]) for c in range(confusion.shape[0])]
        known = [a for a in aucs if a is not None]
        auc = float(np.mean(known)) if known and len(known) == len(aucs) else None
    return Quality(rows, accuracy, p, r, f, auc, float(f1[present].mean()))


def _weighted_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC where each row is a positive with weight ``positive`` and a negative with
    weight 1 - ``positive`` (one-hot labels: the usual AUC, ties counting a half)."""
    pos = positive.astype(np.float64)
    neg = 1.0 - pos
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores, pos, neg = scores[order], pos[order], neg[order]
    # Group ties: a positive beats every negative scored below it, and half of those tied.
    _, starts = np.unique(sorted_scores, return_index=True)
    pos_groups = np.add.reduceat(pos, starts)
    neg_groups = np.add.reduceat(neg, starts)
    negatives_below = np.concatenate([[0.0], np.cumsum(neg_groups)[:-1]])
    wins = (pos_groups * (negatives_below + 0.5 * neg_groups)).sum()
    return float(wins / (total_pos * total_neg))
