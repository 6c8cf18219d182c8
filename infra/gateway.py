"""The tenant gateway (API Management): one product and subscription per tenant, the
tenant's rate limit and concurrency, and routing to its dedicated endpoint or to its pool's
endpoint with the tenant set by policy, never by the caller.

Ground truth works as on the embedded gateway (``tenancy.request_ids``):
- ``POST /score`` answers with an ``x-request-id`` the policy signs for the tenant (HMAC-SHA256
  with the installation's key, a secret named value; policy expressions may use
  ``System.Security.Cryptography.HMACSHA256``:
  https://learn.microsoft.com/azure/api-management/api-management-policy-expressions), and
  sends it to the endpoint, whose ``score.py`` collects the request under that id;
- ``POST /score/feedback`` checks each label's id the same way, writes the accepted ones to
  the tenant's datastore (``ground_truth`` in the collector layout) with the gateway's
  managed identity (https://learn.microsoft.com/azure/api-management/authentication-managed-identity-policy),
  and answers how many it accepted and which ids are unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pulumi
import pulumi_random
from pulumi_azure_native import apimanagement

from infra.common import Principal, assign_role, send_diagnostics
from infra.front_door import gateway_regions
from infra.platform_refs import GatewayRef
from infra.shared import SharedServices
from tenancy import contracts, naming
from tenancy.errors import BudgetExceededError
from tenancy.spec import PlatformSpec, QualityPolicy, TenantSpec

API_ID = "scoring"
API_PATH = "score"
KEY_HEADER = "api-key"
KEY_QUERY = "subscription-key"
TENANT_HEADER = "x-tenant-id"
DEPLOYMENT_HEADER = "azureml-model-deployment"
ML_TOKEN_AUDIENCE = "https://ml.azure.com"
STORAGE_TOKEN_AUDIENCE = "https://storage.azure.com/"
#: The named value holding the installation's request-id key (tenancy.request_ids).
REQUEST_ID_KEY = "request-id-key"
FEEDBACK_OPERATION = "feedback"
#: Blob service version of the label writes (Put Blob with Entra auth needs 2017-11-09+).
BLOB_API_VERSION = "2023-11-03"
#: API Management's validate-content policy checks bodies up to this size.
MAX_VALIDATED_BYTES = 4 * 1024 * 1024

#: Every API refuses a key sent in the URL: keys there end up in logs and browser history.
KEY_IN_URL_REFUSAL = f"""    <choose>
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
"""


def api_policy(inbound: str = "") -> str:
    """An API's policy: the key refusal, then ``inbound``; the product's policy does the
    rest (``<base />``)."""
    return f"""<policies>
  <inbound>
    <base />
{KEY_IN_URL_REFUSAL}{inbound}  </inbound>
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


API_POLICY = api_policy(
    f"""    <choose>
      <when condition="@(context.Operation.Id != &quot;{FEEDBACK_OPERATION}&quot;)">
        <rewrite-uri template="/score" copy-unmatched-params="false" />
      </when>
    </choose>
"""
)


def create_api(
    name: str,
    *,
    api_id: str,
    display_name: str,
    path: str,
    common: dict[str, pulumi.Input[str]],
    parent: pulumi.Resource,
) -> apimanagement.Api:
    """An API that takes the tenant's key in the ``api-key`` header, over HTTPS."""
    return apimanagement.Api(
        name,
        api_id=api_id,
        display_name=display_name,
        path=path,
        protocols=["https"],
        api_type="http",
        subscription_required=True,
        subscription_key_parameter_names={"header": KEY_HEADER, "query": KEY_QUERY},
        opts=pulumi.ResourceOptions(parent=parent),
        **common,
    )


@dataclass(frozen=True)
class ProductArgs:
    """A tenant's product on one API: its policy and its one subscription (key)."""

    product_id: str
    display_name: str
    description: str
    api_resource_id: pulumi.Input[str]  # the API's resource id
    api_id: str
    policy: pulumi.Input[str]
    key_display_name: str
    # What the policy names and must exist first (named values).
    policy_needs: tuple[pulumi.Resource, ...] = ()


