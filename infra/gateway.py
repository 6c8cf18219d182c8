"""The tenant gateway (API Management): one product and subscription per tenant, the
tenant's rate limit and concurrency, and routing to its dedicated endpoint or to its pool's
endpoint with the tenant set by policy, never by the caller."""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pulumi
from pulumi_azure_native import apimanagement

from infra.common import send_diagnostics
from infra.shared import SharedServices
from tenancy import naming
from tenancy.spec import PlatformSpec, TenantSpec

API_ID = "scoring"
API_PATH = "score"
KEY_HEADER = "api-key"
KEY_QUERY = "subscription-key"
TENANT_HEADER = "x-tenant-id"
DEPLOYMENT_HEADER = "azureml-model-deployment"
ML_TOKEN_AUDIENCE = "https://ml.azure.com"
#: API Management's validate-content policy checks bodies up to this size.
MAX_VALIDATED_BYTES = 4 * 1024 * 1024

API_POLICY = f"""<policies>
  <inbound>
    <base />
    <choose>
      <when condition="@(context.Request.Url.Query.ContainsKey(&quot;{KEY_QUERY}&quot;))">
        <!-- Keys never travel in URLs: they end up in logs and browser history. -->
        <return-response>
          <set-status code="400" reason="Bad Request" />
          <set-header name="Content-Type" exists-action="override">
            <value>application/json</value>
          </set-header>
          <set-body>{{"code": "invalid_input",
            "message": "send the key in the {KEY_HEADER} header, not in the URL"}}</set-body>
        </return-response>
      </when>
    </choose>
    <rewrite-uri template="/score" copy-unmatched-params="false" />
  </inbound>
  <backend>
    <base />
  </backend>
  <outbound>
    <base />
  </outbound>
  <on-error>
    <base />
  </on-error>
</policies>"""


@dataclass(frozen=True)
class Route:
    """Where one tenant's requests go."""

    tenant: TenantSpec
    backend_id: str
    pooled: bool
    timeout_seconds: int


def product_policy(route: Route) -> str:
    """The policy of a tenant's product: limits first, then identity and routing."""
    tenant = route.tenant
    quota = tenant.quota
    max_bytes = min(quota.max_payload_kb * 1024, MAX_VALIDATED_BYTES)
    tenant_value = escape(tenant.id)
    # In a pool the deployment serves many tenants: the tenant is told by the gateway, and a
    # caller may not pick a deployment (it could be another tenant's canary).
    deployment_rule = (
        f'    <set-header name="{DEPLOYMENT_HEADER}" exists-action="delete" />\n'
        if route.pooled
        else ""
    )
    return f"""<policies>
  <inbound>
    <base />
    <rate-limit calls="{quota.rate_limit_per_minute}" renewal-period="60"
        retry-after-header-name="Retry-After" remaining-calls-header-name="x-ratelimit-remaining" />
    <validate-content unspecified-content-type-action="prevent" max-size="{max_bytes}"
        size-exceeded-action="prevent" errors-variable-name="bodyValidation">
      <content type="application/json" validate-as="json" action="prevent" />
    </validate-content>
    <set-header name="{TENANT_HEADER}" exists-action="override">
      <value>{tenant_value}</value>
    </set-header>
{deployment_rule}    <set-backend-service backend-id={quoteattr(route.backend_id)} />
    <authentication-managed-identity resource="{ML_TOKEN_AUDIENCE}" />
  </inbound>
  <backend>
    <limit-concurrency key={quoteattr(tenant.id)} max-count="{quota.max_concurrency}">
      <forward-request timeout="{route.timeout_seconds}" />
    </limit-concurrency>
  </backend>
  <outbound>
    <base />
  </outbound>
  <on-error>
    <base />
  </on-error>
</policies>"""


@dataclass
class TenantGatewayArgs:
    spec: PlatformSpec
    shared: SharedServices


