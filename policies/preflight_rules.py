"""Preflight rules: what Azure would refuse although the plan is well typed.

Mocks accept any well-typed input, so `mlops plan` passed plans that `pulumi up` could not
apply (the review of 72c5684, ``../shared/reviews/azure-deployment.md``). Each rule here
stands for one class of refusal and says, beside its check, which Microsoft document states
the rule it enforces:

- ``time-bound-inputs``: budget periods and role eligibility schedules valid *now*;
- ``creation-order``: no input names a resource that is created after it;
- ``authentication-coherence``: no key-based client of an account or component whose keys
  are off;
- ``network-prerequisites``: what a private network needs before anything runs in it;
- ``identity-permissions`` (:mod:`policies.permission_rules`): every action an identity
  performs is granted by a role the plan assigns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from policies.core import (
    MANDATORY,
    ML,
    Finding,
    Resource,
    Rule,
    Setting,
    Settings,
    Stack,
)
from policies.resource_rules import duration_seconds
from tenancy import contracts

BUDGET = "azure-native:consumption:Budget"
PIM_ELIGIBILITY = "azure-native:authorization:PimRoleEligibilitySchedule"

# --- time-bound inputs ----------------------------------------------------------------------

#: Azure's BudgetTimePeriod: "The start date must be first of the month ... Budget start date
#: must be on or after June 1, 2017. Future start date should not be more than twelve months.
#: Past start date should be selected within the timegrain period."
#: https://learn.microsoft.com/rest/api/consumption/budgets/create-or-update#budgettimeperiod
EARLIEST_BUDGET_START = date(2017, 6, 1)
GRAIN_MONTHS = {"Monthly": 1, "Quarterly": 3, "Annually": 12}


def as_of(settings: Settings) -> date:
    """The day the rules judge time against: the setting, else today (UTC)."""
    given = settings.get("asOf") or ""
    return date.fromisoformat(given) if given else datetime.now(UTC).date()


def _months_between(earlier: date, later: date) -> int:
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _budget_problems(resource: Resource, today: date) -> Iterator[str]:
    props = resource.props
    raw_start = props.get("timePeriod.startDate")
    start = _timestamp(raw_start)
    if start is None:
        yield f"timePeriod.startDate {raw_start!r} is not a date"
        return
    day = start.date()
    if day.day != 1 or start.time() != datetime.min.time():
        yield f"timePeriod.startDate {raw_start} is not the first of a month at 00:00"
    if day < EARLIEST_BUDGET_START:
        yield f"timePeriod.startDate {day} is before {EARLIEST_BUDGET_START}"
    ahead = _months_between(today, day)
    if ahead > 12:
        yield f"timePeriod.startDate {day} is more than twelve months after {today}"
    grain = props.get("timeGrain") or "Monthly"
    period = GRAIN_MONTHS.get(grain, 1)
    # A start kept from the state (ignored on update) is the creation date Azure holds and
    # never changes; only a start the program sends for creation must lie in this period.
    if -ahead >= period and "timePeriod" not in resource.ignored:
        yield (
            f"timePeriod.startDate {day} lies before the current {grain.lower()} period of "
            f"{today}: Azure accepts a past start only within the time grain"
        )
    end = _timestamp(props.get("timePeriod.endDate"))
    if end is not None and end <= start:
        yield f"timePeriod.endDate {end.date()} is not after the start {day}"


def _eligibility_problems(resource: Resource, today: date) -> Iterator[str]:
    """A role eligibility schedule request must still be valid when it is made: an end in
    the past, or before the start, is refused.
    https://learn.microsoft.com/rest/api/authorization/role-eligibility-schedule-requests/create"""
    info = resource.props.get_known("scheduleInfo", {}) or {}
    start = _timestamp(info.get("startDateTime"))
    expiration = info.get("expiration") or {}
    kind = expiration.get("type")
    if kind == "AfterDateTime":
        end = _timestamp(expiration.get("endDateTime"))
        if end is None:
            yield "scheduleInfo.expiration.endDateTime is not a date"
        elif end.date() <= today:
            yield f"eligibility ends on {end.date()}, not after {today}"
        elif start is not None and end <= start:
            yield f"eligibility ends on {end.date()}, before it starts on {start.date()}"
    elif kind == "AfterDuration":
        duration = expiration.get("duration")
        if not duration_seconds(duration):
            yield f"scheduleInfo.expiration.duration {duration!r} is not a duration"


