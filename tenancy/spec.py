"""The platform spec: the one description of an environment that every part reads.

It lives in ``Pulumi.<stack>.yaml`` under the key ``tenant-mlops:platform`` and is parsed
by :func:`tenancy.load.parse_platform_spec`. The models here check each value on its own;
relations between parts of the document (pools that must exist, SKUs allowed per tier,
names derived from ids) are checked by :mod:`tenancy.relations`, so that one error can name
every bad key. This module imports neither Pulumi nor an Azure SDK.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tenancy import naming
from tenancy import validators as v
from tenancy.errors import NotFoundError
from tenancy.instance_types import INSTANCE_TYPES, workers_for
from tenancy.limits import LIMITS

Slug = Annotated[str, AfterValidator(v.slug)]
EndpointName = Annotated[str, AfterValidator(v.endpoint_name)]
GroupId = Annotated[str, AfterValidator(v.group_object_id)]
Email = Annotated[str, AfterValidator(v.email)]
AssetRef = Annotated[str, AfterValidator(v.asset_ref)]
Percent = Annotated[float, Field(gt=0, le=100)]


class Environment(StrEnum):
    LOCAL = "local"
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"

    @property
    def is_production(self) -> bool:
        """Staging and prod follow the production RBAC table of the MLOps v2 guidance."""
        return self in (Environment.STAGING, Environment.PROD)

    @property
    def short(self) -> str:
        return {"local": "loc", "dev": "dev", "staging": "stg", "prod": "prd"}[self.value]


Tier = Literal["dedicated", "pooled"]
ModelStrategy = Literal["tenant_specific", "shared", "tuned_shared"]
ModelKind = Literal["classical", "cv", "nlp"]
DataClassification = Literal["public", "internal", "confidential", "restricted"]
RolloutStrategy = Literal["canary", "blue_green"]
DriftMetric = Literal[
    "normalized_wasserstein_distance",
    "jensen_shannon_distance",
    "population_stability_index",
    "two_sample_kolmogorov_smirnov_test",
    "pearsons_chi_squared_test",
]
#: The statistical tests are judged on their p-value (drift when p < threshold); the
#: distances and PSI are judged on their value (drift when value > threshold).
P_VALUE_METRICS: frozenset[str] = frozenset(
    {"two_sample_kolmogorov_smirnov_test", "pearsons_chi_squared_test"}
)
TenantPersona = Literal[
    "data_scientist",
    "data_analyst",
    "model_tester",
    "business_stakeholder",
    "project_lead",
    "project_owner",
    "model_end_user",
]


class SpecModel(BaseModel):
    """Every spec model rejects unknown keys (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- tiers -------------------------------------------------------------------------------


def _known_instance_type(value: str) -> str:
    if value not in INSTANCE_TYPES:
        raise ValueError(
            f"instance type {value!r} is not one managed online endpoints take (known: "
            f"{', '.join(sorted(INSTANCE_TYPES))})"
        )
    return value


InstanceTypeName = Annotated[str, AfterValidator(_known_instance_type)]
ServingRuntime = Literal["lean", "azureml-inference-server"]


class TierProfile(SpecModel):
    """What a tier may use. There is no Azure built-in policy for ML compute sizes, so the
    allow-lists live here and the policy pack enforces them."""

    allowed_gpu_skus: list[str] = Field(min_length=1)
    max_nodes_cap: int = Field(ge=1, le=100)
    allowed_instance_types: list[InstanceTypeName] = Field(min_length=1)
    max_model_size_mb: int = Field(ge=1, le=100_000)
    # What serves score.py on the tier's online deployments: ``lean``, the scoring container
    # (serving/: score.py under the lean host, a worker per vCPU), or
    # ``azureml-inference-server``, Azure ML's own host of the registry's scoring
    # environment (serving.environment) with the scoring code asset.
    serving_runtime: ServingRuntime = "lean"


DEDICATED_PROFILE = TierProfile(
    allowed_gpu_skus=[
        "Standard_NC4as_T4_v3",
        "Standard_NC8as_T4_v3",
        "Standard_NC16as_T4_v3",
        "Standard_NC24ads_A100_v4",
        "Standard_NC48ads_A100_v4",
        "Standard_NC40ads_H100_v5",
    ],
    max_nodes_cap=16,
    allowed_instance_types=[
        "Standard_DS2_v2",
        "Standard_DS3_v2",
        "Standard_DS4_v2",
        "Standard_F4s_v2",
        "Standard_F8s_v2",
        "Standard_NC4as_T4_v3",
    ],
    max_model_size_mb=2048,
)

POOLED_PROFILE = TierProfile(
    allowed_gpu_skus=["Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3"],
    max_nodes_cap=8,
    allowed_instance_types=["Standard_DS3_v2", "Standard_DS4_v2", "Standard_F4s_v2"],
    max_model_size_mb=256,
)


class Tiers(SpecModel):
    dedicated: TierProfile = DEDICATED_PROFILE
    pooled: TierProfile = POOLED_PROFILE

    def profile(self, tier: Tier) -> TierProfile:
        return self.dedicated if tier == "dedicated" else self.pooled


# --- per-stamp parts ---------------------------------------------------------------------


class ComputeSpec(SpecModel):
    gpu_sku: str
    max_nodes: int = Field(ge=1, le=100)
    low_priority: bool = False
    idle_seconds_before_scale_down: int = Field(default=900, ge=60, le=86_400)



class OnlineEndpointSpec(SpecModel):
    enabled: bool = True
    name: EndpointName | None = None
    instance_type: InstanceTypeName = "Standard_DS3_v2"
    instance_count: int = Field(default=1, ge=1, le=50)
    request_timeout_ms: int = Field(default=5_000, ge=100, le=180_000)
    # Default: the instance's scoring workers (one per vCPU), each serving one request at a
    # time; more would queue inside the instance, fewer would leave workers idle (Azure ML
    # answers 429 past it).
    max_concurrent_requests_per_instance: int | None = Field(default=None, ge=1, le=1_000)
    data_collection: bool = True

    @property
    def workers(self) -> int:
        return workers_for(self.instance_type)

    @property
    def max_concurrency(self) -> int:
        return self.max_concurrent_requests_per_instance or self.workers


class BatchEndpointSpec(SpecModel):
    enabled: bool = True
    name: EndpointName | None = None
    mini_batch_size: int = Field(default=10, ge=1, le=10_000)
    max_concurrency_per_instance: int = Field(default=1, ge=1, le=64)
    instance_count: int = Field(default=1, ge=1, le=100)
    # -1 tolerates any number of failed files, as Azure ML defines it.
    error_threshold: int = Field(default=-1, ge=-1)
    max_retries: int = Field(default=3, ge=0, le=10)


class EndpointsSpec(SpecModel):
    online: OnlineEndpointSpec = OnlineEndpointSpec()
    batch: BatchEndpointSpec = BatchEndpointSpec()


class QuotaSpec(SpecModel):
    rate_limit_per_minute: int = Field(ge=1, le=1_000_000)
    max_concurrency: int = Field(ge=1, le=10_000)
    # API Management's validate-content policy checks bodies up to 4 MiB. The default, 32 KB
    # (a few hundred rows of features), is what lets a pool of online tenants fit Azure's
    # 5 MB a second per endpoint at their full rates (policies.capacity_rules); a tenant
    # with larger requests declares them, and its endpoint is held to that.
    max_payload_kb: int = Field(default=32, ge=1, le=4_096)
    # Rows a scoring request carries on average: with the rate, what the tenant's collected
    # data may reach in a day (PlatformSpec.drift_engine_of).
    rows_per_request: int = Field(default=1, ge=1, le=100_000)


class BudgetThreshold(SpecModel):
    percent: float = Field(gt=0, le=1000)
    type: Literal["Actual", "Forecasted"] = "Actual"


#: Azure allows at most five notifications on one budget.
MAX_BUDGET_NOTIFICATIONS = 5


class BudgetSpec(SpecModel):
    amount: float = Field(gt=0)
    time_grain: Literal["Monthly", "Quarterly", "Annually"] = "Monthly"
    start_date: Annotated[date, AfterValidator(v.first_of_month)] | None = None
    thresholds: list[BudgetThreshold] = Field(min_length=1, max_length=MAX_BUDGET_NOTIFICATIONS)
    contacts: list[Email] = Field(min_length=1)
    # Above this percentage of the budget the tenant's compute goes to 0 nodes.
    stop_at_percent: float | None = Field(default=None, gt=0, le=1000)

    # Ordering of thresholds is checked in tenancy.relations (it must run even when one
    # threshold is itself invalid, so that both problems are named).


class TenantPersonas(SpecModel):
    """Project-specific personas of the MLOps v2 guidance: Entra group object ids."""

    data_scientist: list[GroupId] = []
    data_analyst: list[GroupId] = []
    model_tester: list[GroupId] = []
    business_stakeholder: list[GroupId] = []
    project_lead: list[GroupId] = []
    project_owner: list[GroupId] = []
    model_end_user: list[GroupId] = []


class PlatformPersonas(SpecModel):
    """Personas that serve every tenant (not project-specific in the MLOps v2 guidance)."""

    platform_support: list[GroupId] = []
    cicd: list[GroupId] = []
    monitoring: list[GroupId] = []
    data_governance: list[GroupId] = []


# --- policies ----------------------------------------------------------------------------


QualityMetric = Literal["accuracy", "precision", "recall", "f1", "f1_macro", "roc_auc"]


class QualityCriterion(SpecModel):
    """Green's measured quality against blue's, where the tenant's labels come quickly
    enough: both measured over the same recent window of labelled requests."""

    metric: QualityMetric = "accuracy"
    # Below this many labelled rows on either side, quality does not judge (the other
    # criteria do).
    min_labels: int = Field(default=30, ge=1)
    # Green fails when its metric is below blue's by more than this (absolute).
    max_drop: float = Field(default=0.05, ge=0, lt=1)
    window_seconds: int = Field(default=3_600, ge=60, le=7 * 24 * 3_600)


class PromptCriterion(SpecModel):
    """A prompt version's live traffic judged against the champion's over the same
    interval (a prompt canary, GenAIOps): the judge's scores of a sample of live answers,
    callers' feedback, and tokens and cost per request. Latency and errors are judged by
    the analysis' own criteria."""

    # The share of live answers the judge scores (judging every answer doubles the cost).
    judge_sample_rate: float = Field(default=0.25, gt=0, le=1)
    # Below this many judged answers on either side, the judge does not decide.
    min_judged: int = Field(default=8, ge=1)
    # Challenger fails when its mean judge score is below the champion's by more than this.
    max_judge_drop: float = Field(default=0.1, ge=0, lt=1)
    min_feedback: int = Field(default=5, ge=1)
    # ... or its share of positive feedback, by more than this.
    max_feedback_drop: float = Field(default=0.2, ge=0, lt=1)
    # ... or it costs more tokens, or more money, a request than the champion by this ratio.
    max_tokens_increase_ratio: float = Field(default=1.5, ge=1)
    max_cost_increase_ratio: float = Field(default=1.5, ge=1)


class AnalysisSpec(SpecModel):
    """Automated analysis of green at every traffic step."""

    interval_seconds: int = Field(default=60, ge=5, le=3_600)
    min_requests: int = Field(default=20, ge=1)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_latency_ms: float = Field(default=500, gt=0)
    # Green is also compared with blue over the same interval.
    max_error_rate_increase: float = Field(default=0.005, ge=0, le=1)
    max_p99_increase_ratio: float = Field(default=1.5, ge=1)
    # ... and by at least this much: a few milliseconds of jitter on a fast model is not a
    # regression, however large the ratio (a 4 ms p99 doubles on one slow request).
    p99_increase_tolerance_ms: float = Field(default=25, ge=0)
    # Consecutive failed analyses before rolling back.
    failure_threshold: int = Field(default=2, ge=1, le=20)
    # Consecutive analyses without enough data before the rollout pauses and alerts.
    inconclusive_limit: int = Field(default=3, ge=1, le=100)
    # Quality from ground truth as a criterion too (None: not judged).
    quality: QualityCriterion | None = None
    # A prompt rollout's criteria (judge, feedback, tokens, cost); None for models.
    prompt: PromptCriterion | None = None


class RolloutPolicy(SpecModel):
    strategy: RolloutStrategy = "canary"
    steps: list[int] = [10, 50, 100]
    mirror_percent: int = Field(default=0, ge=0)
    analysis: AnalysisSpec = AnalysisSpec()
    approval_required: bool = False
    approver_personas: list[TenantPersona] = ["project_lead"]
    smoke_test_requests: int = Field(default=5, ge=1, le=1_000)
    drain_delay_seconds: int = Field(default=300, ge=0, le=86_400)

    @field_validator("steps")
    @classmethod
    def _steps_shape(cls, steps: list[int], info: ValidationInfo) -> list[int]:
        problems = []
        if not steps:
            problems.append("at least one step is required")
        if any(not 0 < s <= 100 for s in steps):
            problems.append("each step must be a percentage in 1..100")
        if any(b <= a for a, b in pairwise(steps)):
            problems.append("steps must be strictly increasing")
        if steps and steps[-1] != 100:
            problems.append("steps must end at 100")
        if info.data.get("strategy") == "blue_green" and steps != [100]:
            problems.append("blue_green switches all traffic at once, so steps must be [100]")
        if problems:
            raise ValueError(f"steps {steps}: {'; '.join(problems)}")
        return steps

    @field_validator("mirror_percent")
    @classmethod
    def _mirror_cap(cls, mirror: int) -> int:
        if mirror > 50:
            raise ValueError(f"mirror_percent {mirror} is above Azure ML's limit of 50")
        return mirror


DEFAULT_DRIFT_THRESHOLDS: dict[str, float] = {
    "normalized_wasserstein_distance": 0.1,
    "jensen_shannon_distance": 0.1,
    "population_stability_index": 0.2,
    "two_sample_kolmogorov_smirnov_test": 0.05,
    "pearsons_chi_squared_test": 0.05,
}


def _default_drift_thresholds() -> dict[DriftMetric, float]:
    return cast(dict[DriftMetric, float], dict(DEFAULT_DRIFT_THRESHOLDS))


class DriftPolicy(SpecModel):
    numerical_metric: DriftMetric = "normalized_wasserstein_distance"
    categorical_metric: DriftMetric = "jensen_shannon_distance"
    thresholds: dict[DriftMetric, float] = Field(default_factory=_default_drift_thresholds)
    window_hours: int = Field(default=24, ge=1, le=24 * 90)
    schedule: Annotated[str, AfterValidator(v.ncrontab)] = "0 0 * * * *"
    min_samples: int = Field(default=100, ge=1)
    # The verdict is "drift" when at least this share of features drift (any, when 0).
    drifted_feature_fraction: float = Field(default=0.0, ge=0, lt=1)
    prediction_drift: bool = True
    # Model kinds that retrain on drift; the others open a human-review task.
    auto_retrain_kinds: list[ModelKind] = ["classical"]
    # Collected rows a day one Function instance measures within its limits: above it, a
    # tenant's drift runs on an Azure ML model monitor (bench/drift_streaming.py measured
    # about 47 million: parsing and measuring at ~128k rows/s in a third of the 30-minute
    # timeout, and an hour's parsed rows in half of Flex Consumption's 2 GB).
    function_max_rows_per_day: int = Field(default=40_000_000, ge=1)
    # The monitors' serverless Spark (azure-ai-ml accepts runtimes 3.4 and 3.5).
    monitor_instance_type: str = "standard_e4s_v3"
    monitor_spark_runtime: Literal["3.4", "3.5"] = "3.4"

    @field_validator("thresholds")
    @classmethod
    def _threshold_ranges(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = []
        for metric, value in thresholds.items():
            if metric in P_VALUE_METRICS and not 0 < value < 1:
                bad.append(f"{metric} is a p-value threshold and must be in (0, 1), got {value}")
            elif metric not in P_VALUE_METRICS and value <= 0:
                bad.append(f"{metric} must be above 0, got {value}")
        if bad:
            raise ValueError("; ".join(bad))
        return {**DEFAULT_DRIFT_THRESHOLDS, **thresholds}

    def threshold(self, metric: str) -> float:
        return self.thresholds[metric]  # type: ignore[index]


class QualityPolicy(SpecModel):
    """Model quality from ground truth: the labels tenants send for scored requests."""

    # A label is joined to a request at most this long after it was scored.
    label_horizon_hours: int = Field(default=24 * 7, ge=1, le=24 * 90)
    # Labels one feedback request may carry.
    max_labels_per_request: int = Field(default=1000, ge=1, le=100_000)
    # The latest labelled window quality is measured over, and when.
    window_hours: int = Field(default=24, ge=1, le=24 * 90)
    schedule: Annotated[str, AfterValidator(v.ncrontab)] = "0 30 * * * *"
    # Fewer labelled rows than this: quality is not judged (reported as waiting for labels).
    min_labels: int = Field(default=50, ge=1)
    # A model worse than its own evaluation by more than this (absolute) has degraded.
    margin: float = Field(default=0.05, ge=0, lt=1)


class AuditPolicy(SpecModel):
    """The policy audit after deployment: the pack's rules over what is deployed."""

    schedule: Annotated[str, AfterValidator(v.ncrontab)] = "0 15 * * * *"


class BudgetPolicy(SpecModel):
    stop_at_percent: float = Field(default=100, gt=0, le=1000)
    # None: the first day of the budget period current at the first `pulumi up` (Azure
    # accepts a past start date only within the current period, and never changes one).
    start_date: Annotated[date, AfterValidator(v.first_of_month)] | None = None
    # A pre-production workspace with no active compute for this many days is flagged.
    idle_workspace_days: int = Field(default=14, ge=1, le=365)
    # The embedded platform has no bill. It charges each stamp's online endpoint this price
    # per instance-hour of its instance type, for the whole budget period, as Azure bills a
    # provisioned instance whether or not it scores. Azure stacks read the real spend
    # (the budget's currentSpend) and need none; a local stack prices every type it uses.
    instance_hour_prices: dict[str, Annotated[float, Field(gt=0)]] = {}


class ModelGatePolicy(SpecModel):
    required_tags: list[str] = [
        "tenant",
        "training_run",
        "data_version",
        "owner",
        "intended_use",
    ]
    allowed_formats: list[str] = ["onnx"]
    allowed_flavors: list[str] = ["onnx"]
    allowed_packages: list[str] = [
        "onnxruntime",
        "numpy",
        "azureml-inference-server-http",
        "orjson",
        # Azure ML's data collector, which score.py calls on Azure (it takes pandas frames).
        "azureml-ai-monitoring",
        "pandas",
    ]
    min_metrics: dict[str, float] = {"accuracy": 0.7}
    max_champion_regression: float = Field(default=0.02, ge=0, le=1)
    require_baseline: bool = True


PolicyLevel = Literal["mandatory", "advisory", "disabled"]


class PolicyOverride(SpecModel):
    """A stack's choice for one rule of the policy pack: its level and its limits. Rule
    names and setting keys are checked against the pack (``policies.config``)."""

    level: PolicyLevel | None = None
    settings: dict[str, object] = {}


# --- environment-wide services -----------------------------------------------------------


class NetworkingSpec(SpecModel):
    private: bool = False
    address_space: Annotated[str, AfterValidator(v.private_cidr)] = "10.40.0.0/16"
    # FQDNs and service tags a workspace's managed network may reach (the policy pack's
    # `workspace-managed-network` rule rejects outbound rules to anything else).
    approved_outbound: list[str] = []
    # Public ranges the deployer reaches the platform storage account from when the stack
    # is private and `pulumi up` runs outside the virtual network (the Functions package
    # upload is a data-plane call); empty: deploy from inside the network.
    deployer_ip_ranges: list[Annotated[str, AfterValidator(v.public_cidr)]] = []


class KeyVaultsSpec(SpecModel):
    """Vaults have purge protection (customer-managed keys require it), so a destroyed
    vault keeps its name for the retention period: ``recover`` brings such vaults back, with
    their keys, on the next `pulumi up` (a vault's ``createMode``)."""

    create_mode: Literal["default", "recover"] = "default"
    # 7-90 days (Key Vault's range); None: 90 in staging and prod, 7 elsewhere.
    soft_delete_retention_days: int | None = Field(default=None, ge=7, le=90)


class GatewaySpec(SpecModel):
    sku: Literal["Developer", "Basic", "Standard", "Premium", "BasicV2", "StandardV2"] = "Developer"
    capacity: int = Field(default=1, ge=1, le=12)
    publisher_email: Email
    publisher_name: str = Field(min_length=1, max_length=100)


class FunctionAppSpec(SpecModel):
    """The automation runs on a Flex Consumption plan (Linux, identity-based storage)."""

    maximum_instance_count: int = Field(default=40, ge=1, le=1_000)
    instance_memory_mb: Literal[512, 2048, 4096] = 2048
    # Entra application the alert action group authenticates to (secure webhook), so that
    # no function key ever sits in a webhook URL.
    alert_webhook_app_id: GroupId
    alert_webhook_app_object_id: GroupId


class DeliverySpec(SpecModel):
    """The CI/CD pipelines (``.github/workflows``): the GitHub repository whose workflows
    deploy this stack. When set, the stack provisions the pipelines' identities and their
    federated credentials (OIDC: no secret is stored anywhere)."""

    github_repository: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
    )
    # The stack this one promotes models (or training code) to: dev -> staging -> prod.
    # None: the last environment. `mlops promote` refuses any other step.
    promotes_to: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,38}$")
    # Object ids of the next environment's deploy pipeline identity (its stack's output
    # ``deployPrincipalId``): `mlops promote` runs as that identity, which reads this
    # environment's champion to share it into its own registry. This stack grants it Reader
    # and Storage Blob Data Reader here, and nothing that writes.
    promoted_by: list[GroupId] = []

    @model_validator(mode="after")
    def _promoted_by_needs_a_next(self) -> DeliverySpec:
        if self.promoted_by and self.promotes_to is None:
            raise ValueError("promoted_by names who promotes from here: set promotes_to too")
        return self