def create_tenant_product(
    name: str,
    args: ProductArgs,
    *,
    common: dict[str, pulumi.Input[str]],
    parent: pulumi.Resource,
) -> tuple[apimanagement.Product, apimanagement.Subscription]:
    """One product a tenant subscribes to, its link to the API, its policy, and its key."""
    product = apimanagement.Product(
        f"{name}-product",
        product_id=args.product_id,
        display_name=args.display_name,
        description=args.description,
        subscription_required=True,
        approval_required=False,
        subscriptions_limit=1,
        state="published",
        opts=pulumi.ResourceOptions(parent=parent),
        **common,
    )
    apimanagement.ProductApiLink(
        f"{name}-product-api",
        product_id=args.product_id,
        api_link_id=args.api_id,
        api_id=args.api_resource_id,
        opts=pulumi.ResourceOptions(parent=product),
        **common,
    )
    apimanagement.ProductPolicy(
        f"{name}-product-policy",
        product_id=args.product_id,
        policy_id="policy",
        format="rawxml",
        value=args.policy,
        # API Management refuses a policy that names a named value it does not have yet.
        opts=pulumi.ResourceOptions(parent=product, depends_on=list(args.policy_needs)),
        **common,
    )
    # Keys are generated by API Management: they never pass through config or state
    # files, and rotate with the primary/secondary pair.
    subscription = apimanagement.Subscription(
        f"{name}-subscription",
        sid=args.product_id,
        display_name=args.key_display_name,
        scope=pulumi.Output.concat("/products/", args.product_id),
        state="active",
        allow_tracing=False,
        opts=pulumi.ResourceOptions(parent=product),
        **common,
    )
    return product, subscription


@dataclass(frozen=True)
class Route:
    """Where one tenant's requests go, and where its labels are written."""

    tenant: TenantSpec
    backend_id: str
    pooled: bool
    timeout_seconds: int
    endpoint: str  # the online endpoint's name (the collector layout's folder)
    # The stamp datastore's container URL (``https://<account>.blob.../<container>``).
    labels_container: pulumi.Input[str]
    quality: QualityPolicy


def _csharp(text: str) -> str:
    """``text`` as a C# string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mac_expression(tenant: str, issued: str, nonce: str) -> str:
    """The C# of ``tenancy.request_ids._mac``: HMAC-SHA256 of "<tenant>:<issued>:<nonce>",
    its first 16 bytes in lower-case hex."""
    return (
        f"BitConverter.ToString(new System.Security.Cryptography.HMACSHA256("
        f'Encoding.UTF8.GetBytes("{{{{{REQUEST_ID_KEY}}}}}")).ComputeHash(Encoding.UTF8.GetBytes('
        f'{_csharp(tenant + ":")} + {issued} + ":" + {nonce}))).Replace("-", "")'
        ".ToLowerInvariant().Substring(0, 32)"
    )


_UNIX_SECONDS = "(long)(DateTime.UtcNow - new DateTime(1970, 1, 1)).TotalSeconds"


def request_id_expression(tenant: str) -> str:
    """A new request id for ``tenant`` (``tenancy.request_ids.issue``), in C#."""
    return (
        "@{\n"
        f'  var issued = ({_UNIX_SECONDS}).ToString("x");\n'
        '  var nonce = Guid.NewGuid().ToString("N").Substring(0, 16);\n'
        f'  return issued + "-" + nonce + "-" + {_mac_expression(tenant, "issued", "nonce")};\n'
        "}"
    )


