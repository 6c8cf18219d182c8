"""``identity-permissions``: every action an identity of the platform performs is granted by
a role the plan assigns it, at a scope that covers the target, and before it is needed.

The actions and roles are data (:data:`tenancy.permissions.NEEDS`, each with the Microsoft
document that states it). This module finds, in a plan, each identity and the concrete
resources its targets name, then looks for a covering assignment:

- the assignment's principal was computed from the identity (or, for the deployer, is the
  object id the package upload records);
- its role is one the need lists (a built-in role id, or a custom role in the plan whose
  actions include the need's ``action:<operation>``);
- its scope is the target, part of it (a container of an account) or the target's resource
  group, or the subscription;
- where the need is ``at_creation``, the resource the identity serves waits for it.

Everything is followed through property dependencies, known during a preview.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from policies.core import MANDATORY, ML, Finding, Resource, Rule, Settings, Stack, rule_type
from tenancy import contracts, permissions
from tenancy.permissions import Condition, Identity, Need, Target
from tenancy.rbac import ROLE_IDS

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
UAI = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATED_CREDENTIAL = "azure-native:managedidentity:FederatedIdentityCredential"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"
WORKSPACE = f"{ML}:Workspace"
ONLINE_ENDPOINT = f"{ML}:OnlineEndpoint"
ONLINE_DEPLOYMENT = f"{ML}:OnlineDeployment"
ML_REGISTRY = f"{ML}:Registry"
STORAGE = "azure-native:storage:StorageAccount"
APP_INSIGHTS = "azure-native:applicationinsights:Component"
KEY_VAULT = "azure-native:keyvault:Vault"
LOG_ANALYTICS = "azure-native:operationalinsights:Workspace"
WEB_APP = "azure-native:web:WebApp"
APIM = "azure-native:apimanagement:ApiManagementService"
APIM_BACKEND = "azure-native:apimanagement:Backend"
APIM_LOGGER = "azure-native:apimanagement:Logger"
AI_ACCOUNT = "azure-native:cognitiveservices:Account"
SYSTEM_TOPIC = "azure-native:eventgrid:SystemTopic"
TOPIC_SUBSCRIPTION = "azure-native:eventgrid:SystemTopicEventSubscription"


@dataclass(frozen=True)
class Holder:
    """One identity in the plan: who it is, what it serves, and its concrete targets."""

    identity: Identity
    principal: str  # the URN the principal id is computed from, or a literal object id
    serves: Resource  # what the identity acts for (findings are reported there)
    targets: Mapping[Target, tuple[Resource, ...]]
    conditions: frozenset[Condition]
    literal_principal: bool = False
    # The resources that must wait for an ``at_creation`` grant.
    created_after: tuple[Resource, ...] = ()


class PlanView:
    """The lookups the rule needs over a :class:`Stack`."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def deps(self, resource: Resource, prop: str, *types: str) -> list[Resource]:
        return self.stack.deps(resource, prop, *types)

    def of_type(self, type_token: str) -> list[Resource]:
        return [r for r in self.stack.resources if rule_type(r.type) == type_token]

    def group_of(self, resource: Resource) -> Resource | None:
        groups = self.deps(resource, "resourceGroupName", "azure-native:resources:ResourceGroup")
        return groups[0] if groups else None

    def waits_for(self, resource: Resource, urn: str) -> bool:
        return self.stack.waits_for(resource, urn)


# --- finding the identities -------------------------------------------------------------------


