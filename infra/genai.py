"""Generative AI per tenant on Azure: the AI Services account of a stamp (its tenants'
model deployments, content filters and blocklists) and the gateway's chat API (one product,
key and token budget per tenant).

- An account per stamp that has a ``genai`` tenant (a dedicated tenant's own, or a pool's,
  shared by its tenants): Entra only (``disableLocalAuth``: keys would bypass the gateway and
  RBAC; https://learn.microsoft.com/azure/ai-services/disable-local-auth), with the custom
  subdomain Entra authentication needs
  (https://learn.microsoft.com/azure/ai-services/cognitive-services-custom-subdomains), and
  in private stacks no public network access, reached through a private endpoint.
- Each tenant's deployments carry the tenant in their name (``naming.ai_deployment``) and
  their own capacity, and are filtered by the tenant's own content filter (a RAI policy at
  its guardrails' level, with its blocked terms as a custom blocklist on prompts and
  completions: https://learn.microsoft.com/azure/ai-foundry/openai/how-to/content-filters).
  An account takes one deployment operation at a time, so they are created one after
  another: Azure answers a second one in flight with RequestConflict ("Another operation is
  being performed on the parent resource"). No Microsoft page states it; it is reported in
  https://github.com/Azure/bicep/issues/11211 and fixed the same way in
  https://github.com/microsoft/aspire/pull/4022.
- The gateway's ``genai`` API takes ``POST /genai/{deployment}/chat/completions`` (the
  OpenAI shape: a client's base URL is ``<gateway>/genai/<deployment>``). A tenant's genai
  product holds its ``llm-token-limit`` (tokens a minute and a month, counted per
  subscription key: https://learn.microsoft.com/azure/api-management/llm-token-limit-policy)
  and ``llm-emit-token-metric`` with the tenant as a dimension
  (https://learn.microsoft.com/azure/api-management/llm-emit-token-metric-policy), caps
  ``max_tokens``, maps the caller's deployment name to the tenant's, and calls the account
  with the gateway's managed identity. The token metrics reach App Insights through a logger
  that authenticates with that identity (App Insights takes no local auth here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pulumi
from pulumi_azure_native import apimanagement, cognitiveservices

from infra.common import Principal, assign_role, send_diagnostics
from infra.gateway import (
    KEY_HEADER,
    ProductArgs,
    api_policy,
    budget_stop_policy,
    create_api,
    create_tenant_product,
)
from infra.platform_refs import GatewayRef
from infra.shared import SharedServices
from tenancy import contracts, naming
from tenancy.spec import GenAISpec, PlatformSpec, TenantSpec

API_ID = "genai"
API_PATH = contracts.GENAI_API_PATH
CHAT_OPERATION = "chat-completions"
AI_TOKEN_AUDIENCE = "https://cognitiveservices.azure.com"
#: The Azure OpenAI data-plane version the gateway calls (GA).
OPENAI_API_VERSION = "2024-10-21"
METRIC_NAMESPACE = "tenant-mlops"
LOGGER_ID = "token-metrics"
#: The severity from which a category is blocked, per guardrail level.
SEVERITY = {"default": "Medium", "strict": "Low"}


def content_filter_name(tenant: str) -> str:
    return naming.bounded(f"{tenant}-filter", 64)


def blocklist_name(tenant: str) -> str:
    return naming.bounded(f"{tenant}-blocked", 64)


def genai_product_id(tenant: str) -> str:
    return f"tenant-{tenant}-genai"


def _genai(tenant: TenantSpec) -> GenAISpec:
    if tenant.genai is None:  # callers pass genai tenants only
        raise ValueError(f"tenant {tenant.id} has no genai section")
    return tenant.genai


# --- the account -------------------------------------------------------------------------


@dataclass
class GenAIAccountArgs:
    spec: PlatformSpec
    scope: str  # the stamp's name (physical names derive from it)
    tenants: list[TenantSpec]  # the stamp's genai tenants
    resource_group_name: pulumi.Input[str]
    tags: dict[str, str]
    log_workspace_id: pulumi.Input[str]
    location: str


class GenAIAccount(pulumi.ComponentResource):
    """A stamp's AI Services account with its tenants' deployments and content filters."""

    def __init__(
        self, name: str, args: GenAIAccountArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "tenant-mlops:genai:GenAIAccount",
            name,
            {"tenants": [t.id for t in args.tenants]},
            opts,
        )
        self._name = name
        self._args = args
        self.account = self._create_account()
        self.endpoint: pulumi.Output[str] = self.account.name.apply(
            lambda account: f"https://{account}.openai.azure.com"
        )
        send_diagnostics(
            f"{name}-diag",
            resource_id=self.account.id,
            workspace_id=args.log_workspace_id,
            parent=self.account,
        )
        self.deployments: dict[tuple[str, str], cognitiveservices.Deployment] = {}
        previous: pulumi.Resource | None = None
        for tenant in args.tenants:
            policy = self._create_content_filter(tenant)
            for model in _genai(tenant).models:
                deployment = self._create_deployment(tenant, model.deployment, policy, previous)
                self.deployments[(tenant.id, model.deployment)] = deployment
                previous = deployment
        self.register_outputs(
            {
                "accountName": self.account.name,
                "endpoint": self.endpoint,
                "deployments": sorted(
                    naming.ai_deployment(tenant, deployment)
                    for tenant, deployment in self.deployments
                ),
            }
        )

    def _create_account(self) -> cognitiveservices.Account:
        spec = self._args.spec
        private = spec.networking.private
        account_name = naming.ai_account(
            spec.prefix, spec.environment, self._args.scope, spec.installation
        )
        return cognitiveservices.Account(
            f"{self._name}-account",
            account_name=account_name,
            resource_group_name=self._args.resource_group_name,
            location=self._args.location,
            kind="AIServices",
            sku={"name": "S0"},
            identity={"type": "SystemAssigned"},
            properties={
                "custom_sub_domain_name": account_name,
                "disable_local_auth": True,
                "public_network_access": "Disabled" if private else "Enabled",
                "network_acls": {"default_action": "Deny" if private else "Allow"},
            },
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _account_args(self) -> dict[str, pulumi.Input[str]]:
        return {
            "account_name": self.account.name,
            "resource_group_name": self._args.resource_group_name,
        }

    def _create_content_filter(self, tenant: TenantSpec) -> cognitiveservices.RaiPolicy:
        guardrails = _genai(tenant).guardrails
        severity = SEVERITY[guardrails.content_filter]
        filters: list[dict[str, object]] = [
            {
                "name": category,
                "enabled": True,
                "blocking": True,
                "severity_threshold": severity,
                "source": source,
            }
            for category in contracts.HARM_CATEGORIES
            for source in ("Prompt", "Completion")
        ]
        filters += [
            {"name": "Jailbreak", "enabled": True, "blocking": True, "source": "Prompt"},
            {
                "name": "Protected Material Text",
                "enabled": True,
                "blocking": True,
                "source": "Completion",
            },
        ]
        blocklist = self._create_blocklist(tenant)
        custom = (
            [
                {"blocklist_name": blocklist_name(tenant.id), "blocking": True, "source": source}
                for source in ("Prompt", "Completion")
            ]
            if blocklist is not None
            else None
        )
        return cognitiveservices.RaiPolicy(
            f"{self._name}-{tenant.id}-filter",
            rai_policy_name=content_filter_name(tenant.id),
            properties={
                "base_policy_name": "Microsoft.DefaultV2",
                "mode": "Default",
                "content_filters": filters,
                "custom_blocklists": custom,
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[blocklist] if blocklist is not None else []
            ),
            tags=self._args.tags,
            **self._account_args(),
        )

    def _create_blocklist(self, tenant: TenantSpec) -> cognitiveservices.RaiBlocklist | None:
        terms = _genai(tenant).guardrails.blocked_terms
        if not terms:
            return None
        blocklist = cognitiveservices.RaiBlocklist(
            f"{self._name}-{tenant.id}-blocked",
            rai_blocklist_name=blocklist_name(tenant.id),
            properties={"description": f"terms tenant {tenant.id} never sends nor receives"},
            opts=pulumi.ResourceOptions(parent=self),
            tags=self._args.tags,
            **self._account_args(),
        )
        for index, term in enumerate(terms):
            cognitiveservices.RaiBlocklistItem(
                f"{self._name}-{tenant.id}-blocked-{index}",
                rai_blocklist_name=blocklist.name,
                rai_blocklist_item_name=f"term-{index}",
                properties={"pattern": term, "is_regex": False},
                opts=pulumi.ResourceOptions(parent=blocklist),
                tags=self._args.tags,
                **self._account_args(),
            )
        return blocklist

    def _create_deployment(
        self,
        tenant: TenantSpec,
        deployment: str,
        content_filter: cognitiveservices.RaiPolicy,
        previous: pulumi.Resource | None,
    ) -> cognitiveservices.Deployment:
        model = _genai(tenant).model(deployment)
        return cognitiveservices.Deployment(
            f"{self._name}-{tenant.id}-{deployment}",
            deployment_name=naming.ai_deployment(tenant.id, deployment),
            sku={"name": model.sku, "capacity": model.capacity_k_tpm},
            properties={
                "model": {"format": "OpenAI", "name": model.name, "version": model.version},
                "rai_policy_name": content_filter.name,
                # A new model version is a change to evaluate and roll out, not a surprise.
                "version_upgrade_option": "NoAutoUpgrade",
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[previous] if previous is not None else []
            ),
            tags=self._args.tags,
            **self._account_args(),
        )


# --- the gateway's chat API ----------------------------------------------------------------


def _json_refusal(status: int, reason: str, code: str, message: str, indent: str) -> str:
    body = escape(json.dumps({"code": code, "message": message}))
    return f"""{indent}<return-response>
{indent}  <set-status code="{status}" reason="{reason}" />
{indent}  <set-header name="Content-Type" exists-action="override">
{indent}    <value>application/json</value>
{indent}  </set-header>
{indent}  <set-body>{body}</set-body>
{indent}</return-response>"""


def _deployment_choice(tenant: TenantSpec) -> str:
    """The caller names one of the tenant's deployments; the account's name carries the
    tenant. Any other name is a 404 that lists the tenant's own."""
    genai = _genai(tenant)
    whens = "\n".join(
        f"""      <when condition={
            quoteattr(f'@(context.Request.MatchedParameters["deployment"] == "{m.deployment}")')
        }>
        <set-variable name="aiDeployment" value={
            quoteattr(naming.ai_deployment(tenant.id, m.deployment))
        } />
      </when>"""
        for m in genai.models
    )
    known = ", ".join(m.deployment for m in genai.models)
    refusal = _json_refusal(
        404, "Not Found", "not_found", f"no such deployment: this tenant has {known}", " " * 8
    )
    return f"""    <choose>
{whens}
      <otherwise>
{refusal}
      </otherwise>
    </choose>"""