def labels_expression(tenant: str, quality: QualityPolicy) -> str:
    """The feedback body judged as ``local.gateway`` judges it, in C#: a JSON object with
    ``error`` (a 400's message), or ``accepted``, ``unknown`` and ``lines`` (JSON lines to
    store, one label each)."""
    horizon = quality.label_horizon_hours * 3600
    most = quality.max_labels_per_request
    mac = _mac_expression(tenant, "parts[0]", "parts[1]")
    return f"""@{{
  var now = DateTime.UtcNow;
  var seconds = {_UNIX_SECONDS};
  JObject body = null;
  try {{ body = context.Request.Body.As<JObject>(preserveContent: true); }} catch {{ }}
  var labels = body == null ? null : body["labels"] as JArray;
  if (labels == null || labels.Count == 0) {{
    return new JObject(new JProperty("error",
        "send {{\\"labels\\": [{{\\"request_id\\": ..., \\"label\\": ...}}]}}")).ToString();
  }}
  if (labels.Count > {most}) {{
    return new JObject(new JProperty("error",
        labels.Count + " labels: at most {most} a request")).ToString();
  }}
  var accepted = new JObject();
  var unknown = new JArray();
  for (var i = 0; i < labels.Count; i++) {{
    var item = labels[i] as JObject;
    var id = item == null ? null : item["request_id"] as JValue;
    var label = item == null ? null : item["label"];
    if (id == null || id.Type != JTokenType.String || ((string)id).Length == 0) {{
      return new JObject(new JProperty("error",
          "labels[" + i + "]: request_id must be text")).ToString();
    }}
    var values = label is JArray ? ((JArray)label).ToList() : new List<JToken> {{ label }};
    if (label == null || values.Count == 0 || values.Any(v => !(v.Type == JTokenType.Integer
        || v.Type == JTokenType.Float || v.Type == JTokenType.String
        || v.Type == JTokenType.Boolean))) {{
      return new JObject(new JProperty("error", "labels[" + i + "]: label must be a number, "
          + "text or boolean (or a list of them, one per row of the request)")).ToString();
    }}
    var requestId = (string)id;
    var parts = requestId.Split('-');
    var known = false;
    if (parts.Length == 3
        && Regex.IsMatch(requestId, "^[0-9a-f]{{1,12}}-[0-9a-f]{{16}}-[0-9a-f]{{32}}$")
        && {mac} == parts[2]) {{
      var issued = Convert.ToInt64(parts[0], 16);
      known = issued - 300 <= seconds && seconds <= issued + {horizon};
    }}
    if (known) {{
      accepted[requestId] = label;
    }} else if (!unknown.Any(u => (string)u == requestId)) {{
      unknown.Add(requestId);
    }}
  }}
  var lines = string.Join("\\n", accepted.Properties().Select(p => new JObject(
      new JProperty("correlationid", p.Name), new JProperty("tenant", {_csharp(tenant)}),
      new JProperty("label", p.Value), new JProperty("time", now.ToString("o"))
  ).ToString(Newtonsoft.Json.Formatting.None)));
  return new JObject(new JProperty("accepted", accepted.Count), new JProperty("unknown", unknown),
      new JProperty("lines", lines)).ToString();
}}"""


def product_policy(route: Route, labels_container: str) -> str:
    """The policy of a tenant's product: limits first, then identity and routing; labels
    are judged and written here and never reach the endpoint."""
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
    # A pool's tenant is refused alone when its metered budget is spent (automation.costs).
    budget_rule = budget_stop_policy(tenant.id) if route.pooled else ""
    request_id = quoteattr(request_id_expression(tenant.id))
    return f"""<policies>
  <inbound>
    <base />
    <rate-limit calls="{quota.rate_limit_per_minute}" renewal-period="60"
        retry-after-header-name="Retry-After" remaining-calls-header-name="x-ratelimit-remaining" />
    <validate-content unspecified-content-type-action="prevent" max-size="{max_bytes}"
        size-exceeded-action="prevent" errors-variable-name="bodyValidation">
      <content type="application/json" validate-as="json" action="prevent" />
    </validate-content>
{_feedback_policy(route, labels_container)}
{budget_rule}    <set-variable name="requestId" value={request_id} />
    <set-header name="x-request-id" exists-action="override">
      <value>@((string)context.Variables["requestId"])</value>
    </set-header>
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
    <set-header name="x-request-id" exists-action="override">
      <value>@((string)context.Variables["requestId"])</value>
    </set-header>
  </outbound>
  <on-error>
    <base />
  </on-error>
</policies>"""


