"""Building blocks used by the shared services and by every stamp, so that storage, vaults,
registries and telemetry are secured the same way everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import applicationinsights, containerregistry, keyvault, storage

from infra.common import send_diagnostics
from tenancy import naming
from tenancy.spec import PlatformSpec


@dataclass(frozen=True)
class Placement:
    """Where a block goes: its logical name prefix, scope (for physical names), group, tags."""

    name: str
    scope: str
    spec: PlatformSpec
    resource_group_name: pulumi.Input[str]
    tags: dict[str, str]
    parent: pulumi.Resource
    location: str = ""  # default: the stack's

    @property
    def region(self) -> str:
        return self.location or self.spec.location

    @property
    def public_access(self) -> str:
        return "Disabled" if self.spec.networking.private else "Enabled"


def storage_account(
    at: Placement, *, trusted_services: bool = False, allowed_ranges: Sequence[str] = ()
) -> storage.StorageAccount:
    """Entra-only storage: no shared keys, no public blobs, TLS 1.2.

    Private stacks turn public network access off, except on an account that Azure services
    must write to through its firewall (``trusted_services``: Event Grid's dead letters).
    Azure's trusted-service exception applies only to "Enabled from selected networks", not
    to "Disabled", so such an account denies every network but its private endpoints, the
    trusted services and ``allowed_ranges`` (the deployer's public ranges).
    https://learn.microsoft.com/azure/storage/common/storage-network-security#grant-access-to-trusted-azure-services
    """
    spec = at.spec
    selected_networks = spec.networking.private and trusted_services
    return storage.StorageAccount(
        f"{at.name}-st",
        resource_group_name=at.resource_group_name,
        account_name=naming.storage_account(
            spec.prefix, spec.environment, at.scope, spec.installation
        ),
        location=at.region,
        kind="StorageV2",
        sku={"name": "Standard_ZRS" if spec.environment.is_production else "Standard_LRS"},
        allow_blob_public_access=False,
        allow_shared_key_access=False,
        default_to_o_auth_authentication=True,
        minimum_tls_version="TLS1_2",
        enable_https_traffic_only=True,
        public_network_access="Enabled" if selected_networks else at.public_access,
        network_rule_set=storage.NetworkRuleSetArgs(
            default_action="Deny",
            bypass="AzureServices",
            ip_rules=[
                storage.IPRuleArgs(i_p_address_or_range=cidr, action="Allow")
                for cidr in allowed_ranges
            ],
        )
        if selected_networks
        else None,
        tags=at.tags,
        opts=pulumi.ResourceOptions(parent=at.parent),
    )


def key_vault(
    at: Placement, *, entra_tenant_id: pulumi.Input[str], log_workspace_id: pulumi.Input[str]
) -> keyvault.Vault:
    """RBAC authorization, soft delete and purge protection (required for customer-managed
    keys), logs to Log Analytics."""
    spec = at.spec
    vault = keyvault.Vault(
        f"{at.name}-kv",
        resource_group_name=at.resource_group_name,
        vault_name=naming.key_vault(spec.prefix, spec.environment, at.scope, spec.installation),
        location=at.region,
        properties={
            "tenant_id": entra_tenant_id,
            "sku": {"family": "A", "name": "standard"},
            "enable_rbac_authorization": True,
            "enable_soft_delete": True,
            "enable_purge_protection": True,
            "soft_delete_retention_in_days": spec.vault_retention_days,
            # A destroyed vault stays soft-deleted, its name taken, for the retention period
            # (purge protection forbids purging it): `recover` brings it back with its keys.
            # https://learn.microsoft.com/azure/key-vault/general/key-vault-recovery
            "create_mode": spec.key_vaults.create_mode,
            "public_network_access": at.public_access,
        },
        tags=at.tags,
        # Both matter only when the vault is created: the mode is set back after a recovery,
        # and the retention "cannot be changed once set"
        # (https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview).
        opts=pulumi.ResourceOptions(
            parent=at.parent,
            ignore_changes=["properties.createMode", "properties.softDeleteRetentionInDays"],
        ),
    )
    send_diagnostics(
        f"{at.name}-kv-diag", resource_id=vault.id, workspace_id=log_workspace_id, parent=vault
    )
    return vault


def container_registry(at: Placement, *, public_sku: str) -> containerregistry.Registry:
    """Admin user off; Premium where private endpoints need it."""
    spec = at.spec
    return containerregistry.Registry(
        f"{at.name}-acr",
        resource_group_name=at.resource_group_name,
        registry_name=naming.container_registry(
            spec.prefix, spec.environment, at.scope, spec.installation
        ),
        location=at.region,
        sku={"name": "Premium" if spec.networking.private else public_sku},
        admin_user_enabled=False,
        public_network_access=at.public_access,
        tags=at.tags,
        opts=pulumi.ResourceOptions(parent=at.parent),
    )


def app_insights(
    at: Placement, *, component_name: str, log_workspace_id: pulumi.Input[str]
) -> applicationinsights.Component:
    """Workspace-based Application Insights with local (key) auth off."""
    return applicationinsights.Component(
        f"{at.name}-appi",
        resource_group_name=at.resource_group_name,
        resource_name_=component_name,
        location=at.region,
        kind="web",
        application_type="web",
        ingestion_mode="LogAnalytics",
        workspace_resource_id=log_workspace_id,
        disable_local_auth=True,
        tags=at.tags,
        opts=pulumi.ResourceOptions(parent=at.parent),
    )