class AlertsSpec(SpecModel):
    contacts: list[Email] = Field(min_length=1)
    p99_latency_ms: float = Field(default=1_000, gt=0)
    server_errors_per_minute: float = Field(default=5, gt=0)
    severity: int = Field(default=2, ge=0, le=4)


class LivenessProbe(SpecModel):
    """A deployment's liveness probe: Azure ML's (the first deployment's probe settings;
    Azure ML restarts a container that fails it ``failure_threshold`` times in a row,
    https://learn.microsoft.com/azure/machine-learning/reference-yaml-deployment-managed-online#probesettings)
    and the embedded platform's supervisor alike."""

    period_seconds: int = Field(default=10, ge=1, le=300)
    timeout_seconds: int = Field(default=2, ge=1, le=60)
    failure_threshold: int = Field(default=30, ge=1, le=100)


class RestartPolicy(SpecModel):
    """How the embedded platform restarts a deployment whose process exits or fails its
    liveness probe: after a backoff that doubles from ``backoff_initial_seconds`` up to
    ``backoff_max_seconds``; ``max_restarts`` within ``window_seconds`` is a crash loop,
    and the deployment is then failed (reported to the automation, notified when it
    serves live traffic)."""

    max_restarts: int = Field(default=5, ge=1, le=100)
    window_seconds: int = Field(default=600, ge=10, le=86_400)
    backoff_initial_seconds: float = Field(default=1, gt=0, le=60)
    backoff_max_seconds: float = Field(default=60, gt=0, le=3_600)

    @model_validator(mode="after")
    def _backoff_order(self) -> RestartPolicy:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be at least backoff_initial_seconds")
        return self


