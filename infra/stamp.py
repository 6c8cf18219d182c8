"""A stamp: everything one dedicated tenant, or one pool of tenants, runs on.

Each stamp has its own resource group, identity, storage, key vault, registry and
Application Insights, so nothing of one tenant references another's identity, key vault,
storage, registry or endpoint. Logs go to the environment's Log Analytics workspace, which is
read with resource-context permissions (see ``tenancy.rbac``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import pulumi
from pulumi_azure_native import (
    consumption,
    keyvault,
    machinelearningservices,
    managedidentity,
    resources,
)

from infra import blocks
from infra.common import (
    GrantTarget,
    Principal,
    apply_grants,
    assign_role,
    grant_needs,
    group_principals,
    send_diagnostics,
    standard_tags,
)
from infra.deploy_time import BatchDefault
from infra.eventing import subscribe_workspace_events
from infra.genai import GenAIAccount, GenAIAccountArgs
from infra.monitoring import create_endpoint_alerts
from infra.platform_refs import PlatformRefs
from tenancy import contracts, naming
from tenancy.instance_types import model_cache_bytes
from tenancy.permissions import Condition, Target
from tenancy.rbac import (
    PLATFORM_PERSONAS,
    PROJECT_PERSONAS,
    Column,
    Persona,
    grants,
    table_for,
)
from tenancy.spec import (
    BudgetSpec,
    ComputeSpec,
    EndpointsSpec,
    PlatformSpec,
    PoolSpec,
    TenantPersonas,
    TenantSpec,
    Tier,
)

StampKind = Literal["tenant", "pool"]
#: Every input of a first deployment but its identity (names, group, endpoint). The program
#: creates `blue` and the batch `default` once, at 0 % traffic, as the template the
#: automation copies; from then on the automation owns them (it replaces blue's model in
#: its first rollout and deletes blue after a promotion). With all of these ignored, a
#: later `pulumi up` computes no diff for them and sends nothing: `ignore_changes` alone on
#: the model would re-send the bootstrap model (the state's value) with any other change
#: (the review's W9; the engine "sets inputs back to their old values for any ignored
#: properties", pulumi/pulumi pkg/resource/deploy/step_generator.go).
AUTOMATION_OWNED = ["properties", "sku", "tags", "location", "kind", "identity"]
_CLASSIFICATION_ORDER = ("public", "internal", "confidential", "restricted")


@dataclass
class StampArgs:
    spec: PlatformSpec
    kind: StampKind
    stamp_id: str
    tier: Tier
    cost_center: str
    compute: ComputeSpec
    endpoints: EndpointsSpec
    budget: BudgetSpec
    personas: TenantPersonas
    tenants: list[TenantSpec]
    platform: PlatformRefs  # what the stamp reads of the shared platform
    subscription_id: pulumi.Input[str]
    entra_tenant_id: pulumi.Input[str]
    today: date
    tags: dict[str, str] = field(default_factory=dict)
    # Where tenancy.placement put the stamp: its region (default: the stack's location).
    location: str = ""

    @property
    def region(self) -> str:
        return self.location or self.spec.location

    @property
    def tenant_tag(self) -> str:
        return self.stamp_id if self.kind == "tenant" else contracts.pool_tenant_tag(self.stamp_id)

    @property
    def data_classification(self) -> str:
        """The strictest classification among the tenants the stamp serves."""
        levels = [t.data_classification for t in self.tenants] or ["internal"]
        return max(levels, key=_CLASSIFICATION_ORDER.index)


def stamp_args_for_tenant(tenant: TenantSpec, **common: Any) -> StampArgs:
    if tenant.compute is None:  # the spec's relational checks make this unreachable
        raise ValueError(f"dedicated tenant '{tenant.id}' has no compute block")
    return StampArgs(
        kind="tenant",
        stamp_id=tenant.id,
        tier="dedicated",
        cost_center=tenant.cost_center,
        compute=tenant.compute,
        endpoints=tenant.endpoints,
        budget=tenant.budget,
        personas=tenant.personas,
        tenants=[tenant],
        **common,
    )


def stamp_args_for_pool(pool: PoolSpec, spec: PlatformSpec, **common: Any) -> StampArgs:
    return StampArgs(
        spec=spec,
        kind="pool",
        stamp_id=pool.id,
        tier="pooled",
        cost_center=pool.cost_center,
        compute=pool.compute,
        endpoints=pool.endpoints,
        budget=pool.budget,
        personas=pool.personas,
        tenants=spec.tenants_in_pool(pool.id),
        **common,
    )


class Stamp(pulumi.ComponentResource):
    def __init__(self, name: str, args: StampArgs, opts: pulumi.ResourceOptions | None = None):
        tenant_id = args.stamp_id if args.kind == "tenant" else None
        super().__init__(
            "tenant-mlops:stamp:Stamp", name, {"tenantId": tenant_id, "stamp": name}, opts
        )
        self._name = name
        self._args = args
        spec = args.spec
        self.tags = standard_tags(spec, args.tenant_tag, args.cost_center)
        self._scope_key = f"{spec.prefix}/{spec.environment.value}/{name}"
        self.resource_group = self._create_resource_group()
        self.identity = self._create_identity()
        at = blocks.Placement(
            name, name, spec, self.resource_group.name, self.tags, self, location=args.region
        )
        logs = args.platform.log_analytics_id
        self.storage = blocks.storage_account(at)
        self.key_vault = blocks.key_vault(
            at, entra_tenant_id=args.entra_tenant_id, log_workspace_id=logs
        )
        self.container_registry = blocks.container_registry(at, public_sku="Basic")
        self.app_insights = blocks.app_insights(
            at, component_name=f"appi-{name}", log_workspace_id=logs
        )
        identity_grants = self._grant_workspace_identity()
        self.workspace = self._create_workspace(identity_grants)
        self.compute = self._create_compute()
        self.online_endpoint = self._create_online_endpoint()
        self.batch_endpoint = self._create_batch_endpoint()
        self.genai = self._create_genai_account()
        self._grant_personas()
        self._grant_automation_and_gateway()
        self._create_budgets()
        self._observe()
        subscribe_workspace_events(
            name,
            args=args,
            tags=self.tags,
            resource_group=self.resource_group,
            workspace=self.workspace,
            parent=self,
        )
        self._protect_with_private_endpoints()
        self.register_outputs(
            {
                "resourceGroupName": self.resource_group.name,
                "workspaceName": self.workspace.name,
                "workspaceId": self.workspace.id,
                "identityId": self.identity.id,
                "computeName": self.compute.name,
                "onlineEndpointName": self.online_endpoint.name if self.online_endpoint else None,
                "scoringUri": self.scoring_uri,
                "batchEndpointName": self.batch_endpoint.name if self.batch_endpoint else None,
                "aiAccountName": self.genai.account.name if self.genai else None,
            }
        )

    # --- identity, data and secrets ------------------------------------------------------

    @property
    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    @property
    def _private(self) -> bool:
        return self._args.spec.networking.private

    def _create_resource_group(self) -> resources.ResourceGroup:
        spec = self._args.spec
        return resources.ResourceGroup(
            f"{self._name}-rg",
            resource_group_name=naming.resource_group(spec.prefix, spec.environment, self._name),
            location=self._args.region,
            tags=self.tags,
            opts=self._opts,
        )

    def _create_identity(self) -> managedidentity.UserAssignedIdentity:
        return managedidentity.UserAssignedIdentity(
            f"{self._name}-id",
            resource_group_name=self.resource_group.name,
            resource_name_=f"id-{self._name}",
            location=self._args.region,
            tags=self.tags,
            opts=self._opts,
        )

    def _grant_workspace_identity(self) -> list[pulumi.CustomResource]:
        """The stamp's identity is the workspace's, its cluster's and its endpoint's. Its
        roles must exist before the workspace is created, so they are granted first: the
        "AML Workspace" column of the MLOps v2 guidance, then what Azure requires of a
        user-assigned workspace, endpoint and managed network (``tenancy.permissions``)."""
        table = table_for(self._args.spec.environment.is_production)
        principal = Principal(f"{self._name}-id", self.identity.principal_id, "ServicePrincipal")
        guidance = apply_grants(
            f"{self._name}-rbac",
            grants=grants(table, ("aml_workspace",)),
            principals={"aml_workspace": [principal]},
            scopes=self._data_scopes(),
            subscription_id=self._args.subscription_id,
            parent=self,
        )
        key = self._scope_key
        targets: dict[Target, GrantTarget] = {
            "resource_group": GrantTarget(f"{key}/rg", self.resource_group.id),
            "storage": GrantTarget(f"{key}/st", self.storage.id),
            "key_vault": GrantTarget(f"{key}/kv", self.key_vault.id),
            "container_registry": GrantTarget(f"{key}/acr", self.container_registry.id),
            "app_insights": GrantTarget(f"{key}/appi", self.app_insights.id),
            "ml_registry": GrantTarget(
                f"{key}/mlr", self._args.platform.ml_registry_id, in_group=False
            ),
        }
        conditions: list[Condition] = ["always", "data_collection"]
        if self._args.data_classification == "restricted":
            conditions.append("customer_managed_key")
        if self._private:
            conditions.append("managed_network")
        required = grant_needs(
            f"{self._name}-id",
            identities=("workspace", "endpoint"),
            principal=principal,
            targets=targets,
            conditions=conditions,
            subscription_id=self._args.subscription_id,
            parent=self,
        )
        return guidance + required

    def _data_scopes(self) -> dict[Column, tuple[str, pulumi.Input[str]]]:
        key = self._scope_key
        return {
            "key_vault": (f"{key}/kv", self.key_vault.id),
            "container_registry": (f"{key}/acr", self.container_registry.id),
            "storage_account": (f"{key}/st", self.storage.id),
        }

    def _create_workspace(
        self, identity_grants: list[pulumi.CustomResource]
    ) -> machinelearningservices.Workspace:
        spec = self._args.spec
        restricted = self._args.data_classification == "restricted"
        return machinelearningservices.Workspace(
            f"{self._name}-ws",
            resource_group_name=self.resource_group.name,
            workspace_name=naming.workspace(spec.environment, self._name),
            friendly_name=f"{self._name} ({spec.environment.value})",
            location=self._args.region,
            kind="Default",
            sku={"name": "Basic", "tier": "Basic"},
            identity={"type": "UserAssigned", "user_assigned_identities": [self.identity.id]},
            primary_user_assigned_identity=self.identity.id,
            storage_account=self.storage.id,
            key_vault=self.key_vault.id,
            container_registry=self.container_registry.id,
            application_insights=self.app_insights.id,
            # Storage has shared keys off: datastores authenticate with the identity. The
            # enum's value is `Identity` (C3: "identity" diffed against what Azure returns):
            # https://learn.microsoft.com/azure/templates/microsoft.machinelearningservices/workspaces
            system_datastores_auth_mode=machinelearningservices.SystemDatastoresAuthMode.IDENTITY,
            hbi_workspace=self._args.data_classification in ("confidential", "restricted"),
            public_network_access="Disabled" if self._private else "Enabled",
            managed_network=self._managed_network(),
            # "To create an online deployment, you must manually provision the managed
            # network" (how-to-managed-network): provisioned with the workspace, before any
            # deployment depends on it.
            provision_network_now=True if self._private else None,
            encryption=self._customer_managed_key() if restricted else None,
            v1_legacy_mode=False,
            tags=self.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=identity_grants),
        )

    def _managed_network(self) -> machinelearningservices.ManagedNetworkSettingsArgs:
        """Private stamps allow only approved outbound traffic. Private endpoints are made
        automatically to the workspace's own storage, vault and registry only; every other
        private dependency needs a rule (https://learn.microsoft.com/azure/machine-learning/
        how-to-managed-network#list-of-required-rules): the environment's Azure ML registry
        (serving assets, shared models) and, for batch endpoints, the default storage's
        queues and tables ("Scenario: Use batch endpoints")."""
        if not self._private:
            return machinelearningservices.ManagedNetworkSettingsArgs(isolation_mode="Disabled")
        targets: dict[str, tuple[pulumi.Input[str], str]] = {
            "platform-registry": (self._args.platform.ml_registry_id, "amlregistry"),
        }
        if self._args.endpoints.batch.enabled:
            targets["batch-queue"] = (self.storage.id, "queue")
            targets["batch-table"] = (self.storage.id, "table")
        return machinelearningservices.ManagedNetworkSettingsArgs(
            isolation_mode="AllowOnlyApprovedOutbound",
            outbound_rules={
                rule: machinelearningservices.PrivateEndpointOutboundRuleArgs(
                    type="PrivateEndpoint",
                    category="UserDefined",
                    destination=machinelearningservices.PrivateEndpointDestinationArgs(
                        service_resource_id=resource_id,
                        subresource_target=subresource,
                        spark_enabled=False,
                    ),
                )
                for rule, (resource_id, subresource) in targets.items()
            },
        )

    def _customer_managed_key(self) -> dict[str, object]:
        """Restricted data is encrypted with a key the tenant's own vault holds."""
        key = keyvault.Key(
            f"{self._name}-cmk",
            resource_group_name=self.resource_group.name,
            vault_name=self.key_vault.name,
            key_name="workspace-cmk",
            properties={"kty": "RSA", "key_size": 3072, "key_ops": ["wrapKey", "unwrapKey"]},
            tags=self.tags,
            opts=pulumi.ResourceOptions(parent=self.key_vault),
        )
        return {
            "status": "Enabled",
            "identity": {"user_assigned_identity": self.identity.id},
            "key_vault_properties": {
                "key_vault_arm_id": self.key_vault.id,
                "key_identifier": key.key_uri_with_version,
            },
        }

    def _create_compute(self) -> machinelearningservices.Compute:
        compute = self._args.compute
        return machinelearningservices.Compute(
            f"{self._name}-gpu",
            resource_group_name=self.resource_group.name,
            workspace_name=self.workspace.name,
            compute_name="gpu-cluster",
            location=self._args.region,
            identity={"type": "UserAssigned", "user_assigned_identities": [self.identity.id]},
            # Typed arguments, not a dict: Compute.properties is a union, and a plain dict
            # reaches the engine in camelCase only when the SDK happens to have registered
            # the union's member types (it depends on import order).
            properties=machinelearningservices.AmlComputeArgs(
                compute_type="AmlCompute",
                disable_local_auth=True,
                properties=machinelearningservices.AmlComputePropertiesArgs(
                    vm_size=compute.gpu_sku,
                    vm_priority="LowPriority" if compute.low_priority else "Dedicated",
                    os_type="Linux",
                    enable_node_public_ip=not self._private,
                    remote_login_port_public_access="Disabled",
                    scale_settings=machinelearningservices.ScaleSettingsArgs(
                        # Zero nodes when idle: a GPU cluster costs nothing between jobs.
                        min_node_count=0,
                        max_node_count=compute.max_nodes,
                        node_idle_time_before_scale_down=(
                            f"PT{compute.idle_seconds_before_scale_down}S"
                        ),
                    ),
                ),
            ),
            tags=self.tags,
            opts=self._opts,
        )

    def _registry_asset(self, kind: str, ref: str) -> pulumi.Output[str]:
        name, version = ref.split(":")
        return pulumi.Output.concat(
            "azureml://registries/",
            self._args.platform.ml_registry_name,
            f"/{kind}/{name}/versions/{version}",
        )

    def _create_online_endpoint(self) -> machinelearningservices.OnlineEndpoint | None:
        online = self._args.endpoints.online
        if not online.enabled:
            return None
        spec = self._args.spec
        name = spec.endpoint_name("online", self._args.stamp_id, self._args.endpoints)
        endpoint = machinelearningservices.OnlineEndpoint(
            f"{self._name}-online",
            resource_group_name=self.resource_group.name,
            workspace_name=self.workspace.name,
            endpoint_name=name,
            location=self._args.region,
            identity={"type": "UserAssigned", "user_assigned_identities": [self.identity.id]},
            properties={
                # Entra tokens only: the gateway calls with its identity, tenants never hold
                # endpoint keys (theirs are gateway subscription keys).
                "auth_mode": "AADToken",
                "public_network_access": "Disabled" if self._private else "Enabled",
                # No traffic and no mirror, ever: the automation owns both from the first
                # deployment on (its first rollout switches a deployment to 100 %). Naming
                # `blue` here would name a deployment created after the endpoint (D8), and
                # `ignore_changes` would re-send that old value on every later update of
                # the endpoint, undoing a canary or a rollback (W9).
            },
            tags=self.tags,
            opts=self._opts,
        )
        self._create_first_deployment(endpoint)
        return endpoint

    def _create_first_deployment(
        self, endpoint: machinelearningservices.OnlineEndpoint
    ) -> machinelearningservices.OnlineDeployment:
        online = self._args.endpoints.online
        serving = self._args.spec.serving
        liveness = serving.liveness
        probe = machinelearningservices.ProbeSettingsArgs(
            initial_delay="PT10S",
            period=f"PT{liveness.period_seconds}S",
            timeout=f"PT{liveness.timeout_seconds}S",
            failure_threshold=liveness.failure_threshold,
            success_threshold=1,
        )
        # Inputs and outputs are collected for drift (the Azure ML data collector layout).
        enabled = machinelearningservices.CollectionArgs(data_collection_mode="Enabled")
        collections = dict.fromkeys(contracts.COLLECTIONS, enabled)
        return machinelearningservices.OnlineDeployment(
            f"{self._name}-online-{contracts.FIRST_DEPLOYMENT}",
            resource_group_name=self.resource_group.name,
            workspace_name=self.workspace.name,
            endpoint_name=endpoint.name,
            deployment_name=contracts.FIRST_DEPLOYMENT,
            location=self._args.region,
            sku={"name": "Default", "capacity": online.instance_count},
            # A union-typed property: only the typed Args class gets its keys translated
            # to the wire names (a plain dict would reach Azure in snake_case).
            properties=machinelearningservices.ManagedOnlineDeploymentArgs(
                endpoint_compute_type="Managed",
                instance_type=online.instance_type,
                model=self._registry_asset("models", serving.bootstrap_model),
                **self._serving_runtime(),
                scale_settings=machinelearningservices.DefaultScaleSettingsArgs(
                    scale_type="Default"
                ),
                # One scoring worker per vCPU, and as many requests in at once: the inference
                # server's default is a single worker, one core of the instance
                # (https://learn.microsoft.com/azure/machine-learning/how-to-inference-server-http#server-parameters).
                environment_variables=self._scoring_variables(),
                request_settings=machinelearningservices.OnlineRequestSettingsArgs(
                    request_timeout=f"PT{online.request_timeout_ms / 1000:g}S",
                    max_concurrent_requests_per_instance=online.max_concurrency,
                ),
                liveness_probe=probe,
                readiness_probe=probe,
                app_insights_enabled=True,
                egress_public_network_access="Disabled" if self._private else "Enabled",
                data_collector=machinelearningservices.DataCollectorArgs(collections=collections)
                if online.data_collection
                else None,
            ),
            tags=self.tags,
            opts=pulumi.ResourceOptions(
                parent=endpoint,
                ignore_changes=AUTOMATION_OWNED,
                # The scoring container's environment exists before a deployment names it.
                # (A shard stack's comes from the shared stack, deployed before it.)
                depends_on=list(self._args.platform.serving_ready),
            ),
        )

    def _create_genai_account(self) -> GenAIAccount | None:
        """The AI Services account of the stamp's tenants that use generative AI."""
        tenants = [t for t in self._args.tenants if t.genai is not None]
        if not tenants:
            return None
        return GenAIAccount(
            f"{self._name}-genai",
            GenAIAccountArgs(
                spec=self._args.spec,
                scope=self._name,
                tenants=tenants,
                resource_group_name=self.resource_group.name,
                tags=self.tags,
                log_workspace_id=self._args.platform.log_analytics_id,
                location=self._args.region,
            ),
            self._opts,
        )

    @property
    def scope_key(self) -> str:
        """The stamp's key in role assignment names (stable across renames of resources)."""
        return self._scope_key

    @property
    def subscription_id(self) -> pulumi.Input[str]:
        """The subscription the stamp is placed in (role definition ids are named in it)."""
        return self._args.subscription_id

    def _serving_runtime(self) -> dict[str, Any]:
        """What runs score.py, as the tier's ``serving_runtime`` says: the scoring container
        (score.py inside it, so no code asset) or Azure ML's inference server with the
        registry's scoring environment and code asset."""
        spec = self._args.spec
        tier: Tier = "dedicated" if self._args.kind == "tenant" else "pooled"
        lean_image = self._args.platform.serving_environment_id
        if spec.tiers.profile(tier).serving_runtime == "lean" and lean_image is not None:
            return {"environment_id": lean_image}
        return {
            "environment_id": self._registry_asset("environments", spec.serving.environment),
            "code_configuration": machinelearningservices.CodeConfigurationArgs(
                code_id=self._registry_asset("codes", spec.serving.scoring_code),
                scoring_script=contracts.ONLINE_SCORING_SCRIPT,
            ),
        }

    def _scoring_variables(self) -> dict[str, str]:
        """The workers, and for a pool each worker's model cache in bytes: its share of the
        instance's memory, so that a pool of a thousand tenants' models stays within it."""
        online = self._args.endpoints.online
        variables = {contracts.SETTING_SCORING_WORKERS: str(online.workers)}
        if self._args.kind == "pool":
            cache = model_cache_bytes(online.instance_type)
            variables[contracts.SETTING_MODEL_CACHE_BYTES] = str(cache)
        return variables

    def _create_batch_endpoint(self) -> machinelearningservices.BatchEndpoint | None:
        batch = self._args.endpoints.batch
        if not batch.enabled:
            return None
        spec = self._args.spec
        name = spec.endpoint_name("batch", self._args.stamp_id, self._args.endpoints)
        endpoint = machinelearningservices.BatchEndpoint(
            f"{self._name}-batch",
            resource_group_name=self.resource_group.name,
            workspace_name=self.workspace.name,
            endpoint_name=name,
            location=self._args.region,
            # No defaults: they would name a deployment created after the endpoint (D8); the
            # default is set once the deployment exists (below).
            properties={"auth_mode": "AADToken"},
            tags=self.tags,
            opts=self._opts,
        )
        deployment = machinelearningservices.BatchDeployment(
            f"{self._name}-batch-{contracts.BATCH_DEFAULT_DEPLOYMENT}",
            resource_group_name=self.resource_group.name,
            workspace_name=self.workspace.name,
            endpoint_name=endpoint.name,
            deployment_name=contracts.BATCH_DEFAULT_DEPLOYMENT,
            location=self._args.region,
            properties={
                "compute": self.compute.id,
                "model": {
                    "reference_type": "Id",
                    "asset_id": self._registry_asset("models", spec.serving.bootstrap_model),
                },
                "environment_id": self._registry_asset("environments", spec.serving.environment),
                "code_configuration": {
                    "code_id": self._registry_asset("codes", spec.serving.scoring_code),
                    # A batch deployment calls run(mini_batch) (ml/scoring/batch_score.py);
                    # score.py's run(raw_data, headers) is the online entry point (W6):
                    # https://learn.microsoft.com/azure/machine-learning/how-to-batch-scoring-script
                    "scoring_script": contracts.BATCH_SCORING_SCRIPT,
                },
                "mini_batch_size": batch.mini_batch_size,
                "max_concurrency_per_instance": batch.max_concurrency_per_instance,
                "output_action": "AppendRow",
                "output_file_name": contracts.BATCH_OUTPUT_FILE,
                "error_threshold": batch.error_threshold,
                "retry_settings": {"max_retries": batch.max_retries, "timeout": "PT5M"},
                "resources": {"instance_count": batch.instance_count},
                "logging_level": "Info",
            },
            tags=self.tags,
            opts=pulumi.ResourceOptions(parent=endpoint, ignore_changes=AUTOMATION_OWNED),
        )
        BatchDefault(
            f"{self._name}-batch-defaults",
            endpoint_id=endpoint.id,
            deployment_name=deployment.name,
            opts=pulumi.ResourceOptions(parent=endpoint, depends_on=[deployment]),
        )
        return endpoint

    @property
    def datastore_container(self) -> pulumi.Output[str]:
        """The container of the workspace's default blob datastore (``workspaceblobstore``):
        Azure ML creates it with the workspace as ``azureml-blobstore-<GUID>``
        (https://learn.microsoft.com/azure/machine-learning/v1/how-to-use-parallel-run-step#view-the-results),
        the GUID being the workspace's id (``workspaceId``). Collected data and labels live
        there. Only the plan relies on the name (the gateway's grant, its label URL); the
        automation reads the datastore's ``containerName`` from Azure ML."""
        return pulumi.Output.concat("azureml-blobstore-", self.workspace.workspace_id)

    @property
    def labels_container(self) -> pulumi.Output[str]:
        """Its URL, where the gateway writes the stamp's tenants' labels."""
        return pulumi.Output.concat(
            self.storage.primary_endpoints.blob, self.datastore_container
        )

    @property
    def scoring_uri(self) -> pulumi.Output[str] | None:
        if self.online_endpoint is None:
            return None
        return self.online_endpoint.properties.scoring_uri

    # --- access ------------------------------------------------------------------------

    def _grant_personas(self) -> None:
        """Project personas on this stamp only; platform personas on every stamp."""
        args = self._args
        table = table_for(args.spec.environment.is_production)
        key = self._scope_key
        scopes: dict[Column, tuple[str, pulumi.Input[str]]] = {
            **self._data_scopes(),
            "aml_workspace": (f"{key}/ws", self.workspace.id),
            "azure_monitor": (f"{key}/rg", self.resource_group.id),
            # Resource-context log access: this stamp's telemetry, not the shared workspace.
            "log_analytics": (f"{key}/appi", self.app_insights.id),
        }
        project = group_principals(args.personas.model_dump())
        platform = group_principals(args.spec.personas.model_dump())
        personas: tuple[Persona, ...] = PROJECT_PERSONAS
        apply_grants(
            f"{self._name}-rbac",
            grants=grants(table, personas),
            principals=project,
            scopes=scopes,
            subscription_id=args.subscription_id,
            parent=self,
        )
        platform_scopes: dict[Column, tuple[str, pulumi.Input[str]]] = {
            column: scope for column, scope in scopes.items() if column != "log_analytics"
        }
        apply_grants(
            f"{self._name}-rbac",
            grants=grants(table, PLATFORM_PERSONAS),
            principals=platform,
            scopes=platform_scopes,
            subscription_id=args.subscription_id,
            parent=self,
        )

    def _grant_automation_and_gateway(self) -> None:
        automation = Principal(
            "automation",
            self._args.platform.automation_principal_id,
            "ServicePrincipal",
        )
        # Deployments and traffic (rollouts), compute scaling (budgets), collected inference
        # data (drift) and endpoint metrics (rollout analysis).
        key = self._scope_key
        grant_needs(
            f"{self._name}-automation",
            identities=("automation",),
            principal=automation,
            targets={
                "workspace": GrantTarget(f"{key}/ws", self.workspace.id),
                "stamp_identity": GrantTarget(f"{key}/id", self.identity.id),
                "resource_group": GrantTarget(f"{key}/rg", self.resource_group.id),
                "storage": GrantTarget(f"{key}/st", self.storage.id),
            },
            conditions=["always"],
            subscription_id=self._args.subscription_id,
            parent=self,
        )
        if self.online_endpoint is not None:
            # The gateway's identity may score this endpoint and do nothing else.
            gateway = Principal(
                "gateway", self._args.platform.gateway.principal_id, "ServicePrincipal"
            )
            assign_role(
                f"{self._name}-gateway-score",
                principal=gateway,
                role_code="EndpointScorer",
                custom_role_id=self._args.platform.scorer_role_in(self._args.subscription_id),
                scope=self.online_endpoint.id,
                scope_key=f"{self._scope_key}/online",
                subscription_id=self._args.subscription_id,
                parent=self,
                description="tenant gateway: score only",
            )
            # ...and write its tenants' labels (ground truth) into the default datastore's
            # container, no other (infra.gateway's feedback operation).
            assign_role(
                f"{self._name}-gateway-labels",
                principal=gateway,
                role_code="BlobDataContributor",
                scope=pulumi.Output.concat(
                    self.storage.id, "/blobServices/default/containers/", self.datastore_container
                ),
                scope_key=f"{self._scope_key}/labels",
                subscription_id=self._args.subscription_id,
                parent=self,
                description="tenant gateway: write ground truth",
            )

    # --- cost -------------------------------------------------------------------------

    def _create_budgets(self) -> None:
        """One budget on the stamp's resource group (a dedicated tenant's, or a pool's).

        A pooled tenant gets no Azure budget of its own: every resource of a pool is tagged
        with the pool (``tenant-id=pool:<id>``), so a budget filtered on the tenant's tag
        would watch no cost at all (the review's W8). The pool's budget covers its tenants;
        a pooled tenant's own limit needs usage-based attribution, which Cost Management
        cannot do for shared resources."""
        self._budget(f"{self._name}-budget", self._args.budget)

    def _budget(self, name: str, budget: BudgetSpec) -> consumption.Budget:
        start = budget_start(budget, self._args.spec, self._args.today)
        notifications = {
            f"{t.type.lower()}-{t.percent:g}pct": {
                "enabled": True,
                "operator": "GreaterThanOrEqualTo",
                "threshold": t.percent,
                "threshold_type": t.type,
                "contact_emails": budget.contacts,
                # Every threshold also reaches the automation (notify; stop above the limit).
                "contact_groups": [self._args.platform.automation_group_id],
                "locale": "en-us",
            }
            for t in budget.thresholds
        }
        return consumption.Budget(
            name,
            budget_name=f"budget-{name}",
            scope=self.resource_group.id,
            amount=budget.amount,
            category="Cost",
            time_grain=budget.time_grain,
            time_period={"start_date": f"{start.isoformat()}T00:00:00Z"},
            notifications=notifications,
            # Azure never changes a budget's start date ("Start date of budgets cannot be
            # updated"): the date of the first `pulumi up` stays in the state and is what
            # every later update sends, so plans do not churn when the month turns.
            # https://learn.microsoft.com/rest/api/consumption/budgets/create-or-update
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["timePeriod"]),
        )

    # --- monitoring and network ------------------------------------------------------------

    def _observe(self) -> None:
        workspace_id = self._args.platform.log_analytics_id
        send_diagnostics(
            f"{self._name}-ws-diag",
            resource_id=self.workspace.id,
            workspace_id=workspace_id,
            parent=self.workspace,
        )
        if self.online_endpoint is not None:
            send_diagnostics(
                f"{self._name}-online-diag",
                resource_id=self.online_endpoint.id,
                workspace_id=workspace_id,
                parent=self.online_endpoint,
            )
            create_endpoint_alerts(
                f"{self._name}-online",
                endpoint_id=self.online_endpoint.id,
                resource_group_name=self.resource_group.name,
                alerts=self._args.spec.alerts,
                action_group_id=self._args.platform.operations_group_id,
                tags=self.tags,
                parent=self.online_endpoint,
            )

    def _protect_with_private_endpoints(self) -> None:
        network = self._args.platform.network
        if network is None:
            return
        targets = [
            ("ws", self.workspace.id, "amlworkspace"),
            ("st-blob", self.storage.id, "blob"),
            ("st-file", self.storage.id, "file"),
            ("kv", self.key_vault.id, "vault"),
            ("acr", self.container_registry.id, "registry"),
        ]
        if self.genai is not None:
            targets.append(("ai", self.genai.account.id, "account"))
        network.protect(
            self._name,
            targets,
            resource_group_name=self.resource_group.name,
            tags=self.tags,
            parent=self,
        )


def budget_start(budget: BudgetSpec, spec: PlatformSpec, today: date) -> date:
    """The budget's start date as the program sends it (``PlatformSpec.budget_start``)."""
    return spec.budget_start(budget, today)