def _workspace_holders(view: PlanView) -> Iterator[Holder]:
    registries = tuple(view.of_type(ML_REGISTRY))
    for workspace in view.of_type(WORKSPACE):
        for identity in view.deps(workspace, "primaryUserAssignedIdentity", UAI):
            group = view.group_of(workspace)
            conditions: set[Condition] = {"always"}
            if workspace.props.raw.get("encryption"):
                conditions.add("customer_managed_key")
            mode = (workspace.props.raw.get("managedNetwork") or {}).get("isolationMode")
            if mode and mode != "Disabled":
                conditions.add("managed_network")
            yield Holder(
                "workspace",
                identity.urn,
                workspace,
                {
                    "resource_group": (group,) if group else (),
                    "storage": tuple(view.deps(workspace, "storageAccount", STORAGE)),
                    "key_vault": tuple(view.deps(workspace, "keyVault", KEY_VAULT)),
                    "container_registry": tuple(view.deps(workspace, "containerRegistry")),
                    "app_insights": tuple(view.deps(workspace, "applicationInsights")),
                    "ml_registry": registries,
                },
                frozenset(conditions),
                created_after=(workspace,),
            )


def _deployments_of(view: PlanView, endpoint: Resource) -> list[Resource]:
    return [
        d
        for d in view.of_type(ONLINE_DEPLOYMENT)
        if endpoint.urn in d.property_dependencies.get("endpointName", frozenset())
    ]


def _collects(deployment: Resource) -> bool:
    collector = (deployment.props.raw.get("properties") or {}).get("dataCollector") or {}
    collections = collector.get("collections") or {}
    return any(
        isinstance(c, Mapping) and c.get("dataCollectionMode") == "Enabled"
        for c in collections.values()
    )


def _endpoint_holders(view: PlanView) -> Iterator[Holder]:
    registries = tuple(view.of_type(ML_REGISTRY))
    for endpoint in view.of_type(ONLINE_ENDPOINT):
        workspaces = view.deps(endpoint, "workspaceName", WORKSPACE)
        deployments = _deployments_of(view, endpoint)
        conditions: set[Condition] = {"always"}
        if any(_collects(d) for d in deployments):
            conditions.add("data_collection")
        for identity in view.deps(endpoint, "identity", UAI):
            yield Holder(
                "endpoint",
                identity.urn,
                endpoint,
                {
                    "storage": tuple(
                        s for w in workspaces for s in view.deps(w, "storageAccount", STORAGE)
                    ),
                    "container_registry": tuple(
                        r for w in workspaces for r in view.deps(w, "containerRegistry")
                    ),
                    "ml_registry": registries,
                },
                frozenset(conditions),
                created_after=tuple(deployments),
            )


def _automation_holders(view: PlanView) -> Iterator[Holder]:
    workspaces = tuple(view.of_type(WORKSPACE))
    endpoint_identities = tuple(
        {
            i.urn: i for e in view.of_type(ONLINE_ENDPOINT) for i in view.deps(e, "identity", UAI)
        }.values()
    )
    groups = tuple(g for w in workspaces if (g := view.group_of(w)) is not None)
    for app in view.of_type(WEB_APP):
        for identity in view.deps(app, "identity", UAI):
            yield Holder(
                "automation",
                identity.urn,
                app,
                {
                    "workspace": workspaces,
                    "stamp_identity": endpoint_identities,
                    "resource_group": groups,
                    "log_analytics": tuple(view.deps(app, "siteConfig", LOG_ANALYTICS)),
                    "storage": tuple(
                        s for w in workspaces for s in view.deps(w, "storageAccount", STORAGE)
                    ),
                    "platform_storage": tuple(view.deps(app, "siteConfig", STORAGE)),
                    "platform_app_insights": tuple(view.deps(app, "siteConfig", APP_INSIGHTS)),
                    # The platform's vault: the one in the Function App's resource group.
                    "platform_key_vault": tuple(
                        v for v in view.of_type(KEY_VAULT) if _same_group(view, v, app)
                    ),
                    "ml_registry": tuple(view.of_type(ML_REGISTRY)),
                    "api_management": tuple(view.of_type(APIM)),
                },
                frozenset({"always"}),
            )


def _same_group(view: PlanView, one: Resource, other: Resource) -> bool:
    group = view.group_of(one)
    return group is not None and group == view.group_of(other)


