"""Rules over one resource's inputs: workspaces, compute, endpoints and deployments, and the
storage, registry and Event Grid settings every stamp relies on.

Each check yields one message per problem and nothing when the resource complies. Values
arrive with their wire names (``properties.authMode``), as the engine sends them to a pack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from itertools import pairwise
from typing import Any

from policies.core import (
    ADVISORY,
    MANDATORY,
    ML,
    PROD_MANDATORY,
    PROD_ONLY,
    Resource,
    Rule,
    Setting,
    Settings,
    number,
)
from policies.shared_settings import (
    TENANT_CLASSIFICATIONS,
    TENANT_TIERS,
    NotConfigured,
    private_tiers,
    tenant_tag,
    tier_of,
)
from tenancy import contracts
from tenancy.spec import PlatformSpec, Tier, Tiers

WORKSPACE = f"{ML}:Workspace"
COMPUTE = f"{ML}:Compute"
ONLINE_ENDPOINT = f"{ML}:OnlineEndpoint"
BATCH_ENDPOINT = f"{ML}:BatchEndpoint"
ONLINE_DEPLOYMENT = f"{ML}:OnlineDeployment"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
CONTAINER_REGISTRY = "azure-native:containerregistry:Registry"
EVENT_SUBSCRIPTIONS = (
    "azure-native:eventgrid:SystemTopicEventSubscription",
    "azure-native:eventgrid:EventSubscription",
    "azure-native:eventgrid:TopicEventSubscription",
    "azure-native:eventgrid:DomainEventSubscription",
)
FUNCTION_APP = "azure-native:web:WebApp"
TIERS: tuple[Tier, ...] = ("dedicated", "pooled")

_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def duration_seconds(value: Any) -> float | None:
    """ISO 8601 duration (``PT5S``, ``PT1H30M``, ``P1D``) in seconds; None if not one."""
    if not isinstance(value, str) or value in ("P", "PT"):
        return None
    match = _ISO_DURATION.match(value)
    if not match:
        return None
    factors = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    return sum(float(match[k]) * f for k, f in factors.items() if match[k])


# --- workspace ----------------------------------------------------------------------------


def workspace_public_network_disabled(resource: Resource, _: Settings) -> Iterator[str]:
    access = resource.props.get("publicNetworkAccess")
    if access != "Disabled":
        yield f"publicNetworkAccess is {access!r}; the workspace must be reached privately"


def workspace_user_assigned_identity(resource: Resource, _: Settings) -> Iterator[str]:
    props = resource.props
    kind = props.get("identity.type") or ""
    assigned = props.get_known("identity.userAssignedIdentities", [])
    primary = props.get("primaryUserAssignedIdentity")
    if "UserAssigned" not in kind:
        yield f"identity.type is {kind!r}; a user-assigned identity is required"
    if not primary:
        yield "primaryUserAssignedIdentity is not set"
    elif primary not in assigned:
        yield f"primaryUserAssignedIdentity {primary} is not one of the workspace's identities"


def workspace_customer_managed_key(resource: Resource, settings: Settings) -> Iterator[str]:
    try:
        tag = tenant_tag(resource)
    except NotConfigured as missing:
        yield str(missing)
        return
    classification = settings[TENANT_CLASSIFICATIONS.name].get(tag)
    if classification is None:
        yield f"belongs to '{tag}', which tenantClassifications does not list"
        return
    if classification not in settings["cmkClassifications"]:
        return
    props = resource.props
    status = props.get("encryption.status")
    key = props.get("encryption.keyVaultProperties.keyIdentifier")
    if status != "Enabled" or not key:
        yield (
            f"'{tag}' holds {classification} data: encryption with a customer-managed key "
            f"is required (encryption.status {status!r}, key {'set' if key else 'missing'})"
        )


def workspace_managed_network(resource: Resource, settings: Settings) -> Iterator[str]:
    props = resource.props
    mode = props.get("managedNetwork.isolationMode")
    if mode != "AllowOnlyApprovedOutbound":
        yield f"managedNetwork.isolationMode is {mode!r}, not 'AllowOnlyApprovedOutbound'"
    approved = set(settings["approvedOutbound"])
    rules = props.get_known("managedNetwork.outboundRules", {})
    for rule_name, rule in sorted(rules.items()):
        destination = _outbound_destination(rule)
        if destination is not None and destination not in approved:
            yield f"outbound rule '{rule_name}' to {destination!r} is not an approved destination"


def _outbound_destination(rule: Mapping[str, Any]) -> str | None:
    """FQDN and service-tag rules leave the network; private endpoint rules do not."""
    kind = rule.get("type")
    destination = rule.get("destination")
    if kind == "FQDN":
        return str(destination)
    if kind == "ServiceTag":
        if isinstance(destination, Mapping):
            return str(destination.get("serviceTag"))
        return str(destination)
    return None


# --- compute ------------------------------------------------------------------------------


def _compute(resource: Resource) -> tuple[str, Any]:
    """(compute type, the type's own properties block)."""
    kind = resource.props.get("properties.computeType") or ""
    return kind, resource.props.get("properties.properties") or {}


def compute_local_auth_disabled(resource: Resource, _: Settings) -> Iterator[str]:
    if resource.props.get("properties.disableLocalAuth") is not True:
        yield "properties.disableLocalAuth must be true (Entra identities only, no keys)"


def compute_scales_to_zero(resource: Resource, _: Settings) -> Iterator[str]:
    kind, _props = _compute(resource)
    if kind != "AmlCompute":
        return
    minimum = number(resource.props.get("properties.properties.scaleSettings.minNodeCount"))
    if minimum != 0:
        shown = "not set" if minimum is None else f"{minimum:g}"
        yield f"scaleSettings.minNodeCount is {shown}; an idle cluster must scale to 0 nodes"


def compute_max_nodes_within_tier(resource: Resource, settings: Settings) -> Iterator[str]:
    kind, _props = _compute(resource)
    if kind != "AmlCompute":
        return
    try:
        tier = tier_of(resource, settings)
    except NotConfigured as missing:
        yield str(missing)
        return
    cap = settings["maxNodes"].get(tier)
    maximum = number(resource.props.get("properties.properties.scaleSettings.maxNodeCount"))
    if maximum is None:
        yield "scaleSettings.maxNodeCount is not set"
    elif cap is None:
        yield f"maxNodes has no cap for tier '{tier}'"
    elif maximum > cap:
        yield f"scaleSettings.maxNodeCount {maximum:g} is above the {tier} tier's cap of {cap}"


def compute_vm_size_allowed(resource: Resource, settings: Settings) -> Iterator[str]:
    kind, _props = _compute(resource)
    if kind not in ("AmlCompute", "ComputeInstance"):
        return
    try:
        tier = tier_of(resource, settings)
    except NotConfigured as missing:
        yield str(missing)
        return
    allowed = settings["vmSizes"].get(tier, [])
    size = resource.props.get("properties.properties.vmSize")
    if size not in allowed:
        yield f"vmSize {size!r} is not allowed in the {tier} tier (allowed: {', '.join(allowed)})"


def compute_instance_idle_shutdown(resource: Resource, settings: Settings) -> Iterator[str]:
    kind, _props = _compute(resource)
    if kind != "ComputeInstance":
        return
    idle = resource.props.get("properties.properties.idleTimeBeforeShutdown")
    seconds = duration_seconds(idle)
    limit = settings["maxIdleMinutes"]
    if seconds is None:
        yield "idleTimeBeforeShutdown is not set: an idle compute instance keeps billing"
    elif seconds > limit * 60:
        yield f"idleTimeBeforeShutdown {idle} is longer than {limit} minutes"


def compute_no_node_public_ip(resource: Resource, _: Settings) -> Iterator[str]:
    kind, _props = _compute(resource)
    if kind not in ("AmlCompute", "ComputeInstance"):
        return
    if resource.props.get("properties.properties.enableNodePublicIp") is not False:
        yield "properties.properties.enableNodePublicIp must be false"


# --- endpoints and deployments ----------------------------------------------------------


def endpoint_auth_mode(resource: Resource, settings: Settings) -> Iterator[str]:
    allowed = settings["allowedAuthModes"]
    mode = resource.props.get("properties.authMode")
    if mode not in allowed:
        yield f"properties.authMode is {mode!r} (allowed: {', '.join(allowed)})"


def endpoint_public_network_disabled(resource: Resource, settings: Settings) -> Iterator[str]:
    try:
        tier = tier_of(resource, settings)
    except NotConfigured as missing:
        yield str(missing)
        return
    if tier not in settings["privateTiers"]:
        return
    access = resource.props.get("properties.publicNetworkAccess")
    if access != "Disabled":
        yield f"properties.publicNetworkAccess is {access!r}; the {tier} tier is private"


def deployment_egress_disabled(resource: Resource, _: Settings) -> Iterator[str]:
    egress = resource.props.get("properties.egressPublicNetworkAccess")
    if egress != "Disabled":
        yield f"properties.egressPublicNetworkAccess is {egress!r}, not 'Disabled'"


def deployment_request_settings(resource: Resource, settings: Settings) -> Iterator[str]:
    props = resource.props
    timeout = props.get("properties.requestSettings.requestTimeout")
    concurrency = number(props.get("properties.requestSettings.maxConcurrentRequestsPerInstance"))
    seconds = duration_seconds(timeout)
    limit_ms = settings["maxRequestTimeoutMs"]
    if seconds is None:
        yield "requestSettings.requestTimeout is not set explicitly"
    elif seconds * 1000 > limit_ms:
        yield f"requestSettings.requestTimeout {timeout} is above {limit_ms} ms"
    if concurrency is None or concurrency < 1:
        yield "requestSettings.maxConcurrentRequestsPerInstance is not set explicitly"


def deployment_probes(resource: Resource, _: Settings) -> Iterator[str]:
    for probe in ("livenessProbe", "readinessProbe"):
        settings = resource.props.get(f"properties.{probe}")
        if not isinstance(settings, Mapping) or not settings:
            yield f"properties.{probe} is not set"


def deployment_min_instances(resource: Resource, settings: Settings) -> Iterator[str]:
    minimum = settings["minInstances"]
    capacity = number(resource.props.get("sku.capacity"))
    if capacity is None or capacity < minimum:
        shown = "not set" if capacity is None else f"{capacity:g}"
        yield f"sku.capacity is {shown}: below {minimum} instances, one failure is an outage"


def deployment_data_collection(resource: Resource, _: Settings) -> Iterator[str]:
    props = resource.props
    if props.get("properties.appInsightsEnabled") is not True:
        yield "properties.appInsightsEnabled is not true: no request telemetry"
    collections = props.get("properties.dataCollector.collections") or {}
    for name in ("model_inputs", "model_outputs"):
        mode = (collections.get(name) or {}).get("dataCollectionMode")
        if mode != "Enabled":
            yield f"dataCollector collection '{name}' is not enabled: drift cannot be computed"


def endpoint_traffic_valid(resource: Resource, _: Settings) -> Iterator[str]:
    traffic = resource.props.get_known("properties.traffic", {})
    values = {name: number(value) for name, value in traffic.items()}
    bad = sorted(name for name, value in values.items() if value is None or not 0 <= value <= 100)
    if bad:
        yield f"traffic of {', '.join(bad)} is not a percentage in 0..100"
        return
    total = sum(v for v in values.values() if v is not None)
    if total not in (0, 100):
        yield f"live traffic sums to {total:g}; it must sum to 0 or 100 ({_shares(values)})"


def endpoint_mirror_traffic(resource: Resource, settings: Settings) -> Iterator[str]:
    props = resource.props
    mirror = props.get_known("properties.mirrorTraffic", {})
    traffic = props.get_known("properties.traffic", {})
    limit = settings["maxMirrorPercent"]
    mirrored = {name: number(v) or 0 for name, v in mirror.items() if number(v) != 0}
    if len(mirrored) > 1:
        yield f"traffic is mirrored to {len(mirrored)} deployments ({_shares(mirrored)}), not one"
    for name, share in sorted(mirrored.items()):
        if share > limit:
            yield f"mirror to '{name}' is {share:g} %, above {limit} %"
        if (number(traffic.get(name)) or 0) > 0:
            yield f"mirror target '{name}' also carries live traffic"


def _shares(values: Mapping[str, float | None]) -> str:
    known = sorted((name, value) for name, value in values.items() if value is not None)
    return ", ".join(f"{name} {value:g}" for name, value in known)


# --- storage, registry, events, API versions ----------------------------------------------


def storage_no_public_blob(resource: Resource, _: Settings) -> Iterator[str]:
    if resource.props.get("allowBlobPublicAccess") is not False:
        yield "allowBlobPublicAccess must be false (set explicitly)"


def registry_admin_disabled(resource: Resource, _: Settings) -> Iterator[str]:
    # Azure's default is off; an explicit true is what this rule exists to stop.
    if resource.props.get("adminUserEnabled") is True:
        yield "adminUserEnabled is true: the registry would accept a shared admin password"


def event_subscription_dead_letter(resource: Resource, _: Settings) -> Iterator[str]:
    props = resource.props
    plain = props.get("deadLetterDestination")
    with_identity = props.get("deadLetterWithResourceIdentity.deadLetterDestination")
    if not plain and not with_identity:
        yield "no dead-letter destination: undeliverable events would be dropped"


_PREVIEW = re.compile(r"^azure-native:machinelearningservices/v\d{8}preview:")


def ml_no_preview_api(resource: Resource, _: Settings) -> Iterator[str]:
    if _PREVIEW.match(resource.type):
        version = resource.type.split(":")[1].split("/")[1]
        yield f"pins the preview API version {version}; use the provider's default version"


def canary_steps(resource: Resource, _: Settings) -> Iterator[str]:
    """The automation reads its rollout policy from the spec in its app settings."""
    settings = resource.props.get_known("siteConfig.appSettings", [])
    document = next(
        (s.get("value") for s in settings if s.get("name") == contracts.SETTING_PLATFORM_SPEC),
        None,
    )
    if document is None:
        return
    try:
        spec = json.loads(document)
    except (TypeError, json.JSONDecodeError):
        yield f"app setting {contracts.SETTING_PLATFORM_SPEC} is not valid JSON"
        return
    policies = [("rollout", spec.get("rollout") or {})]
    policies += [
        (f"tenants[{t.get('id')}].rollout", t["rollout"])
        for t in spec.get("tenants") or []
        if t.get("rollout")
    ]
    for where, policy in policies:
        yield from _steps_problems(where, policy.get("steps") or [])


def _steps_problems(where: str, steps: list[Any]) -> Iterator[str]:
    if not steps:
        yield f"{where}.steps is empty"
        return
    if any(not isinstance(s, int | float) or not 0 < s <= 100 for s in steps):
        yield f"{where}.steps {steps} holds a value outside 1..100"
    elif any(b <= a for a, b in pairwise(steps)):
        yield f"{where}.steps {steps} are not strictly increasing"
    elif steps[-1] != 100:
        yield f"{where}.steps {steps} do not end at 100"


# --- the catalogue entries ---------------------------------------------------------------


def _tier_caps(spec: PlatformSpec | None = None) -> dict[str, int]:
    tiers = spec.tiers if spec else Tiers()
    return {tier: tiers.profile(tier).max_nodes_cap for tier in TIERS}


def _tier_sizes(spec: PlatformSpec | None = None) -> dict[str, list[str]]:
    """Clusters use the tier's GPU sizes; compute instances, its serving sizes too."""
    tiers = spec.tiers if spec else Tiers()
    return {
        tier: [*tiers.profile(tier).allowed_gpu_skus, *tiers.profile(tier).allowed_instance_types]
        for tier in TIERS
    }


RULES: tuple[Rule, ...] = (
    Rule(
        "workspace-public-network-disabled",
        "Azure ML workspaces are not reachable from the public internet.",
        "A workspace holds a tenant's data, models and secrets; in prod it is reached only "
        "through private endpoints.",
        PROD_MANDATORY,
        resource_types=(WORKSPACE,),
        check=workspace_public_network_disabled,
    ),
    Rule(
        "workspace-user-assigned-identity",
        "Workspaces run as a user-assigned identity, set as their primary identity.",
        "A user-assigned identity exists before the workspace, so its roles on the stamp's "
        "storage, vault and registry are granted first and survive a workspace rebuild.",
        MANDATORY,
        resource_types=(WORKSPACE,),
        check=workspace_user_assigned_identity,
    ),
    Rule(
        "workspace-customer-managed-key",
        "Workspaces of tenants whose data classification requires it use a customer-managed key.",
        "Restricted data must be encrypted with a key the tenant's own vault holds and can revoke.",
        MANDATORY,
        settings=(
            TENANT_CLASSIFICATIONS,
            Setting(
                "cmkClassifications",
                list[str],
                "data classifications that require a customer-managed key",
                ["restricted"],
            ),
        ),
        resource_types=(WORKSPACE,),
        check=workspace_customer_managed_key,
    ),
    Rule(
        "workspace-managed-network",
        "Workspaces use managed network isolation that allows only approved outbound traffic.",
        "Exfiltration from training jobs and deployments is blocked unless a destination is "
        "approved for the environment.",
        PROD_ONLY,
        settings=(
            Setting(
                "approvedOutbound",
                list[str],
                "FQDNs and service tags outbound rules may reach",
                [],
                lambda spec: list(spec.networking.approved_outbound),
            ),
        ),
        resource_types=(WORKSPACE,),
        check=workspace_managed_network,
    ),
    Rule(
        "compute-local-auth-disabled",
        "Compute accepts Entra identities only (local auth disabled).",
        "Local accounts and keys bypass RBAC and cannot be attributed to a person.",
        MANDATORY,
        resource_types=(COMPUTE,),
        check=compute_local_auth_disabled,
    ),
    Rule(
        "compute-scales-to-zero",
        "Compute clusters scale to 0 nodes when idle.",
        "A GPU node left running costs more in a day than most tenants' models earn.",
        MANDATORY,
        resource_types=(COMPUTE,),
        check=compute_scales_to_zero,
    ),
    Rule(
        "compute-max-nodes-within-tier",
        "Compute clusters stay within their tier's node cap.",
        "The cap bounds what one tenant (or pool) can spend and take from the regional quota.",
        MANDATORY,
        settings=(
            TENANT_TIERS,
            Setting("maxNodes", dict[str, int], "node cap per tier", _tier_caps(), _tier_caps),
        ),
        resource_types=(COMPUTE,),
        check=compute_max_nodes_within_tier,
    ),
    Rule(
        "compute-vm-size-allowed",
        "Compute uses a VM size allowed for its tier.",
        "There is no Azure built-in policy for ML compute sizes; the tier decides which GPUs "
        "a tenant may use.",
        MANDATORY,
        settings=(
            TENANT_TIERS,
            Setting(
                "vmSizes",
                dict[str, list[str]],
                "allowed VM sizes per tier",
                _tier_sizes(),
                _tier_sizes,
            ),
        ),
        resource_types=(COMPUTE,),
        check=compute_vm_size_allowed,
    ),
    Rule(
        "compute-instance-idle-shutdown",
        "Compute instances shut down when idle.",
        "Forgotten notebooks are the most common source of idle GPU cost.",
        MANDATORY,
        settings=(Setting("maxIdleMinutes", int, "longest idle time before shutdown", 60),),
        resource_types=(COMPUTE,),
        check=compute_instance_idle_shutdown,
    ),
    Rule(
        "compute-no-node-public-ip",
        "Compute nodes have no public IP address.",
        "Nodes with public addresses are reachable from the internet and bypass the "
        "workspace's network isolation.",
        PROD_ONLY,
        resource_types=(COMPUTE,),
        check=compute_no_node_public_ip,
    ),
    Rule(
        "endpoint-auth-mode",
        "Online and batch endpoints use an allowed authentication mode.",
        "Endpoint keys cannot be scoped or attributed; tenants hold gateway keys, the "
        "gateway calls endpoints with its Entra identity.",
        MANDATORY,
        settings=(
            Setting(
                "allowedAuthModes",
                list[str],
                "authentication modes endpoints may use",
                ["AADToken"],
            ),
        ),
        resource_types=(ONLINE_ENDPOINT, BATCH_ENDPOINT),
        check=endpoint_auth_mode,
    ),
    Rule(
        "endpoint-public-network-disabled",
        "Online endpoints of private tiers are not reachable from the public internet.",
        "A private tier promises its tenants that scoring traffic never leaves the network.",
        MANDATORY,
        settings=(TENANT_TIERS, private_tiers("endpoints")),
        resource_types=(ONLINE_ENDPOINT,),
        check=endpoint_public_network_disabled,
    ),
    Rule(
        "deployment-egress-disabled",
        "Online deployments have public egress disabled.",
        "A model container that can reach the internet can leak what it scores.",
        PROD_ONLY,
        resource_types=(ONLINE_DEPLOYMENT,),
        check=deployment_egress_disabled,
    ),
    Rule(
        "deployment-request-settings",
        "Online deployments set an explicit request timeout and maximum concurrency.",
        "Without them a slow model queues requests until every caller times out.",
        MANDATORY,
        settings=(
            Setting(
                "maxRequestTimeoutMs",
                int,
                "longest request timeout allowed",
                180_000,
            ),
        ),
        resource_types=(ONLINE_DEPLOYMENT,),
        check=deployment_request_settings,
    ),
    Rule(
        "deployment-probes",
        "Online deployments define liveness and readiness probes.",
        "Probes keep a broken instance out of rotation and restart a hung one.",
        MANDATORY,
        resource_types=(ONLINE_DEPLOYMENT,),
        check=deployment_probes,
    ),
    Rule(
        "deployment-min-instances",
        "Online deployments run at least the minimum number of instances.",
        "One instance means every update or node failure is an outage.",
        PROD_MANDATORY,
        settings=(Setting("minInstances", int, "minimum instance count", 2),),
        resource_types=(ONLINE_DEPLOYMENT,),
        check=deployment_min_instances,
    ),
    Rule(
        "endpoint-traffic-valid",
        "Live traffic of an online endpoint sums to 0 or 100.",
        "Any other sum is rejected by Azure ML or drops requests.",
        MANDATORY,
        resource_types=(ONLINE_ENDPOINT,),
        check=endpoint_traffic_valid,
    ),
    Rule(
        "endpoint-mirror-traffic",
        "Mirrored traffic goes to at most one deployment, within the limit, and that "
        "deployment carries no live traffic.",
        "Azure ML mirrors at most 50 % to one deployment; mirroring to a live deployment "
        "doubles its load and its answers are discarded.",
        MANDATORY,
        settings=(
            Setting(
                "maxMirrorPercent",
                int,
                "largest share of traffic that may be mirrored",
                50,
            ),
        ),
        resource_types=(ONLINE_ENDPOINT,),
        check=endpoint_mirror_traffic,
    ),
    Rule(
        "deployment-data-collection",
        "Online deployments send telemetry to Application Insights and collect model "
        "inputs and outputs.",
        "Drift monitoring and rollout analysis read exactly these data.",
        ADVISORY,
        resource_types=(ONLINE_DEPLOYMENT,),
        check=deployment_data_collection,
    ),
    Rule(
        "event-subscription-dead-letter",
        "Every Event Grid subscription has a dead-letter destination.",
        "An event the automation cannot take is kept for inspection and replay, not lost.",
        MANDATORY,
        resource_types=EVENT_SUBSCRIPTIONS,
        check=event_subscription_dead_letter,
    ),
    Rule(
        "storage-no-public-blob",
        "Storage accounts do not allow public blob access.",
        "One public container exposes a tenant's data to anyone with the URL.",
        MANDATORY,
        resource_types=(STORAGE_ACCOUNT,),
        check=storage_no_public_blob,
    ),
    Rule(
        "registry-admin-disabled",
        "Container registries have the admin user disabled.",
        "The admin user is a shared password with push rights to every image.",
        MANDATORY,
        resource_types=(CONTAINER_REGISTRY,),
        check=registry_admin_disabled,
    ),
    Rule(
        "ml-no-preview-api",
        "Azure ML resources do not pin a preview API version.",
        "Preview API versions change shape without notice and are retired.",
        MANDATORY,
        check=ml_no_preview_api,
    ),
    Rule(
        "canary-steps",
        "Rollout steps the automation runs are strictly increasing and end at 100.",
        "A rollout that never reaches 100 % or goes backwards never finishes or undoes itself.",
        MANDATORY,
        resource_types=(FUNCTION_APP,),
        check=canary_steps,
    ),
)
