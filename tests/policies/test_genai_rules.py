"""The generative AI rules: accounts (in test_resource_rules' table), and the two stack rules
with a compliant and a violating stack each, the violation named."""

from __future__ import annotations

from typing import Any

from policies.catalogue import BY_NAME
from policies.core import Stack, run_stack_rule
from tests.policies.conftest import planned_resource, settings_for

HARMS = ("Hate", "Sexual", "Violence", "Selfharm")
FILTER_OK = {
    "properties": {
        "contentFilters": [
            {"name": harm, "enabled": True, "blocking": True, "source": source}
            for harm in HARMS
            for source in ("Prompt", "Completion")
        ]
    }
}


def _messages(rule: str, stack: Stack) -> list[str]:
    return [f.message for f in run_stack_rule(BY_NAME[rule], stack, settings_for(rule))]


def _filtered(policy: dict[str, Any], named: str | None = "contoso-filter") -> Stack:
    deployment = planned_resource(
        "cognitiveservices:Deployment",
        "chat",
        {"properties": {"raiPolicyName": named}},
        deps={"properties": ["filter"]} if named else {},
    )
    return Stack([planned_resource("cognitiveservices:RaiPolicy", "filter", policy), deployment])


def test_a_deployment_filtered_on_every_harm_both_ways_passes() -> None:
    assert _messages("ai-deployment-content-filter", _filtered(FILTER_OK)) == []


def test_a_deployment_without_a_filter_or_with_a_gap_is_named() -> None:
    assert _messages("ai-deployment-content-filter", _filtered(FILTER_OK, named=None)) == [
        "properties.raiPolicyName is not set: no content filter"
    ]
    filters = FILTER_OK["properties"]["contentFilters"]
    gappy = {
        "properties": {
            "contentFilters": [
                {**f, "enabled": False} if f["name"] == "Hate" else f
                for f in filters
                if not (f["name"] == "Violence" and f["source"] == "Completion")
            ]
        }
    }
    # A disabled filter is no filter.
    assert _messages("ai-deployment-content-filter", _filtered(gappy)) == [
        "content filter 'contoso-filter' does not block hate in prompts, hate in completions, "
        "violence in completions"
    ]
    missing = Stack(
        [
            planned_resource(
                "cognitiveservices:Deployment",
                "chat",
                {"properties": {"raiPolicyName": "made-by-hand"}},
            )
        ]
    )
    assert _messages("ai-deployment-content-filter", missing) == [
        "content filter 'made-by-hand' is not one the stack defines, so its settings cannot "
        "be checked"
    ]


TOKEN_POLICY = """<policies><inbound>
  <llm-token-limit counter-key="@(context.Subscription.Id)" tokens-per-minute="1000"
      token-quota="100000" token-quota-period="Monthly" />
  <llm-emit-token-metric namespace="tenant-mlops">
    <dimension name="Tenant" value="contoso" />
  </llm-emit-token-metric>
</inbound></policies>"""


def _gateway(policy: str, template: str = "/{deployment}/chat/completions") -> Stack:
    api = planned_resource("apimanagement:Api", "api", {"path": "genai"})
    operation = planned_resource(
        "apimanagement:ApiOperation", "op", {"urlTemplate": template, "apiId": "genai"}
    )
    operation = type(operation)(
        operation.type, operation.urn, operation.name, operation.props, parent=api.urn
    )
    link = planned_resource(
        "apimanagement:ProductApiLink",
        "link",
        {"productId": "tenant-contoso-genai"},
        deps={"apiId": ["api"]},
    )
    product_policy = planned_resource(
        "apimanagement:ProductPolicy",
        "policy",
        {"productId": "tenant-contoso-genai", "value": policy},
    )
    return Stack([api, operation, link, product_policy])


def test_a_chat_product_with_a_token_limit_and_metric_passes() -> None:
    assert _messages("genai-token-limit", _gateway(TOKEN_POLICY)) == []


def test_a_chat_product_without_token_limit_or_metric_is_named() -> None:
    no_limit = TOKEN_POLICY.replace("<llm-token-limit", "<rate-limit")
    assert _messages("genai-token-limit", _gateway(no_limit)) == [
        "product tenant-contoso-genai: no llm-token-limit policy: one key could spend the "
        "whole deployment's tokens"
    ]
    unbounded = TOKEN_POLICY.replace('tokens-per-minute="1000"', "").replace(
        'token-quota="100000"', ""
    )
    no_metric = unbounded.replace("<dimension", "<!-- no dimension --><x")
    assert _messages("genai-token-limit", _gateway(no_metric)) == [
        "product tenant-contoso-genai: llm-token-limit sets neither tokens-per-minute nor "
        "token-quota",
        "product tenant-contoso-genai: no llm-emit-token-metric with a dimension: tokens "
        "cannot be told per tenant",
    ]


def test_a_product_of_another_api_is_not_held_to_token_limits() -> None:
    assert _messages("genai-token-limit", _gateway("<policies/>", template="/")) == []
