"""Azure ML model monitors for the tenants whose drift is more than the automation's
Function measures (``PlatformSpec.drift_engine_of``): one monitor schedule per tenant, on
its live deployment, run by Azure ML on serverless Spark; its breaches come back as
RunStatusChanged events (automation.drift_watch.monitor_breach).

Signals, as Azure ML's model monitoring defines them
(https://learn.microsoft.com/azure/machine-learning/how-to-monitor-model-performance):

- data drift of every feature and prediction drift, against the live model's baseline (its
  training rows and its predictions on them), with the stack's metrics and thresholds;
- model performance (accuracy), joining the collected model outputs with the ground truth
  tenants send (the gateway's labels, ``modelDataCollector/<endpoint>/ground_truth``) by the
  data collector's correlation id, against the tenant's ``min_metrics`` accuracy.

Spark reads neither the baseline's ``.npz`` nor a folder of JSON lines as a table, so each
is registered as an MLTable data asset first: a CSV of the baseline beside an ``MLTable``
file (https://learn.microsoft.com/azure/machine-learning/how-to-mltable), and an ``MLTable``
reading the labels' JSON lines. Data asset versions are immutable: each is registered once
(https://learn.microsoft.com/rest/api/azureml/data-versions/create-or-update).

The schedule is built with azure-ai-ml's entities (they validate what Azure ML takes: a
Spark runtime of 3.4 or 3.5, the signals' metric names) and written with one PUT, only when
its content changed: a digest of the body is kept as a tag.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from azure.ai.ml import Input
from azure.ai.ml.constants import MonitorDatasetContext
from azure.ai.ml.entities import (
    BaselineDataRange,
    CategoricalDriftMetrics,
    DataDriftMetricThreshold,
    DataDriftSignal,
    ModelPerformanceClassificationThresholds,
    ModelPerformanceMetricThreshold,
    ModelPerformanceSignal,
    MonitorDefinition,
    MonitoringTarget,
    MonitorSchedule,
    NumericalDriftMetrics,
    PredictionDriftMetricThreshold,
    PredictionDriftSignal,
    ProductionData,
    RecurrencePattern,
    RecurrenceTrigger,
    ReferenceData,
    ServerlessSparkCompute,
)

from adapters.azure_arm import Arm
from ml.baseline import Baseline
from tenancy import contracts
from tenancy.spec import PlatformSpec

#: The api-version azure-ai-ml sends for schedules (its ScheduleOperations' client).
SCHEDULE_API_VERSION = "2023-06-01-preview"
DATA_API_VERSION = "2023-10-01"
DIGEST_TAG = "tenant-mlops.monitor-digest"
PREDICTION = "prediction"
LABEL = "label"
CORRELATION = "correlationid"
#: Azure ML's metric names for the spec's (ml.drift uses the same ones, snake_case).
_NUMERICAL = {
    "normalized_wasserstein_distance",
    "jensen_shannon_distance",
    "population_stability_index",
    "two_sample_kolmogorov_smirnov_test",
}
_CATEGORICAL = {
    "jensen_shannon_distance",
    "population_stability_index",
    "pearsons_chi_squared_test",
}


def monitor_name(tenant: str) -> str:
    return f"drift-{tenant}"


@dataclass(frozen=True)
class MonitorTarget:
    """What a tenant's monitor watches, as the adapter found it."""

    tenant: str
    workspace_id: str  # the ARM id of the tenant's workspace
    endpoint: str
    deployment: str
    model: str  # "<name>/<version>"
    baseline_uri: str  # azureml://datastores/<datastore>/paths/<path> of baseline.npz
    datastore: str  # the baseline's datastore, where the monitor's tables are written
    collector_datastore: str  # the workspace's default one, where the collector writes


