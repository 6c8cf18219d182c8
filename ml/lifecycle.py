"""Train, export, evaluate and register every tenant's model for a stack.

Order matters: the shared model of each kind is trained first (from consenting tenants only)
and registered in the platform registry; tuned tenants then tune that version, and shared
tenants serve it as it is. Every new version gets the ``challenger`` alias; promotion to
``champion`` is the automation's decision after the gate and the rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml.baseline import Baseline
from ml.data import TenantData, tenant_datasets
from ml.evaluate import compare, onnx_probabilities
from ml.export import MODEL_FILE, export
from ml.registry import ModelRegistry, ModelVersionRef, RegistryLayout, model_name
from ml.training import (
    SHARED_OWNER,
    TrainedModel,
    train_shared,
    train_tenant_specific,
    train_tuned,
)
from tenancy import contracts
from tenancy.spec import ModelKind, PlatformSpec, TenantSpec


@dataclass(frozen=True)
class Registered:
    """What a tenant serves after training: a version in its registry (or the platform's)."""

    tenant: str
    strategy: str
    store: str
    model: ModelVersionRef
    metrics: dict[str, float]
    contributors: tuple[str, ...]


def _holdout(parts: list[TenantData]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p.features() for p in parts]), np.concatenate([p.y for p in parts])


def _champion_bytes(registry: ModelRegistry, name: str, scratch: Path) -> bytes | None:
    try:
        champion = registry.alias(name, contracts.ALIAS_CHAMPION)
    except Exception:  # no model of that name yet
        return None
    if champion is None:
        return None
    folder = registry.download(name, str(champion.version), scratch / f"{name}-champion")
    return (folder / MODEL_FILE).read_bytes()


def owner_contact_of(spec: PlatformSpec, owner: str) -> str:
    if owner == SHARED_OWNER:
        return "platform-data-science"
    scientists = spec.tenant(owner).personas.data_scientist
    return f"group:{scientists[0]}" if scientists else f"{owner}-data-science"


def baseline_of(trained: TrainedModel, onnx_bytes: bytes) -> Baseline:
    """Training rows and the shipped model's predictions on them (text: predictions only)."""
    rows = trained.training.X
    probabilities = onnx_probabilities(onnx_bytes, trained.kind, rows)
    predictions = np.asarray(trained.classes)[probabilities.argmax(axis=1)]
    if trained.kind == "nlp":
        return Baseline([], np.zeros((len(rows), 0)), predictions)
    return Baseline(list(trained.training.feature_names), rows.astype(np.float64), predictions)


def register_trained(
    spec: PlatformSpec,
    registry: ModelRegistry,
    trained: TrainedModel,
    holdout: list[TenantData],
    scratch: Path,
    *,
    extra_tags: Mapping[str, str] | None = None,
) -> tuple[ModelVersionRef, dict[str, float]]:
    """Export (with parity), evaluate against the champion, register (with ``extra_tags``),
    alias challenger."""
    X, y = _holdout(holdout)  # noqa: N806
    exported = export(trained, X)
    name = model_name(trained.owner, trained.kind)
    champion = _champion_bytes(registry, name, scratch)
    metrics = compare(
        trained.kind, exported.onnx_bytes, champion, X=X, y=y, classes=trained.classes
    )
    ref = registry.register(
        trained,
        exported,
        metrics,
        owner_contact=owner_contact_of(spec, trained.owner),
        baseline=baseline_of(trained, exported.onnx_bytes),
        extra_tags=extra_tags,
    )
    registry.set_alias(ref.name, contracts.ALIAS_CHALLENGER, ref.version)
    return ref, metrics


def train_stack(
    spec: PlatformSpec, data_dir: Path, layout: RegistryLayout | None = None
) -> list[Registered]:
    """Every tenant's model for the stack, registered where the tenant's registry is (the
    sqlite stores under ``data_dir`` unless ``layout`` says otherwise)."""
    layout = layout or RegistryLayout(spec, data_dir)
    scratch = data_dir / "scratch"
    data = tenant_datasets(spec)
    splits = {tenant: rows.split() for tenant, rows in data.items()}
    train = {tenant: parts[0] for tenant, parts in splits.items()}
    holdout = {tenant: parts[1] for tenant, parts in splits.items()}
    run = _Run(spec, layout, train, holdout, scratch)
    for kind in _kinds_needing_shared(spec):
        model = train_shared(spec, kind, train)
        parts = [holdout[t] for t in model.contributors]
        ref, metrics = register_trained(spec, layout.platform_registry(), model, parts, scratch)
        run.shared[kind] = (model, ref, metrics)
    return [run.for_tenant(tenant) for tenant in spec.tenants]


def _kinds_needing_shared(spec: PlatformSpec) -> list[ModelKind]:
    kinds = {t.model_kind for t in spec.tenants if t.model_strategy != "tenant_specific"}
    return sorted(kinds)


@dataclass
class _Run:
    spec: PlatformSpec
    layout: RegistryLayout
    train: dict[str, TenantData]
    holdout: dict[str, TenantData]
    scratch: Path
    shared: dict[ModelKind, tuple[TrainedModel, ModelVersionRef, dict[str, float]]] = field(
        default_factory=dict
    )

    def for_tenant(self, tenant: TenantSpec) -> Registered:
        if tenant.model_strategy == "shared":
            model, ref, metrics = self.shared[tenant.model_kind]
            store = self.layout.platform_store().key
            return Registered(tenant.id, "shared", store, ref, metrics, model.contributors)
        if tenant.model_strategy == "tuned_shared":
            base, base_ref, _ = self.shared[tenant.model_kind]
            trained = train_tuned(base, self.train[tenant.id], base_ref.ref)
        else:
            trained = train_tenant_specific(self.train[tenant.id])
        registry = self.layout.registry_for(tenant.id)
        ref, metrics = register_trained(
            self.spec, registry, trained, [self.holdout[tenant.id]], self.scratch
        )
        return Registered(
            tenant.id, trained.strategy, registry.store.key, ref, metrics, trained.contributors
        )
