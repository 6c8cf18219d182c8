"""Run the Pulumi program with no CLI and no cloud, and record what it would create.

The mocks answer as Azure would in the ways the program depends on: ARM-shaped resource ids
(so references between resources can be traced to the resource and tenant they point at),
identities with principal ids, endpoints with scoring URIs. Each registration is recorded
with its URN and parent, which is how a resource is attributed to a tenant: the nearest
component that carries a ``tenantId`` (a dedicated stamp, a pooled tenant's part of a pool,
a tenant's gateway route).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor, MockResourceArgs
from pulumi.runtime.settings import get_root_resource, reset_options
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from tenancy.load import PROJECT

SUBSCRIPTION_ID = "00000000-0000-4000-8000-00000000c0de"
ENTRA_TENANT_ID = "00000000-0000-4000-8000-0000000000e1"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
#: A self-managed backend's organization (what stack references name offline).
ORGANIZATION = "organization"

#: Inputs that hold a resource's physical name, in the order they are looked for.
_NAME_KEYS = (
    # A child's own name first: its parents' names are inputs too.
    "raiBlocklistItemName",
    "raiBlocklistName",
    "raiPolicyName",
    "roleAssignmentName",
    "computeName",
    "deploymentName",
    "endpointName",
    "eventSubscriptionName",
    "systemTopicName",
    "workspaceName",
    "accountName",
    "vaultName",
    "registryName",
    "serviceName",
    "actionGroupName",
    "ruleName",
    "budgetName",
    "privateEndpointName",
    "privateZoneName",
    "virtualNetworkLinkName",
    "privateDnsZoneGroupName",
    "subnetName",
    "networkSecurityGroupName",
    "virtualNetworkName",
    "containerName",
    "tableName",
    "keyName",
    "blobName",
    "productId",
    "sid",
    "apiId",
    "backendId",
    "resourceName",
    "name",
    "resourceGroupName",
)


@dataclass
class RecordedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    state: dict[str, Any]
    # Input property -> URNs of the resources its value was computed from (as the engine
    # gives a policy pack), so references can be followed without resolving ids.
    property_dependencies: dict[str, frozenset[str]] = field(default_factory=dict)
    # Every resource the engine creates before this one (property dependencies and
    # `depends_on`), and the inputs under `ignore_changes`, as the program registered them.
    dependencies: frozenset[str] = frozenset()
    ignore_changes: tuple[str, ...] = ()
    id: str = ""  # the Azure resource id the mocks gave it (what Azure would)


def _provider_namespace(type_token: str) -> tuple[str, str]:
    """``azure-native:machinelearningservices:OnlineEndpoint`` ->
    (``Microsoft.MachineLearningServices``, ``onlineEndpoints``)."""
    _, module, kind = type_token.split(":")
    namespaces = {
        "machinelearningservices": "Microsoft.MachineLearningServices",
        "managedidentity": "Microsoft.ManagedIdentity",
        "operationalinsights": "Microsoft.OperationalInsights",
        "applicationinsights": "Microsoft.Insights",
        "monitor": "Microsoft.Insights",
        "keyvault": "Microsoft.KeyVault",
        "storage": "Microsoft.Storage",
        "containerregistry": "Microsoft.ContainerRegistry",
        "eventgrid": "Microsoft.EventGrid",
        "apimanagement": "Microsoft.ApiManagement",
        "web": "Microsoft.Web",
        "network": "Microsoft.Network",
        "privatedns": "Microsoft.Network",
        "consumption": "Microsoft.Consumption",
        "authorization": "Microsoft.Authorization",
        "cognitiveservices": "Microsoft.CognitiveServices",
    }
    plural = kind[0].lower() + kind[1:] + "s"
    return namespaces.get(module, f"Microsoft.{module.capitalize()}"), plural


class AzureMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and invokes the way Azure would, deterministically."""

    def __init__(self, references: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}
        # What a StackReference reads: each referenced stack's outputs, by its full name.
        self.references = dict(references or {})

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        if args.typ == STACK_REFERENCE:
            return self._stack_reference(str(args.resource_id or inputs.get("name")))
        self.inputs[(args.typ, args.name)] = inputs
        if args.typ == RANDOM_PASSWORD:
            # A fixed stand-in: what matters offline is that the value is a secret's.
            return f"{args.name}-id", {**inputs, "result": "offline-" + "0" * 40}
        if not args.typ.startswith("azure-native:"):
            return None, inputs  # components keep their properties, and have no id
        physical = self._physical_name(args)
        resource_id = self._resource_id(args.typ, physical, inputs)
        state = {**inputs, "name": physical, **self._outputs(args.typ, physical, inputs)}
        if isinstance(state.get("identity"), Mapping):
            state["identity"] = self._identity_output(state["identity"])
        return resource_id, state

    def _stack_reference(self, name: str) -> tuple[str, dict[str, Any]]:
        """A referenced stack's outputs, as the engine reads them; a stack not planned yet
        has none (``require_output`` then names what is missing)."""
        outputs = dict(self.references.get(name, {}))
        return name, {"name": name, "outputs": outputs, "secretOutputNames": []}

    @staticmethod
    def _identity_output(identity: Mapping[str, Any]) -> dict[str, Any]:
        """ARM answers user-assigned identities as a map keyed by identity id."""
        output = dict(identity)
        assigned = identity.get("userAssignedIdentities")
        if isinstance(assigned, list):
            output["userAssignedIdentities"] = {
                identity_id: {"principalId": "", "clientId": ""} for identity_id in assigned
            }
        return output

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "azure-native:authorization:getClientConfig":
            return (
                {
                    "subscriptionId": SUBSCRIPTION_ID,
                    "tenantId": ENTRA_TENANT_ID,
                    "clientId": "00000000-0000-4000-8000-0000000000d1",
                    "objectId": "00000000-0000-4000-8000-0000000000d2",
                },
                [],
            )
        return {}, []

    @staticmethod
    def _physical_name(args: MockResourceArgs) -> str:
        for key in _NAME_KEYS:
            value = args.inputs.get(key)
            if isinstance(value, str) and value:
                return value
        return args.name

    @staticmethod
    def _resource_id(type_token: str, name: str, inputs: Mapping[str, Any]) -> str:
        namespace, plural = _provider_namespace(type_token)
        if type_token == "azure-native:resources:ResourceGroup":
            return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{name}"
        # Extension resources live under the resource (or scope) they extend.
        for scope_key in ("scope", "resourceUri"):
            if isinstance(inputs.get(scope_key), str):
                return f"{inputs[scope_key]}/providers/{namespace}/{plural}/{name}"
        group = inputs.get("resourceGroupName", "unknown-rg")
        base = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}/providers/{namespace}"
        parents = [
            ("workspaceName", "workspaces"),
            ("serviceName", "service"),
            (
                "accountName",
                "accounts" if ":cognitiveservices:" in type_token else "storageAccounts",
            ),
            ("raiBlocklistName", "raiBlocklists"),
            ("vaultName", "vaults"),
            ("systemTopicName", "systemTopics"),
            ("virtualNetworkName", "virtualNetworks"),
            ("privateZoneName", "privateDnsZones"),
            ("privateEndpointName", "privateEndpoints"),
            ("endpointName", "onlineEndpoints" if "Online" in type_token else "batchEndpoints"),
        ]
        path = base
        for key, segment in parents:
            value = inputs.get(key)
            if isinstance(value, str) and value != name:
                path += f"/{segment}/{value}"
        return f"{path}/{plural}/{name}"

    @staticmethod
    def _outputs(type_token: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        def guid(kind: str) -> str:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{type_token}/{name}/{kind}"))

        location = inputs.get("location", "westeurope")
        identity = {
            "principalId": guid("principal"),
            "tenantId": ENTRA_TENANT_ID,
            "type": "SystemAssigned",
        }
        outputs: dict[str, Callable[[], dict[str, Any]]] = {
            "azure-native:managedidentity:UserAssignedIdentity": lambda: {
                "principalId": guid("principal"),
                "clientId": guid("client"),
                "tenantId": ENTRA_TENANT_ID,
            },
            "azure-native:machinelearningservices:OnlineEndpoint": lambda: {
                "properties": {
                    **inputs.get("properties", {}),
                    "scoringUri": f"https://{name}.{location}.inference.ml.azure.com/score",
                }
            },
            "azure-native:apimanagement:ApiManagementService": lambda: {
                "gatewayUrl": f"https://{name}.azure-api.net",
                "identity": identity,
            },
            "azure-native:eventgrid:SystemTopic": lambda: {"identity": identity},
            # Front Door stamps every request with its profile's id (X-Azure-FDID).
            "azure-native:cdn:Profile": lambda: {"frontDoorId": guid("front-door")},
            "azure-native:cdn:AFDEndpoint": lambda: {"hostName": f"{name}.z01.azurefd.net"},
            "azure-native:web:WebApp": lambda: {"defaultHostName": f"{name}.azurewebsites.net"},
            "azure-native:storage:StorageAccount": lambda: {
                "primaryEndpoints": {
                    kind: f"https://{name}.{kind}.core.windows.net/"
                    for kind in ("blob", "table", "queue", "file")
                }
            },
            "azure-native:applicationinsights:Component": lambda: {
                "connectionString": f"InstrumentationKey={guid('ikey')};IngestionEndpoint=https://{location}.in.applicationinsights.azure.com/",
            },
            "azure-native:operationalinsights:Workspace": lambda: {"customerId": guid("customer")},
            "azure-native:machinelearningservices:Workspace": lambda: {
                "workspaceId": guid("workspace")
            },
            "azure-native:keyvault:Key": lambda: {
                "keyUriWithVersion": f"https://{inputs.get('vaultName')}.vault.azure.net/keys/{name}/1",
            },
        }
        return outputs.get(type_token, dict)()


@dataclass(frozen=True)
class Registration:
    urn: str
    parent: str | None
    type: str
    name: str
    custom: bool
    property_dependencies: dict[str, frozenset[str]]
    dependencies: frozenset[str]
    ignore_changes: tuple[str, ...]


class RecordingMonitor(MockMonitor):
    """A mock monitor that also remembers each registration's URN and parent."""

    def __init__(self, mocks: AzureMocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            dependencies = {
                prop: frozenset(deps.urns)
                for prop, deps in request.propertyDependencies.items()
                if deps.urns
            }
            self.registrations.append(
                Registration(
                    response.urn,
                    request.parent or None,
                    request.type,
                    request.name,
                    bool(request.custom),
                    dependencies,
                    frozenset(request.dependencies),
                    tuple(request.ignoreChanges),
                )
            )
        return response


@dataclass
class OfflineRun:
    """Every resource the program registered, in registration order, and its exports."""

    records: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def by_urn(self) -> dict[str, RecordedResource]:
        # Built once: attribution walks parents for every resource of the plan.
        return {r.urn: r for r in self.records}

    def custom_resources(self) -> list[RecordedResource]:
        return [r for r in self.records if r.custom]

    def attribution(self, record: RecordedResource, key: str) -> str | None:
        """The nearest ancestor component's ``key`` property (``tenantId`` or ``stamp``)."""
        current: RecordedResource | None = record
        while current is not None:
            if not current.custom and key in current.inputs:
                value = current.inputs[key]
                return value if isinstance(value, str) else None
            current = self.by_urn.get(current.parent) if current.parent else None
        return None


def install_mocks(
    mocks: pulumi.runtime.Mocks,
    *,
    stack: str,
    preview: bool = False,
    monitor: MockMonitor | None = None,
) -> None:
    """The Pulumi runtime under ``mocks``, on a fresh root stack: ``set_mocks`` alone keeps
    the previous run's, and with it every stack transformation an earlier program in this
    process registered."""
    reset_options(project=PROJECT, stack=stack, preview=preview, organization=ORGANIZATION)
    _an_event_loop()
    pulumi.runtime.set_mocks(
        mocks,
        project=PROJECT,
        stack=stack,
        preview=preview,
        monitor=monitor,
        organization=ORGANIZATION,
    )


def _an_event_loop() -> None:
    """Pulumi's runtime makes its futures on the thread's current event loop. A caller
    that ran ``asyncio.run`` before leaves the main thread with none set (a test on the
    same worker, say), and the root stack could not even register."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def without_aliases(
    args: pulumi.ResourceTransformationArgs,
) -> pulumi.ResourceTransformationResult | None:
    """The resource as registered, without its aliases.

    azure-native gives each resource an alias per type token it had in older API versions
    (about sixteen), so that the engine can match it to a resource already in a stack's
    state. An offline run has no state to match, and turning every alias into a URN (each
    an Output of its own) cost a large share of a plan's time. Nothing recorded depends on
    aliases; `pulumi up` keeps them, as this runs only here."""
    if not args.opts.aliases:
        return None
    opts = copy.copy(args.opts)
    opts.aliases = None
    return pulumi.ResourceTransformationResult(args.props, opts)


def run_offline(
    program: Callable[[], None],
    *,
    stack: str,
    preview: bool = False,
    references: Mapping[str, Mapping[str, Any]] | None = None,
) -> OfflineRun:
    """Run ``program`` under mocks and return what it registered and exported.
    ``references``: the outputs of the stacks it references, by full stack name."""

    exported: dict[str, Any] = {}

    def offline_program() -> None:
        pulumi.runtime.register_stack_transformation(without_aliases)
        program()
        # Under mocks the root stack registered its (empty) outputs when it was made; what
        # the program exports is kept on it and resolved here.
        root = get_root_resource()
        outputs = getattr(root, "outputs", None) or {}
        pulumi.Output.from_input(outputs).apply(exported.update)

    mocks = AzureMocks(references)
    monitor = RecordingMonitor(mocks)
    install_mocks(mocks, stack=stack, preview=preview, monitor=monitor)
    _sync_await(run_pulumi_func(offline_program))
    records = []
    for reg in monitor.registrations:
        inputs = mocks.inputs.get((reg.type, reg.name), {})
        registered = monitor.resources.get(reg.urn)
        state = dict(registered.state) if registered else {}
        records.append(
            RecordedResource(
                reg.urn,
                reg.type,
                reg.name,
                reg.parent,
                reg.custom,
                inputs,
                state,
                reg.property_dependencies,
                reg.dependencies,
                reg.ignore_changes,
                str(registered.id or "") if registered else "",
            )
        )
    return OfflineRun(records, exported)