_JUDGED = '((JObject)JObject.Parse((string)context.Variables["labels"]))'
_STORED = 'context.Variables.GetValueOrDefault<IResponse>("stored")'
_REFUSED = f'@({_JUDGED}["error"] != null)'
_REFUSAL_BODY = (
    '@(new JObject(new JProperty("error", new JObject(new JProperty("code", "invalid_input"), '
    f'new JProperty("message", {_JUDGED}["error"])))).ToString())'
)
_TO_STORE = f'@((int){_JUDGED}["accepted"] > 0)'
_NOT_STORED = (
    f'@((int){_JUDGED}["accepted"] > 0 && ({_STORED} == null || {_STORED}.StatusCode != 201))'
)
_ANSWER_BODY = (
    f'@(new JObject(new JProperty("accepted", {_JUDGED}["accepted"]), '
    f'new JProperty("unknown", {_JUDGED}["unknown"])).ToString())'
)


def _json_response(status: int, reason: str, body_expression: str, *, indent: int) -> str:
    """A ``return-response`` with a JSON body computed by a policy expression."""
    pad = " " * indent
    lines = [
        "<return-response>",
        f'  <set-status code="{status}" reason="{reason}" />',
        '  <set-header name="Content-Type" exists-action="override">',
        "    <value>application/json</value>",
        "  </set-header>",
        f"  <set-body>{escape(body_expression)}</set-body>",
        "</return-response>",
    ]
    return "\n".join(pad + line for line in lines)


_STOPPED_UNTIL = '(string)context.Variables["budgetStop"]'


def budget_stop_policy(tenant: str) -> str:
    """A pooled tenant whose metered budget is spent is refused here, before the shared
    endpoint, with the embedded gateway's answer; labels (above) are still taken. The
    automation sets the named value (``adapters.azure.AzurePlatform.refuse_scoring``)."""
    named_value = contracts.budget_stop_named_value(tenant)
    refused = BudgetExceededError.for_tenant(tenant, "@UNTIL@")
    head, tail = refused.message.split("@UNTIL@")
    body = (
        '@(new JObject(new JProperty("error", new JObject('
        f'new JProperty("code", {_csharp(refused.code)}), new JProperty("message", '
        f"{_csharp(head)} + {_STOPPED_UNTIL} + {_csharp(tail)})))).ToString())"
    )
    stopped = f"@({_STOPPED_UNTIL} != {_csharp(contracts.BUDGET_STOP_NONE)})"
    return f"""    <set-variable name="budgetStop" value="{{{{{named_value}}}}}" />
    <choose>
      <when condition={quoteattr(stopped)}>
{_json_response(403, "Forbidden", body, indent=8)}
      </when>
    </choose>
"""


