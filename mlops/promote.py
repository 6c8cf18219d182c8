"""`mlops promote`: a tenant's model from one environment to the next (dev -> staging -> prod,
each stack's ``delivery.promotes_to``), in the pattern the tenant's spec chooses:

- **deploy_models**: the version the source serves is copied into the target's registry
  with its lineage, metrics, digest (checked) and baseline (``ModelRegistry.import_version``),
  tagged ``promoted_from``;
- **deploy_code**: the training code is what moves; the target retrains the tenant on its
  own data with it, and the new version is compared with the source's metrics.

Either way the target's model gate judges the version at once (and the target's automation
judges it again on the registry's event, then rolls it out under the target's approval
rules), and the target's audit log names the source environment and version.

Refused, with every reason named, before anything is written: a step that skips an
environment or goes backwards, a tenant missing in either environment, a version that is
not the source's champion (not promoted there), a model that is not the tenant's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.mlflow_facts import MlflowModelFacts
from automation.store import StateStore, append_audit
from ml.registry import ModelRegistry, ModelVersionRef, RegistryLayout, registry_of
from ml.retrain import retrain_tenant
from ml.training import SHARED_OWNER
from mlops.retrain import deploy_code_tags
from policies.model_rules import evaluate_model
from tenancy import contracts
from tenancy.errors import InvalidInputError, NotFoundError
from tenancy.spec import PlatformSpec


@dataclass(frozen=True)
class Environment:
    """One stack's models: its spec and where its registries are."""

    stack: str
    spec: PlatformSpec
    layout: RegistryLayout


@dataclass(frozen=True)
class Promotion:
    tenant: str
    model: str
    version: str
    source: Environment
    target: Environment
    actor: str = "mlops promote"


@dataclass
class Promoted:
    tenant: str
    pattern: str
    source: str  # "<stack>:<name>/<version>"
    target: str
    gate: list[dict[str, str]] = field(default_factory=list)  # violations; empty: passed
    compared: dict[str, dict[str, float]] = field(default_factory=dict)  # deploy_code
    # The gate is the target automation's, later (a training job submitted on Azure).
    pending: bool = False

    @property
    def passed(self) -> bool:
        return not self.gate and not self.pending

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "pattern": self.pattern,
            "source": self.source,
            "target": self.target,
            "gate": "pending" if self.pending else "passed" if self.passed else self.gate,
            "compared": self.compared,
        }


def refusals(promotion: Promotion) -> list[str]:
    """Why the step may not be taken (empty: it may)."""
    return step_refusals(
        (promotion.source.stack, promotion.source.spec),
        (promotion.target.stack, promotion.target.spec),
        promotion.tenant,
    )


def chain_refusals(source: tuple[str, PlatformSpec], target_stack: str) -> list[str]:
    """Why nothing may go from the ``(stack, spec)`` source to ``target_stack``."""
    following = source[1].delivery.promotes_to
    if following is None:
        return [f"{source[0]} is the last environment: it promotes to none"]
    if following != target_stack:
        return [
            f"{source[0]} promotes to {following}, not {target_stack}: "
            f"promote through {following} first"
        ]
    return []


def step_refusals(
    source: tuple[str, PlatformSpec], target: tuple[str, PlatformSpec], tenant: str
) -> list[str]:
    """Why ``tenant`` may not go from the ``(stack, spec)`` source to the target."""
    problems = chain_refusals(source, target[0])
    for stack, spec in (source, target):
        if tenant not in {t.id for t in spec.tenants}:
            problems.append(f"tenant {tenant} is not in {stack}")
    return problems


def promote(promotion: Promotion, audit: StateStore, now: datetime) -> Promoted:
    problems = refusals(promotion)
    if problems:
        raise InvalidInputError(
            f"promotion of {promotion.model}/{promotion.version} refused: " + "; ".join(problems),
            details={"problems": problems},
        )
    source_registry = _tenant_registry(promotion.source, promotion.tenant, promotion.model)
    _require_champion(promotion, source_registry)
    origin = f"{promotion.source.stack}:{promotion.model}/{promotion.version}"
    pattern = promotion.target.spec.tenant(promotion.tenant).promotion
    if pattern == "deploy_models":
        target_registry = _tenant_registry(promotion.target, promotion.tenant, promotion.model)
        copied = target_registry.import_version(
            source_registry,
            promotion.model,
            promotion.version,
            {contracts.MODEL_TAG_PROMOTED_FROM: origin},
        )
        result = Promoted(promotion.tenant, pattern, origin, "")
    else:
        copied, result = _retrain_in_target(promotion, source_registry, origin)
    target = _tenant_registry(promotion.target, promotion.tenant, copied.name)
    result.target = f"{promotion.target.stack}:{copied.ref}"
    facts = MlflowModelFacts(target.store.tracking_uri).model_facts(copied.name, copied.version)
    result.gate = [
        v.to_dict() for v in evaluate_model(facts, promotion.tenant, promotion.target.spec)
    ]
    append_audit(
        audit,
        promotion.tenant,
        now,
        {
            "event": "promoted_in",
            "actor": promotion.actor,
            "from": origin,
            "to": result.target,
            "pattern": pattern,
            "gate": "passed" if result.passed else [v["code"] for v in result.gate],
        },
    )
    return result


def _tenant_registry(environment: Environment, tenant: str, model: str) -> ModelRegistry:
    """The registry that holds the tenant's ``model`` there; a model that is not the
    tenant's is not found (as the registry answers for any other tenant's)."""
    registry = registry_of(environment.layout, tenant, model)
    if registry.owner not in (tenant, SHARED_OWNER):
        raise NotFoundError.for_item("model", model)
    return registry


def _require_champion(promotion: Promotion, registry: ModelRegistry) -> None:
    """Only what the source serves, having passed its rollout, moves on."""
    registry.version(promotion.model, promotion.version)  # names a version that is not there
    champion = registry.alias(promotion.model, contracts.ALIAS_CHAMPION)
    if champion is None or str(champion.version) != str(promotion.version):
        serving = f"{promotion.model}/{champion.version}" if champion else "no version"
        raise InvalidInputError(
            f"{promotion.model}/{promotion.version} is not promoted in "
            f"{promotion.source.stack}: its champion there is {serving}",
            details={"champion": str(champion.version) if champion else None},
        )


def _retrain_in_target(
    promotion: Promotion, source: ModelRegistry, origin: str
) -> tuple[ModelVersionRef, Promoted]:
    """deploy_code: the target retrains the tenant with this code on its own data. The new
    version is registered with the code version and the source's metrics, which the model
    gate holds it to (``no_regression_against_source``), here and in the target's
    automation alike."""
    found = source.version(promotion.model, promotion.version)
    before = source.run_metrics(str(found.run_id))
    with tempfile.TemporaryDirectory(prefix="mlops-promote-") as scratch:
        registered = retrain_tenant(
            promotion.target.spec,
            promotion.tenant,
            promotion.target.layout,
            Path(scratch),
            deploy_code_tags(origin, before),
        )
    after = registered.metrics
    compared = {
        metric: {"source": before[metric], "target": after[metric]}
        for metric in sorted(set(before) & set(after))
    }
    return registered.model, Promoted(
        promotion.tenant, "deploy_code", origin, "", compared=compared
    )
