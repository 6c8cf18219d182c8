"""Model-registration rules: may this model version serve this tenant?

Plain functions over a model version's metadata (:class:`ModelFacts`) and the platform
spec; no Pulumi, no registry SDK. The automation calls :func:`evaluate_model` when a model
is registered (and again before promotion to production), ``mlops gate`` calls it from the
command line; both read the facts through a :class:`ModelFactsSource` adapter (MLflow
locally, the Azure ML registry in Azure). Every violation is returned, each with a code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tenancy import contracts
from tenancy.spec import PlatformSpec, TenantSpec

Stage = Literal["registration", "promotion"]
SHARED_STRATEGIES = ("shared", "tuned_shared")
#: MLflow adds the generic Python flavor to every model; it says nothing of the format.
GENERIC_FLAVORS = frozenset({"python_function"})


@dataclass(frozen=True)
class Approval:
    actor: str
    persona: str


@dataclass(frozen=True)
class ChampionFacts:
    version: str
    metrics: Mapping[str, float]


#: A candidate's run may record the champion's metrics on the candidate's own held-out rows
#: (``champion_<metric>``): the comparison is then like for like.
CHAMPION_PREFIX = "champion_"


def own_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's metrics without the champion's like-for-like ones."""
    return {k: v for k, v in metrics.items() if not k.startswith(CHAMPION_PREFIX)}


def champion_on_same_rows(metrics: Mapping[str, float]) -> dict[str, float]:
    """The champion's metrics a candidate's run recorded on the candidate's rows."""
    return {
        k.removeprefix(CHAMPION_PREFIX): v
        for k, v in metrics.items()
        if k.startswith(CHAMPION_PREFIX)
    }


def approvals_from_tags(tags: Mapping[str, str]) -> tuple[Approval, ...]:
    """The approval a model version's tags record (who, as which persona), if any."""
    actor = tags.get(contracts.MODEL_TAG_APPROVED_BY)
    persona = tags.get(contracts.MODEL_TAG_APPROVED_AS)
    return (Approval(actor, persona),) if actor and persona else ()


@dataclass(frozen=True)
class ModelFacts:
    """What a registry knows about one model version, read by an adapter."""

    name: str
    version: str
    tags: Mapping[str, str]
    metrics: Mapping[str, float] = field(default_factory=dict)
    flavors: Sequence[str] = ()
    artifact_format: str | None = None
    packages: Sequence[str] = ()
    # Digest of the model file as the adapter computed it from the artifact, if readable.
    computed_digest: str | None = None
    size_bytes: int | None = None
    champion: ChampionFacts | None = None
    approvals: Sequence[Approval] = ()


@dataclass(frozen=True)
class ModelViolation:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ModelFactsSource(Protocol):
    """Reads a model version's facts from a registry. Raises ``NotFoundError``
    when the model or version does not exist."""

    def model_facts(self, name: str, version: str) -> ModelFacts: ...


# --- the rules ----------------------------------------------------------------------------


def _tag_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def lineage_tags(facts: ModelFacts, spec: PlatformSpec) -> list[ModelViolation]:
    missing = [tag for tag in spec.model_gate.required_tags if not facts.tags.get(tag)]
    if not missing:
        return []
    return [
        ModelViolation(
            "MODEL_TAG_MISSING", f"required lineage tag(s) missing: {', '.join(missing)}"
        )
    ]


def tenant_ownership(
    facts: ModelFacts, tenant: TenantSpec, spec: PlatformSpec
) -> list[ModelViolation]:
    """A model serves the tenant whose data trained it, unless it is a shared model whose
    contributing tenants all consented (a tuned shared model: the tenant's own tuning of
    such a base)."""
    tags = facts.tags
    strategy = tags.get(contracts.MODEL_TAG_STRATEGY, "tenant_specific")
    if strategy != tenant.model_strategy:
        return [
            ModelViolation(
                "MODEL_STRATEGY_MISMATCH",
                f"tenant '{tenant.id}' serves {tenant.model_strategy} models; "
                f"this is a {strategy} model",
            )
        ]
    owner = tags.get(contracts.MODEL_TAG_TENANT)
    contributors = _tag_list(tags.get(contracts.MODEL_TAG_CONTRIBUTORS))
    violations = []
    if strategy != "shared" and owner != tenant.id:
        violations.append(
            ModelViolation(
                "MODEL_TENANT_MISMATCH",
                f"the model was trained for tenant '{owner}', not '{tenant.id}'",
            )
        )
    if strategy == "tenant_specific":
        strangers = [c for c in contributors if c != tenant.id]
        if strangers:
            violations.append(
                ModelViolation(
                    "MODEL_TENANT_MISMATCH",
                    f"a tenant-specific model holds data of other tenants: {', '.join(strangers)}",
                )
            )
        return violations
    violations.extend(_shared_lineage(facts, tenant, spec, contributors))
    return violations


