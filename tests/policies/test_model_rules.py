"""Model-registration rules: a compliant model version, and one violation per rule."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from policies.model_rules import (
    Approval,
    ChampionFacts,
    ModelFacts,
    evaluate_model,
    package_name,
)
from tenancy import PlatformSpec, parse_platform_spec
from tests.tenancy.conftest import stack_document

DIGEST = "sha256:" + "ab" * 32
LINEAGE = {
    "tenant": "contoso",
    "training_run": "run-1",
    "data_version": "contoso-v3",
    "owner": "ds@contoso.example.com",
    "intended_use": "churn scoring",
    "strategy": "tenant_specific",
    "artifact_digest": DIGEST,
    "baseline_dataset": "azureml://datastores/baseline/contoso-v3",
}


def facts(**changes: Any) -> ModelFacts:
    base = ModelFacts(
        name="contoso-churn",
        version="3",
        tags=LINEAGE,
        metrics={"accuracy": 0.91},
        flavors=("onnx", "python_function"),
        artifact_format="onnx",
        packages=("onnxruntime==1.23.0", "numpy>=1.26"),
        computed_digest=DIGEST,
        size_bytes=5 * 2**20,
        champion=ChampionFacts("2", {"accuracy": 0.92}),
    )
    return dataclasses.replace(base, **changes)


def tags(**changes: str | None) -> dict[str, str]:
    merged = {**LINEAGE, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def codes(spec: PlatformSpec, model: ModelFacts, tenant: str = "contoso", **kw: Any) -> list[str]:
    return [v.code for v in evaluate_model(model, tenant, spec, **kw)]


def test_a_compliant_model_passes(specs: dict[str, PlatformSpec]) -> None:
    assert evaluate_model(facts(), "contoso", specs["local"]) == []


@pytest.mark.parametrize(
    ("model", "code", "message"),
    [
        (
            facts(tags=tags(owner=None, intended_use="")),
            "MODEL_TAG_MISSING",
            "required lineage tag(s) missing: owner, intended_use",
        ),
        (
            facts(tags=tags(tenant="adatum")),
            "MODEL_TENANT_MISMATCH",
            "the model was trained for tenant 'adatum', not 'contoso'",
        ),
        (
            facts(tags=tags(strategy="shared")),
            "MODEL_STRATEGY_MISMATCH",
            "tenant 'contoso' serves tenant_specific models; this is a shared model",
        ),
        (
            facts(artifact_format="pkl"),
            "MODEL_FORMAT_NOT_ALLOWED",
            "format pkl is not allowed (allowed: onnx)",
        ),
        (
            facts(flavors=("sklearn", "python_function")),
            "MODEL_FLAVOR_NOT_ALLOWED",
            "flavor(s) sklearn not allowed (allowed: onnx)",
        ),
        (
            facts(packages=("onnxruntime", "scikit_learn==1.6", "# a comment", "-r base.txt")),
            "MODEL_PACKAGE_NOT_ALLOWED",
            "environment package(s) outside the allow-list: scikit-learn",
        ),
        (
            facts(tags=tags(artifact_digest=None)),
            "MODEL_DIGEST_MISSING",
            "no artifact digest recorded (artifact_digest)",
        ),
        (
            facts(computed_digest="sha256:" + "cd" * 32),
            "MODEL_DIGEST_MISMATCH",
            f"the artifact's digest sha256:{'cd' * 32} is not the recorded {DIGEST}",
        ),
        (
            facts(metrics={"accuracy": 0.65}, champion=None),
            "MODEL_METRIC_BELOW_THRESHOLD",
            "accuracy 0.65 is below the threshold 0.7",
        ),
        (
            facts(metrics={"f1": 0.9}, champion=None),
            "MODEL_METRIC_MISSING",
            "metric accuracy is not recorded",
        ),
        (
            facts(metrics={"accuracy": 0.89}),
            "MODEL_REGRESSION",
            "accuracy 0.89 is worse than the champion's (version 2) 0.92 by more than 0.02",
        ),
        (
            facts(tags=tags(baseline_dataset=None)),
            "MODEL_BASELINE_MISSING",
            "no baseline data set for drift (baseline_dataset)",
        ),
        (
            facts(size_bytes=3 * 2**30),
            "MODEL_TOO_LARGE",
            "the model is 3072.0 MB, above the dedicated tier's 2048 MB",
        ),
        (facts(size_bytes=None), "MODEL_SIZE_UNKNOWN", "the model artifact's size is unknown"),
        (
            facts(
                tags=tags(
                    promotion="deploy_code",
                    promoted_from="staging:contoso-churn/7",
                    source_metrics='{"accuracy": 0.95, "champion_accuracy": 0.5}',
                ),
            ),
            "PROMOTION_REGRESSION",
            "retrained here with staging:contoso-churn/7's code, worse by more than 0.02: "
            "accuracy 0.91 against 0.95 in staging:contoso-churn/7",
        ),
        (
            facts(tags=tags(promotion="deploy_code", promoted_from="staging:contoso-churn/7")),
            "PROMOTION_SOURCE_METRICS_MISSING",
            "retrained from staging:contoso-churn/7's code, without its metrics "
            "(source_metrics must be a JSON map)",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and value.isupper() else "",
)
def test_each_rule_names_its_violation(
    specs: dict[str, PlatformSpec], model: ModelFacts, code: str, message: str
) -> None:
    violations = evaluate_model(model, "contoso", specs["local"])
    assert [(v.code, v.message) for v in violations] == [(code, message)]


def test_a_version_retrained_from_promoted_code_within_the_sources_metrics_passes(
    specs: dict[str, PlatformSpec],
) -> None:
    promoted = tags(
        promotion="deploy_code",
        promoted_from="staging:contoso-churn/7",
        source_metrics='{"accuracy": 0.925, "f1": 0.99}',  # f1: not recorded here
    )
    assert evaluate_model(facts(tags=promoted), "contoso", specs["local"]) == []
    # A copied version (deploy_models) carries its own run's metrics: nothing to compare.
    copied = tags(promoted_from="staging:contoso-churn/7", source_metrics='{"accuracy": 0.99}')
    assert evaluate_model(facts(tags=copied), "contoso", specs["local"]) == []


def test_every_violation_is_returned_at_once(specs: dict[str, PlatformSpec]) -> None:
    broken = facts(tags=tags(owner=None, baseline_dataset=None), artifact_format="pt")
    assert codes(specs["local"], broken) == [
        "MODEL_TAG_MISSING",
        "MODEL_FORMAT_NOT_ALLOWED",
        "MODEL_BASELINE_MISSING",
    ]


def test_the_champion_itself_is_not_a_regression(specs: dict[str, PlatformSpec]) -> None:
    same = facts(metrics={"accuracy": 0.80}, champion=ChampionFacts("3", {"accuracy": 0.95}))
    assert codes(specs["local"], same) == []


def _shared(**changes: str | None) -> dict[str, str]:
    shared: dict[str, str | None] = {
        "tenant": "shared",
        "strategy": "shared",
        "contributing_tenants": "contoso, fabrikam,northwind",
        "identifying_columns_removed": "true",
    }
    return tags(**{**shared, **changes})


def test_a_shared_model_from_consenting_tenants_serves_a_shared_tenant(
    specs: dict[str, PlatformSpec],
) -> None:
    # local: fabrikam uses shared models; contoso, fabrikam and northwind consented.
    assert codes(specs["local"], facts(tags=_shared()), "fabrikam") == []


def test_a_shared_model_with_a_non_consenting_contributor_is_refused(
    specs: dict[str, PlatformSpec],
) -> None:
    model = facts(tags=_shared(contributing_tenants="contoso,adatum"))
    [violation] = evaluate_model(model, "fabrikam", specs["local"])
    assert violation.code == "MODEL_CONSENT_MISSING"
    assert violation.message.endswith(": adatum")


def test_a_shared_model_must_have_identifiers_removed_and_contributors_recorded(
    specs: dict[str, PlatformSpec],
) -> None:
    model = facts(tags=_shared(identifying_columns_removed=None, contributing_tenants=None))
    assert codes(specs["local"], model, "fabrikam") == [
        "MODEL_LINEAGE_MISSING",
        "MODEL_IDENTIFIERS_NOT_REMOVED",
    ]


def test_a_tuned_model_belongs_to_its_tenant_and_names_its_base(
    specs: dict[str, PlatformSpec],
) -> None:
    tuned = _shared(tenant="northwind", strategy="tuned_shared", base_model="shared-base/4")
    assert codes(specs["local"], facts(tags=tuned), "northwind") == []
    # The same model for another tuned tenant is not theirs.
    document = stack_document("local")
    for tenant in document["tenants"]:
        if tenant["id"] == "litware":
            tenant["model_strategy"] = "tuned_shared"
    two_tuned = parse_platform_spec(document)
    assert codes(two_tuned, facts(tags=tuned), "litware") == ["MODEL_TENANT_MISMATCH"]
    no_base = {k: v for k, v in tuned.items() if k != "base_model"}
    assert codes(specs["local"], facts(tags=no_base), "northwind") == ["MODEL_LINEAGE_MISSING"]


def test_a_tenant_specific_model_with_foreign_data_is_refused(
    specs: dict[str, PlatformSpec],
) -> None:
    model = facts(tags=tags(contributing_tenants="contoso,adatum"))
    assert codes(specs["local"], model) == ["MODEL_TENANT_MISMATCH"]


def test_promotion_needs_an_approval_where_the_stack_requires_it(
    specs: dict[str, PlatformSpec],
) -> None:
    prod = specs["prod"]
    model = facts(tags=tags(), metrics={"accuracy": 0.95}, champion=None)
    assert codes(prod, model) == []  # registration: no approval needed yet
    assert codes(prod, model, stage="promotion") == ["MODEL_APPROVAL_MISSING"]
    by_tester = dataclasses.replace(model, approvals=(Approval("eve", "model_tester"),))
    assert codes(prod, by_tester, stage="promotion") == ["MODEL_APPROVAL_MISSING"]
    by_lead = dataclasses.replace(model, approvals=(Approval("lee", "project_lead"),))
    assert codes(prod, by_lead, stage="promotion") == []
    # local asks for no approval at all.
    assert codes(specs["local"], model, stage="promotion") == []


def test_an_unknown_tenant_is_named(specs: dict[str, PlatformSpec]) -> None:
    assert codes(specs["local"], facts(), "umbrella") == ["MODEL_UNKNOWN_TENANT"]


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("onnxruntime==1.23", "onnxruntime"),
        (
            "Azureml_Inference.Server-HTTP>=1.5 ; python_version>'3'",
            "azureml-inference-server-http",
        ),
        ("# comment", None),
        ("-r other.txt", None),
        ("", None),
    ],
)
def test_package_names_are_normalized(requirement: str, name: str | None) -> None:
    assert package_name(requirement) == name
