"""Every config rule fails at parse time, naming the key and what is wrong."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tenancy import ConfigError, parse_platform_spec
from tests.tenancy.conftest import GENAI

Raw = dict[str, Any]


def _tenant(raw: Raw, tenant_id: str) -> Raw:
    return next(t for t in raw["tenants"] if t["id"] == tenant_id)


def _index(raw: Raw, tenant_id: str) -> int:
    return [t["id"] for t in raw["tenants"]].index(tenant_id)


def unknown_tier(raw: Raw) -> None:
    _tenant(raw, "contoso")["tier"] = "shared"


def unknown_strategy(raw: Raw) -> None:
    _tenant(raw, "contoso")["model_strategy"] = "federated"


def unknown_model_kind(raw: Raw) -> None:
    _tenant(raw, "contoso")["model_kind"] = "audio"


def duplicate_tenant(raw: Raw) -> None:
    _tenant(raw, "adatum")["id"] = "contoso"


def missing_pool(raw: Raw) -> None:
    _tenant(raw, "fabrikam")["pool"] = "gold"


def pooled_without_pool(raw: Raw) -> None:
    del _tenant(raw, "fabrikam")["pool"]


def promoted_by_without_a_next(raw: Raw) -> None:
    raw["delivery"] = {"promoted_by": ["55555555-0000-4000-8000-0000000000a2"]}


def unknown_instance_type(raw: Raw) -> None:
    _tenant(raw, "contoso").setdefault("endpoints", {}).setdefault("online", {})[
        "instance_type"
    ] = "Standard_Imaginary_v9"




def _genai(raw: Raw, **changes: Any) -> Raw:
    section = copy.deepcopy(GENAI)
    section.update(changes)
    _tenant(raw, "contoso")["genai"] = section
    return section


def genai_tokens_beyond_capacity(raw: Raw) -> None:
    _genai(raw, tokens_per_minute=16_000)


def genai_month_below_minute(raw: Raw) -> None:
    _genai(raw, tokens_per_month=1_000)


def genai_judge_without_deployment(raw: Raw) -> None:
    _genai(raw, evaluation={"thresholds": {"judge": 0.7}})


def genai_judge_not_a_model(raw: Raw) -> None:
    _genai(raw, evaluation={"thresholds": {"judge": 0.7}, "judge_deployment": "oracle"})


def genai_duplicate_deployment(raw: Raw) -> None:
    section = _genai(raw)
    section["models"][1]["deployment"] = "chat"


def genai_threshold_above_one(raw: Raw) -> None:
    _genai(raw, evaluation={"thresholds": {"rouge_l": 1.5}})


def genai_unknown_scorer(raw: Raw) -> None:
    _genai(raw, evaluation={"thresholds": {"bleu": 0.5}})


def genai_negative_price(raw: Raw) -> None:
    section = _genai(raw)
    section["models"][0]["usd_per_million_completion_tokens"] = -1


def genai_prompt_rollout_not_ending_at_100(raw: Raw) -> None:
    _genai(raw, rollout={"steps": [10, 50]})


def genai_blocked_term_twice(raw: Raw) -> None:
    _genai(raw, guardrails={"blocked_terms": ["Password", "password "]})


def genai_bad_deployment_name(raw: Raw) -> None:
    section = _genai(raw)
    section["models"][0]["deployment"] = "chat deployment!"


def dedicated_with_pool(raw: Raw) -> None:
    _tenant(raw, "contoso")["pool"] = "shared"


def dedicated_without_compute(raw: Raw) -> None:
    del _tenant(raw, "contoso")["compute"]


def budget_not_increasing(raw: Raw) -> None:
    _tenant(raw, "contoso")["budget"]["thresholds"] = [{"percent": 80}, {"percent": 50}]


def budget_above_1000(raw: Raw) -> None:
    _tenant(raw, "contoso")["budget"]["thresholds"] = [{"percent": 50}, {"percent": 1200}]


def budget_too_many_notifications(raw: Raw) -> None:
    _tenant(raw, "contoso")["budget"]["thresholds"] = [
        {"percent": p} for p in (10, 20, 30, 40, 50, 60)
    ]


def budget_start_not_first_of_month(raw: Raw) -> None:
    _tenant(raw, "contoso")["budget"]["start_date"] = "2026-03-15"


def canary_not_increasing(raw: Raw) -> None:
    raw["rollout"]["steps"] = [10, 50, 30, 100]


def canary_not_ending_at_100(raw: Raw) -> None:
    raw["rollout"]["steps"] = [10, 50, 90]


def blue_green_with_steps(raw: Raw) -> None:
    raw["rollout"] = {"strategy": "blue_green", "steps": [50, 100]}


def mirror_above_50(raw: Raw) -> None:
    raw["rollout"]["mirror_percent"] = 60


def gpu_not_allowed_for_pooled(raw: Raw) -> None:
    raw["pools"][0]["compute"]["gpu_sku"] = "Standard_NC24ads_A100_v4"


def gpu_not_allowed_for_dedicated(raw: Raw) -> None:
    _tenant(raw, "contoso")["compute"]["gpu_sku"] = "Standard_ND96asr_v4"


def nodes_above_tier_cap(raw: Raw) -> None:
    raw["pools"][0]["compute"]["max_nodes"] = 9


def endpoint_name_too_long(raw: Raw) -> None:
    _tenant(raw, "contoso")["endpoints"] = {"online": {"name": "a" * 33}}


def endpoint_name_double_dash(raw: Raw) -> None:
    _tenant(raw, "contoso")["endpoints"] = {"online": {"name": "contoso--online"}}


def endpoint_name_starts_with_digit(raw: Raw) -> None:
    _tenant(raw, "contoso")["endpoints"] = {"batch": {"name": "9contoso"}}


def derived_endpoint_name_too_long(raw: Raw) -> None:
    _tenant(raw, "contoso")["id"] = "contoso-research-europe"


def tenant_id_not_a_slug(raw: Raw) -> None:
    _tenant(raw, "contoso")["id"] = "Contoso_EU"


def pooled_names_its_own_endpoint(raw: Raw) -> None:
    _tenant(raw, "fabrikam")["endpoints"] = {"online": {"name": "fabrikam-online"}}


def unknown_key(raw: Raw) -> None:
    _tenant(raw, "contoso")["colour"] = "blue"


def group_id_not_a_guid(raw: Raw) -> None:
    raw["personas"]["cicd"] = ["not-a-guid"]


def shared_strategy_without_consent(raw: Raw) -> None:
    for tenant in raw["tenants"]:
        tenant["shared_training_consent"] = False


def approval_without_approvers(raw: Raw) -> None:
    raw["rollout"]["approval_required"] = True
    raw["rollout"]["approver_personas"] = ["business_stakeholder"]


def drift_p_value_out_of_range(raw: Raw) -> None:
    raw["drift"]["thresholds"] = {"two_sample_kolmogorov_smirnov_test": 1.5}


def bad_schedule(raw: Raw) -> None:
    raw["drift"]["schedule"] = "*/5 * * * *"


def payload_above_gateway_limit(raw: Raw) -> None:
    _tenant(raw, "contoso")["quota"]["max_payload_kb"] = 8192


def installation_missing(raw: Raw) -> None:
    del raw["installation"]


def installation_not_an_id(raw: Raw) -> None:
    raw["installation"] = "Prod-1"


def deployer_range_private(raw: Raw) -> None:
    raw.setdefault("networking", {})["deployer_ip_ranges"] = ["10.0.0.0/24"]


def vault_retention_too_short(raw: Raw) -> None:
    raw["key_vaults"] = {"soft_delete_retention_days": 3}


CASES: list[tuple[Callable[[Raw], None], str, str]] = [
    (installation_missing, "installation", "required key is missing"),
    (installation_not_an_id, "installation", "not a valid installation id"),
    (deployer_range_private, "networking.deployer_ip_ranges[0]", "public IPv4"),
    (
        vault_retention_too_short,
        "key_vaults.soft_delete_retention_days",
        "greater than or equal to 7",
    ),
    (unknown_tier, "tenants[0].tier", "'dedicated' or 'pooled'"),
    (
        unknown_strategy,
        "tenants[0].model_strategy",
        "'tenant_specific', 'shared' or 'tuned_shared'",
    ),
    (unknown_model_kind, "tenants[0].model_kind", "'classical', 'cv' or 'nlp'"),
    (duplicate_tenant, "tenants[1].id", "duplicate id 'contoso'"),
    (missing_pool, "tenants[2].pool", "pool 'gold' does not exist"),
    (pooled_without_pool, "tenants[2].pool", "must name its pool"),
    (dedicated_with_pool, "tenants[0].pool", "names no pool"),
    (promoted_by_without_a_next, "delivery", "set promotes_to too"),
    (genai_tokens_beyond_capacity, "tenants[0].genai", "more than its deployments serve"),
    (genai_month_below_minute, "tenants[0].genai", "at least tokens_per_minute"),
    (genai_judge_without_deployment, "tenants[0].genai", "needs evaluation.judge_deployment"),
    (genai_judge_not_a_model, "tenants[0].genai", "'oracle' is not one of its models"),
    (genai_duplicate_deployment, "tenants[0].genai.models", "must be unique: chat"),
    (genai_threshold_above_one, "tenants[0].genai.evaluation.thresholds.rouge_l", "less than"),
    (genai_unknown_scorer, "tenants[0].genai.evaluation.thresholds.bleu", "'exact'"),
    (genai_blocked_term_twice, "tenants[0].genai.guardrails.blocked_terms", "listed twice"),
    (
        genai_negative_price,
        "tenants[0].genai.models[0].usd_per_million_completion_tokens",
        "greater than or equal to 0",
    ),
    (genai_prompt_rollout_not_ending_at_100, "tenants[0].genai.rollout.steps", "end at 100"),
    (genai_bad_deployment_name, "tenants[0].genai.models[0].deployment", "pattern"),
    (
        unknown_instance_type,
        "tenants[0].endpoints.online.instance_type",
        "'Standard_Imaginary_v9' is not one managed online endpoints take",
    ),
    (dedicated_without_compute, "tenants[0].compute", "needs a compute block"),
    (budget_not_increasing, "tenants[0].budget.thresholds", "strictly increasing"),
    (budget_above_1000, "tenants[0].budget.thresholds[1].percent", "less than or equal to 1000"),
    (budget_too_many_notifications, "tenants[0].budget.thresholds", "at most 5"),
    (budget_start_not_first_of_month, "tenants[0].budget.start_date", "first day of a month"),
    (canary_not_increasing, "rollout.steps", "strictly increasing"),
    (canary_not_ending_at_100, "rollout.steps", "must end at 100"),
    (blue_green_with_steps, "rollout.steps", "must be [100]"),
    (mirror_above_50, "rollout.mirror_percent", "above Azure ML's limit of 50"),
    (gpu_not_allowed_for_pooled, "pools[0].compute.gpu_sku", "not allowed for the pooled tier"),
    (
        gpu_not_allowed_for_dedicated,
        "tenants[0].compute.gpu_sku",
        "not allowed for the dedicated tier",
    ),
    (nodes_above_tier_cap, "pools[0].compute.max_nodes", "above the pooled tier's cap of 8"),
    (endpoint_name_too_long, "tenants[0].endpoints.online.name", "has 33 characters"),
    (endpoint_name_double_dash, "tenants[0].endpoints.online.name", "single dashes"),
    (endpoint_name_starts_with_digit, "tenants[0].endpoints.batch.name", "start with a letter"),
    (derived_endpoint_name_too_long, "tenants[0].id", "set tenants[0].endpoints."),
    (tenant_id_not_a_slug, "tenants[0].id", "not a valid id"),
    (pooled_names_its_own_endpoint, "tenants[2].endpoints.online.name", "cannot name its own"),
    (unknown_key, "tenants[0].colour", "unknown key"),
    (group_id_not_a_guid, "personas.cicd[0]", "not an Entra object id"),
    (shared_strategy_without_consent, "tenants[2].model_strategy", "no tenant consents"),
    (approval_without_approvers, "tenants[0].personas", "no group in those personas"),
    (drift_p_value_out_of_range, "drift.thresholds", "p-value threshold"),
    (bad_schedule, "drift.schedule", "six fields"),
    (payload_above_gateway_limit, "tenants[0].quota.max_payload_kb", "less than or equal to 4096"),
]


@pytest.mark.parametrize(
    ("break_it", "path", "fragment"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_each_rule_names_the_bad_key(
    local_raw: Raw, break_it: Callable[[Raw], None], path: str, fragment: str
) -> None:
    break_it(local_raw)
    with pytest.raises(ConfigError) as caught:
        parse_platform_spec(local_raw)
    messages = [i.message for i in caught.value.issues if i.path == path]
    assert messages, f"no issue at {path}; got {caught.value.paths}"
    assert any(fragment in m for m in messages), messages


def test_one_error_names_every_bad_key_at_once(local_raw: Raw) -> None:
    breakers = [
        unknown_tier,
        missing_pool,
        budget_above_1000,
        budget_not_increasing,
        canary_not_increasing,
        mirror_above_50,
        gpu_not_allowed_for_pooled,
        unknown_key,
    ]
    for break_it in breakers:
        break_it(local_raw)
    # budget_not_increasing replaced contoso's thresholds: make them both unordered and >1000
    local_raw["tenants"][0]["budget"]["thresholds"] = [{"percent": 1200}, {"percent": 50}]
    with pytest.raises(ConfigError) as caught:
        parse_platform_spec(local_raw)
    expected = {
        "tenants[0].tier",
        "tenants[2].pool",
        "tenants[0].budget.thresholds[0].percent",
        "tenants[0].budget.thresholds",
        "rollout.steps",
        "rollout.mirror_percent",
        "pools[0].compute.gpu_sku",
        "tenants[0].colour",
    }
    assert expected <= set(caught.value.paths)
    # The message a person reads lists each of them.
    for path in expected:
        assert path in str(caught.value)


def test_error_details_carry_every_issue_for_machines(local_raw: Raw) -> None:
    mirror_above_50(local_raw)
    unknown_key(local_raw)
    with pytest.raises(ConfigError) as caught:
        parse_platform_spec(local_raw)
    body = caught.value.to_dict()
    assert body["code"] == "invalid_config"
    assert {i["path"] for i in body["details"]["issues"]} == {
        "rollout.mirror_percent",
        "tenants[0].colour",
    }


def test_a_non_mapping_document_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_platform_spec(["tenants"])


def test_a_tenant_may_enable_genai_and_it_parses_whole(local_raw: Raw) -> None:
    _genai(local_raw)
    spec = parse_platform_spec(local_raw)
    genai = spec.tenant("contoso").genai
    assert genai is not None
    assert [m.deployment for m in genai.models] == ["chat", "judge"]
    assert genai.guardrails.redact_pii and genai.guardrails.max_tokens == 512
    assert genai.evaluation.thresholds == {"exact": 0.6, "rouge_l": 0.5, "judge": 0.7}
    assert spec.tenant("adatum").genai is None  # off unless a tenant asks for it