def _gateway_holders(view: PlanView) -> Iterator[Holder]:
    """The gateway's identity, and what its backends (endpoints, AI Services accounts) and
    its loggers (App Insights) reach."""
    for service in view.of_type(APIM):
        yield Holder(
            "gateway",
            service.urn,
            service,
            {
                "online_endpoint": _of_service(view, service, APIM_BACKEND, "url", ONLINE_ENDPOINT),
                "ai_account": _of_service(view, service, APIM_BACKEND, "url", AI_ACCOUNT),
                "platform_app_insights": _of_service(
                    view, service, APIM_LOGGER, "resourceId", APP_INSIGHTS
                ),
            },
            frozenset({"always"}),
        )


def _of_service(
    view: PlanView, service: Resource, kind: str, prop: str, target: str
) -> tuple[Resource, ...]:
    """What ``service``'s children of ``kind`` reach through their input ``prop``."""
    found = {
        reached.urn: reached
        for child in view.of_type(kind)
        if service.urn in child.property_dependencies.get("serviceName", frozenset())
        for reached in view.deps(child, prop, target)
    }
    return tuple(found.values())


def _event_grid_holders(view: PlanView) -> Iterator[Holder]:
    for topic in view.of_type(SYSTEM_TOPIC):
        subscriptions = [
            s
            for s in view.of_type(TOPIC_SUBSCRIPTION)
            if topic.urn in s.property_dependencies.get("systemTopicName", frozenset())
        ]
        storage = {
            st.urn: st
            for s in subscriptions
            for st in view.deps(s, "deadLetterWithResourceIdentity", STORAGE)
        }
        yield Holder(
            "event_grid",
            topic.urn,
            topic,
            {"dead_letter_storage": tuple(storage.values())},
            frozenset({"always"}),
            created_after=tuple(subscriptions),
        )


#: What the deployer writes to platform storage during `pulumi up`.
_DEPLOYER_UPLOADS = (contracts.KIND_PACKAGE_UPLOAD, contracts.KIND_EXPECTED_STATE)


def _deployer_holders(view: PlanView) -> Iterator[Holder]:
    for upload in view.stack.resources:
        if upload.props.raw.get("kind") not in _DEPLOYER_UPLOADS:
            continue
        uploader = upload.props.raw.get("uploaderObjectId")
        if not isinstance(uploader, str):
            continue
        yield Holder(
            "deployer",
            uploader,
            upload,
            {"package_storage": tuple(view.deps(upload, "accountName", STORAGE))},
            frozenset({"always"}),
            literal_principal=True,
            created_after=(upload,),
        )


def _pipeline_of(subject: str) -> Identity:
    """Which pipeline a federated credential's GitHub environment belongs to."""
    environment = subject.rsplit(":environment:", 1)[-1]
    if environment.endswith("-preview"):
        return "preview_pipeline"
    if environment.endswith("-report"):
        return "report_pipeline"
    return "deploy_pipeline"


def _pipeline_holders(view: PlanView) -> Iterator[Holder]:
    """The workflows' identities: each user-assigned identity that trusts a GitHub
    environment through a federated credential (infra/delivery.py)."""
    targets: dict[Target, tuple[Resource, ...]] = {
        "resource_group": tuple(view.of_type(RESOURCE_GROUP)),
        "workspace": tuple(view.of_type(WORKSPACE)),
        "platform_storage": tuple(
            s for app in view.of_type(WEB_APP) for s in view.deps(app, "siteConfig", STORAGE)
        ),
    }
    for credential in view.of_type(FEDERATED_CREDENTIAL):
        subject = credential.props.raw.get("subject")
        if not isinstance(subject, str) or ":environment:" not in subject:
            continue
        for identity in view.deps(credential, "resourceName", UAI):
            yield Holder(
                _pipeline_of(subject), identity.urn, identity, targets, frozenset({"always"})
            )