def time_bound_inputs(resource: Resource, settings: Settings) -> Iterator[str]:
    today = as_of(settings)
    if resource.type == BUDGET:
        yield from _budget_problems(resource, today)
    elif resource.type == PIM_ELIGIBILITY:
        yield from _eligibility_problems(resource, today)


AS_OF = Setting(
    "asOf",
    str,
    "the date (YYYY-MM-DD) time-bound inputs are judged at; empty: today, UTC",
    "",
)

# --- network prerequisites -----------------------------------------------------------------

APIM = "azure-native:apimanagement:ApiManagementService"
SUBNET = "azure-native:network:Subnet"
NSG = "azure-native:network:NetworkSecurityGroup"
WORKSPACE = f"{ML}:Workspace"
REGISTRY = f"{ML}:Registry"
ONLINE_DEPLOYMENT = f"{ML}:OnlineDeployment"
BATCH_DEPLOYMENT = f"{ML}:BatchDeployment"
BATCH_ENDPOINT = f"{ML}:BatchEndpoint"
STORAGE = "azure-native:storage:StorageAccount"
EVENT_SUBSCRIPTION = "azure-native:eventgrid:SystemTopicEventSubscription"

#: Inbound rules API Management's own traffic needs on its subnet (the management endpoint
#: and the infrastructure load balancer): https://learn.microsoft.com/azure/api-management/
#: virtual-network-reference#required-ports
APIM_INBOUND: tuple[tuple[str, str], ...] = (
    ("3443", "ApiManagement"),
    ("6390", "AzureLoadBalancer"),
)


def _allows_inbound(nsg: Resource, port: str, source: str) -> bool:
    for rule in nsg.props.raw.get("securityRules") or []:
        if not isinstance(rule, Mapping) or rule.get("direction") != "Inbound":
            continue
        ports = [rule.get("destinationPortRange"), *(rule.get("destinationPortRanges") or [])]
        sources = [rule.get("sourceAddressPrefix"), *(rule.get("sourceAddressPrefixes") or [])]
        if rule.get("access") == "Allow" and port in ports and source in sources:
            return True
    return False


def _gateway_subnet_problems(stack: Stack) -> Iterator[Finding]:
    for service in stack.of_type(APIM):
        for subnet in stack.deps(service, "virtualNetworkConfiguration", SUBNET):
            groups = stack.deps(subnet, "networkSecurityGroup", NSG)
            if not groups:
                yield Finding(
                    f"API Management '{service.name}' is injected into subnet '{subnet.name}', "
                    "which has no network security group (required: https://learn.microsoft."
                    "com/azure/api-management/virtual-network-injection-resources)",
                    subnet.urn,
                )
                continue
            missing = [
                f"{port} from {source}"
                for port, source in APIM_INBOUND
                if not any(_allows_inbound(nsg, port, source) for nsg in groups)
            ]
            if missing:
                yield Finding(
                    f"the network security group of '{subnet.name}' does not allow inbound "
                    f"{', '.join(missing)}, which API Management needs",
                    groups[0].urn,
                )


def _in_workspace(stack: Stack, workspace: Resource, type_token: str) -> list[Resource]:
    return [
        r
        for r in stack.of_type(type_token)
        if workspace.urn in r.property_dependencies.get("workspaceName", frozenset())
    ]


def _private_endpoint_rules(workspace: Resource) -> list[Mapping[str, Any]]:
    rules = (workspace.props.raw.get("managedNetwork") or {}).get("outboundRules") or {}
    return [
        rule.get("destination") or {}
        for rule in rules.values()
        if isinstance(rule, Mapping) and rule.get("type") == "PrivateEndpoint"
    ]


def _has_rule(stack: Stack, workspace: Resource, target: Resource, subresource: str) -> bool:
    """A private endpoint rule to ``subresource`` of a target the network settings name."""
    named = workspace.property_dependencies.get("managedNetwork", frozenset())
    return target.urn in named and any(
        rule.get("subresourceTarget") == subresource for rule in _private_endpoint_rules(workspace)
    )


def _private_registries(stack: Stack, deployments: list[Resource]) -> dict[str, Resource]:
    registries: dict[str, Resource] = {}
    for deployment in deployments:
        for registry in stack.deps(deployment, "properties", REGISTRY):
            if registry.props.raw.get("publicNetworkAccess") == "Disabled":
                registries[registry.urn] = registry
    return registries


