"""Names that infrastructure and automation must agree on, declared once.

The Pulumi program wires Event Grid subscriptions, app settings and storage to these names;
the Functions app registers its functions and reads its settings under the same names.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

# Event Grid event types the automation subscribes to on every ML workspace.
EVENT_MODEL_REGISTERED: Final = "Microsoft.MachineLearningServices.ModelRegistered"
EVENT_RUN_STATUS_CHANGED: Final = "Microsoft.MachineLearningServices.RunStatusChanged"
# Azure ML model monitors tag the run whose signal breached its threshold with this key.
MODEL_MONITOR_BREACH_TAG: Final = "azureml_modelmonitor_threshold_breached"

# Functions (Python v2 programming model) that Event Grid and alerts deliver to.
FUNCTION_MODEL_REGISTERED: Final = "on_model_registered"
FUNCTION_RUN_STATUS_CHANGED: Final = "on_run_status_changed"
FUNCTION_BUDGET_ALERT: Final = "on_budget_alert"
ROUTE_BUDGET_ALERT: Final = "alerts/budget"

# Platform storage (identity-based access only).
CONTAINER_DEAD_LETTER: Final = "eventgrid-deadletter"
CONTAINER_FUNCTION_PACKAGE: Final = "function-releases"
CONTAINER_INFERENCE_DATA: Final = "inference-data"
# What `pulumi up` set on the governed resources, for the audit's drift check.
CONTAINER_PLATFORM_STATE: Final = "platform-state"
BLOB_EXPECTED_STATE: Final = "expected-state.json"
#: Every expected-state document's name starts so: the shared stack's, and one per shard.
EXPECTED_STATE_PREFIX: Final = "expected-state"


def expected_state_blob(shard: str | None = None) -> str:
    """The blob a stack leaves its expected state in: the shared (or only) stack's, or a
    shard stack's own (``expected-state.<target>.json``)."""
    return f"{EXPECTED_STATE_PREFIX}.{shard}.json" if shard else BLOB_EXPECTED_STATE
TABLE_ROLLOUTS: Final = "rollouts"
TABLE_AUDIT: Final = "audit"
TABLE_EVENTS: Final = "events"
TABLE_BUDGET_STATE: Final = "budgetstate"
# Usage metered per tenant, one row per stamp and hour (automation.costs).
TABLE_USAGE: Final = "usage"
PLATFORM_TABLES: Final = (
    TABLE_ROLLOUTS,
    TABLE_AUDIT,
    TABLE_EVENTS,
    TABLE_BUDGET_STATE,
    TABLE_USAGE,
)

# Deployment names: the first deployment of every online endpoint is blue.
FIRST_DEPLOYMENT: Final = "blue"
BATCH_DEFAULT_DEPLOYMENT: Final = "default"
BATCH_OUTPUT_FILE: Final = "predictions.csv"
# Entry scripts of the scoring code asset: online deployments call score.py's run(raw_data,
# headers), batch deployments batch_score.py's run(mini_batch).
ONLINE_SCORING_SCRIPT: Final = "score.py"
BATCH_SCORING_SCRIPT: Final = "batch_score.py"

# Dynamic resources of the program (infra.deploy_time), as the policy pack knows them.
KIND_PACKAGE_UPLOAD: Final = "tenant-mlops:function-package"
KIND_BATCH_DEFAULT: Final = "tenant-mlops:batch-default"
KIND_EXPECTED_STATE: Final = "tenant-mlops:expected-state"
KIND_SERVING_ENVIRONMENT: Final = "tenant-mlops:serving-environment"
DYNAMIC_RESOURCE_TYPE: Final = "pulumi-python:dynamic:Resource"

# Tags every taggable resource carries.
TAG_TENANT: Final = "tenant-id"
TAG_ENV: Final = "env"
TAG_COST_CENTER: Final = "cost-center"
MANDATORY_TAGS: Final = (TAG_TENANT, TAG_ENV, TAG_COST_CENTER)
# tenant-id values for resources that belong to no single tenant.
PLATFORM_TENANT_TAG: Final = "platform"


def pool_bundle_model(pool_id: str) -> str:
    """The Azure ML model holding a pool's tenant models side by side (one per deployment
    of the pool's endpoint: a managed deployment names one model asset, ``properties.model``
    of https://learn.microsoft.com/rest/api/azureml/online-deployments/create-or-update)."""
    return f"{pool_id}-pool-models"


def pool_tenant_tag(pool_id: str) -> str:
    return f"pool:{pool_id}"