def _shared_lineage(
    facts: ModelFacts, tenant: TenantSpec, spec: PlatformSpec, contributors: list[str]
) -> list[ModelViolation]:
    tags = facts.tags
    violations = []
    if not contributors:
        violations.append(
            ModelViolation(
                "MODEL_LINEAGE_MISSING",
                f"a shared model must record its contributing tenants "
                f"({contracts.MODEL_TAG_CONTRIBUTORS})",
            )
        )
    consenting = {t.id for t in spec.consenting_tenants}
    # A tuned model also holds the tuned tenant's own data, which needs no consent.
    own = tenant.id if tenant.model_strategy == "tuned_shared" else None
    without = [c for c in contributors if c not in consenting and c != own]
    if without:
        violations.append(
            ModelViolation(
                "MODEL_CONSENT_MISSING",
                f"trained on data of tenant(s) without consent to shared training: "
                f"{', '.join(without)}",
            )
        )
    if tags.get(contracts.MODEL_TAG_IDENTIFIERS_REMOVED) != "true":
        violations.append(
            ModelViolation(
                "MODEL_IDENTIFIERS_NOT_REMOVED",
                "a shared model must be trained with identifying columns removed "
                f"({contracts.MODEL_TAG_IDENTIFIERS_REMOVED}=true)",
            )
        )
    if tenant.model_strategy == "tuned_shared" and not tags.get(contracts.MODEL_TAG_BASE):
        violations.append(
            ModelViolation(
                "MODEL_LINEAGE_MISSING",
                f"a tuned shared model must name its base model version "
                f"({contracts.MODEL_TAG_BASE})",
            )
        )
    return violations


def format_and_flavor(facts: ModelFacts, spec: PlatformSpec) -> list[ModelViolation]:
    gate = spec.model_gate
    violations = []
    if facts.artifact_format not in gate.allowed_formats:
        violations.append(
            ModelViolation(
                "MODEL_FORMAT_NOT_ALLOWED",
                f"format {facts.artifact_format or 'unknown'} is not allowed "
                f"(allowed: {', '.join(gate.allowed_formats)})",
            )
        )
    flavors = [f for f in facts.flavors if f not in GENERIC_FLAVORS]
    foreign = [f for f in flavors if f not in gate.allowed_flavors]
    if not flavors or foreign:
        shown = ", ".join(foreign or flavors) or "none"
        violations.append(
            ModelViolation(
                "MODEL_FLAVOR_NOT_ALLOWED",
                f"flavor(s) {shown} not allowed (allowed: {', '.join(gate.allowed_flavors)})",
            )
        )
    return violations


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def package_name(requirement: str) -> str | None:
    """``onnxruntime>=1.20 ; python_version>'3'`` -> ``onnxruntime`` (PEP 503 normalized)."""
    match = _REQUIREMENT_NAME.match(requirement)
    if not match or requirement.lstrip().startswith(("#", "-")):
        return None
    return re.sub(r"[-_.]+", "-", match[1]).lower()


def packages_allowed(facts: ModelFacts, spec: PlatformSpec) -> list[ModelViolation]:
    allowed = {package_name(p) for p in spec.model_gate.allowed_packages}
    names = [name for name in map(package_name, facts.packages) if name]
    foreign = sorted({name for name in names if name not in allowed})
    if not foreign:
        return []
    return [
        ModelViolation(
            "MODEL_PACKAGE_NOT_ALLOWED",
            f"environment package(s) outside the allow-list: {', '.join(foreign)}",
        )
    ]


def digest_recorded(facts: ModelFacts) -> list[ModelViolation]:
    recorded = facts.tags.get(contracts.MODEL_TAG_DIGEST)
    if not recorded:
        return [
            ModelViolation(
                "MODEL_DIGEST_MISSING",
                f"no artifact digest recorded ({contracts.MODEL_TAG_DIGEST})",
            )
        ]
    if facts.computed_digest and recorded != facts.computed_digest:
        return [
            ModelViolation(
                "MODEL_DIGEST_MISMATCH",
                f"the artifact's digest {facts.computed_digest} is not the recorded {recorded}",
            )
        ]
    return []


def metrics_meet_thresholds(
    facts: ModelFacts, tenant: TenantSpec, spec: PlatformSpec
) -> list[ModelViolation]:
    """At or above the tenant's thresholds, and not worse than the champion by more than δ
    (metrics here are higher-is-better, as the thresholds are)."""
    violations = []
    thresholds = spec.min_metrics_for(tenant)
    delta = spec.model_gate.max_champion_regression
    champion = (
        facts.champion if facts.champion and facts.champion.version != facts.version else None
    )
    for metric, minimum in sorted(thresholds.items()):
        value = facts.metrics.get(metric)
        if value is None:
            violations.append(
                ModelViolation("MODEL_METRIC_MISSING", f"metric {metric} is not recorded")
            )
            continue
        if value < minimum:
            violations.append(
                ModelViolation(
                    "MODEL_METRIC_BELOW_THRESHOLD",
                    f"{metric} {value:.4g} is below the threshold {minimum:g}",
                )
            )
        best = champion.metrics.get(metric) if champion else None
        if best is not None and value < best - delta:
            violations.append(
                ModelViolation(
                    "MODEL_REGRESSION",
                    f"{metric} {value:.4g} is worse than the champion's (version "
                    f"{champion.version if champion else ''}) {best:.4g} by more than {delta:g}",
                )
            )
    return violations


