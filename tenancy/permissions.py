"""What each identity of the platform does in Azure, and the built-in roles that let it, as
data.

The MLOps v2 persona table (:mod:`tenancy.rbac`) says who *people* are; it does not say what
Azure requires of the identities the platform itself runs as. The review of 72c5684 found
five refusals of that kind (D4, D5, W3, W7, W10, and D6's approver role): a workspace whose
identity cannot unwrap its key, endpoints that cannot download their model, telemetry
rejected, traffic updates refused with ``LinkedAuthorizationFailed``. Each row below is one
action, the roles that grant it (the first is what the program grants; any of them
satisfies the ``identity-permissions`` rule) and the Microsoft document that states it.

Identities:
- ``workspace``: a stamp's user-assigned identity as the workspace's primary identity (it
  is also the compute cluster's);
- ``endpoint``: the identity of a stamp's online endpoint (the same identity here);
- ``automation``: the Function App's user-assigned identity;
- ``gateway``: API Management's system-assigned identity;
- ``event_grid``: a workspace's system topic identity (dead letters);
- ``deployer``: whoever runs `pulumi up` (the Functions package upload);
- ``deploy_pipeline``, ``preview_pipeline``, ``report_pipeline``: the GitHub workflows'
  identities (infra/delivery.py), told apart by the GitHub environment their federated
  credential trusts (``<env>``, ``<env>-preview``, ``<env>-report``).

Shared keys are off on every storage account and local authentication on every App
Insights component, so data-plane roles (blob data, metrics publisher, Key Vault data roles)
are what the identities need; Contributor grants none of them.

Targets name a resource relative to the identity (the workspace's storage, the platform's
registry, ...); :mod:`policies.permission_rules` finds them in a plan and
:mod:`infra` grants on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Identity = Literal[
    "workspace",
    "endpoint",
    "automation",
    "gateway",
    "event_grid",
    "deployer",
    "deploy_pipeline",
    "preview_pipeline",
    "report_pipeline",
]
Target = Literal[
    "resource_group",  # the identity's stamp resource group
    "workspace",
    "storage",  # a workspace's default storage (its datastores)
    "key_vault",
    "container_registry",
    "app_insights",
    "ml_registry",  # the environment's Azure ML registry (shared models, serving assets)
    "stamp_identity",  # a stamp's user-assigned identity (assigned to deployments)
    "log_analytics",
    "online_endpoint",
    "platform_storage",  # the automation's tables, queues and blobs
    "platform_app_insights",
    "platform_key_vault",
    "dead_letter_storage",
    "package_storage",
    "api_management",  # the tenant gateway's service
    "ai_account",  # a stamp's AI Services account (its tenants' model deployments)
]
#: When a need applies: always, or only where the plan uses what needs it.
Condition = Literal["always", "customer_managed_key", "managed_network", "data_collection"]

#: A custom role grants an action rather than a built-in role id: ``action:<operation>``.
SCORE_ACTION = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"
#: What the automation does at API Management: set a pooled tenant's budget stop.
NAMED_VALUE_WRITE = "Microsoft.ApiManagement/service/namedValues/write"
NAMED_VALUE_READ = "Microsoft.ApiManagement/service/namedValues/read"

_RESOURCE_GRAPH = (
    "https://learn.microsoft.com/azure/governance/resource-graph/overview"
    "#permissions-in-azure-resource-graph"
)
_UAI_WORKSPACE = (
    "https://learn.microsoft.com/azure/machine-learning/"
    "how-to-identity-based-service-authentication#user-assigned-managed-identity"
)
_CMK = "https://learn.microsoft.com/azure/machine-learning/how-to-setup-customer-managed-keys"
_MANAGED_NETWORK = "https://learn.microsoft.com/azure/machine-learning/how-to-managed-network"
_ENDPOINT_IDENTITY = (
    "https://learn.microsoft.com/azure/machine-learning/"
    "how-to-access-resources-from-endpoints-managed-identities"
)
_DATA_COLLECTION = (
    "https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data"
)
_REGISTRIES = (
    "https://learn.microsoft.com/azure/machine-learning/"
    "how-to-share-models-pipelines-across-workspaces-with-registries"
)
_ML_ROLES = "https://learn.microsoft.com/azure/machine-learning/how-to-assign-roles"
_IDENTITY_OPERATOR = (
    "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/"
    "identity#managed-identity-operator"
)
_LOG_ACCESS = "https://learn.microsoft.com/azure/azure-monitor/logs/manage-access"
_MONITOR_ACCESS = "https://learn.microsoft.com/azure/azure-monitor/roles-permissions-security"
_TELEMETRY = "https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication"
_HOST_STORAGE = (
    "https://learn.microsoft.com/azure/azure-functions/"
    "functions-reference#connecting-to-host-storage-with-an-identity"
)
_KEY_VAULT_RBAC = "https://learn.microsoft.com/azure/key-vault/general/rbac-guide"
_SCORING = "https://learn.microsoft.com/azure/machine-learning/concept-endpoints-online-auth"
_DEAD_LETTER = (
    "https://learn.microsoft.com/azure/event-grid/"
    "managed-service-identity#deliver-events-to-destinations"
)
_APIM_RBAC = "https://learn.microsoft.com/azure/api-management/api-management-role-based-access-control"
_BLOB_DATA = "https://learn.microsoft.com/azure/storage/blobs/assign-azure-role-data-access"
_OPENAI_RBAC = "https://learn.microsoft.com/azure/ai-foundry/openai/how-to/role-based-access-control"
_APIM_APP_INSIGHTS = (
    "https://learn.microsoft.com/azure/api-management/api-management-howto-app-insights"
)
_PRIVILEGED = "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/privileged"
_READER = (
    "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/general#reader"
)
_TABLE_DATA = (
    "https://learn.microsoft.com/azure/storage/tables/"
    "authorize-access-azure-active-directory#azure-built-in-roles-for-tables"
)


@dataclass(frozen=True)
class Need:
    """One action an identity performs on a target, and the roles that allow it."""

    identity: Identity
    action: str
    target: Target
    roles: tuple[str, ...]  # role codes of tenancy.rbac.ROLE_IDS, or "action:<operation>"
    doc: str
    when: Condition = "always"
    # Used while the resource the identity serves is created (the workspace, a deployment,
    # the package upload): the role must be assigned before that resource is.
    at_creation: bool = False


_READ_BLOBS = ("BlobDataReader", "BlobDataContributor", "BlobDataOwner")
_WRITE_BLOBS = ("BlobDataContributor", "BlobDataOwner")
_REGISTRY_USER = ("AzureMLRegistryUser", "C", "O")

NEEDS: tuple[Need, ...] = (
    # --- the workspace's own identity ----------------------------------------------------
    Need(
        "workspace",
        "manage its workspace, storage, vault, registry and App Insights",
        "resource_group",
        ("C", "O"),
        _UAI_WORKSPACE,
        at_creation=True,
    ),
    Need(
        "workspace",
        "read and write its system datastores",
        "storage",
        _WRITE_BLOBS,
        _UAI_WORKSPACE,
        at_creation=True,
    ),
    Need(
        "workspace",
        "manage the workspace's secrets",
        "key_vault",
        ("KVA",),
        _UAI_WORKSPACE,
        at_creation=True,
    ),
    Need(
        "workspace",
        "get, wrap and unwrap the customer-managed key",
        "key_vault",
        ("KeyVaultCryptoServiceEncryptionUser", "KeyVaultCryptoUser", "KVA"),
        _CMK,
        when="customer_managed_key",
        at_creation=True,
    ),
    Need(
        "workspace",
        "push environment images to its registry",
        "container_registry",
        ("ACRPush", "C", "O"),
        _UAI_WORKSPACE,
    ),
    Need(
        "workspace",
        "send telemetry to its App Insights",
        "app_insights",
        ("MonitoringMetricsPublisher",),
        _TELEMETRY,
    ),
    Need(
        "workspace",
        "pull shared models and serving assets from the environment's registry",
        "ml_registry",
        _REGISTRY_USER,
        _REGISTRIES,
    ),
    Need(
        "workspace",
        "approve the private endpoints of its managed network to its own resources",
        "resource_group",
        ("AIEnterpriseNetworkConnectionApprover", "C", "O"),
        _MANAGED_NETWORK,
        when="managed_network",
        at_creation=True,
    ),
    Need(
        "workspace",
        "approve its managed network's private endpoint to the environment's registry",
        "ml_registry",
        ("AIEnterpriseNetworkConnectionApprover", "C", "O"),
        _MANAGED_NETWORK,
        when="managed_network",
        at_creation=True,
    ),
    # --- the online endpoint's identity --------------------------------------------------
    Need(
        "endpoint",
        "download the model from the workspace's default datastore",
        "storage",
        _READ_BLOBS,
        _ENDPOINT_IDENTITY,
        at_creation=True,
    ),
    Need(
        "endpoint",
        "pull the deployment's image",
        "container_registry",
        ("AcrPull", "ACRPush", "C", "O"),
        _ENDPOINT_IDENTITY,
        at_creation=True,
    ),
    Need(
        "endpoint",
        "write collected model inputs and outputs to the default datastore",
        "storage",
        _WRITE_BLOBS,
        _DATA_COLLECTION,
        when="data_collection",
        at_creation=True,
    ),
    Need(
        "endpoint",
        "pull registry models, environments and code of its deployments",
        "ml_registry",
        _REGISTRY_USER,
        _REGISTRIES,
        at_creation=True,
    ),
    # --- the automation ------------------------------------------------------------------
    Need(
        "automation",
        "create, update and delete deployments, set traffic, submit retraining jobs",
        "workspace",
        ("ADS", "C", "O"),
        _ML_ROLES,
    ),
    Need(
        "automation",
        "scale compute clusters",
        "workspace",
        ("ACO", "C", "O"),
        _ML_ROLES,
    ),
    Need(
        "automation",
        "assign the stamp's identity to the endpoint and deployments it updates",
        "stamp_identity",
        ("ManagedIdentityOperator", "C", "O"),
        _IDENTITY_OPERATOR,
    ),
    Need(
        "automation",
        "read endpoint metrics",
        "resource_group",
        ("MR", "MC", "R", "C", "O"),
        _MONITOR_ACCESS,
    ),
    Need(
        "automation",
        "read the stamp's resources for the policy audit (Resource Graph returns only what "
        "its caller may read)",
        "resource_group",
        ("MR", "R", "C", "O"),
        _RESOURCE_GRAPH,
    ),
    Need(
        "automation",
        "query the endpoints' traffic logs",
        "log_analytics",
        ("LAR", "LAC", "R", "C", "O"),
        _LOG_ACCESS,
    ),
    Need(
        "automation",
        "read collected inference data and drift baselines, and write the model folders "
        "of pooled deployments (one asset holds every pool tenant's model)",
        "storage",
        _WRITE_BLOBS,
        _BLOB_DATA,
    ),
    Need(
        "automation",
        "keep rollout state, audit records and events in tables",
        "platform_storage",
        ("TableDataContributor",),
        _HOST_STORAGE,
    ),
    Need(
        "automation",
        "host storage, the deployment package and dead letters in blobs",
        "platform_storage",
        ("BlobDataOwner",),
        _HOST_STORAGE,
    ),
    Need(
        "automation",
        "the Functions host's queues",
        "platform_storage",
        ("QueueDataContributor",),
        _HOST_STORAGE,
    ),
    Need(
        "automation",
        "send telemetry to App Insights",
        "platform_app_insights",
        ("MonitoringMetricsPublisher",),
        _TELEMETRY,
    ),
    Need(
        "automation",
        "read secrets",
        "platform_key_vault",
        ("KeyVaultSecretsUser", "KVA"),
        _KEY_VAULT_RBAC,
    ),
    Need(
        "automation",
        "read shared models in the environment's registry",
        "ml_registry",
        _REGISTRY_USER,
        _REGISTRIES,
    ),
    Need(
        "automation",
        "refuse a pooled tenant's scoring while its metered budget is spent (the named "
        "value its product policy reads)",
        "api_management",
        (f"action:{NAMED_VALUE_WRITE}", "APIMServiceContributor", "C", "O"),
        _APIM_RBAC,
    ),
    # --- the gateway, Event Grid and the deployer ----------------------------------------
    Need(
        "gateway",
        "score the online endpoint it routes to",
        "online_endpoint",
        (f"action:{SCORE_ACTION}", "ADS", "C", "O"),
        _SCORING,
    ),
    Need(
        "gateway",
        "call its tenants' model deployments (chat completions) with its own identity",
        "ai_account",
        ("CognitiveServicesOpenAIUser", "CognitiveServicesOpenAIContributor"),
        _OPENAI_RBAC,
    ),
    Need(
        "gateway",
        "send token metrics (llm-emit-token-metric) to the platform's App Insights",
        "platform_app_insights",
        ("MonitoringMetricsPublisher",),
        _APIM_APP_INSIGHTS,
    ),
    Need(
        "event_grid",
        "write undeliverable events to the dead-letter container",
        "dead_letter_storage",
        _WRITE_BLOBS,
        _DEAD_LETTER,
        at_creation=True,
    ),
    Need(
        "deployer",
        "upload the Functions package and the expected state",
        "package_storage",
        _WRITE_BLOBS,
        _BLOB_DATA,
        at_creation=True,
    ),
    # --- the pipelines (standing assignments: a pipeline cannot activate an eligibility) ---
    Need(
        "deploy_pipeline",
        "create and update the platform's resources (pulumi up)",
        "resource_group",
        ("C", "O"),
        _PRIVILEGED,
    ),
    Need(
        "deploy_pipeline",
        "assign the platform identities' roles (pulumi up)",
        "resource_group",
        ("RBACAdministrator", "O"),
        _PRIVILEGED,
    ),
    Need(
        "deploy_pipeline",
        "submit training jobs (mlops retrain)",
        "workspace",
        ("C", "O"),
        _ML_ROLES,
    ),
    Need(
        "preview_pipeline",
        "read the deployed resources (pulumi preview)",
        "resource_group",
        ("R", "C", "O"),
        _READER,
    ),
    Need(
        "report_pipeline",
        "read the automation's state tables (mlops watch report)",
        "platform_storage",
        ("TableDataReader", "TableDataContributor"),
        _TABLE_DATA,
    ),
)


def needs_of(identity: Identity) -> tuple[Need, ...]:
    return tuple(need for need in NEEDS if need.identity == identity)