_ASKED = 'context.Request.Body.As<JObject>(preserveContent: true)["max_tokens"]'


def _max_tokens_rule(cap: int) -> str:
    """A request asking for more than the tenant's cap is refused; one asking for none gets
    the cap (genai.guardrails' max_tokens rule, in C#)."""
    too_many = quoteattr(f"@({_ASKED} != null && (int){_ASKED} > {cap})")
    unset = quoteattr(f"@({_ASKED} == null)")
    capped = escape(
        "@{\n"
        "          var body = context.Request.Body.As<JObject>(preserveContent: true);\n"
        f'          body["max_tokens"] = {cap};\n'
        "          return body.ToString();\n"
        "        }"
    )
    refusal = _json_refusal(
        400,
        "Bad Request",
        "invalid_input",
        f"max_tokens is above this tenant's cap of {cap}",
        " " * 8,
    )
    return f"""    <choose>
      <when condition={too_many}>
{refusal}
      </when>
      <when condition={unset}>
        <set-body>{capped}</set-body>
      </when>
    </choose>"""


def genai_product_policy(tenant: TenantSpec, backend_id: str, *, budget_stop: bool) -> str:
    """A tenant's genai product: deployment, token limits and metrics, then the call with
    the gateway's identity. ``budget_stop``: a pooled tenant whose metered budget is spent
    is refused here as at scoring (the same named value)."""
    genai = _genai(tenant)
    tenant_value = escape(tenant.id)
    rewrite = (
        '@("/openai/deployments/" + (string)context.Variables["aiDeployment"] '
        f'+ "/chat/completions?api-version={OPENAI_API_VERSION}")'
    )
    return f"""<policies>
  <inbound>
    <base />
{budget_stop_policy(tenant.id) if budget_stop else ""}{_deployment_choice(tenant)}
{_max_tokens_rule(genai.guardrails.max_tokens)}
    <llm-token-limit counter-key="@(context.Subscription.Id)"
        tokens-per-minute="{genai.tokens_per_minute}" token-quota="{genai.tokens_per_month}"
        token-quota-period="Monthly" estimate-prompt-tokens="true"
        retry-after-header-name="Retry-After"
        remaining-tokens-header-name="x-ratelimit-remaining-tokens" />
    <llm-emit-token-metric namespace="{METRIC_NAMESPACE}">
      <dimension name="Tenant" value="{tenant_value}" />
      <dimension name="Deployment" value="@((string)context.Variables[&quot;aiDeployment&quot;])" />
    </llm-emit-token-metric>
    <set-header name="x-tenant-id" exists-action="override">
      <value>{tenant_value}</value>
    </set-header>
    <set-header name="{KEY_HEADER}" exists-action="delete" />
    <set-backend-service backend-id={quoteattr(backend_id)} />
    <rewrite-uri template={quoteattr(rewrite)} copy-unmatched-params="false" />
    <authentication-managed-identity resource="{AI_TOKEN_AUDIENCE}" />
  </inbound>
  <backend>
    <forward-request timeout="120" />
  </backend>
  <outbound>
    <base />
  </outbound>
  <on-error>
    <base />
  </on-error>
</policies>"""


