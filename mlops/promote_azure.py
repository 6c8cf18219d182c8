"""`mlops promote` between two Azure environments, through the target's Azure ML registry
(MLOps v2's cross-workspace promotion), for a tenant whose spec says ``deploy_models``:

1. refused, every reason named, before anything is written: a step that skips an environment
   or goes backwards, a tenant missing in either environment, a version that is not the
   source's champion (not promoted there);
2. the source workspace's version is shared into the target environment's registry, under
   the tenant's name for it: Azure ML copies the files, the tags and the link to the job
   that trained it;
3. the target workspace registers its own version from the registry's files, with the
   source's tags, its run's metrics (``source_metrics``: the run stays in the source's
   workspace), its baseline, ``promoted_from`` and ``registry_asset``. That registration
   raises the target workspace's ModelRegistered event, so the target's automation gates the
   version and rolls it out under the target's approval rules, as any version of its own;
4. the target's model gate is run on the registered version here as well, so the pipeline's
   log says at once whether the version will be refused.

For a tenant whose target spec says ``deploy_code`` (``promote_code``), the source's champion
is checked the same way, and the target's training job is submitted with this commit's code
and the champion's tags and metrics: the job registers the version with them, and the
target's gate holds it to those metrics (``PROMOTION_REGRESSION``).

Every step of a model's promotion is idempotent: promoting the same version again shares
nothing and registers nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from mlops.promote import Promoted, step_refusals
from mlops.retrain import SourceChampions, Trainer, deploy_code_tags
from policies.model_rules import ModelFacts, evaluate_model, source_metrics_tag
from tenancy import contracts, naming
from tenancy.errors import InvalidInputError
from tenancy.spec import PlatformSpec


class AzureEnvironment(SourceChampions, Protocol):
    """What promotion needs of an environment's workspaces (adapters.azure.AzurePlatform):
    its champions and their records (SourceChampions), and more."""

    spec: PlatformSpec

    def workspace_asset_id(self, tenant: str, name: str, version: str) -> str: ...

    def register_promoted(
        self,
        tenant: str,
        name: str,
        files: Mapping[str, bytes],
        baseline: bytes | None,
        tags: Mapping[str, str],
    ) -> str: ...

    def model_facts(self, tenant: str, name: str, version: str) -> ModelFacts: ...


class ModelRegistry(Protocol):
    """The target environment's Azure ML registry (adapters.azure_registry.AzureMlRegistry)."""

    name: str

    def share(self, asset_id: str, name: str, version: str) -> bool: ...

    def files(self, name: str, version: str) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class AzurePromotion:
    tenant: str
    model: str
    version: str
    source_stack: str
    target_stack: str
    source: AzureEnvironment
    target: AzureEnvironment
    registry: ModelRegistry


def refusals(promotion: AzurePromotion) -> list[str]:
    target = (promotion.target_stack, promotion.target.spec)
    problems = step_refusals(
        (promotion.source_stack, promotion.source.spec), target, promotion.tenant
    )
    return problems or pattern_refusals(target, promotion.tenant, "deploy_models")


def pattern_refusals(target: tuple[str, PlatformSpec], tenant: str, pattern: str) -> list[str]:
    """Why the tenant may not be promoted by ``pattern`` into the target (its spec's)."""
    chosen = target[1].tenant(tenant).promotion
    if chosen == pattern:
        return []
    moves = (
        "its training code moves, not its model"
        if chosen == "deploy_code"
        else ("its model moves, not its training code")
    )
    return [f"tenant {tenant} is promoted by {chosen} in {target[0]}: {moves}"]


def promote_through_registry(promotion: AzurePromotion) -> Promoted:
    problems = refusals(promotion)
    if problems:
        raise InvalidInputError(
            f"promotion of {promotion.model}/{promotion.version} refused: " + "; ".join(problems),
            details={"problems": problems},
        )
    source, target, tenant = promotion.source, promotion.target, promotion.tenant
    tags, metrics, baseline = source.promotion_record(tenant, promotion.model, promotion.version)
    _require_own_champion(
        tenant, promotion.model, promotion.version, (promotion.source_stack, source), tags
    )
    origin = f"{promotion.source_stack}:{promotion.model}/{promotion.version}"
    shared_as = naming.registry_model(tenant, promotion.model)
    promotion.registry.share(
        source.workspace_asset_id(tenant, promotion.model, promotion.version),
        shared_as,
        promotion.version,
    )
    carried = {
        **tags,
        contracts.MODEL_TAG_PROMOTED_FROM: origin,
        contracts.MODEL_TAG_SOURCE_METRICS: source_metrics_tag(metrics),
        contracts.MODEL_TAG_REGISTRY_ASSET: (
            f"azureml://registries/{promotion.registry.name}/models/{shared_as}"
            f"/versions/{promotion.version}"
        ),
    }
    version = target.register_promoted(
        tenant,
        promotion.model,
        promotion.registry.files(shared_as, promotion.version),
        baseline,
        carried,
    )
    facts = target.model_facts(tenant, promotion.model, version)
    result = Promoted(
        tenant, "deploy_models", origin, f"{promotion.target_stack}:{promotion.model}/{version}"
    )
    result.gate = [v.to_dict() for v in evaluate_model(facts, tenant, target.spec)]
    return result


def _require_own_champion(
    tenant: str,
    model: str,
    version: str,
    source: tuple[str, AzureEnvironment],
    tags: Mapping[str, str],
) -> None:
    """Only the tenant's own version that the source serves, having passed its rollout there,
    moves on."""
    stack, environment = source
    owner = tags.get(contracts.MODEL_TAG_TENANT)
    if owner not in (tenant, "shared"):
        raise InvalidInputError(f"{model}/{version} is not tenant {tenant}'s model")
    champion = environment.champion_version(tenant, model)
    if champion != str(version):
        serving = f"{model}/{champion}" if champion else "no version"
        raise InvalidInputError(
            f"{model}/{version} is not promoted in {stack}: its champion there is {serving}",
            details={"champion": champion},
        )


def promote_code(
    tenant: str,
    model: str,
    version: str,
    source: tuple[str, AzureEnvironment],
    target: tuple[str, PlatformSpec, Trainer],
) -> Promoted:
    """deploy_code: the target retrains the tenant with this commit's code, on its own data,
    held to the source champion's metrics. The verdict is the target automation's, when
    the job registers the version: ``pending`` here."""
    source_stack, source_env = source
    target_stack, target_spec, trainer = target
    problems = step_refusals((source_stack, source_env.spec), (target_stack, target_spec), tenant)
    problems = problems or pattern_refusals((target_stack, target_spec), tenant, "deploy_code")
    if problems:
        raise InvalidInputError(
            f"promotion of {model}/{version} refused: " + "; ".join(problems),
            details={"problems": problems},
        )
    tags, metrics, _ = source_env.promotion_record(tenant, model, version)
    _require_own_champion(tenant, model, version, (source_stack, source_env), tags)
    origin = f"{source_stack}:{model}/{version}"
    trainer.request_retraining(
        tenant, f"training code promoted from {origin}", deploy_code_tags(origin, metrics)
    )
    submitted = f"{target_stack}: training job submitted"
    return Promoted(tenant, "deploy_code", origin, submitted, pending=True)
