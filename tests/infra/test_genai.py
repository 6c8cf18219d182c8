"""A stack with genai tenants plans their AI Services accounts, deployments, filters and the
gateway's chat products (infra/genai.py): per stamp and per pool, Entra only, private in
prod, each tenant's token limits and metrics, the gateway's identity on each account."""

from __future__ import annotations

from xml.etree import ElementTree

from infra.genai import AI_TOKEN_AUDIENCE, OPENAI_API_VERSION, genai_product_id
from infra.offline import OfflineRun, RecordedResource, run_offline
from infra.program import deploy
from tenancy import PlatformSpec, contracts, naming
from tenancy.rbac import ROLE_IDS
from tests.infra.conftest import of_type, stamp_of, tenant_of


def _by_name(run: OfflineRun, type_name: str) -> dict[str, RecordedResource]:
    return {r.name: r for r in of_type(run, type_name)}


def test_each_stamp_with_genai_tenants_has_one_entra_only_account(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    for stack in ("dev", "prod"):
        run, spec = planned[stack], specs[stack]
        accounts = of_type(run, "cognitiveservices:Account")
        with_genai = {t.stamp_key for t in spec.tenants if t.genai is not None}
        assert {stamp_of(run, a) for a in accounts} == with_genai, stack
        for account in accounts:
            properties = account.inputs["properties"]
            assert account.inputs["kind"] == "AIServices"
            assert properties["disableLocalAuth"] is True
            # Entra authentication needs the custom subdomain.
            assert properties["customSubDomainName"] == account.inputs["accountName"]
            private = spec.networking.private
            assert properties["publicNetworkAccess"] == ("Disabled" if private else "Enabled")
    # prod reaches each account through a private endpoint in the account's zones.
    endpoints = [
        e for e in of_type(planned["prod"], "network:PrivateEndpoint") if e.name.endswith("-pe-ai")
    ]
    assert {stamp_of(planned["prod"], e) for e in endpoints} == {"tenant-contoso", "pool-retail"}
    for endpoint in endpoints:
        [link] = endpoint.inputs["privateLinkServiceConnections"]
        assert link["groupIds"] == ["account"]


def test_each_tenants_deployments_carry_its_name_capacity_and_filter(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    run, spec = planned["prod"], specs["prod"]
    deployments = of_type(run, "cognitiveservices:Deployment")
    filters = _by_name(run, "cognitiveservices:RaiPolicy")
    names = set()
    for tenant in (t for t in spec.tenants if t.genai is not None):
        assert tenant.genai is not None
        content_filter = filters[f"{tenant.stamp_key}-genai-{tenant.id}-filter"]
        severities = {
            (f["name"], f["source"]): f.get("severityThreshold")
            for f in content_filter.inputs["properties"]["contentFilters"]
        }
        # prod's guardrails are strict: blocked from low severity on, both ways.
        for harm in ("Hate", "Sexual", "Violence", "Selfharm"):
            assert severities[(harm, "Prompt")] == severities[(harm, "Completion")] == "Low"
        blocklists = content_filter.inputs["properties"]["customBlocklists"]
        assert {b["source"] for b in blocklists} == {"Prompt", "Completion"}
        for model in tenant.genai.models:
            [deployment] = [
                d
                for d in deployments
                if d.inputs["deploymentName"] == naming.ai_deployment(tenant.id, model.deployment)
            ]
            names.add(deployment.inputs["deploymentName"])
            assert deployment.inputs["sku"] == {"name": model.sku, "capacity": model.capacity_k_tpm}
            properties = deployment.inputs["properties"]
            assert properties["model"] == {
                "format": "OpenAI",
                "name": model.name,
                "version": model.version,
            }
            assert properties["raiPolicyName"] == content_filter.inputs["raiPolicyName"]
            assert content_filter.urn in deployment.property_dependencies["properties"]
    assert names == {"contoso-chat", "contoso-judge", "fabrikam-chat", "fabrikam-judge"}
    # An account takes one deployment operation at a time: each waits for the one before.
    in_pool = [d for d in deployments if stamp_of(run, d) == "tenant-contoso"]
    assert in_pool[0].urn in in_pool[1].dependencies
    items = of_type(run, "cognitiveservices:RaiBlocklistItem")
    assert sorted(i.inputs["properties"]["pattern"] for i in items) == sorted(
        ["password", "wire transfer"] * 2
    )


def test_each_genai_tenant_has_a_chat_product_with_its_token_limits(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    run, spec = planned["prod"], specs["prod"]
    policies = {r.inputs["productId"]: r for r in of_type(run, "apimanagement:ProductPolicy")}
    stops = {v.inputs["namedValueId"]: v for v in of_type(run, "apimanagement:NamedValue")}
    for tenant in spec.tenants:
        product = genai_product_id(tenant.id)
        if tenant.genai is None:
            assert product not in policies
            continue
        policy = policies[product]
        assert tenant_of(run, policy) == tenant.id
        xml = ElementTree.fromstring(policy.inputs["value"])
        limit = xml.find("./inbound/llm-token-limit")
        assert limit is not None
        assert limit.get("counter-key") == "@(context.Subscription.Id)"
        assert limit.get("tokens-per-minute") == str(tenant.genai.tokens_per_minute)
        assert limit.get("token-quota") == str(tenant.genai.tokens_per_month)
        assert limit.get("token-quota-period") == "Monthly"
        dimensions = {
            d.get("name"): d.get("value")
            for d in xml.findall("./inbound/llm-emit-token-metric/dimension")
        }
        assert dimensions["Tenant"] == tenant.id
        mapped = {
            w.get("condition"): w.find("set-variable").get("value")  # type: ignore[union-attr]
            for w in xml.findall("./inbound/choose/when")
            if w.find("set-variable[@name='aiDeployment']") is not None
        }
        assert mapped == {
            f'@(context.Request.MatchedParameters["deployment"] == "{m.deployment}")': (
                naming.ai_deployment(tenant.id, m.deployment)
            )
            for m in tenant.genai.models
        }
        rewrite = xml.find("./inbound/rewrite-uri")
        assert rewrite is not None and OPENAI_API_VERSION in str(rewrite.get("template"))
        auth = xml.find("./inbound/authentication-managed-identity")
        assert auth is not None and auth.get("resource") == AI_TOKEN_AUDIENCE
        backend = xml.find("./inbound/set-backend-service")
        assert backend is not None and backend.get("backend-id") == f"ai-{tenant.stamp_key}"
        # The caller's key never reaches the account.
        assert xml.find("./inbound/set-header[@name='api-key']").get("exists-action") == "delete"  # type: ignore[union-attr]
        stop = xml.find("./inbound/set-variable[@name='budgetStop']")
        if tenant.tier == "pooled":
            named_value = contracts.budget_stop_named_value(tenant.id)
            assert stop is not None and named_value in str(stop.get("value"))
            assert stops[named_value].urn in policy.dependencies
        else:
            assert stop is None


def test_the_gateway_may_call_each_account_and_publish_token_metrics(
    planned: dict[str, OfflineRun],
) -> None:
    run = planned["prod"]
    accounts = {a.urn: a for a in of_type(run, "cognitiveservices:Account")}
    backends = [
        b for b in of_type(run, "apimanagement:Backend") if b.inputs["backendId"].startswith("ai-")
    ]
    assert len(backends) == len(accounts) == 2
    openai_user = ROLE_IDS["CognitiveServicesOpenAIUser"]
    grants = [
        g
        for g in of_type(run, "authorization:RoleAssignment")
        if g.inputs["roleDefinitionId"].endswith(openai_user)
    ]
    for backend in backends:
        [account_urn] = backend.property_dependencies["url"]
        account = accounts[account_urn]
        assert backend.inputs["url"] == f"https://{account.inputs['accountName']}.openai.azure.com"
        assert any(account.urn in g.property_dependencies["scope"] for g in grants), backend.name
    [logger] = of_type(run, "apimanagement:Logger")
    assert logger.inputs["credentials"]["identityClientId"] == "SystemAssigned"
    [diagnostic] = [
        d for d in of_type(run, "apimanagement:ApiDiagnostic") if d.inputs["apiId"] == "genai"
    ]
    assert diagnostic.inputs["metrics"] is True


def test_a_stack_without_genai_tenants_plans_no_account_and_no_chat_api(
    specs: dict[str, PlatformSpec],
) -> None:
    spec = specs["dev"]
    plain = spec.model_copy(
        update={"tenants": [t.model_copy(update={"genai": None}) for t in spec.tenants]}
    )
    run = run_offline(lambda: deploy(plain, stack="dev"), stack="dev")
    assert of_type(run, "cognitiveservices:Account") == []
    assert [a for a in of_type(run, "apimanagement:Api") if a.inputs["apiId"] == "genai"] == []
