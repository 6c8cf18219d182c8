"""Drift of a tenant's live deployment: the collected inference data of the window against the
model's training baseline, with ml.drift; then the decision the stack's policy asks for.

Classical models retrain (the new version then comes back through the registration handler,
gate and rollout); ``cv`` and ``nlp`` models open a human-review task instead. Azure ML model
monitors reach the same decision through ``RunStatusChanged`` events whose run carries the
tag ``azureml_modelmonitor_threshold_breached`` (keys read case-insensitively). One decision
per tenant, model and day: a repeated alert changes nothing.

Collected data follows the Azure ML data collector's layout (``tenancy.contracts``) in the
workspace's default blob datastore: ``modelDataCollector/<endpoint>/<deployment>/<collection>/
<yyyy>/<mm>/<dd>/<hh>/<file>.jsonl``, one JSON object per line whose ``data`` holds the rows
(objects keyed by column, or lists), whose ``time`` says when it was collected, and whose
``correlationid`` joins a request's inputs to its outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from automation.budgets import gpu_work_allowed
from automation.port import PlatformPort
from automation.store import StateStore
from ml.drift import DriftMonitor, DriftResult, ReferenceProfile
from tenancy import contracts, naming
from tenancy.errors import ConflictError, DependencyError, InvalidInputError
from tenancy.spec import PlatformSpec

PREDICTION = "prediction"


def rows_from_jsonl(lines: Iterable[str], columns: Sequence[str]) -> np.ndarray:
    """Rows of collected records in ``columns`` order; records that do not fit are skipped
    (a malformed line must not stop a drift check), rows of other shapes too."""
    rows: list[list[float]] = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        data = record.get("data") if isinstance(record, dict) else None
        for row in data if isinstance(data, list) else []:
            values = [row.get(c) for c in columns] if isinstance(row, dict) else row
            if (
                isinstance(values, list)
                and len(values) == len(columns)
                and all(type(v) in (int, float) for v in values)
            ):
                rows.append([float(v) for v in values])
    return np.array(rows, dtype=np.float64).reshape(-1, len(columns))


#: Partitions of the events table: drift acted on (once per tenant, model and day), and the
#: human reviews opened for models that are not retrained automatically (the same keys).
DRIFT_EVENTS, REVIEW_TASKS = "drift", "review"


def drift_event_key(tenant: str, model: str, day: datetime) -> str:
    """``<tenant>|<name>-v<version>|<yyyymmdd>``: one drift event per tenant, model, day."""
    return f"{tenant}|{model.replace('/', '-v')}|{day:%Y%m%d}"


def tenant_and_model(key: str) -> tuple[str, str]:
    """(tenant, "<name>/<version>") of a :func:`drift_event_key`."""
    tenant, encoded, _ = key.split("|", 2)
    name, _, version = encoded.rpartition("-v")
    return tenant, f"{name}/{version}"


class DriftSource(Protocol):
    """What drift needs from the platform (the adapters read the registry and the blobs)."""

    def baseline(self, tenant: str, deployment: str) -> tuple[str, list[str], np.ndarray]:
        """(model "<name>/<version>", feature names, reference rows: features then prediction)."""
        ...

    def inference_data(
        self,
        tenant: str,
        deployment: str,
        features: Sequence[str],
        *,
        since: datetime,
        until: datetime,
    ) -> Iterable[np.ndarray]:
        """Collected rows of the window, in chunks: ``features`` then the prediction."""
        ...

    def request_retraining(self, tenant: str, reason: str) -> None: ...


@dataclass(frozen=True)
class DriftDecision:
    tenant: str
    model: str
    # "none" | "insufficient_data" | "retrain" | "review" | "blocked" | "duplicate", or
    # "azure_ml_monitor": an Azure ML model monitor measures this tenant.
    action: str
    reason: str
    result: DriftResult | None = None


@dataclass(frozen=True)
class Measurement:
    model: str
    deployment: str
    columns: list[str]  # the features, then the prediction
    reference: np.ndarray
    current: np.ndarray  # the window's rows, when kept (else empty)
    result: DriftResult


#: Creates or updates the Azure ML model monitor of a tenant's live deployment; says what
#: it did ("created", "updated" or "unchanged"). The Azure adapter's.
EnsureMonitor = Callable[[str, str], str]


class DriftWatcher:
    """Drift of each tenant's live deployment: measured here (the streaming monitor over the
    collected rows), or, for a tenant whose data is more than one Function instance
    measures (``PlatformSpec.drift_engine_of``), on an Azure ML model monitor this keeps
    pointed at the live deployment; its breach events come back through :meth:`act`."""

    def __init__(
        self,
        spec: PlatformSpec,
        store: StateStore,
        port: PlatformPort,
        source: DriftSource,
        clock: Callable[[], datetime],
        *,
        ensure_monitor: EnsureMonitor | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.port = port
        self.source = source
        self.clock = clock
        self.ensure_monitor = ensure_monitor

    def measure(
        self, tenant: str, *, hours: float | None = None, keep_current: bool = False
    ) -> Measurement:
        """Drift of the tenant's live deployment over the window (the stack's, or ``hours``);
        with ``keep_current`` the window's rows are kept (for a report's plots)."""
        policy = self.spec.drift
        deployment = self.port.endpoint(tenant).live
        model, features, reference = self.source.baseline(tenant, deployment)
        columns = [*features, PREDICTION]
        profile = ReferenceProfile.fit(reference, columns, categorical=[PREDICTION])
        monitor = DriftMonitor(profile, "streaming")
        now = self.clock()
        window = self.source.inference_data(
            tenant,
            deployment,
            features,
            since=now - timedelta(hours=hours or policy.window_hours),
            until=now,
        )
        kept: list[np.ndarray] = []
        for chunk in window:
            if len(chunk):
                monitor.update(chunk)
                if keep_current:
                    kept.append(chunk)
        result = monitor.result(
            thresholds=dict(policy.thresholds.items()),
            numerical_metric=policy.numerical_metric,
            categorical_metric=policy.categorical_metric,
            min_samples=policy.min_samples,
            drifted_feature_fraction=policy.drifted_feature_fraction,
            prediction_feature=PREDICTION if policy.prediction_drift else None,
        )
        current = np.vstack(kept) if kept else np.empty((0, len(columns)))
        return Measurement(model, deployment, columns, reference, current, result)

    def check(self, tenant: str) -> DriftDecision:
        if self.spec.drift_engine_of(self.spec.tenant(tenant)) == "azure_ml":
            return self._keep_monitor(tenant)
        measured = self.measure(tenant)
        model, result = measured.model, measured.result
        if result.verdict == "insufficient_data":
            return DriftDecision(
                tenant,
                model,
                "insufficient_data",
                f"{result.current_rows} rows in the window",
                result,
            )
        if result.verdict == "no_drift":
            return DriftDecision(tenant, model, "none", "no drift", result)
        drifted = [
            *result.drifted_features,
            *([PREDICTION] if result.prediction and result.prediction.drifted else []),
        ]
        return self.act(tenant, model, f"drift in {_listed(drifted)}", result)

    def _keep_monitor(self, tenant: str) -> DriftDecision:
        """The tenant's Azure ML model monitor, on its live deployment: nothing is measured
        here (its runs on serverless Spark do that, and their breaches come back as events)."""
        if self.ensure_monitor is None:
            raise DependencyError(
                f"tenant {tenant}'s drift runs on an Azure ML model monitor, which this "
                "platform has not"
            )
        deployment = self.port.endpoint(tenant).live
        outcome = self.ensure_monitor(tenant, deployment)
        return DriftDecision(
            tenant, "", "azure_ml_monitor", f"model monitor of {deployment} {outcome}", None
        )

    def act(
        self, tenant: str, model: str, reason: str, result: DriftResult | None = None
    ) -> DriftDecision:
        """Alert, then retrain or open a review task: once per tenant, model and day."""
        now = self.clock()
        key = drift_event_key(tenant, model, now)
        try:
            self.store.insert(
                contracts.TABLE_EVENTS, DRIFT_EVENTS, key, {"reason": reason, "at": now.isoformat()}
            )
        except ConflictError:
            return DriftDecision(
                tenant, model, "duplicate", f"drift of {model} was handled today", result
            )
        self.port.notify(tenant, "warning", f"{model}: {reason}")
        kind = self.spec.tenant(tenant).model_kind
        if kind not in self.spec.drift.auto_retrain_kinds:
            task = {"model": model, "reason": reason, "opened": now.isoformat(), "status": "open"}
            self.store.insert(contracts.TABLE_EVENTS, REVIEW_TASKS, key, task)
            self.port.notify(
                tenant,
                "info",
                f"human review opened for {model} ({kind} models are not retrained automatically)",
            )
            return DriftDecision(tenant, model, "review", reason, result)
        if not gpu_work_allowed(self.store, tenant, now):
            return DriftDecision(
                tenant,
                model,
                "blocked",
                f"{reason}; retraining waits: the budget stopped GPU work",
                result,
            )
        self.source.request_retraining(tenant, reason)
        return DriftDecision(tenant, model, "retrain", reason, result)


def _listed(names: Sequence[str], shown: int = 5) -> str:
    """A list short enough for an alert's subject line."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def monitor_breach(
    event_data: Mapping[str, Any], workspace_tenant: str | None = None
) -> tuple[str, str] | None:
    """(tenant, model) from a RunStatusChanged event of a model monitor whose threshold was
    breached; None for any other run. Keys are read case-insensitively. The tenant is the
    run's ``tenant`` tag, else ``workspace_tenant``: the dedicated tenant whose workspace
    raised the event (:func:`tenant_of_workspace`; the monitors this platform makes are
    only ever a dedicated tenant's)."""
    if not isinstance(event_data, Mapping):
        raise InvalidInputError("event data must be an object")
    lower = {str(k).lower(): v for k, v in event_data.items()}
    tags = lower.get("runtags") or {}
    if not isinstance(tags, Mapping):
        raise InvalidInputError("data.runTags must be an object")
    tags = {str(k).lower(): str(v) for k, v in tags.items()}
    if tags.get(contracts.MODEL_MONITOR_BREACH_TAG.lower(), "").lower() not in ("true", "1", "yes"):
        return None
    tenant = tags.get(contracts.MODEL_TAG_TENANT) or workspace_tenant
    model = tags.get("model") or tags.get("azureml.modelmonitor.model") or ""
    if not tenant:
        raise InvalidInputError(
            "the breached monitor's run names no tenant (run tag 'tenant') and its workspace "
            "is no dedicated tenant's"
        )
    return tenant, model


def tenant_of_workspace(spec: PlatformSpec, topic: str) -> str | None:
    """The dedicated tenant whose workspace an event's topic (its ARM id) is, if any."""
    name = topic.rstrip("/").rsplit("/", 1)[-1].lower() if "/workspaces/" in topic.lower() else ""
    for tenant in spec.dedicated_tenants:
        if naming.workspace(spec.environment, tenant.stamp_key).lower() == name:
            return tenant.id
    return None
