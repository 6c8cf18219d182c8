"""MLflow tracking and registry, tenancy-aware.

Where models live (:class:`RegistryLayout`): a dedicated tenant has its own backend store,
the tenants of a pool share their pool's, and shared models live in the platform's (as
Azure ML keeps shared models in the environment's registry). Stores are sqlite files and
artifacts plain folders under one data directory, or any MLflow URIs.

What a tenant can reach (:class:`ModelRegistry`): a registry object is bound to one tenant
and answers only for that tenant's models; another tenant's model in the same (pooled) store
is "not found" for listing, loading and aliasing alike, so its very existence does not leak.
Tenants whose strategy uses shared models may also load (never alias or register) the
platform's shared models through :meth:`ModelRegistry.shared_view`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.baseline import Baseline
from ml.export import MODEL_FILE, SCHEMA_FILE, ExportedModel
from ml.model_folder import sha256_of
from ml.stores import prepare_sqlite_store
from ml.training import SHARED_OWNER, TrainedModel
from tenancy import contracts
from tenancy.errors import InvalidInputError, NotFoundError
from tenancy.spec import PlatformSpec, TenantSpec

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
# A platform's log is not a terminal: no progress bars, no "View run at" lines.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import mlflow.onnx  # after the telemetry switch above
import onnx
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

PLATFORM = "platform"
SCORING_REQUIREMENTS = Path(__file__).parent / "scoring" / "requirements.txt"
BASELINE_FILE = "baseline.npz"
_INTENDED_USE = {
    "classical": "classification of tabular customer records",
    "cv": "recognition of scanned digits",
    "nlp": "routing of support tickets by topic",
}


@dataclass(frozen=True)
class Store:
    """One MLflow backend store and its artifact root."""

    key: str  # "tenant-<id>", "pool-<id>" or "platform"
    tracking_uri: str
    artifact_root: Path | None  # None: the tracking server chooses


class RegistryLayout:
    """Which store serves which tenant: sqlite files under one data directory, or, when
    ``tracking_uris`` names them, the tracking servers serving those stores."""

    def __init__(
        self,
        spec: PlatformSpec,
        data_dir: Path,
        tracking_uris: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.data_dir = data_dir
        self.tracking_uris = dict(tracking_uris or {})

    def store_keys(self) -> list[str]:
        """Every store of the stack: each dedicated tenant's, each pool's, the platform's."""
        return sorted({t.stamp_key for t in self.spec.tenants} | {PLATFORM})

    def _store(self, key: str) -> Store:
        if self.tracking_uris:
            if key not in self.tracking_uris:
                raise NotFoundError.for_item("tracking server", key)
            return Store(key, self.tracking_uris[key], None)  # the server keeps artifacts
        path = prepare_sqlite_store(self.data_dir / "registries" / f"{key}.db")
        return Store(key, f"sqlite:///{path}", self.data_dir / "artifacts" / key)

    def store_for(self, tenant: TenantSpec) -> Store:
        return self._store(tenant.stamp_key)

    def platform_store(self) -> Store:
        return self._store(PLATFORM)

    def registry_for(self, tenant_id: str) -> ModelRegistry:
        tenant = self.spec.tenant(tenant_id)
        return ModelRegistry(self.store_for(tenant), tenant.id, self)

    def platform_registry(self) -> ModelRegistry:
        return ModelRegistry(self.platform_store(), SHARED_OWNER, self)


@dataclass(frozen=True)
class ModelVersionRef:
    name: str
    version: str
    run_id: str

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


def model_name(owner: str, kind: str) -> str:
    return f"{owner}-{kind}"


