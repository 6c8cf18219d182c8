"""Shared ML fixtures: the local stack's tenant data, split once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from pathlib import Path

from ml.data import TenantData, tenant_datasets
from ml.export import export
from ml.training import train_tenant_specific
from tenancy import PlatformSpec


@pytest.fixture(scope="session")
def local_data(specs: dict[str, PlatformSpec]) -> dict[str, TenantData]:
    return tenant_datasets(specs["local"])


@pytest.fixture(scope="session")
def local_splits(local_data: dict[str, TenantData]) -> dict[str, tuple[TenantData, TenantData]]:
    return {tenant: data.split() for tenant, data in local_data.items()}


@pytest.fixture(scope="session")
def model_dirs(
    local_splits: dict[str, tuple[TenantData, TenantData]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """``single``: contoso's classical model; ``pool``: contoso, fabrikam and litware (text)."""
    root = tmp_path_factory.mktemp("models")
    for tenant in ("contoso", "fabrikam", "litware"):
        train, holdout = local_splits[tenant]
        export(train_tenant_specific(train), holdout.X).write(root / "pool" / tenant)
    train, holdout = local_splits["contoso"]
    export(train_tenant_specific(train), holdout.X).write(
        root / "single" / "contoso-classical" / "1"
    )
    return {"single": root / "single", "pool": root / "pool"}