# App settings the Function App receives (names read by functions/settings.py).
SETTING_STACK: Final = "TENANT_MLOPS_STACK"
SETTING_PLATFORM_SPEC: Final = "TENANT_MLOPS_PLATFORM_SPEC"
SETTING_STORAGE_ACCOUNT: Final = "TENANT_MLOPS_STORAGE_ACCOUNT"
SETTING_SUBSCRIPTION: Final = "TENANT_MLOPS_SUBSCRIPTION_ID"
SETTING_IDENTITY_CLIENT_ID: Final = "AZURE_CLIENT_ID"
SETTING_LOGS_WORKSPACE: Final = "TENANT_MLOPS_LOGS_WORKSPACE_ID"
SETTING_STATE_CONNECTION: Final = "TENANT_MLOPS_STATE_CONNECTION"
SETTING_ADAPTER: Final = "TENANT_MLOPS_ADAPTER"
SETTING_WEBHOOK_SECRET: Final = "TENANT_MLOPS_MLFLOW_WEBHOOK_SECRET"  # noqa: S105 - a name
# Timer schedules are app settings (``%NAME%`` in the trigger), derived from the spec.
SETTING_ROLLOUT_SCHEDULE: Final = "TENANT_MLOPS_ROLLOUT_SCHEDULE"
SETTING_DRIFT_SCHEDULE: Final = "TENANT_MLOPS_DRIFT_SCHEDULE"
SETTING_AUDIT_SCHEDULE: Final = "TENANT_MLOPS_AUDIT_SCHEDULE"
SETTING_QUALITY_SCHEDULE: Final = "TENANT_MLOPS_QUALITY_SCHEDULE"
# Set by App Service itself (read-only) while its authentication module runs in front of the
# app: the proof that identity headers came from the platform, not from the caller
# (https://learn.microsoft.com/azure/app-service/reference-app-settings#authentication--authorization).
SETTING_AUTH_ENABLED: Final = "WEBSITE_AUTH_ENABLED"

# The retraining job's code: a folder of the Function App package, the modules
# ``python -m ml.retrain`` reaches. The adapter submits it with each job, and Azure ML keeps
# it as a workspace code asset named by its content hash (the same code is uploaded once).
TRAINING_CODE_DIR: Final = "retraining"
TRAINING_ENTRY: Final = "ml.retrain"

# Model version tags the training code writes and the model gate reads (MLflow and Azure ML
# registries alike). Lineage first, then what shared models must add.
MODEL_TAG_TENANT: Final = "tenant"
MODEL_TAG_TRAINING_RUN: Final = "training_run"
MODEL_TAG_DATA_VERSION: Final = "data_version"
MODEL_TAG_OWNER: Final = "owner"
MODEL_TAG_INTENDED_USE: Final = "intended_use"
MODEL_TAG_STRATEGY: Final = "strategy"
MODEL_TAG_CONTRIBUTORS: Final = "contributing_tenants"  # comma-separated tenant ids
MODEL_TAG_IDENTIFIERS_REMOVED: Final = "identifying_columns_removed"  # "true"
MODEL_TAG_BASE: Final = "base_model"  # "<name>/<version>" of a tuned model's shared base
MODEL_TAG_DIGEST: Final = "artifact_digest"  # "sha256:<hex>" of the model file
MODEL_TAG_BASELINE: Final = "baseline_dataset"  # URI of the drift reference data
# "<stack>:<name>/<version>" a version was promoted from (`mlops promote`).
MODEL_TAG_PROMOTED_FROM: Final = "promoted_from"
#: JSON {metric: value} of the source's training run, on a promoted version: on Azure the run
#: stays in the source's workspace, so the target's model gate reads the metrics from here.
MODEL_TAG_SOURCE_METRICS: Final = "source_metrics"
#: How a promoted version crossed: "deploy_code" (retrained in the target with the source's
#: training code, whose commit is MODEL_TAG_CODE_VERSION) or "deploy_models" (copied).
MODEL_TAG_PROMOTION: Final = "promotion"
MODEL_TAG_CODE_VERSION: Final = "code_version"
#: The training job's extra model tags, JSON, as `mlops retrain` passes them (a promotion's).
SETTING_MODEL_TAGS: Final = "TENANT_MLOPS_MODEL_TAGS"
#: ``azureml://registries/<registry>/models/<name>/versions/<v>`` a promoted version came
#: through (Azure): its lineage, the training job's link included, is kept there.
MODEL_TAG_REGISTRY_ASSET: Final = "registry_asset"
MODEL_TAG_APPROVED_BY: Final = "approved_by"
MODEL_TAG_APPROVED_AS: Final = "approved_as"  # the approver's persona
#: On a pooled deployment's model (Azure: one asset per deployment holds every pool tenant's
#: model, a folder per tenant): JSON {tenant id: "<name>/<version>"}.
MODEL_TAG_POOL_MODELS: Final = "pool_models"
ALIAS_CHAMPION: Final = "champion"
ALIAS_CHALLENGER: Final = "challenger"
#: The gateway's chat API, on Azure (infra.genai) as on the embedded platform
#: (local.gateway): ``POST /genai/{deployment}/chat/completions``, ``POST /genai/feedback``.
GENAI_API_PATH = "genai"
#: The harm categories a content filter judges, each on prompts and on completions: what
#: infra.genai sets and policies.genai_rules requires (Azure's names).
HARM_CATEGORIES: Final = ("Hate", "Sexual", "Violence", "Selfharm")
#: Azure ML's model registry has no aliases: a version's tag says which it is, and the
#: champion's stage is Production (the portal's view of the same fact).
MODEL_TAG_ALIAS: Final = "alias"
STAGE_CHAMPION: Final = "Production"
STAGE_DEMOTED: Final = "Development"


