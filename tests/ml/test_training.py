"""Training per strategy, lineage, and ONNX export with its parity check."""

from __future__ import annotations

import numpy as np
import pytest

import ml.export
from ml.data import TenantData
from ml.export import PARITY_TOLERANCE, ExportParityError, check_parity, export, to_onnx_bytes
from ml.training import (
    consenting_of_kind,
    train_shared,
    train_tenant_specific,
    train_tuned,
)
from tenancy import PlatformSpec, parse_platform_spec
from tests.tenancy.conftest import stack_document

Splits = dict[str, tuple[TenantData, TenantData]]


def _train(splits: Splits) -> dict[str, TenantData]:
    return {tenant: parts[0] for tenant, parts in splits.items()}


def test_a_tenant_specific_model_sees_only_its_tenant(local_splits: Splits) -> None:
    model = train_tenant_specific(local_splits["contoso"][0])
    assert model.training.row_tenants() == {"contoso"}
    assert model.contributors == ("contoso",)
    holdout = local_splits["contoso"][1]
    assert (model.predict(holdout.X) == holdout.y).mean() > 0.85


def test_a_shared_model_names_exactly_the_consenting_tenants(
    specs: dict[str, PlatformSpec], local_splits: Splits
) -> None:
    model = train_shared(specs["local"], "classical", _train(local_splits))
    assert set(model.contributors) == consenting_of_kind(specs["local"], "classical")
    assert model.training.row_tenants() == set(model.contributors)


def test_a_withdrawn_tenants_rows_never_reach_the_next_shared_model(
    local_splits: Splits,
) -> None:
    document = stack_document("local")
    for tenant in document["tenants"]:
        if tenant["id"] == "fabrikam":
            tenant["shared_training_consent"] = False
    withdrawn = parse_platform_spec(document)
    model = train_shared(withdrawn, "classical", _train(local_splits))
    assert "fabrikam" not in model.contributors
    fabrikam_rows = set(local_splits["fabrikam"][0].row_ids.tolist())
    assert not fabrikam_rows & set(model.training.row_ids.tolist())


def test_shared_and_tenant_specific_models_really_differ(
    specs: dict[str, PlatformSpec], local_splits: Splits
) -> None:
    shared = train_shared(specs["local"], "classical", _train(local_splits))
    own = train_tenant_specific(local_splits["northwind"][0])
    holdout = local_splits["northwind"][1].X
    assert np.abs(shared.predict_proba(holdout) - own.predict_proba(holdout)).max() > 0.05


def test_a_tuned_model_starts_from_its_base_and_records_it(
    specs: dict[str, PlatformSpec], local_splits: Splits
) -> None:
    base = train_shared(specs["local"], "classical", _train(local_splits))
    tuned = train_tuned(base, local_splits["northwind"][0], "shared-classical/3")
    assert tuned.base_model == "shared-classical/3"
    assert tuned.strategy == "tuned_shared"
    assert set(tuned.contributors) == set(base.contributors) | {"northwind"}
    # The preprocessing is the base's; only the classifier moved.
    assert tuned.pipeline.named_steps["pre"].mean_.tolist() == (
        base.pipeline.named_steps["pre"].mean_.tolist()
    )
    assert not np.allclose(
        tuned.pipeline.named_steps["clf"].coef_, base.pipeline.named_steps["clf"].coef_
    )
    with pytest.raises(ValueError, match="cannot tune"):
        train_tuned(base, local_splits["adatum"][0], "shared-classical/3")


@pytest.mark.parametrize("tenant", ["contoso", "adatum", "litware"])
def test_every_kind_exports_with_parity(local_splits: Splits, tenant: str) -> None:
    train, holdout = local_splits[tenant]
    model = train_tenant_specific(train)
    exported = export(model, holdout.X)
    assert exported.parity.holds
    assert exported.parity.max_probability_error <= PARITY_TOLERANCE
    assert exported.parity.label_mismatches == 0
    assert exported.parity.rows == len(holdout)
    assert exported.schema["classes"] == list(model.classes)
    assert exported.digest.startswith("sha256:")


def test_an_export_that_answers_differently_fails(
    local_splits: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    contoso = train_tenant_specific(local_splits["contoso"][0])
    other = train_tenant_specific(local_splits["fabrikam"][0])
    holdout = local_splits["contoso"][1].X
    report = check_parity(contoso, to_onnx_bytes(other), holdout)
    assert not report.holds and report.max_probability_error > PARITY_TOLERANCE
    # A converter that produced another model's graph: the export refuses to ship it.
    monkeypatch.setattr(ml.export, "to_onnx_bytes", lambda model: to_onnx_bytes(other))
    with pytest.raises(ExportParityError, match="differs from the source on 66 held-out rows"):
        ml.export.export(contoso, holdout)
    with pytest.raises(ExportParityError, match="parity needs held-out rows"):
        export(contoso, holdout[:0])