def _managed_network_problems(stack: Stack) -> Iterator[Finding]:
    """https://learn.microsoft.com/azure/machine-learning/how-to-managed-network: "To create
    an online deployment, you must manually provision the managed network"; private
    endpoints are made automatically only to the workspace's own storage, vault and
    registry; batch endpoints need rules to the default storage's queues and tables."""
    for workspace in stack.of_type(WORKSPACE):
        mode = (workspace.props.raw.get("managedNetwork") or {}).get("isolationMode")
        if mode not in ("AllowOnlyApprovedOutbound", "AllowInternetOutbound"):
            continue
        problems = []
        online = _in_workspace(stack, workspace, ONLINE_DEPLOYMENT)
        batch = _in_workspace(stack, workspace, BATCH_DEPLOYMENT)
        if online and workspace.props.raw.get("provisionNetworkNow") is not True:
            problems.append("its managed network is not provisioned before its online deployments")
        for registry in _private_registries(stack, online + batch).values():
            if not _has_rule(stack, workspace, registry, "amlregistry"):
                problems.append(
                    f"no private endpoint rule to the private registry '{registry.name}'"
                )
        if _in_workspace(stack, workspace, BATCH_ENDPOINT):
            for storage in stack.deps(workspace, "storageAccount", STORAGE):
                for sub in ("queue", "table"):
                    if not _has_rule(stack, workspace, storage, sub):
                        problems.append(
                            f"no private endpoint rule to {sub}s of '{storage.name}' "
                            "(batch endpoints)"
                        )
        if problems:
            yield Finding(f"workspace '{workspace.name}': {'; '.join(problems)}", workspace.urn)


def _dead_letter_problems(stack: Stack) -> Iterator[Finding]:
    """Event Grid reaches a storage firewall only as a trusted service, which applies to
    "Enabled from selected networks" with the AzureServices bypass, never to "Disabled".
    https://learn.microsoft.com/azure/storage/common/storage-network-security#grant-access-to-trusted-azure-services"""
    reported: set[str] = set()
    for subscription in stack.of_type(EVENT_SUBSCRIPTION):
        for account in stack.deps(subscription, "deadLetterWithResourceIdentity", STORAGE):
            props = account.props.raw
            rules = props.get("networkRuleSet") or {}
            if account.urn in reported:
                continue
            if props.get("publicNetworkAccess") == "Disabled":
                problem = "has public network access Disabled, which no trusted service passes"
            elif rules.get("defaultAction") == "Deny" and "AzureServices" not in str(
                rules.get("bypass") or ""
            ):
                problem = "denies by default without the AzureServices bypass"
            else:
                continue
            reported.add(account.urn)
            yield Finding(
                f"Event Grid cannot write dead letters to '{account.name}': the account {problem}",
                account.urn,
            )


def network_prerequisites(stack: Stack, _: Settings) -> Iterator[Finding]:
    yield from _gateway_subnet_problems(stack)
    yield from _managed_network_problems(stack)
    yield from _dead_letter_problems(stack)


# --- creation order --------------------------------------------------------------------------

ONLINE_ENDPOINT = f"{ML}:OnlineEndpoint"
WEB_APP = "azure-native:web:WebApp"
BLOB = "azure-native:storage:Blob"
APP_INSIGHTS = "azure-native:applicationinsights:Component"


def _children(stack: Stack, parent: Resource, type_token: str, link: str) -> list[Resource]:
    return [
        r
        for r in stack.of_type(type_token)
        if parent.urn in r.property_dependencies.get(link, frozenset())
    ]


def _deployment_named(deployments: list[Resource], name: str) -> Resource | None:
    return next((d for d in deployments if d.props.raw.get("deploymentName") == name), None)


def _named_deployments(stack: Stack) -> Iterator[tuple[Resource, str, str, list[Resource]]]:
    """(endpoint, input, deployment name, the endpoint's deployments) for every deployment
    an endpoint's own inputs name."""
    for endpoint in stack.of_type(ONLINE_ENDPOINT):
        deployments = _children(stack, endpoint, ONLINE_DEPLOYMENT, "endpointName")
        properties = endpoint.props.raw.get("properties") or {}
        for key in ("traffic", "mirrorTraffic"):
            for name in sorted(properties.get(key) or {}):
                yield endpoint, f"properties.{key}", name, deployments
    for endpoint in stack.of_type(BATCH_ENDPOINT):
        deployments = _children(stack, endpoint, BATCH_DEPLOYMENT, "endpointName")
        name = ((endpoint.props.raw.get("properties") or {}).get("defaults") or {}).get(
            "deploymentName"
        )
        if isinstance(name, str):
            yield endpoint, "properties.defaults.deploymentName", name, deployments