HOLDERS = (
    _workspace_holders,
    _endpoint_holders,
    _automation_holders,
    _gateway_holders,
    _event_grid_holders,
    _deployer_holders,
    _pipeline_holders,
)


# --- matching assignments -----------------------------------------------------------------


def _role_guid(assignment: Resource) -> str:
    role = assignment.props.raw.get("roleDefinitionId")
    return role.rsplit("/", 1)[-1].lower() if isinstance(role, str) else ""


def _custom_actions(view: PlanView, assignment: Resource) -> set[str]:
    actions: set[str] = set()
    for definition in view.deps(assignment, "roleDefinitionId", ROLE_DEFINITION):
        for permission in definition.props.raw.get("permissions") or []:
            actions.update(permission.get("actions") or [])
    return actions


def _grants_role(view: PlanView, assignment: Resource, roles: Iterable[str]) -> bool:
    guid = _role_guid(assignment)
    for role in roles:
        if role.startswith("action:"):
            if role.removeprefix("action:") in _custom_actions(view, assignment):
                return True
        elif ROLE_IDS.get(role, "").lower() == guid and guid:
            return True
    return False


def _is_for(assignment: Resource, holder: Holder) -> bool:
    if holder.literal_principal:
        return assignment.props.raw.get("principalId") == holder.principal
    return holder.principal in assignment.property_dependencies.get("principalId", frozenset())


def _covers(view: PlanView, assignment: Resource, target: Resource) -> bool:
    scopes = assignment.property_dependencies.get("scope", frozenset())
    group = view.group_of(target)
    if target.urn in scopes or (group is not None and group.urn in scopes):
        return True
    scope = assignment.props.raw.get("scope")
    return isinstance(scope, str) and scope.count("/") == 2 and scope.startswith("/subscriptions/")


def covering(view: PlanView, holder: Holder, need: Need, target: Resource) -> list[Resource]:
    return [
        a
        for a in view.of_type(ROLE_ASSIGNMENT)
        if _is_for(a, holder) and _grants_role(view, a, need.roles) and _covers(view, a, target)
    ]


def _roles_text(need: Need) -> str:
    return " or ".join(r.removeprefix("action:") for r in need.roles)


def holders(view: PlanView) -> Iterator[Holder]:
    """Every identity of the plan, with its targets."""
    for find in HOLDERS:
        yield from find(view)


def identity_permissions(stack: Stack, _: Settings) -> Iterator[Finding]:
    view = PlanView(stack)
    for holder in holders(view):
        problems = list(_problems(view, holder))
        if problems:
            yield Finding(
                f"the {holder.identity} identity of '{holder.serves.name}' " + "; ".join(problems),
                holder.serves.urn,
            )


def _problems(view: PlanView, holder: Holder) -> Iterator[str]:
    for need in permissions.needs_of(holder.identity):
        if need.when not in holder.conditions:
            continue
        for target in holder.targets.get(need.target, ()):
            covering_ = covering(view, holder, need, target)
            if not covering_:
                yield (
                    f"cannot {need.action} on '{target.name}': no {_roles_text(need)} "
                    f"assigned there ({need.doc})"
                )
                continue
            if need.at_creation:
                late = [
                    r.name
                    for r in holder.created_after
                    if not any(view.waits_for(r, a.urn) for a in covering_)
                ]
                if late:
                    yield (
                        f"needs its role to {need.action} on '{target.name}' before "
                        f"{', '.join(late)} is created, which does not wait for the assignment"
                    )


RULES: tuple[Rule, ...] = (
    Rule(
        "identity-permissions",
        "Every action a platform identity performs (tenancy.permissions) is granted by a "
        "role the plan assigns it, at a covering scope, before it is needed.",
        "Azure refuses what an identity may not do only when it tries: a workspace that "
        "cannot unwrap its key, an endpoint that cannot download its model, telemetry or a "
        "traffic update rejected.",
        MANDATORY,
        stack_check=identity_permissions,
    ),
)