@dataclass
class GenAIGatewayArgs:
    spec: PlatformSpec
    shared: SharedServices
    service_name: pulumi.Input[str]
    principal_id: pulumi.Input[str]


class GenAIGateway(pulumi.ComponentResource):
    """The chat API on the tenant gateway, its token metrics logger, and per stamp and
    tenant: :meth:`add_account` (a backend and the gateway's right to call it) and
    :meth:`add_tenant` (product, policy and key)."""

    def __init__(
        self, name: str, args: GenAIGatewayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:genai:GenAIGateway", name, {"api": API_ID}, opts)
        self._name = name
        self._args = args
        self.api = self._create_api()
        self.logger = self._create_metrics_logger()
        self.register_outputs({"apiId": self.api.id, "loggerId": self.logger.id})

    def _common(self) -> dict[str, pulumi.Input[str]]:
        return {
            "resource_group_name": self._args.shared.resource_group.name,
            "service_name": self._args.service_name,
        }

    def _gateway(self) -> Principal:
        return Principal("gateway", self._args.principal_id, "ServicePrincipal")

    def _create_api(self) -> apimanagement.Api:
        common = self._common()
        api = create_api(
            f"{self._name}-api",
            api_id=API_ID,
            display_name="Chat completions",
            path=API_PATH,
            common=common,
            parent=self,
        )
        apimanagement.ApiOperation(
            f"{self._name}-api-chat",
            api_id=API_ID,
            operation_id=CHAT_OPERATION,
            display_name="Chat completions (OpenAI shape)",
            method="POST",
            url_template="/{deployment}/chat/completions",
            template_parameters=[{"name": "deployment", "type": "string", "required": True}],
            opts=pulumi.ResourceOptions(parent=api),
            **common,
        )
        apimanagement.ApiPolicy(
            f"{self._name}-api-policy",
            api_id=API_ID,
            policy_id="policy",
            format="rawxml",
            value=api_policy(),
            opts=pulumi.ResourceOptions(parent=api),
            **common,
        )
        return api

    def _create_metrics_logger(self) -> apimanagement.Logger:
        """Token metrics go to the platform's App Insights, which takes Entra only: the
        logger authenticates as the gateway's identity, Monitoring Metrics Publisher there."""
        shared = self._args.shared
        spec = self._args.spec
        grant = assign_role(
            f"{self._name}-metrics-publisher",
            principal=self._gateway(),
            role_code="MonitoringMetricsPublisher",
            scope=shared.app_insights.id,
            scope_key=f"{spec.prefix}/{spec.environment.value}/{naming.PLATFORM_SCOPE}/appi",
            subscription_id=shared.subscription_id,
            parent=self,
            description="tenant gateway: token metrics",
        )
        common = self._common()
        logger = apimanagement.Logger(
            f"{self._name}-logger",
            logger_id=LOGGER_ID,
            logger_type="applicationInsights",
            resource_id=shared.app_insights.id,
            credentials={
                "connectionString": shared.app_insights.connection_string,
                "identityClientId": "SystemAssigned",
            },
            description="LLM token metrics per tenant",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]),
            **common,
        )
        # Custom metrics with dimensions need the API's App Insights diagnostic with
        # metrics on (the llm-emit-token-metric page's prerequisites).
        apimanagement.ApiDiagnostic(
            f"{self._name}-api-diagnostic",
            api_id=API_ID,
            diagnostic_id="applicationinsights",
            logger_id=logger.id,
            metrics=True,
            always_log="allErrors",
            sampling={"sampling_type": "fixed", "percentage": 100},
            # Bodies are never logged at the gateway: prompts may hold personal data.
            opts=pulumi.ResourceOptions(parent=self.api),
            **common,
        )
        return logger

    def routes(self, gateway: GatewayRef) -> GenAIRoutes:
        """Adds stamps' accounts and tenants' chat products, as children of this gateway."""
        return GenAIRoutes(self._name, gateway, self)


