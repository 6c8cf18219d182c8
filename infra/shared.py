"""Per-environment shared services: what every stamp and the automation rely on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
from pulumi_azure_native import (
    authorization,
    machinelearningservices,
    managedidentity,
    operationalinsights,
    resources,
    storage,
)

from infra import blocks
from infra.common import (
    GrantTarget,
    Principal,
    apply_grants,
    assign_role,
    grant_needs,
    group_principals,
    standard_tags,
)
from infra.deploy_time import ServingEnvironment
from infra.network import PrivateNetwork, PrivateNetworkArgs
from serving.image import ENVIRONMENT_NAME, environment_version
from tenancy import contracts, naming
from tenancy.permissions import NAMED_VALUE_READ, NAMED_VALUE_WRITE, SCORE_ACTION
from tenancy.rbac import PLATFORM_PERSONAS, grants, table_for
from tenancy.spec import PlatformSpec

SCOPE = naming.PLATFORM_SCOPE
#: The checkout the scoring container's build context comes from.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The only action the gateway needs on an endpoint (least privilege for its identity).


@dataclass
class SharedServicesArgs:
    spec: PlatformSpec
    subscription_id: pulumi.Input[str]
    tenant_id: pulumi.Input[str]


class SharedServices(pulumi.ComponentResource):
    """Resource group, Log Analytics, App Insights, Key Vault, Storage, Container Registry,
    the Azure ML registry for shared models, the automation's identity and, when private,
    the virtual network."""

    def __init__(
        self, name: str, args: SharedServicesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:platform:SharedServices", name, {"stamp": SCOPE}, opts)
        self._name = name
        self._args = args
        self.subscription_id = args.subscription_id
        spec = args.spec
        self.tags = standard_tags(spec, contracts.PLATFORM_TENANT_TAG, spec.cost_center)
        self.resource_group = resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=naming.resource_group(spec.prefix, spec.environment, SCOPE),
            location=spec.location,
            tags=self.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.network = self._create_network() if spec.networking.private else None
        self.log_analytics = self._create_log_analytics()
        at = blocks.Placement(name, SCOPE, spec, self.resource_group.name, self.tags, self)
        logs = self.log_analytics.id
        self.app_insights = blocks.app_insights(
            at, component_name=f"appi-{spec.prefix}-{spec.environment.value}", log_workspace_id=logs
        )
        self.automation_identity = managedidentity.UserAssignedIdentity(
            f"{name}-automation-id",
            resource_group_name=self.resource_group.name,
            resource_name_=f"id-automation-{spec.environment.value}",
            location=spec.location,
            tags=self.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.key_vault = blocks.key_vault(at, entra_tenant_id=args.tenant_id, log_workspace_id=logs)
        self.storage = self._create_storage(at)
        self.container_registry = blocks.container_registry(at, public_sku="Standard")
        self.ml_registry = self._create_ml_registry()
        self.serving_environment, self.serving_environment_id = self._publish_serving_image()
        self.scorer_role = self._create_scorer_role()
        self.budget_stop_role = self._create_budget_stop_role()
        self._grant_platform_personas()
        self._protect_with_private_endpoints()
        self.register_outputs(
            {
                "resourceGroupName": self.resource_group.name,
                "logAnalyticsWorkspaceId": self.log_analytics.id,
                "appInsightsId": self.app_insights.id,
                "keyVaultId": self.key_vault.id,
                "storageAccountId": self.storage.id,
                "containerRegistryId": self.container_registry.id,
                "mlRegistryId": self.ml_registry.id,
                "automationIdentityId": self.automation_identity.id,
            }
        )

    @property
    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _create_network(self) -> PrivateNetwork:
        return PrivateNetwork(
            f"{self._name}-network",
            PrivateNetworkArgs(self._args.spec, self.resource_group.name, self.tags),
            opts=self._opts,
        )

    def _create_log_analytics(self) -> operationalinsights.Workspace:
        spec = self._args.spec
        return operationalinsights.Workspace(
            f"{self._name}-logs",
            resource_group_name=self.resource_group.name,
            workspace_name=f"log-{spec.prefix}-{spec.environment.value}",
            location=spec.location,
            sku={"name": "PerGB2018"},
            retention_in_days=90 if spec.environment.is_production else 30,
            # Resource-context access: a tenant granted Log Analytics Reader on its own stamp
            # reads that stamp's logs only, never another tenant's rows in this workspace.
            features={"enable_log_access_using_only_resource_permissions": True},
            tags=self.tags,
            opts=self._opts,
        )

    def _create_storage(self, at: blocks.Placement) -> storage.StorageAccount:
        """Blob containers for dead letters, the Functions package, inference data and the
        expected state; tables for the automation's state."""
        # Event Grid writes dead letters here and the deployer uploads the Functions package:
        # a private stack lets both through the account's firewall (W12, D1).
        account = blocks.storage_account(
            at,
            trusted_services=True,
            allowed_ranges=self._args.spec.networking.deployer_ip_ranges,
        )
        for container in (
            contracts.CONTAINER_DEAD_LETTER,
            contracts.CONTAINER_FUNCTION_PACKAGE,
            contracts.CONTAINER_INFERENCE_DATA,
            contracts.CONTAINER_PLATFORM_STATE,
        ):
            storage.BlobContainer(
                f"{self._name}-st-{container}",
                resource_group_name=self.resource_group.name,
                account_name=account.name,
                container_name=container,
                public_access="None",
                opts=pulumi.ResourceOptions(parent=account),
            )
        for table in contracts.PLATFORM_TABLES:
            storage.Table(
                f"{self._name}-st-table-{table}",
                resource_group_name=self.resource_group.name,
                account_name=account.name,
                table_name=table,
                opts=pulumi.ResourceOptions(parent=account),
            )
        return account

    def _create_ml_registry(self) -> machinelearningservices.Registry:
        """The Azure ML registry that holds shared models and the scoring assets."""
        spec = self._args.spec
        return machinelearningservices.Registry(
            f"{self._name}-mlr",
            resource_group_name=self.resource_group.name,
            registry_name=naming.ml_registry(spec.prefix, spec.environment, spec.installation),
            location=spec.location,
            identity={"type": "SystemAssigned"},
            public_network_access="Disabled" if spec.networking.private else "Enabled",
            region_details=[
                {
                    "location": spec.location,
                    "acr_details": [{"system_created_acr_account": {"acr_account_sku": "Premium"}}],
                    "storage_account_details": [
                        {
                            "system_created_storage_account": {
                                "storage_account_type": "Standard_LRS",
                                "storage_account_hns_enabled": False,
                                "allow_blob_public_access": False,
                            }
                        }
                    ],
                }
            ],
            tags=self.tags,
            opts=self._opts,
        )

    def _publish_serving_image(
        self,
    ) -> tuple[ServingEnvironment | None, pulumi.Output[str] | None]:
        """The scoring container's environment in the registry, when a tier serves with the
        lean runtime: the resource, and the asset id deployments name (known at plan time:
        the context's digest is its version)."""
        spec = self._args.spec
        tiers = (spec.tiers.dedicated, spec.tiers.pooled)
        if all(tier.serving_runtime != "lean" for tier in tiers):
            return None, None
        version = environment_version(PROJECT_ROOT)
        published = ServingEnvironment(
            f"{self._name}-serving-environment",
            subscription_id=self.subscription_id,
            registry_name=self.ml_registry.name,
            context_root=str(PROJECT_ROOT),
            version=version,
            opts=pulumi.ResourceOptions(parent=self.ml_registry),
        )
        asset = pulumi.Output.concat(
            "azureml://registries/",
            self.ml_registry.name,
            f"/environments/{ENVIRONMENT_NAME}/versions/{version}",
        )
        return published, asset

    def _create_scorer_role(self) -> authorization.RoleDefinition:
        """A custom role that may only score online endpoints: what the gateway's identity
        gets on each endpoint (AzureML Data Scientist would let it change deployments)."""
        return self._custom_role(
            "scorer-role",
            "endpoint scorer",
            "Invoke Azure ML online endpoints; nothing else.",
            [SCORE_ACTION],
        )

    def _create_budget_stop_role(self) -> authorization.RoleDefinition:
        """A custom role that may only read and write API Management's named values: the
        automation sets pooled tenants' budget stops with it (API Management Service
        Contributor would let it change every policy and key)."""
        return self._custom_role(
            "budget-stop-role",
            "budget stops",
            "Read and write API Management named values; nothing else.",
            [NAMED_VALUE_READ, NAMED_VALUE_WRITE],
        )

    def _custom_role(
        self, suffix: str, title: str, description: str, actions: list[str]
    ) -> authorization.RoleDefinition:
        """A subscription-wide custom role of exactly ``actions``, assignable in the
        stack's subscription and in every other one its stamps are placed in (a custom
        role's AssignableScopes may list several subscriptions:
        https://learn.microsoft.com/azure/role-based-access-control/custom-roles)."""
        spec = self._args.spec
        scope = pulumi.Output.concat("/subscriptions/", self._args.subscription_id)
        placed = {t.subscription_id for t in spec.placement.targets if t.subscription_id}
        elsewhere = [f"/subscriptions/{subscription}" for subscription in sorted(placed)]
        return authorization.RoleDefinition(
            f"{self._name}-{suffix}",
            role_name=f"tenant-mlops {title} ({spec.prefix}-{spec.environment.value})",
            description=description,
            role_type="CustomRole",
            scope=scope,
            assignable_scopes=[scope, *elsewhere],
            permissions=[{"actions": actions, "not_actions": []}],
            opts=self._opts,
        )

    def custom_role_in(
        self, role: authorization.RoleDefinition, subscription_id: pulumi.Input[str]
    ) -> pulumi.Output[str]:
        """A custom role's id as an assignment in ``subscription_id`` names it (the role's
        name is its tenant-wide GUID)."""
        return pulumi.Output.concat(
            "/subscriptions/",
            subscription_id,
            "/providers/Microsoft.Authorization/roleDefinitions/",
            role.name,
        )

    def _grant_platform_personas(self) -> None:
        spec = self._args.spec
        table = table_for(spec.environment.is_production)
        principals = group_principals(spec.personas.model_dump())
        key = f"{spec.prefix}/{spec.environment.value}/{SCOPE}"
        apply_grants(
            f"{self._name}-rbac",
            grants=grants(table, PLATFORM_PERSONAS),
            principals=principals,
            scopes={
                "key_vault": (f"{key}/kv", self.key_vault.id),
                "container_registry": (f"{key}/acr", self.container_registry.id),
                "storage_account": (f"{key}/st", self.storage.id),
                "log_analytics": (f"{key}/logs", self.log_analytics.id),
                "azure_monitor": (f"{key}/rg", self.resource_group.id),
            },
            subscription_id=self._args.subscription_id,
            parent=self,
        )
        # The automation's own identity: tables (rollout state, audit), blobs (package,
        # dead letters, inference data), queues (Functions host), secrets, shared models.
        automation = Principal(
            "automation", self.automation_identity.principal_id, "ServicePrincipal"
        )
        # Rollout analysis reads the endpoints' traffic log (AmlOnlineEndpointTrafficLog);
        # telemetry goes to App Insights with Entra auth (local auth is off there).
        grant_needs(
            f"{self._name}-automation",
            identities=("automation",),
            principal=automation,
            targets={
                "platform_storage": GrantTarget(f"{key}/st", self.storage.id),
                "platform_app_insights": GrantTarget(f"{key}/appi", self.app_insights.id),
                "platform_key_vault": GrantTarget(f"{key}/kv", self.key_vault.id),
                "ml_registry": GrantTarget(f"{key}/mlr", self.ml_registry.id),
                "log_analytics": GrantTarget(f"{key}/logs", self.log_analytics.id),
            },
            conditions=["always"],
            subscription_id=self._args.subscription_id,
            parent=self,
        )
        # The deployer (CI/CD) uploads the Functions package with Entra auth: shared keys are
        # off, and Owner on the account grants no data-plane access by itself.
        for group in spec.personas.cicd:
            self._assign(
                f"cicd-st-blob-{group[:8]}",
                Principal(group, group, "Group"),
                "BlobDataContributor",
                self.storage.id,
                "st",
            )

    def _assign(
        self, suffix: str, principal: Principal, role: str, scope: pulumi.Input[str], key: str
    ) -> None:
        spec = self._args.spec
        assign_role(
            f"{self._name}-{suffix}",
            principal=principal,
            role_code=role,
            scope=scope,
            scope_key=f"{spec.prefix}/{spec.environment.value}/{SCOPE}/{key}",
            subscription_id=self._args.subscription_id,
            parent=self,
        )

    def _protect_with_private_endpoints(self) -> None:
        if self.network is None:
            return
        targets = [
            ("kv", self.key_vault.id, "vault"),
            ("st-blob", self.storage.id, "blob"),
            ("st-table", self.storage.id, "table"),
            ("st-queue", self.storage.id, "queue"),
            ("acr", self.container_registry.id, "registry"),
            ("mlr", self.ml_registry.id, "amlregistry"),
        ]
        self.network.reference().protect(
            self._name,
            targets,
            resource_group_name=self.resource_group.name,
            tags=self.tags,
            parent=self,
        )
