"""Model quality from ground truth: measured on the latest labelled window, estimated from
confidence before labels come, and below the floor or the model's own evaluation it takes
the drift decision (retrain classical, review cv and nlp), once a day."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from automation.drift_watch import DriftWatcher
from automation.quality_watch import QualityWatcher
from automation.store import MemoryStore
from ml.quality import LabelledWindow
from tenancy import PlatformSpec
from tests.automation.fakes import FakePlatform, good_facts

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def window_of(rows: int, labelled: int, accuracy: float, seed: int = 0) -> LabelledWindow:
    """``rows`` scored with calibrated-looking confidence, the first ``labelled`` labelled,
    right ``accuracy`` of the time."""
    rng = np.random.default_rng(seed)
    p1 = rng.uniform(0.05, 0.95, rows)
    probabilities = np.column_stack([1 - p1, p1])
    predictions = probabilities.argmax(axis=1)
    right = rng.random(labelled) < accuracy
    labels = np.where(right, predictions[:labelled], 1 - predictions[:labelled])
    return LabelledWindow(
        classes=[0, 1],
        scored=probabilities.tolist(),
        labels=labels.tolist(),
        predictions=predictions[:labelled].tolist(),
        probabilities=probabilities[:labelled].tolist(),
    )


@dataclass
class FakeSource:
    window: LabelledWindow
    asked: list[tuple[str, str, datetime, datetime]] = field(default_factory=list)
    retrained: list[tuple[str, str]] = field(default_factory=list)

    def live_model(self, tenant: str, deployment: str) -> tuple[str, str]:
        return f"{tenant}-model", "3"

    def labelled(
        self, tenant: str, deployment: str, *, since: datetime, until: datetime
    ) -> LabelledWindow:
        self.asked.append((tenant, deployment, since, until))
        return self.window

    # The drift decision's retraining.
    def request_retraining(self, tenant: str, reason: str) -> None:
        self.retrained.append((tenant, reason))


def _watcher(
    spec: PlatformSpec, window: LabelledWindow, evaluated_accuracy: float = 0.8
) -> tuple[QualityWatcher, FakePlatform, FakeSource]:
    platform, store, source = FakePlatform(spec=spec), MemoryStore(), FakeSource(window)
    for tenant in ("contoso", "adatum", "fabrikam"):
        platform.serve(tenant, f"{tenant}-model/3")
        facts = good_facts(f"{tenant}-model", "3", tenant, spec)
        platform.facts[(f"{tenant}-model", "3")] = dataclasses.replace(
            facts, metrics={**facts.metrics, "accuracy": evaluated_accuracy}
        )
    drift = DriftWatcher(spec, store, platform, source, lambda: NOW)  # type: ignore[arg-type]
    return QualityWatcher(spec, store, platform, source, lambda: NOW, drift=drift), platform, source


def test_a_healthy_model_is_measured_and_estimated_over_the_latestwindow_of(
    specs: dict[str, PlatformSpec],
) -> None:
    watcher, platform, source = _watcher(specs["local"], window_of(2000, 600, accuracy=0.8))
    check = watcher.check("contoso")
    assert check.action == "none" and check.breaches == () and platform.notifications == []
    assert (check.scored, check.labelled) == (2000, 600)
    assert check.measured is not None and check.measured.accuracy == pytest.approx(0.8, abs=0.05)
    assert check.estimated is not None and check.estimated.rows == 2000
    assert set(check.estimate_error) >= {"accuracy", "f1", "roc_auc"}
    [(tenant, deployment, since, until)] = source.asked
    assert (tenant, deployment, until - since) == ("contoso", "blue", timedelta(hours=24))
    assert watcher.latest()["contoso"]["measured"]["accuracy"] == check.measured.accuracy


def test_too_few_labels_judge_nothing_but_the_estimate_is_reported(
    specs: dict[str, PlatformSpec],
) -> None:
    watcher, platform, _ = _watcher(specs["local"], window_of(500, 10, accuracy=0.1))
    check = watcher.check("contoso")
    assert check.action == "insufficient_labels" and check.measured is None
    assert check.estimated is not None and platform.notifications == []


def test_quality_below_the_floor_retrains_a_classical_model_once_a_day(
    specs: dict[str, PlatformSpec],
) -> None:
    watcher, platform, source = _watcher(specs["local"], window_of(1000, 400, accuracy=0.55))
    check = watcher.check("contoso")
    assert check.action == "retrain"
    assert any("accuracy" in b and "below the minimum 0.7" in b for b in check.breaches)
    assert any("below its evaluation 0.800 by more than 0.05" in b for b in check.breaches)
    [(tenant, reason)] = source.retrained
    assert tenant == "contoso" and reason.startswith("quality of contoso-model/3 fell")
    assert [n[1] for n in platform.notifications] == ["warning"]
    assert watcher.check("contoso").action == "duplicate" and len(source.retrained) == 1


def test_a_cv_model_that_fell_opens_a_review_and_is_not_retrained(
    specs: dict[str, PlatformSpec],
) -> None:
    watcher, _, source = _watcher(specs["local"], window_of(1000, 400, accuracy=0.55))
    assert watcher.check("adatum").action == "review" and source.retrained == []


def test_worse_than_its_evaluation_by_more_than_the_margin_is_a_fall_even_above_the_floor(
    specs: dict[str, PlatformSpec],
) -> None:
    watcher, _, _ = _watcher(
        specs["local"], window_of(3000, 2000, accuracy=0.8, seed=4), evaluated_accuracy=0.95
    )
    check = watcher.check("fabrikam")
    assert check.action == "retrain"
    assert check.breaches == (
        f"accuracy {check.measured.accuracy:.3f} is below its evaluation 0.950 "  # type: ignore[union-attr]
        "by more than 0.05",
    )