def _endpoint_order_problems(stack: Stack) -> Iterator[Finding]:
    """An endpoint's traffic and a batch endpoint's default may name only deployments that
    exist: a deployment is created under its endpoint, so never before it. Azure ML's own
    samples create the endpoint, then the deployment, then set traffic
    (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-online-endpoints)."""
    problems: dict[str, tuple[Resource, list[str]]] = {}
    for endpoint, where, name, deployments in _named_deployments(stack):
        named = _deployment_named(deployments, name)
        when = "is created after it" if named else "the plan does not create"
        problem = f"the deployment '{name}' in .{where}, which {when}"
        problems.setdefault(endpoint.urn, (endpoint, []))[1].append(problem)
    for endpoint, found in problems.values():
        yield Finding(f"'{endpoint.name}' names {'; '.join(found)}", endpoint.urn)


def _batch_default_problems(stack: Stack) -> Iterator[Finding]:
    for setter in stack.resources:
        if setter.props.raw.get("kind") != contracts.KIND_BATCH_DEFAULT:
            continue
        name = setter.props.raw.get("deploymentName")
        for endpoint in stack.deps(setter, "endpointId", BATCH_ENDPOINT):
            deployments = _children(stack, endpoint, BATCH_DEPLOYMENT, "endpointName")
            named = _deployment_named(deployments, str(name))
            if named is None or not stack.waits_for(setter, named.urn):
                yield Finding(
                    f"'{setter.name}' makes '{name}' the default of '{endpoint.name}' without "
                    "waiting for that deployment to exist",
                    setter.urn,
                )


def _uploads_for(stack: Stack, app: Resource) -> list[Resource]:
    """The package uploads into the storage the app deploys its code from."""
    accounts = {a.urn for a in stack.deps(app, "functionAppConfig", STORAGE)}
    return [
        r
        for r in stack.resources
        if r.props.raw.get("kind") == contracts.KIND_PACKAGE_UPLOAD
        and accounts & set(r.property_dependencies.get("accountName", frozenset()))
    ]


def _function_destination_problems(stack: Stack) -> Iterator[Finding]:
    """An Event Grid subscription to a function is validated against the function, which
    exists once the app's code is deployed and indexed
    (https://learn.microsoft.com/azure/event-grid/handler-functions; before that Azure
    answers "Destination endpoint not found": https://github.com/Azure/bicep/issues/11656)."""
    for subscription in stack.of_type(EVENT_SUBSCRIPTION):
        destination = subscription.props.raw.get("destination") or {}
        if destination.get("endpointType") != "AzureFunction":
            continue
        for app in stack.deps(subscription, "destination", WEB_APP):
            uploads = _uploads_for(stack, app)
            if not uploads or not any(stack.waits_for(subscription, u.urn) for u in uploads):
                yield Finding(
                    f"'{subscription.name}' delivers to a function of '{app.name}' without "
                    "waiting for the app's code package, which creates that function",
                    subscription.urn,
                )


def creation_order(stack: Stack, _: Settings) -> Iterator[Finding]:
    yield from _endpoint_order_problems(stack)
    yield from _batch_default_problems(stack)
    yield from _function_destination_problems(stack)


# --- authentication coherence ------------------------------------------------------------------


def _keys_off(account: Resource) -> bool:
    return account.props.raw.get("allowSharedKeyAccess") is False


def _app_settings(app: Resource) -> dict[str, str]:
    settings = (app.props.raw.get("siteConfig") or {}).get("appSettings") or []
    found: dict[str, str] = {}
    for setting in settings:
        if isinstance(setting, Mapping):
            value = setting.get("value")
            found[str(setting.get("name"))] = value if isinstance(value, str) else ""
    return found