class ServingSpec(SpecModel):
    """Assets in the environment's Azure ML registry that a stamp's first deployment uses
    until the automation rolls out the tenant's own model, and how deployments are kept
    alive."""

    environment: AssetRef = "tenant-mlops-onnx-scoring:1"
    scoring_code: AssetRef = "tenant-mlops-score:1"
    bootstrap_model: AssetRef = "tenant-mlops-baseline:1"
    # Retraining jobs (drift of classical models) run in this environment. Their code comes
    # with the Function App package (its retraining/ folder), submitted with each job.
    training_environment: AssetRef = "tenant-mlops-training:1"
    liveness: LivenessProbe = LivenessProbe()
    restarts: RestartPolicy = RestartPolicy()


# --- tenants and pools -------------------------------------------------------------------


class PoolSpec(SpecModel):
    id: Slug
    display_name: str = ""
    cost_center: str = Field(min_length=1)
    compute: ComputeSpec
    endpoints: EndpointsSpec = EndpointsSpec()
    budget: BudgetSpec
    # Operators of the pool; pooled tenants' own people get no direct Azure access to it.
    personas: TenantPersonas = TenantPersonas()
    max_tenants: int = Field(default=50, ge=1, le=1_000)


# --- generative AI per tenant -------------------------------------------------------------

