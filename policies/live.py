"""The pack's rules over what is deployed: Azure resources as Azure Resource Graph and the
Azure ML APIs return them (ARM's JSON: ``id``, ``type``, ``location``, ``tags``, ``sku``,
``identity``, ``kind``, ``properties``), put in the shape the rules read, which is the shape
of the program's inputs (azure-native's wire names), and judged by the same functions at the
same levels and settings as ``pulumi preview --policy-pack policies`` and ``mlops plan``.

The two shapes differ in three ways, all undone here:
- a resource's name, group and parents are path parameters of the program's inputs
  (``resourceGroupName``, ``workspaceName``...) and segments of ARM's ``id``;
- azure-native flattens ``properties`` into the inputs of most types, but keeps it as an
  input of the Azure ML child resources and key vaults (``NESTED_PROPERTIES``, checked
  against the SDK by the tests);
- a plan knows which resource an input was computed from (property dependencies); live, a
  property that holds another inventoried resource's id is that reference (and a role
  assignment's principal, an object id, references the identity whose principal it is).

Rules that judge what only a plan has (creation order, API version pins, dates fixed at
creation, app settings outside ``properties``) run before deployment only (``Rule.live``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.core import ML, Props, Resource

_MLS = "microsoft.machinelearningservices"
#: ARM resource types of the resources the rules govern -> azure-native type tokens.
ARM_TYPES: dict[str, str] = {
    f"{_MLS}/workspaces": f"{ML}:Workspace",
    f"{_MLS}/workspaces/computes": f"{ML}:Compute",
    f"{_MLS}/workspaces/onlineendpoints": f"{ML}:OnlineEndpoint",
    f"{_MLS}/workspaces/onlineendpoints/deployments": f"{ML}:OnlineDeployment",
    f"{_MLS}/workspaces/batchendpoints": f"{ML}:BatchEndpoint",
    f"{_MLS}/workspaces/batchendpoints/deployments": f"{ML}:BatchDeployment",
    f"{_MLS}/registries": f"{ML}:Registry",
    "microsoft.resources/subscriptions/resourcegroups": "azure-native:resources:ResourceGroup",
    "microsoft.storage/storageaccounts": "azure-native:storage:StorageAccount",
    "microsoft.containerregistry/registries": "azure-native:containerregistry:Registry",
    "microsoft.keyvault/vaults": "azure-native:keyvault:Vault",
    "microsoft.eventgrid/systemtopics": "azure-native:eventgrid:SystemTopic",
    "microsoft.eventgrid/systemtopics/eventsubscriptions": (
        "azure-native:eventgrid:SystemTopicEventSubscription"
    ),
    "microsoft.web/sites": "azure-native:web:WebApp",
    "microsoft.consumption/budgets": "azure-native:consumption:Budget",
    "microsoft.authorization/roleassignments": "azure-native:authorization:RoleAssignment",
    "microsoft.managedidentity/userassignedidentities": (
        "azure-native:managedidentity:UserAssignedIdentity"
    ),
    "microsoft.cognitiveservices/accounts": "azure-native:cognitiveservices:Account",
}
ARM_TYPE_OF = {token: arm for arm, token in ARM_TYPES.items()}
UAI = "azure-native:managedidentity:UserAssignedIdentity"

#: Types whose azure-native inputs keep ARM's ``properties`` object as one input.
_ML_CHILDREN = ("Compute", "OnlineEndpoint", "OnlineDeployment", "BatchEndpoint", "BatchDeployment")
NESTED_PROPERTIES = frozenset(
    {
        *(f"{ML}:{kind}" for kind in _ML_CHILDREN),
        "azure-native:keyvault:Vault",
        "azure-native:cognitiveservices:Account",
    }
)

#: Types without a ``tags`` input. Every other governed type is taggable, so a live one
#: without tags is judged as untagged: in the Function App the rules cannot ask the
#: provider's SDK (``stack_rules.taggable``), and the tests check this list against it.
UNTAGGED_TYPES = frozenset(
    {
        "azure-native:eventgrid:SystemTopicEventSubscription",
        "azure-native:consumption:Budget",
        "azure-native:authorization:RoleAssignment",
    }
)

#: ARM's envelope: top-level in both shapes.
ENVELOPE = ("location", "tags", "sku", "identity", "kind")
_ARM_ID = re.compile(r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/", re.IGNORECASE)


@dataclass(frozen=True)
class LiveResource:
    """One resource as Resource Graph returns it (the ``resources`` table's columns)."""

    id: str
    type: str  # ARM's, e.g. microsoft.machinelearningservices/workspaces
    name: str
    body: Mapping[str, Any]  # location, tags, sku, identity, kind, properties

    @property
    def type_token(self) -> str | None:
        return ARM_TYPES.get(self.type.lower())


def inputs_of(live: LiveResource) -> dict[str, Any]:
    """The resource in the program's input shape (without its path parameters)."""
    token = live.type_token
    inputs = {key: live.body[key] for key in ENVELOPE if live.body.get(key) is not None}
    if token not in UNTAGGED_TYPES:
        inputs.setdefault("tags", {})  # ARM leaves an untagged resource's tags out (or null)
    identity = inputs.get("identity")
    assigned = identity.get("userAssignedIdentities") if isinstance(identity, Mapping) else None
    if isinstance(identity, Mapping) and isinstance(assigned, Mapping):
        # ARM maps each identity's id to its principal; the inputs list the ids.
        inputs["identity"] = {**identity, "userAssignedIdentities": list(assigned)}
    properties = dict(live.body.get("properties") or {})
    if token in NESTED_PROPERTIES:
        inputs["properties"] = properties
    else:
        inputs.update(properties)
    return inputs


def as_live(type_token: str, inputs: Mapping[str, Any], resource_id: str) -> LiveResource:
    """A resource of the program's inputs as ARM returns it once deployed (the inverse of
    :func:`inputs_of`): path parameters (the id's segments) dropped, the rest under
    ``properties`` unless the type keeps them there itself."""
    segments = {s.lower() for s in resource_id.split("/")}
    body: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for key, value in inputs.items():
        if key == "identity" and isinstance(value.get("userAssignedIdentities"), list):
            principals: dict[str, Any] = {uai: {} for uai in value["userAssignedIdentities"]}
            body[key] = {**value, "userAssignedIdentities": principals}
        elif key in ENVELOPE:
            body[key] = value
        elif is_path_parameter(key, value, segments):
            continue
        elif key == "properties" and type_token in NESTED_PROPERTIES:
            properties.update(value)
        else:
            properties[key] = value
    body["properties"] = properties
    arm_type = ARM_TYPE_OF[type_token]
    return LiveResource(resource_id, arm_type, resource_id.rsplit("/", 1)[-1], body)


def is_path_parameter(key: str, value: Any, id_segments: Collection[str]) -> bool:
    """Whether input ``key`` names the resource or one it lies under: a segment of its id
    (``id_segments``, lower case) rather than a property ARM returns."""
    return key in ("resourceGroupName", "scope") or (
        key.endswith("Name") and isinstance(value, str) and value.lower() in id_segments
    )


def as_resources(
    inventory: Sequence[LiveResource], props: Callable[[Mapping[str, Any]], Props] = Props
) -> list[Resource]:
    """The governed resources of an inventory as the rules see them; ids are their URNs,
    and a property holding another inventoried resource's id references it. ``props``
    makes each resource's properties (the drift check records what the rules read)."""
    governed = [live for live in inventory if live.type_token is not None]
    known = {live.id.lower(): live for live in governed}
    # A role assignment names its principal by object id: a user-assigned identity's
    # ``properties.principalId``, or a resource's own (system-assigned) identity's.
    principals = {principal.lower(): live for live in governed for principal in _principals(live)}
    resources = []
    for live in governed:
        inputs = inputs_of(live)
        references: dict[str, set[str]] = {}
        for prop, value in _strings(inputs):
            target = known.get(value.lower())
            if target is not None and target.id != live.id:
                references.setdefault(prop.split(".")[0], set()).add(target.id)
        principal = principals.get(str(inputs.get("principalId", "")).lower())
        if principal is not None:
            references.setdefault("principalId", set()).add(principal.id)
        for link, ancestor in _ancestors(live, known):
            references.setdefault(link, set()).add(ancestor)
        resources.append(
            Resource(
                type=str(live.type_token),
                urn=live.id,
                name=live.name,
                props=props(inputs),
                property_dependencies={k: frozenset(v) for k, v in references.items()},
            )
        )
    return resources


def _principals(live: LiveResource) -> Iterator[str]:
    properties = live.body.get("properties")
    if live.type_token == UAI and isinstance(properties, Mapping) and properties.get("principalId"):
        yield str(properties["principalId"])
    identity = live.body.get("identity")
    if isinstance(identity, Mapping) and identity.get("principalId"):
        yield str(identity["principalId"])


def _ancestors(live: LiveResource, known: Mapping[str, LiveResource]) -> Iterator[tuple[str, str]]:
    """(path parameter, id) of each inventoried resource the id lies under: what a plan's
    ``resourceGroupName``, ``workspaceName`` or ``scope`` inputs reference."""
    path = live.id.lower()
    for key, ancestor in known.items():
        if path.startswith(key + "/"):
            token = ancestor.type_token or ""
            kind = token.rsplit(":", 1)[-1]
            yield (
                (
                    "resourceGroupName"
                    if kind == "ResourceGroup"
                    else f"{kind[:1].lower()}{kind[1:]}Name"
                ),
                ancestor.id,
            )


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, string) for every string that looks like an ARM id, however deep."""
    if isinstance(value, str):
        if _ARM_ID.match(value):
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, path)