def _storage_key_problems(stack: Stack) -> Iterator[Finding]:
    """Accounts with ``allowSharedKeyAccess: false`` refuse every request authorized with the
    account key (KeyBasedAuthenticationNotPermitted):
    https://learn.microsoft.com/azure/storage/common/shared-key-authorization-prevent"""
    for blob in stack.of_type(BLOB):
        # azure-native's Blob signs with the account key it lists (provider source,
        # custom_storage_azidentity.go: blockblob.NewClientWithSharedKeyCredential).
        for account in stack.deps(blob, "accountName", STORAGE):
            if _keys_off(account):
                yield Finding(
                    f"'{blob.name}' is uploaded with the account key of '{account.name}', "
                    "whose shared keys are off",
                    blob.urn,
                )
    for app in stack.of_type(WEB_APP):
        settings = _app_settings(app)
        keyed = sorted(name for name, value in settings.items() if "AccountKey=" in value)
        accounts = [a for a in stack.deps(app, "siteConfig", STORAGE) if _keys_off(a)]
        if keyed and accounts:
            yield Finding(
                f"'{app.name}' connects with an account key ({', '.join(keyed)}) while "
                f"'{accounts[0].name}' has shared keys off",
                app.urn,
            )
        deployment = (app.props.raw.get("functionAppConfig") or {}).get("deployment") or {}
        auth = ((deployment.get("storage") or {}).get("authentication") or {}).get("type")
        deploy_accounts = [a for a in stack.deps(app, "functionAppConfig", STORAGE) if _keys_off(a)]
        if auth == "StorageAccountConnectionString" and deploy_accounts:
            yield Finding(
                f"'{app.name}' reads its package with a connection string while "
                f"'{deploy_accounts[0].name}' has shared keys off",
                app.urn,
            )


def _datastore_problems(stack: Stack) -> Iterator[Finding]:
    """A workspace whose storage refuses keys must reach its system datastores with its
    identity (``systemDatastoresAuthMode``, enum value ``Identity``):
    https://learn.microsoft.com/azure/machine-learning/how-to-disable-local-auth-storage"""
    for workspace in stack.of_type(WORKSPACE):
        accounts = [a for a in stack.deps(workspace, "storageAccount", STORAGE) if _keys_off(a)]
        mode = workspace.props.raw.get("systemDatastoresAuthMode")
        if accounts and mode != "Identity":
            yield Finding(
                f"'{workspace.name}' has systemDatastoresAuthMode {mode!r}, but "
                f"'{accounts[0].name}' has shared keys off: it must be 'Identity'",
                workspace.urn,
            )


def _telemetry_problems(stack: Stack) -> Iterator[Finding]:
    """A component with local authentication off accepts telemetry only with Entra tokens:
    the app must send ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` with
    ``Authorization=AAD`` (https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication)."""
    for app in stack.of_type(WEB_APP):
        settings = _app_settings(app)
        if not settings.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
            continue
        for component in stack.deps(app, "siteConfig", APP_INSIGHTS):
            entra = "Authorization=AAD" in settings.get(
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""
            )
            if component.props.raw.get("disableLocalAuth") is True and not entra:
                yield Finding(
                    f"'{app.name}' sends telemetry with the instrumentation key to "
                    f"'{component.name}', whose local authentication is off",
                    app.urn,
                )


def authentication_coherence(stack: Stack, _: Settings) -> Iterator[Finding]:
    yield from _storage_key_problems(stack)
    yield from _datastore_problems(stack)
    yield from _telemetry_problems(stack)


RULES: tuple[Rule, ...] = (
    Rule(
        "time-bound-inputs",
        "Budget periods and role eligibility schedules are valid on the day they are sent.",
        "Azure refuses a budget whose start lies before the current period or more than a "
        "year ahead, and a schedule that has already ended; a fixed date in the code becomes "
        "such a refusal when the month turns.",
        MANDATORY,
        settings=(AS_OF,),
        resource_types=(BUDGET, PIM_ELIGIBILITY),
        check=time_bound_inputs,
    ),
    Rule(
        "network-prerequisites",
        "What a private network needs before anything runs in it: an NSG with API "
        "Management's ports on its subnet, managed-network rules for every private "
        "dependency and provisioning before deployments, a dead-letter account Event Grid "
        "can pass.",
        "Each is refused or silently broken only once deployed: API Management's load "
        "balancer rejects all inbound traffic without an NSG, a deployment cannot start in an "
        "unprovisioned network or reach a private registry, dead letters are lost.",
        MANDATORY,
        stack_check=network_prerequisites,
    ),
    Rule(
        "creation-order",
        "No input names a resource that is created after it: endpoint traffic and batch "
        "defaults name existing deployments, function subscriptions wait for the code.",
        "Azure refuses a reference to what does not exist yet; the engine orders only what "
        "an input is computed from, not what it names.",
        MANDATORY,
        stack_check=creation_order,
    ),
    Rule(
        "authentication-coherence",
        "No key-based client of an account whose shared keys are off, and no key-based "
        "client of a component whose local authentication is off.",
        "Such requests are refused (KeyBasedAuthenticationNotPermitted, telemetry dropped) "
        "only when they are made.",
        MANDATORY,
        stack_check=authentication_coherence,
    ),
)