#: Azure OpenAI / AI Services deployment names: 2-64 letters, digits, dots, dashes, underscores.
AiDeploymentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")]
#: The scorers an evaluation gate may hold a prompt version to (deterministic ones and judge).
ScorerName = Literal["exact", "contains", "regex", "json_schema", "rouge_l", "judge"]


class GenAIModel(SpecModel):
    """A model the tenant may call, and its deployment in the tenant's AI Services account."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,63}$")  # e.g. gpt-4o-mini
    version: str = Field(pattern=r"^[0-9A-Za-z.-]{1,32}$")
    deployment: AiDeploymentName
    sku: Literal["Standard", "GlobalStandard", "DataZoneStandard"] = "GlobalStandard"
    # The deployment's rate limit, in thousands of tokens per minute (its SKU capacity).
    capacity_k_tpm: int = Field(ge=1, le=10_000)
    # Its price list, per million tokens (what `mlops status` and prompt canaries count).
    usd_per_million_prompt_tokens: float = Field(ge=0)
    usd_per_million_completion_tokens: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What a call with this usage costs, in USD."""
        return (
            prompt_tokens * self.usd_per_million_prompt_tokens
            + completion_tokens * self.usd_per_million_completion_tokens
        ) / 1_000_000


class GenAIGuardrails(SpecModel):
    redact_pii: bool = True  # from prompts, completions and logs
    blocked_terms: list[Annotated[str, Field(min_length=1, max_length=100)]] = []
    max_tokens: int = Field(default=1_024, ge=1, le=128_000)  # a completion's, at most
    content_filter: Literal["default", "strict"] = "default"

    @field_validator("blocked_terms")
    @classmethod
    def _terms_unique(cls, terms: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for term in terms:
            key = term.strip().casefold()
            if not key:
                raise ValueError("a blocked term must not be blank")
            if key in seen:
                raise ValueError(f"{term!r} is listed twice (as {seen[key]!r})")
            seen[key] = term
        return terms


class GenAIEvaluation(SpecModel):
    """The offline gate of a new prompt version: each scorer's mean over the tenant's
    evaluation set must reach its threshold (all scores are 0 to 1)."""

    thresholds: dict[ScorerName, Annotated[float, Field(ge=0, le=1)]] = Field(min_length=1)
    # The deployment that judges (required by a ``judge`` threshold).
    judge_deployment: AiDeploymentName | None = None
    min_examples: int = Field(default=10, ge=1, le=100_000)


def default_prompt_rollout() -> RolloutPolicy:
    """A prompt canary: 10 % then 50 % of callers, judged every minute; an LLM's latency is
    seconds, not a model's milliseconds."""
    return RolloutPolicy(
        steps=[10, 50, 100],
        analysis=AnalysisSpec(
            min_requests=10,
            max_p99_latency_ms=10_000,
            p99_increase_tolerance_ms=500,
            max_error_rate=0.05,
            max_error_rate_increase=0.05,
            prompt=PromptCriterion(),
        ),
        smoke_test_requests=3,
        drain_delay_seconds=0,
    )


class GenAISpec(SpecModel):
    """A tenant's generative AI: its models, token limits, guardrails and evaluation gate."""

    models: list[GenAIModel] = Field(min_length=1)
    tokens_per_minute: int = Field(ge=1)
    tokens_per_month: int = Field(ge=1)
    guardrails: GenAIGuardrails = GenAIGuardrails()
    evaluation: GenAIEvaluation
    # How a prompt version that passed the gate reaches live traffic: the rollout state
    # machine's policy, with the prompt criteria always on.
    rollout: RolloutPolicy = Field(default_factory=default_prompt_rollout)

    def model(self, deployment: str) -> GenAIModel:
        """The model behind ``deployment``, or a 404 naming the tenant's deployments."""
        for model in self.models:
            if model.deployment == deployment:
                return model
        known = ", ".join(m.deployment for m in self.models)
        raise NotFoundError(f"no deployment {deployment!r}: this tenant has {known}")

    @field_validator("rollout")
    @classmethod
    def _prompt_criteria_on(cls, rollout: RolloutPolicy) -> RolloutPolicy:
        if rollout.analysis.prompt is None:
            analysis = rollout.analysis.model_copy(update={"prompt": PromptCriterion()})
            return rollout.model_copy(update={"analysis": analysis})
        return rollout

    @field_validator("models")
    @classmethod
    def _deployments_unique(cls, models: list[GenAIModel]) -> list[GenAIModel]:
        names = [m.deployment for m in models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"deployment names must be unique: {', '.join(twice)}")
        return models

    @model_validator(mode="after")
    def _limits_and_judge(self) -> GenAISpec:
        capacity = sum(m.capacity_k_tpm for m in self.models) * 1_000
        problems = []
        if self.tokens_per_minute > capacity:
            problems.append(
                f"tokens_per_minute {self.tokens_per_minute} is more than its deployments "
                f"serve ({capacity} a minute)"
            )
        if self.tokens_per_month < self.tokens_per_minute:
            problems.append("tokens_per_month must be at least tokens_per_minute")
        judge = self.evaluation.judge_deployment
        if "judge" in self.evaluation.thresholds and judge is None:
            problems.append("a judge threshold needs evaluation.judge_deployment")
        if judge is not None and judge not in {m.deployment for m in self.models}:
            problems.append(f"evaluation.judge_deployment {judge!r} is not one of its models")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TenantSpec(SpecModel):
    id: Slug
    display_name: str = ""
    tier: Tier
    pool: Slug | None = None
    model_strategy: ModelStrategy
    shared_training_consent: bool
    model_kind: ModelKind
    data_classification: DataClassification = "internal"
    cost_center: str = Field(min_length=1)
    compute: ComputeSpec | None = None
    endpoints: EndpointsSpec = EndpointsSpec()
    quota: QuotaSpec
    budget: BudgetSpec
    personas: TenantPersonas = TenantPersonas()
    rollout: RolloutPolicy | None = None
    min_metrics: dict[str, float] | None = None
    # How a model reaches the next environment (`mlops promote`): the version itself is
    # copied (deploy_models), or its training code is, and the target retrains on its own
    # data (deploy_code: the Big Book of MLOps' recommendation where data differs).
    promotion: Literal["deploy_models", "deploy_code"] = "deploy_models"
    # Generative AI for this tenant (prompts, LLM calls through the gateway); off when absent.
    genai: GenAISpec | None = None
    # Where drift is measured: the automation's Function, an Azure ML model monitor (on
    # serverless Spark), or "auto": the monitor when the tenant's collected rows a day at
    # its full rate exceed drift.function_max_rows_per_day (PlatformSpec.drift_engine_of).
    drift_engine: Literal["auto", "function", "azure_ml"] = "auto"

    @property
    def stamp_key(self) -> str:
        """The stamp that serves this tenant: its own, or its pool's."""
        return f"tenant-{self.id}" if self.tier == "dedicated" else f"pool-{self.pool}"

    @property
    def requires_customer_managed_key(self) -> bool:
        return self.data_classification == "restricted"


class LimitGrant(SpecModel):
    """A limit Azure raised for this stack's subscription (a support request's answer)."""

    value: float = Field(gt=0)
    reference: str = Field(min_length=3)  # the request or ticket that granted it


class CapacitySpec(SpecModel):
    """Azure's limits the plan is held to (tenancy.limits); ``granted`` raises those the
    stack's subscription has been granted more of."""

    granted: dict[str, LimitGrant] = {}

    @field_validator("granted")
    @classmethod
    def _known_and_raised(cls, granted: dict[str, LimitGrant]) -> dict[str, LimitGrant]:
        problems = []
        for key, grant in granted.items():
            limit = LIMITS.get(key)
            if limit is None:
                problems.append(f"{key!r} is not a limit (limits: {', '.join(sorted(LIMITS))})")
            elif grant.value <= limit.default:
                problems.append(
                    f"{key}: {grant.value:g} is not above Azure's default of {limit.default:g}; "
                    "a grant only raises a limit"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return granted

    def limit(self, key: str) -> float:
        grant = self.granted.get(key)
        return grant.value if grant else LIMITS[key].default


TargetId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,30}$")]
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
SubscriptionId = Annotated[str, Field(pattern=_GUID)]


class PlacementTarget(SpecModel):
    """A subscription and region the platform may place stamps in."""

    id: TargetId
    # None: the subscription the stack is deployed with (its own).
    subscription_id: SubscriptionId | None = None
    region: Annotated[str, AfterValidator(v.region)]


class PlacementSpec(SpecModel):
    """Where stamps may go, in order of preference (tenancy.placement); none listed: the
    stack's own subscription, in its location. ``pins`` keeps a stamp (``tenant-<id>``,
    ``pool-<id>``) on one target whatever the others' load."""

    targets: list[PlacementTarget] = []
    pins: dict[str, TargetId] = {}
    # Each target's stamps are a Pulumi stack of their own (``<stack>.<target>``), beside
    # this stack, which then holds the shared platform only (infra.program.deploy_shard).
    shard_stacks: bool = False

    @model_validator(mode="after")
    def _targets_known(self) -> PlacementSpec:
        ids = [t.id for t in self.targets]
        problems = [f"target {i!r} is listed twice" for i in sorted(set(ids)) if ids.count(i) > 1]
        problems += [
            f"pins.{stamp}: {target!r} is not a target (targets: {', '.join(ids) or 'none'})"
            for stamp, target in sorted(self.pins.items())
            if target not in ids
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class _SpecIndex:
    tenants: list[TenantSpec]
    pools: list[PoolSpec]
    tenant_by_id: dict[str, TenantSpec]
    pool_by_id: dict[str, PoolSpec]
    members: dict[str, list[TenantSpec]]  # pool id -> its pooled tenants, in order

    @classmethod
    def of(cls, tenants: list[TenantSpec], pools: list[PoolSpec]) -> _SpecIndex:
        members: dict[str, list[TenantSpec]] = {}
        for tenant in tenants:
            if tenant.tier == "pooled" and tenant.pool is not None:
                members.setdefault(tenant.pool, []).append(tenant)
        return cls(
            tenants,
            pools,
            {t.id: t for t in tenants},
            {p.id: p for p in pools},
            members,
        )


class PlatformSpec(SpecModel):
    environment: Environment
    location: Annotated[str, AfterValidator(v.region)]
    prefix: Annotated[str, AfterValidator(v.name_prefix)] = "tmlops"
    # Drawn once per installation: globally unique names (storage, vaults, registries, the
    # gateway, the function app, endpoint host names) carry it, so two installations of the
    # product never ask Azure for the same name.
    installation: Annotated[str, AfterValidator(v.installation_id)]
    cost_center: str = Field(min_length=1)
    networking: NetworkingSpec = NetworkingSpec()
    key_vaults: KeyVaultsSpec = KeyVaultsSpec()
    gateway: GatewaySpec
    function_app: FunctionAppSpec
    alerts: AlertsSpec
    delivery: DeliverySpec = DeliverySpec()
    serving: ServingSpec = ServingSpec()
    tiers: Tiers = Tiers()
    personas: PlatformPersonas = PlatformPersonas()
    rollout: RolloutPolicy = RolloutPolicy()
    drift: DriftPolicy = DriftPolicy()
    quality: QualityPolicy = QualityPolicy()
    budget_policy: BudgetPolicy = BudgetPolicy()
    audit: AuditPolicy = AuditPolicy()
    model_gate: ModelGatePolicy = ModelGatePolicy()
    policies: dict[str, PolicyOverride] = {}
    capacity: CapacitySpec = CapacitySpec()
    placement: PlacementSpec = PlacementSpec()
    pools: list[PoolSpec] = []
    tenants: list[TenantSpec] = Field(min_length=1)
    _lookup: _SpecIndex | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _private_placement_in_region(self) -> PlatformSpec:
        """A private stack's stamps reach their private endpoints through the stack's one
        virtual network, which is in its location: they can be placed only there."""
        if self.networking.private:
            elsewhere = [t.id for t in self.placement.targets if t.region != self.location]
            if elsewhere:
                raise ValueError(
                    f"placement targets {', '.join(elsewhere)} are outside {self.location}: "
                    "a private stack's network is regional, so its stamps stay in its location"
                )
        monitored = [t for t in self.tenants if self.drift_engine_of(t) == "azure_ml"]
        problems = [
            f"tenant {t.id}: drift on an Azure ML model monitor needs {why}"
            for t in monitored
            for why in self._monitor_needs(t)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        regions = sorted({t.region for t in self.placement.targets} - {self.location})
        if regions and self.gateway.sku != "Premium":
            # One gateway serves every region's tenants through regional gateways, which
            # only the Premium tier has (infra.front_door).
            raise ValueError(
                f"placement targets in {', '.join(regions)} need gateway.sku Premium "
                f"(not {self.gateway.sku}): only Premium adds regional gateways "
                "(https://learn.microsoft.com/azure/api-management/api-management-howto-deploy-multi-region)"
            )
        stamps = {t.stamp_key for t in self.tenants}
        pins = [stamp for stamp in self.placement.pins if stamp not in stamps]
        if pins:
            raise ValueError(f"placement.pins names stamps the stack has not: {', '.join(pins)}")
        return self

    def _monitor_needs(self, tenant: TenantSpec) -> list[str]:
        """What an Azure ML model monitor of the tenant needs that it lacks."""
        needs = []
        if self.environment is Environment.LOCAL:
            needs.append("Azure ML (the embedded platform measures drift in its Function)")
        if tenant.tier != "dedicated":
            needs.append(
                "a dedicated deployment (a pool's deployment serves its pool: the monitor "
                "cannot tell one tenant's rows from another's); set drift_engine: function "
                "or make the tenant dedicated"
            )
        elif not (tenant.endpoints.online.enabled and tenant.endpoints.online.data_collection):
            needs.append("an online endpoint that collects its data (the monitor reads it)")
        return needs

    def __eq__(self, other: object) -> bool:
        """Equal specs hold equal values, whichever has built its index (``_lookup``)."""
        if not isinstance(other, PlatformSpec):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # lists inside: a spec was never hashable

    def _index(self) -> _SpecIndex:
        """Tenants and pools by id, built once for these lists: a stack of ten thousand
        tenants asks who a tenant is for every one of them. A copy with other lists
        (``restricted_to``) builds its own."""
        index = self._lookup
        if index is None or index.tenants is not self.tenants or index.pools is not self.pools:
            index = _SpecIndex.of(self.tenants, self.pools)
            self._lookup = index
        return index

    def tenant(self, tenant_id: str) -> TenantSpec:
        return self._index().tenant_by_id[tenant_id]

    def pool(self, pool_id: str) -> PoolSpec:
        return self._index().pool_by_id[pool_id]

    @property
    def dedicated_tenants(self) -> list[TenantSpec]:
        return [t for t in self.tenants if t.tier == "dedicated"]

    def tenants_in_pool(self, pool_id: str) -> list[TenantSpec]:
        return list(self._index().members.get(pool_id, ()))

    @property
    def consenting_tenants(self) -> list[TenantSpec]:
        return [t for t in self.tenants if t.shared_training_consent]

    def rollout_tick_schedule(self) -> str:
        """NCRONTAB of the rollout timer: at least two ticks per shortest analysis interval
        (an analysis is never late by more than half an interval), at most one a minute."""
        policies = [self.rollout, *(self.rollout_for(t) for t in self.tenants)]
        shortest = min(policy.analysis.interval_seconds for policy in policies)
        if shortest >= 120:
            return "0 * * * * *"
        every = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d <= max(1, shortest // 2))
        return f"*/{every} * * * * *"

    def rollout_for(self, tenant: TenantSpec) -> RolloutPolicy:
        return tenant.rollout or self.rollout

    def stop_at_percent_for(self, tenant: TenantSpec) -> float:
        return tenant.budget.stop_at_percent or self.budget_policy.stop_at_percent

    def min_metrics_for(self, tenant: TenantSpec) -> dict[str, float]:
        return {**self.model_gate.min_metrics, **(tenant.min_metrics or {})}

    # --- who serves a tenant (asked by infra, both adapters and the gateway's routes) ------

    def budget_start(self, budget: BudgetSpec, today: date) -> date:
        """The start of a budget: the spec's date when it gives one, else the first day of
        the month of ``today`` (the first `pulumi up`).

        Azure's rule (BudgetTimePeriod): the start is the first of a month, "Future start
        date should not be more than twelve months. Past start date should be selected
        within the timegrain period": the first of the current month is valid for every
        grain. https://learn.microsoft.com/rest/api/consumption/budgets/create-or-update#budgettimeperiod
        """
        return budget.start_date or self.budget_policy.start_date or today.replace(day=1)

    def stamp(self, stamp_key: str) -> TenantSpec | PoolSpec:
        """The dedicated tenant or the pool of a stamp (``tenant-<id>``, ``pool-<id>``)."""
        for tenant in self.tenants:
            if tenant.tier == "dedicated" and tenant.stamp_key == stamp_key:
                return tenant
        for pool in self.pools:
            if f"pool-{pool.id}" == stamp_key:
                return pool
        raise KeyError(stamp_key)

    def drift_engine_of(self, tenant: TenantSpec) -> Literal["function", "azure_ml"]:
        """Where the tenant's drift is measured: as the tenant says, else on an Azure ML
        model monitor when its collected rows a day (its rate at the full quota, times its
        rows a request) are more than one Function instance measures."""
        if tenant.drift_engine != "auto":
            return tenant.drift_engine
        quota = tenant.quota
        rows_a_day = quota.rate_limit_per_minute * 60 * 24 * quota.rows_per_request
        return "azure_ml" if rows_a_day > self.drift.function_max_rows_per_day else "function"

    def target_of(self, stamp_key: str) -> PlacementTarget:
        """Where a stamp is deployed: its pinned target, else the stack's own subscription in
        its location. A resolved spec (``load_stack``, tenancy.placement.resolve) pins every
        stamp of a stack that lists targets."""
        pinned = self.placement.pins.get(stamp_key)
        for target in self.placement.targets:
            if target.id == pinned:
                return target
        return PlacementTarget(id="home", subscription_id=None, region=self.location)

    def stamp_keys(self) -> list[str]:
        """Every stamp, in the program's order: dedicated tenants', then pools'."""
        return [t.stamp_key for t in self.dedicated_tenants] + [
            f"pool-{pool.id}" for pool in self.pools
        ]

    def restricted_to(self, stamp_keys: Iterable[str]) -> PlatformSpec:
        """The spec as one stack of it holds it: only the tenants and pools of
        ``stamp_keys`` (a shard stack's; none: the shared stack's). Everything else, the
        placement among it, is the environment's."""
        keys = set(stamp_keys)
        tenants = [t for t in self.tenants if t.stamp_key in keys]
        pools = [p for p in self.pools if f"pool-{p.id}" in keys]
        return self.model_copy(update={"tenants": tenants, "pools": pools})

    def subscriptions(self) -> list[str]:
        """The subscriptions the stack's targets name beside its own (which is not named)."""
        named = (t.subscription_id for t in self.placement.targets if t.subscription_id)
        return list(dict.fromkeys(named))

    def serving_of(self, tenant_id: str) -> tuple[str, EndpointsSpec, bool]:
        """(stamp id, the endpoints that serve the tenant, whether they are a pool's)."""
        tenant = self.tenant(tenant_id)
        if tenant.tier == "dedicated":
            return tenant.id, tenant.endpoints, False
        pool = self.pool(str(tenant.pool))
        return pool.id, pool.endpoints, True

    def endpoint_name(
        self, kind: Literal["online", "batch"], stamp_id: str, endpoints: EndpointsSpec
    ) -> str:
        """A stamp's endpoint name: the one given in the spec, else the derived one."""
        given = endpoints.online.name if kind == "online" else endpoints.batch.name
        derive = naming.online_endpoint if kind == "online" else naming.batch_endpoint
        return given or derive(self.prefix, self.environment, stamp_id, self.installation)

    def online_endpoint_name(self, tenant_id: str) -> str:
        stamp_id, endpoints, _ = self.serving_of(tenant_id)
        return self.endpoint_name("online", stamp_id, endpoints)

    @property
    def vault_retention_days(self) -> int:
        chosen = self.key_vaults.soft_delete_retention_days
        return chosen if chosen is not None else (90 if self.environment.is_production else 7)
