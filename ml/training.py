"""Training per tenancy strategy (the Azure Architecture Center's three models).

- tenant-specific: one tenant's rows only;
- shared: the rows of every tenant of the model's kind who consented, identifying columns
  dropped, the contributing tenants recorded; a tenant who withdraws consent is simply not
  among them at the next training;
- tuned shared: a copy of a shared base whose classifier is tuned further on one tenant's
  rows (the base's preprocessing stays as it is), its lineage naming the base version.

Every kind trains the same shape of model, a preprocessing step and a logistic-loss linear
classifier: it exports to ONNX exactly (parity to 1e-5) and tunes by continuing gradient
descent from the base's weights, which is what "tuning a shared model" means here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ml.data import TenantData, TrainingSet, shared_training_set, tenant_training_set
from tenancy.spec import ModelKind, ModelStrategy, PlatformSpec, TenantSpec

SHARED_OWNER = "shared"


@dataclass
class TrainedModel:
    """A fitted pipeline with everything its registration records."""

    owner: str  # the tenant id, or "shared"
    kind: ModelKind
    strategy: ModelStrategy
    pipeline: Pipeline
    training: TrainingSet
    params: dict[str, Any]
    base_model: str | None = None  # "<name>/<version>" of a tuned model's base
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def contributors(self) -> tuple[str, ...]:
        return self.training.contributors

    @property
    def classes(self) -> tuple[int, ...]:
        return self.training.classes

    def predict_proba(self, X: NDArray[Any]) -> NDArray[np.float64]:  # noqa: N803
        return np.asarray(self.pipeline.predict_proba(_model_input(self.kind, X)))

    def predict(self, X: NDArray[Any]) -> NDArray[np.int64]:  # noqa: N803
        return np.asarray(self.pipeline.predict(_model_input(self.kind, X)), dtype=np.int64)


def _model_input(kind: ModelKind, X: NDArray[Any]) -> NDArray[Any]:  # noqa: N803
    """Text arrives as a column of strings (n, 1); the vectorizer wants a 1-D array."""
    return X.ravel() if kind == "nlp" else X


def _classifier(seed: int) -> SGDClassifier:
    return SGDClassifier(loss="log_loss", alpha=1e-3, max_iter=1000, tol=1e-4, random_state=seed)


def _pipeline(kind: ModelKind, seed: int) -> Pipeline:
    if kind == "nlp":
        # The default token pattern is one the ONNX converter reproduces exactly.
        pre: Any = TfidfVectorizer(lowercase=True, min_df=1)
    else:
        pre = StandardScaler()
    return Pipeline([("pre", pre), ("clf", _classifier(seed))])


def _fit(kind: ModelKind, training: TrainingSet, seed: int = 0) -> Pipeline:
    pipeline = _pipeline(kind, seed)
    pipeline.fit(_model_input(kind, training.X), training.y)
    classifier: SGDClassifier = pipeline.named_steps["clf"]
    missing = set(training.classes) - set(classifier.classes_.tolist())
    if missing:
        # Every model of a kind answers with the kind's full class list, so that the
        # scoring contract and the drift of predictions compare like with like.
        raise ValueError(f"training data lacks class(es) {sorted(missing)}")
    return pipeline


def train_tenant_specific(data: TenantData) -> TrainedModel:
    training = tenant_training_set(data)
    pipeline = _fit(data.kind, training)
    return TrainedModel(
        data.tenant, data.kind, "tenant_specific", pipeline, training, _params(pipeline)
    )


def consenting_of_kind(spec: PlatformSpec, kind: ModelKind) -> set[str]:
    return {t.id for t in spec.consenting_tenants if t.model_kind == kind}


def train_shared(spec: PlatformSpec, kind: ModelKind, data: dict[str, TenantData]) -> TrainedModel:
    """The shared model of a kind: only the consenting tenants' rows reach it."""
    consenting = consenting_of_kind(spec, kind)
    parts = [data[t] for t in sorted(consenting) if t in data]
    training = shared_training_set(parts, consenting)
    pipeline = _fit(kind, training)
    return TrainedModel(SHARED_OWNER, kind, "shared", pipeline, training, _params(pipeline))


def train_tuned(
    base: TrainedModel, data: TenantData, base_ref: str, epochs: int = 5
) -> TrainedModel:
    """Continue the base's classifier on one tenant's rows; keep its preprocessing."""
    if base.kind != data.kind:
        raise ValueError(f"a {data.kind} tenant cannot tune a {base.kind} base")
    pipeline = copy.deepcopy(base.pipeline)
    features = pipeline.named_steps["pre"].transform(_model_input(data.kind, data.features()))
    classifier: SGDClassifier = pipeline.named_steps["clf"]
    for _ in range(epochs):
        classifier.partial_fit(features, data.y, classes=np.array(base.classes))
    # The tuned model holds the base's contributors' data too: its lineage names them all.
    contributors = tuple(sorted({*base.contributors, data.tenant}))
    training = replace(tenant_training_set(data), contributors=contributors)
    params = {**_params(pipeline), "tuning_epochs": epochs, "base_model": base_ref}
    return TrainedModel(
        data.tenant, data.kind, "tuned_shared", pipeline, training, params, base_model=base_ref
    )


def _params(pipeline: Pipeline) -> dict[str, Any]:
    classifier: SGDClassifier = pipeline.named_steps["clf"]
    return {
        "preprocessing": type(pipeline.named_steps["pre"]).__name__,
        "classifier": type(classifier).__name__,
        "loss": classifier.loss,
        "alpha": classifier.alpha,
        "max_iter": classifier.max_iter,
    }


def train_for_tenant(
    tenant: TenantSpec,
    data: dict[str, TenantData],
    shared: dict[ModelKind, TrainedModel],
    shared_refs: dict[ModelKind, str],
) -> TrainedModel:
    """The model a tenant's strategy asks for (shared models are trained beforehand)."""
    if tenant.model_strategy == "tenant_specific":
        return train_tenant_specific(data[tenant.id])
    base = shared[tenant.model_kind]
    if tenant.model_strategy == "shared":
        return base
    return train_tuned(base, data[tenant.id], shared_refs[tenant.model_kind])
