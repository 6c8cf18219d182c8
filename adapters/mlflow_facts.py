"""Model version facts from an MLflow registry, for the model gate.

The adapter behind ``policies.model_rules.ModelFactsSource``: it reads the version's tags,
its run's metrics, the ``MLmodel`` file (flavors), the environment's requirements and the
model file itself (digest and size), and the current champion's metrics.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ml.model_folder import read_model_folder
from policies.model_rules import (
    ChampionFacts,
    ModelFacts,
    approvals_from_tags,
    champion_on_same_rows,
    own_metrics,
)
from tenancy import contracts
from tenancy.errors import NotFoundError

# The platform never calls home (set before MLflow is imported anywhere in the process).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from mlflow import MlflowClient  # after the telemetry switch above
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException


class MlflowModelFacts:
    """Reads facts from one MLflow tracking server / registry (a URI such as
    ``sqlite:///…/mlflow.db`` or ``http://127.0.0.1:5000``)."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        self._tracking_uri = tracking_uri
        self._registry_uri = registry_uri or tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=self._registry_uri)

    def model_facts(self, name: str, version: str) -> ModelFacts:
        try:
            model_version = self._client.get_model_version(name, version)
        except MlflowException as error:
            raise NotFoundError.for_item("model version", f"{name}/{version}") from error
        tags = dict(model_version.tags or {})
        with tempfile.TemporaryDirectory(prefix="mlops-gate-") as folder:
            local = Path(
                download_artifacts(
                    artifact_uri=model_version.source,
                    dst_path=folder,
                    tracking_uri=self._tracking_uri,
                    registry_uri=self._registry_uri,
                )
            )
            artifact = read_model_folder(local)
        metrics = self._run_metrics(model_version.run_id)
        return ModelFacts(
            name=name,
            version=str(model_version.version),
            tags=tags,
            metrics=own_metrics(metrics),
            champion=self._champion(name, metrics),
            approvals=approvals_from_tags(tags),
            **artifact,
        )

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        return dict(self._client.get_run(run_id).data.metrics)

    def _champion(self, name: str, candidate_metrics: dict[str, float]) -> ChampionFacts | None:
        """The champion's metrics on the candidate's held-out rows when the evaluation
        recorded them (``champion_<metric>``): the comparison is then like for like."""
        try:
            champion = self._client.get_model_version_by_alias(name, contracts.ALIAS_CHAMPION)
        except MlflowException:
            return None  # no champion yet: the first version of a model
        same_rows = champion_on_same_rows(candidate_metrics)
        return ChampionFacts(str(champion.version), same_rows or self._run_metrics(champion.run_id))