class ModelMonitors:
    """Keeps each large tenant's model monitor on its live deployment."""

    def __init__(
        self,
        spec: PlatformSpec,
        arm: Arm,
        container: Callable[[str, str], Any],  # (tenant, datastore) -> a ContainerClient
    ) -> None:
        self.spec = spec
        self.arm = arm
        self.container = container

    def ensure(self, target: MonitorTarget) -> str:
        """Create or update the tenant's monitor; "created", "updated" or "unchanged"."""
        reference = self._reference_asset(target)
        truth = self._ground_truth_asset(target)
        body = self._schedule_body(target, reference, truth)
        path = f"{target.workspace_id}/schedules/{monitor_name(target.tenant)}"
        what = f"the model monitor of {target.tenant}"
        found = self.arm.send_get_or_none(path, SCHEDULE_API_VERSION, what)
        digest = body["properties"]["tags"][DIGEST_TAG]
        if (
            found is not None
            and (found.get("properties") or {}).get("tags", {}).get(DIGEST_TAG) == digest
        ):
            return "unchanged"
        self.arm.put(path, SCHEDULE_API_VERSION, body, what)
        return "created" if found is None else "updated"

    # --- the tables the monitor reads ----------------------------------------------------

    def _reference_asset(self, target: MonitorTarget) -> str:
        """The baseline as an MLTable data asset (``<tenant>-reference``, versioned by the
        model): its CSV (features, then the prediction) and MLTable file first."""
        name, version = target.model.split("/")
        asset = f"{target.tenant}-reference"
        asset_version = f"{name}-{version}"
        if self._asset_exists(target, asset, asset_version):
            return f"azureml:{asset}:{asset_version}"
        store = self.container(target.tenant, target.datastore)
        baseline_path = target.baseline_uri.split("/paths/", 1)[1]
        baseline = Baseline.load(io.BytesIO(store.download_blob(baseline_path).readall()))
        folder = f"monitoring/{target.tenant}/{name}/{version}/reference"
        store.upload_blob(f"{folder}/reference.csv", _csv(baseline), overwrite=True)
        store.upload_blob(f"{folder}/MLTable", _REFERENCE_MLTABLE, overwrite=True)
        self._register(target, asset, asset_version, target.datastore, folder)
        return f"azureml:{asset}:{asset_version}"

    def _ground_truth_asset(self, target: MonitorTarget) -> str:
        """The labels tenants send for the endpoint (JSON lines) as an MLTable data asset."""
        labels = f"{contracts.COLLECTOR_ROOT}/{target.endpoint}/{contracts.COLLECTION_LABELS}"
        pattern = f"azureml://datastores/{target.collector_datastore}/paths/{labels}/**/*.jsonl"
        table = _GROUND_TRUTH_MLTABLE.format(pattern=pattern)
        asset = f"{target.tenant}-ground-truth"
        asset_version = hashlib.sha256(table.encode()).hexdigest()[:12]
        if not self._asset_exists(target, asset, asset_version):
            folder = f"monitoring/{target.tenant}/ground-truth/{asset_version}"
            store = self.container(target.tenant, target.collector_datastore)
            store.upload_blob(f"{folder}/MLTable", table, overwrite=True)
            self._register(target, asset, asset_version, target.collector_datastore, folder)
        return f"azureml:{asset}:{asset_version}"

    def _asset_exists(self, target: MonitorTarget, asset: str, version: str) -> bool:
        path = f"{target.workspace_id}/data/{asset}/versions/{version}"
        found = self.arm.send_get_or_none(path, DATA_API_VERSION, f"data asset {asset}:{version}")
        return found is not None

    def _register(
        self, target: MonitorTarget, asset: str, version: str, datastore: str, folder: str
    ) -> None:
        path = f"{target.workspace_id}/data/{asset}/versions/{version}"
        body = {
            "properties": {
                "dataType": "mltable",
                "dataUri": f"azureml://datastores/{datastore}/paths/{folder}/",
                "description": f"read by the model monitor of {target.tenant}",
                "tags": {contracts.MODEL_TAG_TENANT: target.tenant},
            }
        }
        self.arm.put(path, DATA_API_VERSION, body, f"data asset {asset}:{version}")

    # --- the schedule -------------------------------------------------------------------

    def _schedule_body(self, target: MonitorTarget, reference: str, truth: str) -> dict[str, Any]:
        schedule = self._schedule(target, reference, truth)
        body: dict[str, Any] = schedule._to_rest_object().as_dict()
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        body["properties"]["tags"][DIGEST_TAG] = digest
        return body

    def _schedule(self, target: MonitorTarget, reference: str, truth: str) -> MonitorSchedule:
        drift = self.spec.drift
        baseline = ReferenceData(
            input_data=Input(type="mltable", path=reference),
            data_context=MonitorDatasetContext.TRAINING,
            data_column_names={"target_column": PREDICTION},
        )
        signals: dict[str, Any] = {
            "data_drift": DataDriftSignal(
                reference_data=baseline,
                features="all_features",
                metric_thresholds=self._drift_thresholds(),
                alert_enabled=True,
            )
        }
        if drift.prediction_drift:
            signals["prediction_drift"] = PredictionDriftSignal(
                reference_data=baseline,
                metric_thresholds=PredictionDriftMetricThreshold(
                    categorical=CategoricalDriftMetrics(
                        **{self._categorical(): drift.threshold(self._categorical())}
                    )
                ),
                alert_enabled=True,
            )
        accuracy = self.spec.min_metrics_for(self.spec.tenant(target.tenant)).get("accuracy")
        if accuracy is not None:
            signals["model_performance"] = self._performance(target, truth, accuracy)
        definition = MonitorDefinition(
            compute=ServerlessSparkCompute(
                instance_type=drift.monitor_instance_type,
                runtime_version=drift.monitor_spark_runtime,
            ),
            monitoring_target=MonitoringTarget(
                ml_task="classification",
                endpoint_deployment_id=(
                    f"{target.workspace_id}/onlineEndpoints/{target.endpoint}"
                    f"/deployments/{target.deployment}"
                ),
            ),
            monitoring_signals=signals,
            # Breaches raise Azure Monitor alerts and RunStatusChanged events; the
            # automation's event handler acts on them (no e-mail from here).
            alert_notification="azmonitoring",
        )
        model = target.model.split("/")[0]
        return MonitorSchedule(
            name=monitor_name(target.tenant),
            # Once a day, as the stack's own drift window reads a day by default.
            trigger=RecurrenceTrigger(
                frequency="day", interval=1, schedule=RecurrencePattern(hours=3, minutes=0)
            ),
            create_monitor=definition,
            tags={contracts.MODEL_TAG_TENANT: target.tenant, "model": model},
            properties={contracts.MODEL_TAG_TENANT: target.tenant},
        )

    def _categorical(self) -> str:
        metric = self.spec.drift.categorical_metric
        return metric if metric in _CATEGORICAL else "jensen_shannon_distance"

    def _drift_thresholds(self) -> DataDriftMetricThreshold:
        drift = self.spec.drift
        numerical = drift.numerical_metric
        if numerical not in _NUMERICAL:
            numerical = "normalized_wasserstein_distance"
        categorical = self._categorical()
        numeric: dict[str, Any] = {numerical: drift.threshold(numerical)}
        categoric: dict[str, Any] = {categorical: drift.threshold(categorical)}
        return DataDriftMetricThreshold(
            numerical=NumericalDriftMetrics(**numeric),
            categorical=CategoricalDriftMetrics(**categoric),
        )

    def _performance(
        self, target: MonitorTarget, truth: str, accuracy: float
    ) -> ModelPerformanceSignal:
        outputs = f"azureml:{target.endpoint}-{target.deployment}-{contracts.COLLECTION_OUTPUTS}:1"
        window = BaselineDataRange(
            lookback_window_size=f"P{max(1, self.spec.quality.window_hours // 24)}D",
            lookback_window_offset="P0D",
        )
        return ModelPerformanceSignal(
            production_data=ProductionData(
                input_data=Input(type="uri_folder", path=outputs),
                data_column_names={"correlation_id": CORRELATION, "prediction": PREDICTION},
                data_window=window,
            ),
            reference_data=ReferenceData(
                input_data=Input(type="mltable", path=truth),
                data_column_names={"correlation_id": CORRELATION, "target_column": LABEL},
            ),
            metric_thresholds=ModelPerformanceMetricThreshold(
                classification=ModelPerformanceClassificationThresholds(accuracy=accuracy)
            ),
            alert_enabled=True,
        )


_REFERENCE_MLTABLE = """\
paths:
  - file: ./reference.csv
transformations:
  - read_delimited:
      delimiter: ","
      header: all_files_same_headers
"""

_GROUND_TRUTH_MLTABLE = """\
paths:
  - pattern: {pattern}
transformations:
  - read_json_lines:
      include_path_column: false
"""


def _csv(baseline: Baseline) -> bytes:
    """Features, then the prediction, with a header row."""
    rows = baseline.reference()
    text = io.StringIO()
    np.savetxt(text, rows, delimiter=",", header=",".join([*baseline.columns, PREDICTION]),
               comments="", fmt="%.10g")  # fmt: skip
    return text.getvalue().encode()
