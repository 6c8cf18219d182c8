"""Rules over generative AI resources: AI Services accounts take Entra identities only and
no public traffic in prod, every model deployment is filtered, and every tenant's chat
product holds a token limit and emits token metrics per tenant (infra/genai.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from policies.core import MANDATORY, Finding, Resource, Rule, Settings, Stack
from policies.shared_settings import TENANT_TIERS, NotConfigured, private_tiers, tier_of
from tenancy import contracts

AI_ACCOUNT = "azure-native:cognitiveservices:Account"
AI_DEPLOYMENT = "azure-native:cognitiveservices:Deployment"
RAI_POLICY = "azure-native:cognitiveservices:RaiPolicy"
APIM_API = "azure-native:apimanagement:Api"
APIM_OPERATION = "azure-native:apimanagement:ApiOperation"
APIM_PRODUCT_LINK = "azure-native:apimanagement:ProductApiLink"
APIM_PRODUCT_POLICY = "azure-native:apimanagement:ProductPolicy"
#: What a content filter must block, on prompts and on completions (compared in lower case).
HARM_CATEGORIES = tuple(category.lower() for category in contracts.HARM_CATEGORIES)
_CHAT_TEMPLATE = re.compile(r"/chat/completions/?$")
_TOKEN_LIMIT = re.compile(r"<(?:llm|azure-openai)-token-limit\b(?P<attributes>[^>]*)>", re.DOTALL)
_TOKEN_METRIC = re.compile(
    r"<(?:llm|azure-openai)-emit-token-metric\b.*?<dimension\b", re.DOTALL | re.IGNORECASE
)


def ai_account_local_auth_disabled(resource: Resource, _: Settings) -> Iterator[str]:
    if resource.props.get("properties.disableLocalAuth") is not True:
        yield "properties.disableLocalAuth must be true (keys bypass the gateway and RBAC)"


def ai_account_public_network_disabled(resource: Resource, settings: Settings) -> Iterator[str]:
    try:
        tier = tier_of(resource, settings)
    except NotConfigured as missing:
        yield str(missing)
        return
    if tier not in settings["privateTiers"]:
        return
    if resource.props.get("properties.publicNetworkAccess") != "Disabled":
        yield "properties.publicNetworkAccess must be Disabled (reached by private endpoint)"


def ai_deployment_content_filter(stack: Stack, _: Settings) -> Iterator[Finding]:
    """Each deployment names a content filter of the plan that blocks every harm category
    on prompts and on completions."""
    for deployment in stack.of_type(AI_DEPLOYMENT):
        named = deployment.props.get("properties.raiPolicyName")
        if not named:
            yield Finding("properties.raiPolicyName is not set: no content filter", deployment.urn)
            continue
        policies = stack.deps(deployment, "properties", RAI_POLICY)
        if not policies:
            yield Finding(
                f"content filter {named!r} is not one the stack defines, so its settings "
                "cannot be checked",
                deployment.urn,
            )
            continue
        for policy in policies:
            gaps = _filter_gaps(policy)
            if gaps:
                yield Finding(
                    f"content filter {named!r} does not block {', '.join(gaps)}", deployment.urn
                )


def _filter_gaps(policy: Resource) -> list[str]:
    filters = policy.props.get_known("properties.contentFilters", []) or []
    blocking = {
        (str(f.get("name", "")).lower().replace(" ", ""), str(f.get("source", "")).lower())
        for f in filters
        if isinstance(f, dict) and f.get("enabled") is True and f.get("blocking") is True
    }
    return [
        f"{category} in {source}s"
        for category in HARM_CATEGORIES
        for source in ("prompt", "completion")
        if (category, source) not in blocking
    ]


def genai_token_limits(stack: Stack, _: Settings) -> Iterator[Finding]:
    """Every product that offers a chat completions API limits tokens per key (a rate, a
    quota, or both) and emits token metrics with at least one dimension (the tenant)."""
    chat_apis = {
        api.urn
        for operation in stack.of_type(APIM_OPERATION)
        if _CHAT_TEMPLATE.search(str(operation.props.get("urlTemplate", "")))
        for api in stack.deps(operation, "apiId", APIM_API) or _parent_api(stack, operation)
    }
    chat_products = {
        str(link.props.get("productId"))
        for link in stack.of_type(APIM_PRODUCT_LINK)
        if any(api.urn in chat_apis for api in stack.deps(link, "apiId", APIM_API))
    }
    for policy in stack.of_type(APIM_PRODUCT_POLICY):
        product = str(policy.props.get("productId"))
        if product not in chat_products:
            continue
        for problem in _token_policy_problems(str(policy.props.get("value", ""))):
            yield Finding(f"product {product}: {problem}", policy.urn)


def _parent_api(stack: Stack, operation: Resource) -> list[Resource]:
    parent = stack.by_urn.get(operation.parent or "")
    return [parent] if parent is not None and parent.type.endswith(":Api") else []


def _token_policy_problems(policy: str) -> Iterator[str]:
    limit = _TOKEN_LIMIT.search(policy)
    if limit is None:
        yield "no llm-token-limit policy: one key could spend the whole deployment's tokens"
    else:
        attributes = limit["attributes"]
        if "counter-key=" not in attributes:
            yield "llm-token-limit has no counter-key"
        if "tokens-per-minute=" not in attributes and "token-quota=" not in attributes:
            yield "llm-token-limit sets neither tokens-per-minute nor token-quota"
    if _TOKEN_METRIC.search(policy) is None:
        yield "no llm-emit-token-metric with a dimension: tokens cannot be told per tenant"


RULES: tuple[Rule, ...] = (
    Rule(
        "ai-account-local-auth-disabled",
        "AI Services accounts accept Entra identities only (local auth disabled).",
        "An account key calls every deployment past the gateway's token limits and cannot "
        "be attributed to a tenant.",
        MANDATORY,
        resource_types=(AI_ACCOUNT,),
        check=ai_account_local_auth_disabled,
    ),
    Rule(
        "ai-account-public-network-disabled",
        "AI Services accounts of private stacks are not reachable from the public internet.",
        "Prompts and completions hold tenants' data; in a private stack the gateway reaches "
        "the account through its private endpoint only.",
        MANDATORY,
        settings=(TENANT_TIERS, private_tiers("AI Services accounts")),
        resource_types=(AI_ACCOUNT,),
        check=ai_account_public_network_disabled,
    ),
    Rule(
        "ai-deployment-content-filter",
        "Every model deployment has a content filter that blocks each harm category on "
        "prompts and completions.",
        "A deployment without its tenant's filter answers what the tenant's guardrails refuse.",
        MANDATORY,
        stack_check=ai_deployment_content_filter,
    ),
    Rule(
        "genai-token-limit",
        "Every product offering chat completions limits tokens per key and emits token "
        "metrics per tenant.",
        "Without a token limit one tenant spends a shared deployment's capacity and "
        "budget; without the metric nobody can tell whose tokens they were.",
        MANDATORY,
        stack_check=genai_token_limits,
    ),
)
