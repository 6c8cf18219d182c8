"""Quality measured from labels matches scikit-learn, and the confidence-based estimate
recovers the measured quality when the probabilities are calibrated."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from ml.quality import estimate, measure


def _binary(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrated by construction: each row's label is drawn with its own probability."""
    rng = np.random.default_rng(seed)
    p1 = rng.beta(2, 2, rows)
    labels = (rng.random(rows) < p1).astype(int)
    probabilities = np.column_stack([1 - p1, p1])
    return labels, probabilities.argmax(axis=1), probabilities


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_are_scikit_learns(seed: int) -> None:
    labels, predictions, probabilities = _binary(500, seed)
    quality = measure(labels.tolist(), predictions.tolist(), probabilities, [0, 1])
    assert quality.rows == 500
    assert quality.accuracy == pytest.approx(accuracy_score(labels, predictions))
    assert quality.precision == pytest.approx(precision_score(labels, predictions))
    assert quality.recall == pytest.approx(recall_score(labels, predictions))
    assert quality.f1 == pytest.approx(f1_score(labels, predictions))
    assert quality.roc_auc == pytest.approx(roc_auc_score(labels, probabilities[:, 1]))
    assert quality.f1_macro == pytest.approx(f1_score(labels, predictions, average="macro"))


def test_several_classes_average_as_scikit_learn_does() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(400, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probabilities])
    predictions = probabilities.argmax(axis=1)
    classes = ["cat", "dog", "eel"]
    named = [classes[i] for i in labels]
    quality = measure(named, [classes[i] for i in predictions], probabilities, classes)
    assert quality.precision == pytest.approx(precision_score(labels, predictions, average="macro"))
    assert quality.recall == pytest.approx(recall_score(labels, predictions, average="macro"))
    assert quality.f1 == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert quality.roc_auc == pytest.approx(
        roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )


def test_ties_and_a_single_class_window() -> None:
    labels = [0, 1, 0, 1]
    scores = np.array([[0.5, 0.5], [0.5, 0.5], [0.8, 0.2], [0.1, 0.9]])
    quality = measure(labels, [0, 0, 0, 1], scores, [0, 1])
    assert quality.roc_auc == pytest.approx(roc_auc_score(labels, scores[:, 1]))
    assert measure([1, 1], [1, 0], scores[:2], [0, 1]).roc_auc is None


def test_labels_as_text_or_booleans_name_the_classes_and_unknown_ones_are_skipped() -> None:
    scores = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    quality = measure(["1", False, "spam"], [1, 0, 1], scores, [0, 1])
    assert quality.rows == 2 and quality.accuracy == 1.0


@pytest.mark.parametrize("seed", [3, 4])
def test_the_estimate_recovers_calibrated_quality(seed: int) -> None:
    labels, predictions, probabilities = _binary(20_000, seed)
    measured = measure(labels.tolist(), predictions.tolist(), probabilities, [0, 1])
    estimated = estimate(probabilities, [0, 1])
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert estimated.metric(metric) == pytest.approx(measured.metric(metric), abs=0.02), metric


def test_an_overconfident_model_is_estimated_above_what_it_measures() -> None:
    """Calibration is the estimate's assumption: a model surer than it is right looks
    better estimated than measured, the error the report shows once labels arrive."""
    labels, predictions, probabilities = _binary(5_000, 9)
    sharpened = np.column_stack([probabilities[:, 0] ** 4, probabilities[:, 1] ** 4])
    sharpened /= sharpened.sum(axis=1, keepdims=True)
    measured = measure(labels.tolist(), predictions.tolist(), sharpened, [0, 1])
    assert estimate(sharpened, [0, 1]).accuracy > measured.accuracy + 0.05
