"""Retrain one tenant's model and register it: what a drift decision asks for.

The new version is registered with the ``challenger`` alias and then comes back through the
registration handler (MLflow's webhook locally, Event Grid's ModelRegistered in Azure, where
jobs get ``MLFLOW_TRACKING_URI`` pointing at the workspace), the model gate and a rollout.
A tuned tenant's shared base is retrained first from the consenting tenants' rows, then
tuned, as in the first training.

    python -m ml.retrain --tenant contoso [--stack local] [--data-dir .mlops/data]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ml.data import tenant_datasets
from ml.lifecycle import Registered, register_trained
from ml.registry import ModelVersionRef, RegistryLayout, Store
from ml.training import (
    SHARED_OWNER,
    TrainedModel,
    train_shared,
    train_tenant_specific,
    train_tuned,
)
from tenancy import contracts
from tenancy.load import load_stack, parse_platform_spec
from tenancy.spec import ModelKind, PlatformSpec


def retrain_tenant(
    spec: PlatformSpec,
    tenant_id: str,
    layout: RegistryLayout,
    scratch: Path,
    extra_tags: Mapping[str, str] | None = None,
) -> Registered:
    """Retrain the tenant's own model (its shared base first, for a tuned one); the new
    version carries ``extra_tags`` (a promotion's) from its registration on."""
    tenant = spec.tenant(tenant_id)
    data = tenant_datasets(spec)
    splits = {t: rows.split() for t, rows in data.items()}
    train = {t: parts[0] for t, parts in splits.items()}
    holdout = {t: parts[1] for t, parts in splits.items()}
    if tenant.model_strategy == "tenant_specific":
        trained = train_tenant_specific(train[tenant.id])
        registry = layout.registry_for(tenant.id)
        ref, metrics = register_trained(
            spec, registry, trained, [holdout[tenant.id]], scratch, extra_tags=extra_tags
        )
        return Registered(
            tenant.id, "tenant_specific", registry.store.key, ref, metrics, trained.contributors
        )
    base, base_ref, base_metrics = _retrain_base(spec, tenant.model_kind, layout, scratch)
    platform = layout.platform_registry()
    if tenant.model_strategy == "shared":
        return Registered(
            tenant.id, "shared", platform.store.key, base_ref, base_metrics, base.contributors
        )
    tuned = train_tuned(base, train[tenant.id], base_ref.ref)
    registry = layout.registry_for(tenant.id)
    ref, metrics = register_trained(
        spec, registry, tuned, [holdout[tenant.id]], scratch, extra_tags=extra_tags
    )
    return Registered(
        tenant.id, "tuned_shared", registry.store.key, ref, metrics, tuned.contributors
    )


def retrain_shared(
    spec: PlatformSpec, kind: ModelKind, layout: RegistryLayout, scratch: Path
) -> Registered:
    """The shared model of ``kind`` again, from the tenants that consent *in this spec* (a
    tenant who withdrew consent is not in it): registered in the platform's registry, it
    reaches the tenants serving shared models through the registration handler."""
    base, ref, metrics = _retrain_base(spec, kind, layout, scratch)
    store = layout.platform_registry().store.key
    return Registered(SHARED_OWNER, "shared", store, ref, metrics, base.contributors)


def _retrain_base(
    spec: PlatformSpec, kind: ModelKind, layout: RegistryLayout, scratch: Path
) -> tuple[TrainedModel, ModelVersionRef, dict[str, float]]:
    data = tenant_datasets(spec)
    splits = {t: rows.split() for t, rows in data.items()}
    base = train_shared(spec, kind, {t: parts[0] for t, parts in splits.items()})
    holdout = [splits[t][1] for t in base.contributors]
    ref, metrics = register_trained(spec, layout.platform_registry(), base, holdout, scratch)
    return base, ref, metrics


class _SingleStoreLayout(RegistryLayout):
    """Every registry in one tracking server (an Azure ML workspace's MLflow endpoint)."""

    def __init__(self, spec: PlatformSpec, tracking_uri: str) -> None:
        super().__init__(spec, Path())
        self.tracking_uri = tracking_uri

    def _store(self, key: str) -> Store:
        return Store(key, self.tracking_uri, None)


def _spec(stack: str) -> PlatformSpec:
    """The spec the automation sent with the job (an Azure ML job has no stack files), or the
    stack's file where the job runs beside the project (the embedded platform)."""
    sent = os.environ.get(contracts.SETTING_PLATFORM_SPEC)
    if sent:
        return parse_platform_spec(json.loads(sent), source=contracts.SETTING_PLATFORM_SPEC)
    return load_stack(stack)


def _extra_tags() -> dict[str, str]:
    """The tags the job was asked to register with (`mlops retrain`: a promotion's)."""
    raw = os.environ.get(contracts.SETTING_MODEL_TAGS)
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except json.JSONDecodeError:
        raise SystemExit(f"{contracts.SETTING_MODEL_TAGS} is not JSON") from None
    if not isinstance(found, dict):
        raise SystemExit(f"{contracts.SETTING_MODEL_TAGS} must map tag names to values")
    return {str(k): str(v) for k, v in found.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.retrain", description=__doc__)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--stack", default=os.environ.get("TENANT_MLOPS_STACK", "local"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="local registries (default: the job's MLflow)",
    )
    args = parser.parse_args(argv)
    spec = _spec(args.stack)
    if args.data_dir is not None:
        layout: RegistryLayout = RegistryLayout(spec, args.data_dir)
        scratch = args.data_dir / "scratch"
    else:
        layout = _SingleStoreLayout(spec, os.environ["MLFLOW_TRACKING_URI"])
        scratch = Path(tempfile.gettempdir()) / "retrain"
    result = retrain_tenant(spec, args.tenant, layout, scratch, _extra_tags())
    accuracy = result.metrics["accuracy"]
    print(f"registered {result.model.ref} for {result.tenant} (accuracy {accuracy:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