# --- notifications on Azure ------------------------------------------------------------------
#: The automation's notifications are log lines of this shape in the Function App's
#: Application Insights ``traces``; the program's log search alert rules
#: (infra/alerting.py) parse them and send each to the stack's alert contacts through the
#: operations action group.
NOTIFICATION_PREFIX: Final = "tenant-mlops notification"
NOTIFICATION_SEVERITIES: Final = ("info", "warning", "critical")


def entra_audiences(app_id: str) -> list[str]:
    """The audiences a token for the automation's Entra application carries: its application
    id URI (v1 tokens) or its client id (v2 tokens). App Service authentication allows these,
    and the app checks them again."""
    return [f"api://{app_id}", app_id]


def notification_line(severity: str, tenant: str, message: str) -> str:
    """One notification as the automation logs it (one line: the rule parses it whole)."""
    text = " ".join(message.split())
    return f"{NOTIFICATION_PREFIX} severity={severity} tenant={tenant}: {text}"


# Azure ML's data collector: the collections drift reads, and where the collector writes
# them in the workspace's default blob datastore, one folder per hour
# (https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data).
# The embedded platform's gateway writes the same layout to Azurite.
COLLECTION_INPUTS: Final = "model_inputs"
COLLECTION_OUTPUTS: Final = "model_outputs"
COLLECTIONS: Final = (COLLECTION_INPUTS, COLLECTION_OUTPUTS)
COLLECTOR_ROOT: Final = "modelDataCollector"
#: Ground truth, per endpoint (a label is for a request, whichever deployment served it):
#: ``modelDataCollector/<endpoint>/ground_truth/<yyyy>/<mm>/<dd>/<hh>/<id>.jsonl``, one
#: label a line (``correlationid``, ``tenant``, ``label``, ``time``). Azure ML deployment
#: names take no underscore, so no deployment's folder is ever this one.
COLLECTION_LABELS: Final = "ground_truth"
#: A pooled request's rows name their tenant in this column (score.py's TENANT_COLUMN).
TENANT_COLUMN: Final = "tenant_id"


def collector_prefix(endpoint: str, deployment: str, collection: str, at: datetime) -> str:
    """The folder of the hour ``at`` falls in."""
    return f"{COLLECTOR_ROOT}/{endpoint}/{deployment}/{collection}/{at:%Y/%m/%d/%H}/"


def labels_prefix(endpoint: str, at: datetime) -> str:
    """The folder of the hour ``at`` falls in, for labels sent to ``endpoint``."""
    return f"{COLLECTOR_ROOT}/{endpoint}/{COLLECTION_LABELS}/{at:%Y/%m/%d/%H}/"


def collector_prefixes(
    endpoint: str, deployment: str, collection: str, since: datetime, until: datetime
) -> list[str]:
    """The folders of every hour in [since, until)."""
    prefixes: list[str] = []
    hour = since.replace(minute=0, second=0, microsecond=0)
    while hour < until and since < until:
        prefixes.append(collector_prefix(endpoint, deployment, collection, hour))
        hour += timedelta(hours=1)
    return prefixes


# A pooled tenant's budget stop at API Management (automation.costs): the named value its
# product policy reads, "none" while the tenant is served, else the day it is served again.
BUDGET_STOP_NONE: Final = "none"


def budget_stop_named_value(tenant: str) -> str:
    return f"budget-stop-{tenant}"

#: The environment variable that sets a deployment's scoring workers: azureml-inference-server-http
#: reads it (default 1: one request at a time per instance, whatever its cores), and the lean
#: host reads the same one.
#: https://learn.microsoft.com/azure/machine-learning/how-to-inference-server-http#server-parameters
SETTING_SCORING_WORKERS: Final = "WORKER_COUNT"
#: A pooled deployment's model cache per worker, in bytes (score.py reads it).
SETTING_MODEL_CACHE_BYTES: Final = "TENANT_MLOPS_MODEL_CACHE_BYTES"
