"""Model quality from ground truth, per tenant: inside a pool each tenant is measured on its
own rows, as a dedicated tenant is on its deployment's.

Each check measures the tenant's live deployment over the latest labelled window (the rows
scored in the last ``quality.window_hours`` whose labels arrived within the label horizon):
accuracy, precision, recall, F1 and ROC AUC (``ml.quality.measure``), and beside them the
quality estimated from the model's confidence over every row scored, labelled or not
(``ml.quality.estimate``, NannyML's CBPE), with the estimate's error on the labelled rows.

Quality has degraded when a measured metric is below the tenant's ``min_metrics`` (the gate's
floor) or worse than the model's own evaluation (its registered metrics) by more than
``quality.margin``. Then the drift decision is taken, with the same once-a-day guard
(``DriftWatcher.act``): alert, then retrain (classical) or open a review (cv, nlp). Below
``quality.min_labels`` labelled rows nothing is judged. Every check is kept (events table,
partition ``quality``), so `mlops status` shows the latest per tenant.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from automation.drift_watch import DriftWatcher
from automation.port import PlatformPort, QualitySource
from automation.store import StateStore
from ml.quality import METRICS, Quality, estimate, measure
from tenancy import contracts
from tenancy.errors import ConflictError
from tenancy.spec import PlatformSpec

QUALITY = "quality"
#: Metrics the evaluation registers that a window can be compared with.
COMPARED = ("accuracy", "f1_macro", "roc_auc")


@dataclass(frozen=True)
class QualityCheck:
    tenant: str
    model: str  # "<name>/<version>"
    deployment: str
    scored: int
    labelled: int
    measured: Quality | None  # None: fewer labelled rows than quality.min_labels
    estimated: Quality | None  # from confidence, over every scored row
    estimate_error: Mapping[str, float] = field(default_factory=dict)
    breaches: tuple[str, ...] = ()
    action: str = "none"  # none | insufficient_labels | retrain | review | blocked | duplicate

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "model": self.model,
            "deployment": self.deployment,
            "scored": self.scored,
            "labelled": self.labelled,
            "measured": _clean(self.measured.to_dict()) if self.measured else None,
            "estimated": _clean(self.estimated.to_dict()) if self.estimated else None,
            "estimate_error": dict(self.estimate_error),
            "breaches": list(self.breaches),
            "action": self.action,
        }


class QualityWatcher:
    def __init__(
        self,
        spec: PlatformSpec,
        store: StateStore,
        port: PlatformPort,
        source: QualitySource,
        clock: Callable[[], datetime],
        *,
        drift: DriftWatcher,
    ) -> None:
        self.spec = spec
        self.store = store
        self.port = port
        self.source = source
        self.drift = drift  # its decision: alert, retrain or review, once a day
        self.clock = clock

    def check(self, tenant: str) -> QualityCheck:
        policy = self.spec.quality
        deployment = self.port.endpoint(tenant).live
        name, version = self.source.live_model(tenant, deployment)
        model = f"{name}/{version}"
        now = self.clock()
        window = self.source.labelled(
            tenant, deployment, since=now - timedelta(hours=policy.window_hours), until=now
        )
        classes = window.classes
        estimated = estimate(np.array(window.scored), classes) if window.scored else None
        if len(window.labels) < policy.min_labels or not classes:
            check = QualityCheck(
                tenant, model, deployment, window.rows, len(window.labels), None, estimated,
                action="insufficient_labels",
            )  # fmt: skip
            return self._kept(check)
        probabilities = np.array(window.probabilities)
        measured = measure(window.labels, window.predictions, probabilities, classes)
        on_labelled = estimate(probabilities, classes)
        error = {
            m: round(float(e - v), 6)
            for m in METRICS
            if (e := on_labelled.metric(m)) is not None
            and (v := measured.metric(m)) is not None
            and not math.isnan(e - v)
        }
        breaches = tuple(self._breaches(tenant, name, version, measured))
        action = "none"
        if breaches:
            reason = f"quality of {model} fell: {'; '.join(breaches)}"
            action = self.drift.act(tenant, model, reason).action
        check = QualityCheck(
            tenant, model, deployment, window.rows, len(window.labels), measured, estimated,
            error, breaches, action,
        )  # fmt: skip
        return self._kept(check)

    def _breaches(self, tenant: str, name: str, version: str, measured: Quality) -> list[str]:
        found = []
        floors = self.spec.min_metrics_for(self.spec.tenant(tenant))
        for metric, floor in sorted(floors.items()):
            value = measured.metric(metric)
            if value is not None and not math.isnan(value) and value < floor:
                found.append(f"{metric} {value:.3f} is below the minimum {floor:g}")
        evaluated = self.port.model_facts(tenant, name, version).metrics
        margin = self.spec.quality.margin
        for metric in COMPARED:
            value, expected = measured.metric(metric), evaluated.get(metric)
            if value is None or expected is None or math.isnan(value):
                continue
            if value < float(expected) - margin:
                found.append(
                    f"{metric} {value:.3f} is below its evaluation {float(expected):.3f} "
                    f"by more than {margin:g}"
                )
        return found

    def _kept(self, check: QualityCheck) -> QualityCheck:
        """The latest check per tenant, for `mlops status` (one row each, replaced)."""
        data = {**check.to_dict(), "at": self.clock().isoformat()}
        existing = self.store.get(contracts.TABLE_EVENTS, QUALITY, check.tenant)
        # Two checks at once keep either's result: both measured the same window.
        with contextlib.suppress(ConflictError):
            if existing is None:
                self.store.insert(contracts.TABLE_EVENTS, QUALITY, check.tenant, data)
            else:
                self.store.replace(existing, data)
        return check

    def latest(self) -> dict[str, dict[str, Any]]:
        return latest_checks(self.store)


def latest_checks(store: StateStore) -> dict[str, dict[str, Any]]:
    """The latest quality check of each tenant (what `mlops status` shows)."""
    return {r.row: dict(r.data) for r in store.query(contracts.TABLE_EVENTS, QUALITY)}


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON without NaN (a metric a window cannot have, as None)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