class ModelRegistry:
    """One tenant's (or the platform's shared) models in one store."""

    def __init__(self, store: Store, owner: str, layout: RegistryLayout | None = None) -> None:
        self.store = store
        self.owner = owner
        self._layout = layout
        self.client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)

    # --- isolation -------------------------------------------------------------------

    def _owned(self, name: str) -> None:
        """Not found unless the registered model is this tenant's (no existence leak)."""
        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            raise NotFoundError.for_item("model", name) from None
        if model.tags.get(contracts.MODEL_TAG_TENANT) != self.owner:
            raise NotFoundError.for_item("model", name)

    def list_models(self) -> list[str]:
        found = self.client.search_registered_models(
            filter_string=f"tags.{contracts.MODEL_TAG_TENANT} = '{self.owner}'"
        )
        return sorted(m.name for m in found)

    def shared_view(self) -> ModelRegistry:
        """Read access to the platform's shared models, for tenants whose strategy uses them."""
        if self._layout is None:
            raise NotFoundError.for_item("registry", "shared")
        tenant = self._layout.spec.tenant(self.owner)
        if tenant.model_strategy == "tenant_specific":
            raise NotFoundError.for_item("registry", "shared")
        return _ReadOnlyRegistry(self._layout.platform_store(), SHARED_OWNER, self._layout)

    # --- writing ---------------------------------------------------------------------

    def register(
        self,
        trained: TrainedModel,
        exported: ExportedModel,
        metrics: Mapping[str, float],
        *,
        owner_contact: str,
        baseline: Baseline | None = None,
        extra_tags: Mapping[str, str] | None = None,
    ) -> ModelVersionRef:
        """Log a run (parameters, metrics, the model, its baseline) and register it, with
        ``extra_tags`` (a promotion's) beside the lineage: at registration, so that the
        registry's event carries them to the gate."""
        if trained.owner != self.owner:
            raise InvalidInputError(
                f"a model of '{trained.owner}' cannot be registered in '{self.owner}''s registry"
            )
        name = model_name(trained.owner, trained.kind)
        run_id = self._log_run(trained, exported, metrics, baseline)
        run = self.client.get_run(run_id)
        tags = {
            **(extra_tags or {}),
            **self._lineage(trained, exported, run_id, owner_contact, run.info.artifact_uri),
        }
        self._ensure_registered_model(name)
        version = self.client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run_id, tags=tags
        )
        return ModelVersionRef(name, str(version.version), run_id)

    def import_version(
        self, source: ModelRegistry, name: str, version: str, provenance: Mapping[str, str]
    ) -> ModelVersionRef:
        """``source``'s ``name``/``version`` as a new version here: the same model bytes
        (their digest checked), its run's parameters and metrics, its baseline and its
        lineage tags, copied so that this store's tags point into this store; ``provenance``
        (``promoted_from``) says where it came from. Importing the same version again
        returns the copy made before."""
        origin = provenance[contracts.MODEL_TAG_PROMOTED_FROM]
        earlier = self._imported(name, origin)
        if earlier is not None:
            return earlier
        found = source.version(name, version)
        tags = {k: v for k, v in found.tags.items() if k != contracts.MODEL_TAG_ALIAS}
        with tempfile.TemporaryDirectory(prefix="mlops-promote-") as folder:
            model_dir = source.download(name, version, Path(folder) / "source")
            digest = sha256_of(model_dir / MODEL_FILE)
            if digest != tags.get(contracts.MODEL_TAG_DIGEST):
                raise InvalidInputError(
                    f"{name}/{version}: its model file's digest {digest} is not the "
                    f"{tags.get(contracts.MODEL_TAG_DIGEST)} it was registered with"
                )
            run_id = self._copy_run(source, str(found.run_id), model_dir, Path(folder), origin)
        artifact_uri = self.client.get_run(run_id).info.artifact_uri
        tags[contracts.MODEL_TAG_TRAINING_RUN] = run_id
        if contracts.MODEL_TAG_BASELINE in tags:
            tags[contracts.MODEL_TAG_BASELINE] = f"{artifact_uri}/baseline/{BASELINE_FILE}"
        tags.update(provenance)
        self._ensure_registered_model(name)
        created = self.client.create_model_version(
            name, f"{artifact_uri}/model", run_id=run_id, tags=tags
        )
        return ModelVersionRef(name, str(created.version), run_id)

    def _imported(self, name: str, origin: str) -> ModelVersionRef | None:
        try:
            self._owned(name)
        except NotFoundError:
            return None  # not registered here yet
        for found in self.client.search_model_versions(f"name='{name}'"):
            if found.tags.get(contracts.MODEL_TAG_PROMOTED_FROM) == origin:
                return ModelVersionRef(name, str(found.version), str(found.run_id))
        return None

    def _copy_run(
        self, source: ModelRegistry, run_id: str, model_dir: Path, scratch: Path, origin: str
    ) -> str:
        """The source run's tags, parameters and metrics, the model and its baseline, as a
        run of this store's experiment."""
        original = source.client.get_run(run_id)
        tags = {k: v for k, v in original.data.tags.items() if not k.startswith("mlflow.")}
        run = self.client.create_run(
            self._experiment(), tags={**tags, contracts.MODEL_TAG_PROMOTED_FROM: origin}
        )
        copied = str(run.info.run_id)
        for key, value in original.data.params.items():
            self.client.log_param(copied, key, value)
        for key, measured in original.data.metrics.items():
            self.client.log_metric(copied, key, float(measured))
        self.client.log_artifacts(copied, str(model_dir), "model")
        with contextlib.suppress(MlflowException, OSError):  # a model without a baseline
            baseline = source.client.download_artifacts(
                run_id, f"baseline/{BASELINE_FILE}", str(scratch)
            )
            self.client.log_artifact(copied, baseline, "baseline")
        self.client.set_terminated(copied)
        return copied

    def _experiment(self) -> str:
        name = f"{self.owner}-training"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        if self.store.artifact_root is None:  # the server decides (Azure ML's MLflow endpoint)
            return str(self.client.create_experiment(name))
        location = (self.store.artifact_root / self.owner).resolve()
        location.mkdir(parents=True, exist_ok=True)
        return str(self.client.create_experiment(name, artifact_location=location.as_uri()))

    def _log_run(
        self,
        trained: TrainedModel,
        exported: ExportedModel,
        metrics: Mapping[str, float],
        baseline: Baseline | None,
    ) -> str:
        run = self.client.create_run(
            self._experiment(),
            tags={
                contracts.MODEL_TAG_TENANT: trained.owner,
                contracts.MODEL_TAG_STRATEGY: trained.strategy,
                contracts.MODEL_TAG_DATA_VERSION: trained.training.data_version,
                contracts.MODEL_TAG_CONTRIBUTORS: ",".join(trained.contributors),
            },
        )
        run_id = str(run.info.run_id)
        for key, value in trained.params.items():
            self.client.log_param(run_id, key, value)
        self.client.log_param(run_id, "training_rows", len(trained.training.y))
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder:
            model_dir = Path(folder) / "model"
            _save_model_folder(exported, model_dir)
            self.client.log_artifacts(run_id, str(model_dir), "model")
            if baseline is not None:
                saved = baseline.save(Path(folder) / BASELINE_FILE)
                self.client.log_artifact(run_id, str(saved), "baseline")
        self.client.set_terminated(run_id)
        return run_id

    def _lineage(
        self,
        trained: TrainedModel,
        exported: ExportedModel,
        run_id: str,
        owner_contact: str,
        artifact_uri: str,
    ) -> dict[str, str]:
        shared = trained.strategy != "tenant_specific"
        tags = {
            contracts.MODEL_TAG_TENANT: trained.owner,
            contracts.MODEL_TAG_TRAINING_RUN: run_id,
            contracts.MODEL_TAG_DATA_VERSION: trained.training.data_version,
            contracts.MODEL_TAG_OWNER: owner_contact,
            contracts.MODEL_TAG_INTENDED_USE: _INTENDED_USE[trained.kind],
            contracts.MODEL_TAG_STRATEGY: trained.strategy,
            contracts.MODEL_TAG_CONTRIBUTORS: ",".join(trained.contributors),
            contracts.MODEL_TAG_DIGEST: exported.digest,
            contracts.MODEL_TAG_BASELINE: f"{artifact_uri}/baseline/{BASELINE_FILE}",
            "kind": trained.kind,
        }
        if shared:
            tags[contracts.MODEL_TAG_IDENTIFIERS_REMOVED] = "true"
        if trained.base_model:
            tags[contracts.MODEL_TAG_BASE] = trained.base_model
        return tags

    def _ensure_registered_model(self, name: str) -> None:
        try:
            existing = self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, tags={contracts.MODEL_TAG_TENANT: self.owner})
            return
        if existing.tags.get(contracts.MODEL_TAG_TENANT) != self.owner:
            raise NotFoundError.for_item("model", name)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._owned(name)
        self.version(name, version)
        self.client.set_registered_model_alias(name, alias, version)

    def crown(self, name: str, version: str) -> None:
        """``version`` becomes the champion (it serves all live traffic) and the challenger
        alias, the request that led to it, is cleared. Setting both again changes nothing."""
        self.set_alias(name, contracts.ALIAS_CHAMPION, version)
        if self.alias(name, contracts.ALIAS_CHALLENGER) is not None:
            self.client.delete_registered_model_alias(name, contracts.ALIAS_CHALLENGER)

    # --- reading ---------------------------------------------------------------------

    def version(self, name: str, version: str) -> Any:
        self._owned(name)
        try:
            return self.client.get_model_version(name, version)
        except MlflowException:
            raise NotFoundError.for_item("model version", f"{name}/{version}") from None

    def alias(self, name: str, alias: str) -> Any | None:
        self._owned(name)
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def download(self, name: str, version: str, destination: Path) -> Path:
        """The model folder (``model.onnx``, ``schema.json``, ``MLmodel``) of a version."""
        found = self.version(name, version)
        destination.mkdir(parents=True, exist_ok=True)
        return Path(
            download_artifacts(
                artifact_uri=found.source,
                dst_path=str(destination),
                tracking_uri=self.store.tracking_uri,
            )
        )

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)