class TenantGateway(pulumi.ComponentResource):
    """The API Management service and the scoring API. Routes are added per tenant once
    the stamps (and so the endpoints) exist: :meth:`add_backend`, :meth:`add_tenant`."""

    def __init__(
        self, name: str, args: TenantGatewayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:gateway:TenantGateway", name, {"stamp": "platform"}, opts)
        self._name = name
        self._args = args
        self.service = self._create_service()
        self.api = self._create_api()
        send_diagnostics(
            f"{name}-diag",
            resource_id=self.service.id,
            workspace_id=args.shared.log_analytics.id,
            parent=self.service,
        )
        self.principal_id: pulumi.Output[str] = self.service.identity.apply(
            lambda identity: identity.principal_id if identity else ""
        )
        self.register_outputs(
            {"gatewayUrl": self.service.gateway_url, "principalId": self.principal_id}
        )

    def _create_service(self) -> apimanagement.ApiManagementService:
        spec = self._args.spec
        network = self._args.shared.network
        return apimanagement.ApiManagementService(
            f"{self._name}-apim",
            resource_group_name=self._args.shared.resource_group.name,
            service_name=naming.api_management(spec.prefix, spec.environment, spec.installation),
            location=spec.location,
            publisher_email=spec.gateway.publisher_email,
            publisher_name=spec.gateway.publisher_name,
            sku={"name": spec.gateway.sku, "capacity": spec.gateway.capacity},
            identity={"type": "SystemAssigned"},
            # Private stacks: public entry for tenants, private path to the endpoints.
            virtual_network_type="External" if network else "None",
            virtual_network_configuration={"subnet_resource_id": network.gateway_subnet.id}
            if network
            else None,
            custom_properties={
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10": "False",
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11": "False",
            },
            tags=self._args.shared.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_api(self) -> apimanagement.Api:
        common = self._service_args()
        api = apimanagement.Api(
            f"{self._name}-api",
            api_id=API_ID,
            display_name="Model scoring",
            path=API_PATH,
            protocols=["https"],
            api_type="http",
            subscription_required=True,
            subscription_key_parameter_names={"header": KEY_HEADER, "query": KEY_QUERY},
            opts=pulumi.ResourceOptions(parent=self),
            **common,
        )
        apimanagement.ApiOperation(
            f"{self._name}-api-score",
            api_id=API_ID,
            operation_id="score",
            display_name="Score",
            method="POST",
            url_template="/",
            opts=pulumi.ResourceOptions(parent=api),
            **common,
        )
        apimanagement.ApiPolicy(
            f"{self._name}-api-policy",
            api_id=API_ID,
            policy_id="policy",
            format="rawxml",
            value=API_POLICY,
            opts=pulumi.ResourceOptions(parent=api),
            **common,
        )
        return api

    def _service_args(self) -> dict[str, pulumi.Input[str]]:
        return {
            "resource_group_name": self._args.shared.resource_group.name,
            "service_name": self.service.name,
        }

    def add_backend(self, stamp_name: str, scoring_uri: pulumi.Input[str]) -> str:
        """A backend for one stamp's online endpoint; returns its backend id."""
        backend_id = stamp_name
        apimanagement.Backend(
            f"{self._name}-backend-{stamp_name}",
            backend_id=backend_id,
            title=stamp_name,
            protocol="http",
            url=pulumi.Output.from_input(scoring_uri).apply(lambda uri: uri.rsplit("/score", 1)[0]),
            tls={"validate_certificate_chain": True, "validate_certificate_name": True},
            opts=pulumi.ResourceOptions(parent=self),
            **self._service_args(),
        )
        return backend_id

    def add_tenant(self, route: Route) -> TenantRoute:
        return TenantRoute(
            f"{self._name}-{route.tenant.id}", self, route, pulumi.ResourceOptions(parent=self)
        )


class TenantRoute(pulumi.ComponentResource):
    """One tenant's product, subscription (its keys) and product policy."""

    def __init__(
        self, name: str, gateway: TenantGateway, route: Route, opts: pulumi.ResourceOptions
    ) -> None:
        tenant = route.tenant
        super().__init__("tenant-mlops:gateway:TenantRoute", name, {"tenantId": tenant.id}, opts)
        common = gateway._service_args()
        child = pulumi.ResourceOptions(parent=self)
        product_id = f"tenant-{tenant.id}"
        self.product = apimanagement.Product(
            f"{name}-product",
            product_id=product_id,
            display_name=tenant.display_name or tenant.id,
            description=f"Scoring for tenant {tenant.id}",
            subscription_required=True,
            approval_required=False,
            subscriptions_limit=1,
            state="published",
            opts=child,
            **common,
        )
        apimanagement.ProductApiLink(
            f"{name}-product-api",
            product_id=product_id,
            api_link_id=API_ID,
            api_id=gateway.api.id,
            opts=pulumi.ResourceOptions(parent=self.product),
            **common,
        )
        apimanagement.ProductPolicy(
            f"{name}-product-policy",
            product_id=product_id,
            policy_id="policy",
            format="rawxml",
            value=product_policy(route),
            opts=pulumi.ResourceOptions(parent=self.product),
            **common,
        )
        # Keys are generated by API Management: they never pass through config or state
        # files, and rotate with the primary/secondary pair.
        self.subscription = apimanagement.Subscription(
            f"{name}-subscription",
            sid=product_id,
            display_name=f"{tenant.id} scoring key",
            scope=pulumi.Output.concat("/products/", product_id),
            state="active",
            allow_tracing=False,
            opts=pulumi.ResourceOptions(parent=self.product),
            **common,
        )
        self.register_outputs({"productId": product_id, "subscriptionId": self.subscription.id})


def timeout_seconds(request_timeout_ms: int) -> int:
    """The gateway waits a little longer than the endpoint, so the endpoint's own 408 wins."""
    return math.ceil(request_timeout_ms / 1000) + 5