def source_metrics_tag(metrics: Mapping[str, float]) -> str:
    """The ``source_metrics`` tag a promoted version carries: the source run's metrics."""
    return json.dumps({k: round(v, 6) for k, v in sorted(metrics.items())})


def source_metrics(tags: Mapping[str, str]) -> dict[str, float] | None:
    """The source run's metrics a promoted version carries: empty when it carries none,
    None when the tag is not a JSON map of numbers."""
    raw = tags.get(contracts.MODEL_TAG_SOURCE_METRICS)
    if not raw:
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(raw).items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None


def no_regression_against_source(facts: ModelFacts, spec: PlatformSpec) -> list[ModelViolation]:
    """A version retrained here with the training code promoted from another environment
    (deploy_code) is held to that environment's metrics (``source_metrics``): it may fall
    below them by ``max_champion_regression`` at most. Its data differ, its code must not
    do worse."""
    tags = facts.tags
    if tags.get(contracts.MODEL_TAG_PROMOTION) != "deploy_code":
        return []
    origin = tags.get(contracts.MODEL_TAG_PROMOTED_FROM, "the source")
    source = source_metrics(tags)
    if source is None or not tags.get(contracts.MODEL_TAG_SOURCE_METRICS):
        return [
            ModelViolation(
                "PROMOTION_SOURCE_METRICS_MISSING",
                f"retrained from {origin}'s code, without its metrics "
                f"({contracts.MODEL_TAG_SOURCE_METRICS} must be a JSON map)",
            )
        ]
    delta = spec.model_gate.max_champion_regression
    mine, theirs = own_metrics(facts.metrics), own_metrics(source)
    worse = [
        f"{metric} {mine[metric]:.4g} against {theirs[metric]:.4g} in {origin}"
        for metric in sorted(set(mine) & set(theirs))
        if mine[metric] < theirs[metric] - delta
    ]
    if not worse:
        return []
    return [
        ModelViolation(
            "PROMOTION_REGRESSION",
            f"retrained here with {origin}'s code, worse by more than {delta:g}: "
            + "; ".join(worse),
        )
    ]


def baseline_attached(facts: ModelFacts, spec: PlatformSpec) -> list[ModelViolation]:
    if spec.model_gate.require_baseline and not facts.tags.get(contracts.MODEL_TAG_BASELINE):
        return [
            ModelViolation(
                "MODEL_BASELINE_MISSING",
                f"no baseline data set for drift ({contracts.MODEL_TAG_BASELINE})",
            )
        ]
    return []


def size_within_tier(
    facts: ModelFacts, tenant: TenantSpec, spec: PlatformSpec
) -> list[ModelViolation]:
    limit_mb = spec.tiers.profile(tenant.tier).max_model_size_mb
    if facts.size_bytes is None:
        return [ModelViolation("MODEL_SIZE_UNKNOWN", "the model artifact's size is unknown")]
    size_mb = facts.size_bytes / 2**20
    if size_mb > limit_mb:
        return [
            ModelViolation(
                "MODEL_TOO_LARGE",
                f"the model is {size_mb:.1f} MB, above the {tenant.tier} tier's {limit_mb} MB",
            )
        ]
    return []


def approval_recorded(
    facts: ModelFacts, tenant: TenantSpec, spec: PlatformSpec, stage: Stage
) -> list[ModelViolation]:
    rollout = spec.rollout_for(tenant)
    if stage != "promotion" or not rollout.approval_required:
        return []
    approvers = set(rollout.approver_personas)
    if any(a.persona in approvers for a in facts.approvals):
        return []
    return [
        ModelViolation(
            "MODEL_APPROVAL_MISSING",
            f"promotion to production needs an approval by {' or '.join(sorted(approvers))}",
        )
    ]


def evaluate_model(
    facts: ModelFacts, tenant_id: str, spec: PlatformSpec, stage: Stage = "registration"
) -> list[ModelViolation]:
    """Every violation of the model rules for serving ``facts`` to ``tenant_id``."""
    try:
        tenant = spec.tenant(tenant_id)
    except KeyError:
        return [ModelViolation("MODEL_UNKNOWN_TENANT", f"no tenant '{tenant_id}' in this stack")]
    return [
        *lineage_tags(facts, spec),
        *tenant_ownership(facts, tenant, spec),
        *format_and_flavor(facts, spec),
        *packages_allowed(facts, spec),
        *digest_recorded(facts),
        *metrics_meet_thresholds(facts, tenant, spec),
        *no_regression_against_source(facts, spec),
        *baseline_attached(facts, spec),
        *size_within_tier(facts, tenant, spec),
        *approval_recorded(facts, tenant, spec, stage),
    ]