@dataclass(frozen=True)
class GenAIRoutes:
    """Per stamp account a backend and the gateway's right to call it; per genai tenant a
    product with its token policy and key. ``name`` prefixes the children
    (``genai-gateway``); ``parent`` holds them: the chat API's component, or a shard
    stack's own."""

    name: str
    gateway: GatewayRef
    parent: pulumi.Resource

    def _gateway(self) -> Principal:
        return Principal("gateway", self.gateway.principal_id, "ServicePrincipal")

    def add_account(
        self,
        stamp_name: str,
        account: GenAIAccount,
        scope_key: str,
        subscription_id: pulumi.Input[str],
    ) -> str:
        """A backend for a stamp's account, and the gateway's right to call its
        deployments; returns the backend id. ``subscription_id``: the stamp's, where the
        assignment's role definition is named."""
        backend_id = f"ai-{stamp_name}"
        apimanagement.Backend(
            f"{self.name}-backend-{stamp_name}",
            backend_id=backend_id,
            title=f"{stamp_name} AI Services",
            protocol="http",
            url=account.endpoint,
            tls={"validate_certificate_chain": True, "validate_certificate_name": True},
            opts=pulumi.ResourceOptions(parent=self.parent),
            **self.gateway.common(),
        )
        assign_role(
            f"{self.name}-{stamp_name}-openai-user",
            principal=self._gateway(),
            role_code="CognitiveServicesOpenAIUser",
            scope=account.account.id,
            scope_key=f"{scope_key}/ai",
            subscription_id=subscription_id,
            parent=self.parent,
            description="tenant gateway: chat completions",
        )
        return backend_id

    def add_tenant(
        self,
        tenant: TenantSpec,
        backend_id: str,
        budget_stop: apimanagement.NamedValue | None,
    ) -> TenantGenAIRoute:
        if self.gateway.genai_api_id is None:  # the spec's tenants decide: unreachable
            raise ValueError(f"tenant {tenant.id} chats, but the gateway has no chat API")
        return TenantGenAIRoute(
            f"{self.name}-{tenant.id}",
            self.gateway,
            tenant,
            backend_id,
            budget_stop=budget_stop,
            opts=pulumi.ResourceOptions(parent=self.parent),
        )


class TenantGenAIRoute(pulumi.ComponentResource):
    """A tenant's genai product, its token policy and its key."""

    def __init__(
        self,
        name: str,
        gateway: GatewayRef,
        tenant: TenantSpec,
        backend_id: str,
        *,
        budget_stop: apimanagement.NamedValue | None,
        opts: pulumi.ResourceOptions,
    ) -> None:
        super().__init__("tenant-mlops:genai:TenantGenAIRoute", name, {"tenantId": tenant.id}, opts)
        product_id = genai_product_id(tenant.id)
        self.product, self.subscription = create_tenant_product(
            name,
            ProductArgs(
                product_id=product_id,
                display_name=f"{tenant.display_name or tenant.id} chat",
                description=f"Chat completions for tenant {tenant.id}",
                api_resource_id=pulumi.Output.from_input(gateway.genai_api_id or ""),
                api_id=API_ID,
                policy=genai_product_policy(
                    tenant, backend_id, budget_stop=budget_stop is not None
                ),
                key_display_name=f"{tenant.id} chat key",
                policy_needs=(budget_stop,) if budget_stop else (),
            ),
            common=gateway.common(),
            parent=self,
        )
        self.register_outputs({"productId": product_id, "subscriptionId": self.subscription.id})
