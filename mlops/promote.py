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

import json
import subprocess
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
from policies.model_rules import evaluate_model
from tenancy import contracts
from tenancy.errors import InvalidInputError, NotFoundError
from tenancy.spec import PlatformSpec

#: Metrics a retrained (deploy_code) version may lose against the source's and still pass.
CODE_PROMOTION_TOLERANCE = 0.02


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

    @property
    def passed(self) -> bool:
        return not self.gate

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "pattern": self.pattern,
            "source": self.source,
            "target": self.target,
            "gate": "passed" if self.passed else self.gate,
            "compared": self.compared,
        }


def refusals(promotion: Promotion) -> list[str]:
    """Why the step may not be taken (empty: it may)."""
    return step_refusals(
        (promotion.source.stack, promotion.source.spec),
        (promotion.target.stack, promotion.target.spec),
        promotion.tenant,
    )


def step_refusals(
    source: tuple[str, PlatformSpec], target: tuple[str, PlatformSpec], tenant: str
) -> list[str]:
    """Why ``tenant`` may not go from the ``(stack, spec)`` source to the target."""
    problems = []
    following = source[1].delivery.promotes_to
    if following is None:
        problems.append(f"{source[0]} is the last environment: it promotes to none")
    elif following != target[0]:
        problems.append(
            f"{source[0]} promotes to {following}, not {target[0]}: "
            f"promote through {following} first"
        )
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
    """deploy_code: the target retrains the tenant with this code on its own data; the new
    version carries the code version and is compared with the source's metrics."""
    found = source.version(promotion.model, promotion.version)
    before = source.run_metrics(str(found.run_id))
    with tempfile.TemporaryDirectory(prefix="mlops-promote-") as scratch:
        registered = retrain_tenant(
            promotion.target.spec,
            promotion.tenant,
            promotion.target.layout,
            Path(scratch),
        )
    target = _tenant_registry(promotion.target, promotion.tenant, registered.model.name)
    after = registered.metrics
    compared = {
        metric: {"source": before[metric], "target": after[metric]}
        for metric in sorted(set(before) & set(after))
    }
    for key, value in {
        contracts.MODEL_TAG_PROMOTED_FROM: origin,
        "promotion": "deploy_code",
        "code_version": code_version(),
        contracts.MODEL_TAG_SOURCE_METRICS: json.dumps({k: round(v, 6) for k, v in before.items()}),
    }.items():
        target.client.set_model_version_tag(
            registered.model.name, registered.model.version, key, value
        )
    worse = [
        f"{metric} {values['target']:.3f} against {values['source']:.3f} in "
        f"{promotion.source.stack}"
        for metric, values in compared.items()
        if values["target"] < values["source"] - CODE_PROMOTION_TOLERANCE
    ]
    result = Promoted(promotion.tenant, "deploy_code", origin, "", compared=compared)
    if worse:
        result.gate.append(
            {"code": "PROMOTION_REGRESSION", "message": "retrained here: " + "; ".join(worse)}
        )
    return registered.model, result


def code_version() -> str:
    """The training code's version: the commit it runs from (``unknown`` outside git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as CI runs it
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"
