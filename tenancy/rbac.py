"""The persona x resource matrix of the MLOps v2 guidance (Azure Architecture Center,
"Machine learning operations v2", Identity RBAC), kept as data.

Two tables: production (used for staging and prod) and pre-production (local and dev).
``infra`` turns the Azure columns into role assignments for each persona's Entra groups.
The Azure DevOps and Azure Artifacts columns are kept for completeness but are granted in
Azure DevOps, not by Azure RBAC, so they produce no role assignment here.

How columns map to resources in a multi-tenant stamp (the guidance is single-tenant):
- Project-specific personas (data scientist ... model end user) are set per tenant and get
  roles on their own stamp only. Pooled tenants' people get none on the shared pool: they act
  through the gateway and the automation, so nothing of another tenant is reachable.
- "Log Analytics Workspace" for a project persona is granted on the stamp's Application
  Insights component: the shared Log Analytics workspace uses resource-context access, so a
  tenant reads its own stamp's logs and never another tenant's.
- "Azure Monitor" for a project persona is granted on the stamp's resource group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Column = Literal[
    "aml_workspace",
    "key_vault",
    "container_registry",
    "storage_account",
    "azure_devops",
    "azure_artifacts",
    "log_analytics",
    "azure_monitor",
]
AZURE_COLUMNS: tuple[Column, ...] = (
    "aml_workspace",
    "key_vault",
    "container_registry",
    "storage_account",
    "log_analytics",
    "azure_monitor",
)

#: Built-in Azure role definition ids (the same GUID in every subscription).
ROLE_IDS: dict[str, str] = {
    "R": "acdd72a7-3385-48ef-bd42-f606fba81ae7",  # Reader
    "C": "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
    "O": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "ADS": "f6c7c914-8db3-469d-8ca1-694a8f32e121",  # AzureML Data Scientist
    "ACO": "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",  # AzureML Compute Operator
    "ACRPush": "8311e382-0749-4cb8-b61a-304f252e45ec",  # AcrPush
    "LAR": "73c42c96-874c-492b-b04d-ab87d138a893",  # Log Analytics Reader
    "LAC": "92aaf0da-9dab-42b6-94a3-d43ce8d16293",  # Log Analytics Contributor
    "MR": "43d0d8ad-25c7-4714-9337-8ba259a9fe05",  # Monitoring Reader
    "MC": "749f88d5-cbae-40b8-bcfc-e573ddc772fa",  # Monitoring Contributor
    "KVA": "00482a5a-887f-4fb3-b363-3b7fe8e74483",  # Key Vault Administrator
    "KVR": "21090545-7ca7-4776-b22c-e363652d74d2",  # Key Vault Reader
    # Roles the platform's own identities need beyond the guidance's table:
    "BlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "BlobDataReader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "BlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "TableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "TableDataReader": "76199698-9eea-4c19-bc75-cec21354c6b6",
    "QueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "KeyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "AzureMLRegistryUser": "1823dd4f-9b8c-4ab6-ab4e-7397a3684615",
    "EventGridDataSender": "d5a91429-5739-47e2-a06b-3470a27159e7",
    # What Azure requires of the platform's identities (tenancy.permissions):
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "KeyVaultCryptoServiceEncryptionUser": "e147488a-f6f5-4113-8e2d-b22465e65bf6",
    "KeyVaultCryptoUser": "12338af0-0e69-4776-bea7-57ae8d297424",
    "MonitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "ManagedIdentityOperator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "AIEnterpriseNetworkConnectionApprover": "b556d68e-0be0-4f35-a333-ad7ee1ce17ea",
    "APIMServiceContributor": "312a565d-c81f-4fd8-895a-4e21e48d571c",
    "CognitiveServicesOpenAIUser": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "CognitiveServicesOpenAIContributor": "a001fd3d-188f-4b5d-821b-7da978bf7442",
    # The deploy pipeline: `pulumi up` creates role assignments (tenancy.permissions).
    "RBACAdministrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
}
#: Codes that are Azure DevOps permissions, not Azure roles.
DEVOPS_CODES = frozenset({"DOPA", "DOPCA"})

Persona = Literal[
    "data_scientist",
    "data_analyst",
    "model_tester",
    "business_stakeholder",
    "project_lead",
    "project_owner",
    "platform_support",
    "model_end_user",
    "cicd",
    "aml_workspace",
    "monitoring",
    "data_governance",
]
#: Personas that are project-specific in the guidance (set per tenant in the spec).
PROJECT_PERSONAS: tuple[Persona, ...] = (
    "data_scientist",
    "data_analyst",
    "model_tester",
    "business_stakeholder",
    "project_lead",
    "project_owner",
    "model_end_user",
)
#: Personas that serve every tenant (set once per environment in the spec).
PLATFORM_PERSONAS: tuple[Persona, ...] = (
    "platform_support",
    "cicd",
    "monitoring",
    "data_governance",
)
#: In the guidance these have temporary (just-in-time) access, not standing access.
JUST_IN_TIME: dict[str, frozenset[Persona]] = {
    "production": frozenset({"platform_support", "cicd"}),
    "pre_production": frozenset({"platform_support"}),
}

_COLUMNS: tuple[Column, ...] = (
    "aml_workspace",
    "key_vault",
    "container_registry",
    "storage_account",
    "azure_devops",
    "azure_artifacts",
    "log_analytics",
    "azure_monitor",
)


def _row(*cells: str) -> dict[Column, tuple[str, ...]]:
    return {
        column: tuple(code.strip() for code in cell.split(",") if code.strip())
        for column, cell in zip(_COLUMNS, cells, strict=True)
    }


# Columns: AML workspace | Key Vault | Container Registry | Storage Account |
#          Azure DevOps | Azure Artifacts | Log Analytics workspace | Azure Monitor
PRODUCTION: dict[Persona, dict[Column, tuple[str, ...]]] = {
    "data_scientist": _row("", "", "R", "", "", "", "LAR", "MR"),
    "data_analyst": _row("", "", "", "", "", "", "", ""),
    "model_tester": _row("", "", "", "", "", "", "", ""),
    "business_stakeholder": _row("", "", "", "", "", "", "", "MR"),
    "project_lead": _row("R", "R, KVR", "R", "", "", "", "LAR", "MR"),
    "project_owner": _row("", "", "", "", "", "", "", "MR"),
    "platform_support": _row("O", "O, KVA", "", "", "DOPCA", "O", "O", "O"),
    "model_end_user": _row("", "", "", "", "", "", "", ""),
    "cicd": _row("O", "O, KVA", "ACRPush", "", "DOPCA", "O", "O", "O"),
    "aml_workspace": _row("", "R", "C", "C", "", "", "", ""),
    "monitoring": _row("R", "", "", "", "", "", "LAR", "MR"),
    "data_governance": _row("R", "", "R", "R", "R", "R", "", ""),
}

PRE_PRODUCTION: dict[Persona, dict[Column, tuple[str, ...]]] = {
    "data_scientist": _row("ADS", "R, KVA", "C", "C", "C", "C", "LAC", "MC"),
    "data_analyst": _row("R", "", "", "C", "", "", "LAR", "MC"),
    "model_tester": _row("R", "R, KVR", "R", "R", "R", "R", "LAR", "MR"),
    "business_stakeholder": _row("R", "", "R", "R", "R", "R", "", ""),
    "project_lead": _row("C", "C, KVA", "C", "C", "C", "C", "LAC", "MC"),
    "project_owner": _row("R", "", "", "R", "", "", "", "MR"),
    "platform_support": _row("O", "O, KVA", "O", "O", "DOPCA", "O", "O", "O"),
    "model_end_user": _row("", "", "", "", "", "", "", ""),
    "cicd": _row("O", "O, KVA", "ACRPush", "O", "DOPCA", "O", "O", "O"),
    "aml_workspace": _row("", "R, KVR", "C", "C", "", "", "", ""),
    "monitoring": _row("R", "R", "R", "R", "R", "R", "LAC", ""),
    "data_governance": _row("R", "", "R", "R", "", "", "", ""),
}

TableName = Literal["production", "pre_production"]


def table_for(is_production: bool) -> TableName:
    return "production" if is_production else "pre_production"


@dataclass(frozen=True)
class Grant:
    """One Azure role for one persona on one kind of resource."""

    persona: Persona
    column: Column
    role_code: str
    just_in_time: bool

    @property
    def role_id(self) -> str:
        return ROLE_IDS[self.role_code]


def grants(table: TableName, personas: tuple[Persona, ...]) -> list[Grant]:
    """The Azure role grants of ``personas`` in ``table`` (DevOps columns left out)."""
    matrix = PRODUCTION if table == "production" else PRE_PRODUCTION
    jit = JUST_IN_TIME[table]
    return [
        Grant(persona, column, code, persona in jit)
        for persona in personas
        for column in AZURE_COLUMNS
        for code in matrix[persona][column]
        if code not in DEVOPS_CODES
    ]
