"""Tenant data: deterministic, partitioned, different per tenant, identifiers never shared."""

from __future__ import annotations

import numpy as np
import pytest

from ml.data import (
    IDENTIFYING_COLUMNS,
    TenantData,
    shared_training_set,
    split_kind,
    tenant_datasets,
)
from tenancy import PlatformSpec


def test_every_tenant_gets_data_of_its_kind(
    specs: dict[str, PlatformSpec], local_data: dict[str, TenantData]
) -> None:
    spec = specs["local"]
    assert set(local_data) == {t.id for t in spec.tenants}
    for tenant in spec.tenants:
        data = local_data[tenant.id]
        assert data.kind == tenant.model_kind
        assert len(data) > 50
        assert set(np.unique(data.y).tolist()) == set(data.classes)


def test_the_split_is_deterministic(specs: dict[str, PlatformSpec]) -> None:
    first = tenant_datasets(specs["local"])
    second = tenant_datasets(specs["local"])
    assert {t: d.version for t, d in first.items()} == {t: d.version for t, d in second.items()}
    train, holdout = first["contoso"].split()
    again, _ = second["contoso"].split()
    assert np.array_equal(train.row_ids, again.row_ids)
    assert not set(train.row_ids.tolist()) & set(holdout.row_ids.tolist())


def test_each_source_row_goes_to_exactly_one_tenant() -> None:
    parts = split_kind("classical", ["a", "b", "c", "d"])
    sources = [row.split(":")[1] for part in parts.values() for row in part.row_ids.tolist()]
    assert len(sources) == len(set(sources)) == 569  # the bundled breast-cancer rows


def test_tenants_have_different_distributions() -> None:
    parts = split_kind("classical", ["a", "b", "c"])
    means = np.array([p.X.mean(axis=0) for p in parts.values()])
    label_rates = [p.y.mean() for p in parts.values()]
    # Feature shifts and label skews both differ between tenants.
    assert np.max(np.abs(means[0] - means[1]) / means[0].clip(min=1e-6)) > 0.1
    assert max(label_rates) - min(label_rates) > 0.1


def test_raw_data_has_identifying_columns_that_features_do_not() -> None:
    data = split_kind("cv", ["scanco"])["scanco"]
    assert set(data.identifiers) == set(IDENTIFYING_COLUMNS)
    assert data.identifiers["email"][0].endswith("@scanco.example.com")
    features = {str(v) for v in data.features().ravel().tolist()}
    for values in data.identifiers.values():
        assert not set(values.tolist()) & features


def test_shared_training_takes_consenting_rows_only_and_drops_identifiers() -> None:
    parts = split_kind("classical", ["a", "b", "c"])
    training = shared_training_set([parts["a"], parts["c"]], consenting={"a", "c"})
    assert training.identifiers == {}
    assert training.row_tenants() == {"a", "c"}
    assert training.contributors == ("a", "c")
    assert len(training.y) == len(parts["a"]) + len(parts["c"])
    with pytest.raises(ValueError, match="without consent to shared training: b"):
        shared_training_set([parts["a"], parts["b"]], consenting={"a"})


def test_text_tenants_write_differently() -> None:
    parts = split_kind("nlp", ["alpha", "beta"])
    alpha = " ".join(parts["alpha"].X.ravel().tolist())
    assert "alphaapp" in alpha or "alphaportal" in alpha or "alphaplus" in alpha
    assert "beta" not in alpha