class _ReadOnlyRegistry(ModelRegistry):
    def register(self, *args: Any, **kwargs: Any) -> ModelVersionRef:
        raise NotFoundError.for_item("registry", "shared (read-only)")

    def set_alias(self, name: str, alias: str, version: str) -> None:
        raise NotFoundError.for_item("registry", "shared (read-only)")

    def crown(self, name: str, version: str) -> None:
        raise NotFoundError.for_item("registry", "shared (read-only)")


#: MLflow checks a model's pins against the process saving it. These pins are the scoring
#: environment's, not the control plane's: its mismatch warning is by design, and noise.
_REQUIREMENTS_LOGGER = "mlflow.utils.requirements_utils"


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _save_model_folder(exported: ExportedModel, folder: Path) -> None:
    """An MLflow ONNX model folder whose requirements are the scoring environment's: the
    endpoint runs score.py with onnxruntime and numpy, not MLflow."""
    requirements = [
        line.strip()
        for line in SCORING_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    # Stated, not inferred: inference runs a Python subprocess that imports the model's
    # flavor (about 3 s a model) and would name the control plane's packages, not the
    # scoring environment's.
    with _quiet(_REQUIREMENTS_LOGGER):
        mlflow.onnx.save_model(
            onnx.load_from_string(exported.onnx_bytes), str(folder), pip_requirements=requirements
        )
    (folder / SCHEMA_FILE).write_text(json.dumps(exported.schema, indent=2))
    # MLflow adds itself to the pins it writes; the endpoint does not run MLflow.
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    # MLflow re-serializes the graph; the file shipped must be the bytes the digest names.
    (folder / MODEL_FILE).write_bytes(exported.onnx_bytes)


SHARED_PREFIX = "shared-"


def registry_of(layout: RegistryLayout, tenant: str, model_name: str) -> ModelRegistry:
    """Shared models live in the platform's registry; a tenant's in its stamp's."""
    if model_name.startswith(SHARED_PREFIX):
        return layout.platform_registry()
    owner = tenant if tenant and tenant != "*" else model_name.rsplit("-", 1)[0]
    return layout.registry_for(owner)