def _feedback_policy(route: Route, labels_container: str) -> str:
    """``POST /score/feedback``: judge the labels, write the accepted ones as one blob of
    JSON lines to the tenant's datastore, answer; the endpoint never sees them."""
    folder = f"{labels_container.rstrip('/')}/{contracts.COLLECTOR_ROOT}/{route.endpoint}/"
    folder += f"{contracts.COLLECTION_LABELS}/"
    blob_url = (
        f'@({_csharp(folder)} + DateTime.UtcNow.ToString("yyyy/MM/dd/HH") + "/" '
        '+ Guid.NewGuid().ToString("N") + ".jsonl")'
    )
    judge = labels_expression(route.tenant.id, route.quality)
    return f"""    <choose>
      <when condition="@(context.Operation.Id == &quot;{FEEDBACK_OPERATION}&quot;)">
        <set-variable name="labels" value={quoteattr(judge)} />
        <choose>
          <when condition={quoteattr(_REFUSED)}>
{_json_response(400, "Bad Request", _REFUSAL_BODY, indent=12)}
          </when>
          <when condition={quoteattr(_TO_STORE)}>
            <send-request mode="new" response-variable-name="stored" timeout="20"
                ignore-error="true">
              <set-url>{escape(blob_url)}</set-url>
              <set-method>PUT</set-method>
              <set-header name="x-ms-blob-type" exists-action="override">
                <value>BlockBlob</value>
              </set-header>
              <set-header name="x-ms-version" exists-action="override">
                <value>{BLOB_API_VERSION}</value>
              </set-header>
              <set-body>{escape(f'@((string){_JUDGED}["lines"])')}</set-body>
              <authentication-managed-identity resource="{STORAGE_TOKEN_AUDIENCE}" />
            </send-request>
          </when>
        </choose>
        <choose>
          <when condition={quoteattr(_NOT_STORED)}>
            <!-- Storage refused or did not answer: nothing is accepted; send again. -->
            <return-response>
              <set-status code="503" reason="Service Unavailable" />
              <set-header name="Retry-After" exists-action="override">
                <value>5</value>
              </set-header>
            </return-response>
          </when>
        </choose>
{_json_response(200, "OK", _ANSWER_BODY, indent=8)}
      </when>
    </choose>"""


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
        # The key that signs request ids (tenancy.request_ids): letters and digits, so C# and
        # Python read the same bytes from it.
        self.request_id_key = pulumi_random.RandomPassword(
            f"{name}-request-id-key",
            length=48,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
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
        self._grant_budget_stops()
        self.register_outputs(
            {"gatewayUrl": self.service.gateway_url, "principalId": self.principal_id}
        )

    def _create_service(self) -> apimanagement.ApiManagementService:
        spec = self._args.spec
        network = self._args.shared.network
        sku = {"name": spec.gateway.sku, "capacity": spec.gateway.capacity}
        return apimanagement.ApiManagementService(
            f"{self._name}-apim",
            resource_group_name=self._args.shared.resource_group.name,
            service_name=naming.api_management(spec.prefix, spec.environment, spec.installation),
            location=spec.location,
            publisher_email=spec.gateway.publisher_email,
            publisher_name=spec.gateway.publisher_name,
            sku=sku,
            identity={"type": "SystemAssigned"},
            # Private stacks: public entry for tenants, private path to the endpoints.
            virtual_network_type="External" if network else "None",
            virtual_network_configuration={"subnet_resource_id": network.gateway_subnet.id}
            if network
            else None,
            # A regional gateway in every other region that holds stamps (infra.front_door).
            additional_locations=[
                {"location": region, "sku": sku} for region in gateway_regions(spec)[1:]
            ]
            or None,
            custom_properties={
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10": "False",
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11": "False",
            },
            tags=self._args.shared.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_api(self) -> apimanagement.Api:
        common = self._service_args()
        api = create_api(
            f"{self._name}-api",
            api_id=API_ID,
            display_name="Model scoring",
            path=API_PATH,
            common=common,
            parent=self,
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
        apimanagement.ApiOperation(
            f"{self._name}-api-feedback",
            api_id=API_ID,
            operation_id=FEEDBACK_OPERATION,
            display_name="Send labels (ground truth) for scored requests",
            method="POST",
            url_template=f"/{FEEDBACK_OPERATION}",
            opts=pulumi.ResourceOptions(parent=api),
            **common,
        )
        apimanagement.NamedValue(
            f"{self._name}-request-id-key",
            named_value_id=REQUEST_ID_KEY,
            display_name=REQUEST_ID_KEY,
            # Drawn once, kept in the stack's state as a secret; APIM keeps it encrypted.
            value=self.request_id_key.result,
            secret=True,
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

    def _grant_budget_stops(self) -> None:
        """The automation sets pooled tenants' budget stops (named values) and nothing
        else here: a custom role of named values only, on this service."""
        spec = self._args.spec
        shared = self._args.shared
        assign_role(
            f"{self._name}-automation-budget-stops",
            principal=Principal(
                "automation", shared.automation_identity.principal_id, "ServicePrincipal"
            ),
            role_code="BudgetStopWriter",
            custom_role_id=shared.budget_stop_role.id,
            scope=self.service.id,
            scope_key=f"{spec.prefix}/{spec.environment.value}/{naming.PLATFORM_SCOPE}/apim",
            subscription_id=shared.subscription_id,
            parent=self,
            description="automation: pooled tenants' budget stops",
        )

    def _service_args(self) -> dict[str, pulumi.Input[str]]:
        return {
            "resource_group_name": self._args.shared.resource_group.name,
            "service_name": self.service.name,
        }

    def routes(self, gateway: GatewayRef) -> ScoringRoutes:
        """Adds stamps' backends and tenants' products, as children of this gateway."""
        return ScoringRoutes(self._name, gateway, self)

    def reference(self, genai_api_id: pulumi.Input[str] | None = None) -> GatewayRef:
        """The gateway as routes are added to it, here or in a shard stack."""
        return GatewayRef(
            resource_group_name=self._args.shared.resource_group.name,
            service_name=self.service.name,
            principal_id=self.principal_id,
            scoring_api_id=self.api.id,
            genai_api_id=genai_api_id,
        )


@dataclass(frozen=True)
class ScoringRoutes:
    """Tenants' scoring routes on the gateway: a backend per stamp's online endpoint, and
    per tenant a product, policy and key. ``name`` prefixes the children (``gateway``), and
    ``parent`` holds them: the gateway itself, or a shard stack's own component."""

    name: str
    gateway: GatewayRef
    parent: pulumi.Resource

    def add_backend(self, stamp_name: str, scoring_uri: pulumi.Input[str]) -> str:
        """A backend for one stamp's online endpoint; returns its backend id."""
        backend_id = stamp_name
        apimanagement.Backend(
            f"{self.name}-backend-{stamp_name}",
            backend_id=backend_id,
            title=stamp_name,
            protocol="http",
            url=pulumi.Output.from_input(scoring_uri).apply(lambda uri: uri.rsplit("/score", 1)[0]),
            tls={"validate_certificate_chain": True, "validate_certificate_name": True},
            opts=pulumi.ResourceOptions(parent=self.parent),
            **self.gateway.common(),
        )
        return backend_id

    def add_tenant(self, route: Route) -> TenantRoute:
        return TenantRoute(
            f"{self.name}-{route.tenant.id}",
            self.gateway,
            route,
            pulumi.ResourceOptions(parent=self.parent),
        )


class TenantRoute(pulumi.ComponentResource):
    """One tenant's product, subscription (its keys) and product policy."""

    def __init__(
        self, name: str, gateway: GatewayRef, route: Route, opts: pulumi.ResourceOptions
    ) -> None:
        tenant = route.tenant
        super().__init__("tenant-mlops:gateway:TenantRoute", name, {"tenantId": tenant.id}, opts)
        common = gateway.common()
        product_id = f"tenant-{tenant.id}"
        stop = self._create_budget_stop(name, route, common) if route.pooled else None
        # A pooled tenant's chat is refused with its scoring (infra.genai).
        self.budget_stop = stop
        policy = pulumi.Output.from_input(route.labels_container).apply(
            lambda container: product_policy(route, container)
        )
        self.product, self.subscription = create_tenant_product(
            name,
            ProductArgs(
                product_id=product_id,
                display_name=tenant.display_name or tenant.id,
                description=f"Scoring for tenant {tenant.id}",
                api_resource_id=gateway.scoring_api_id,
                api_id=API_ID,
                policy=policy,
                key_display_name=f"{tenant.id} scoring key",
                policy_needs=(stop,) if stop else (),
            ),
            common=common,
            parent=self,
        )
        self.register_outputs({"productId": product_id, "subscriptionId": self.subscription.id})

    def _create_budget_stop(
        self, name: str, route: Route, common: dict[str, pulumi.Input[str]]
    ) -> apimanagement.NamedValue:
        """The pooled tenant's budget stop, read by its product policy: "none", or the day
        its scoring is served again. The automation owns the value (``automation.costs``):
        `pulumi up` creates it and never resets a stop in force."""
        named_value = contracts.budget_stop_named_value(route.tenant.id)
        return apimanagement.NamedValue(
            f"{name}-budget-stop",
            named_value_id=named_value,
            display_name=named_value,
            value=contracts.BUDGET_STOP_NONE,
            secret=False,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["value"]),
            **common,
        )


def timeout_seconds(request_timeout_ms: int) -> int:
    """The gateway waits a little longer than the endpoint, so the endpoint's own 408 wins."""
    return math.ceil(request_timeout_ms / 1000) + 5
