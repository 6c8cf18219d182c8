"""`mlops retrain`: the model pipeline's training step on an Azure environment. For each
tenant asked, a command job on its stamp's GPU cluster runs this commit's training code
(``python -m ml.retrain``: train on the tenant's data, evaluate, register through the
workspace's MLflow endpoint, with the code version as a tag). Registration raises Event
Grid's ModelRegistered, which brings the version through the environment's model gate and
rollout, exactly as the automation's own retraining does (AzurePlatform.request_retraining).

With ``--promotion deploy_code --from <stack>`` it is the model pipeline's promotion job:
only the tenants the target promotes by deploy_code are retrained, each version tagged with
the source's champion and its metrics (``deploy_code_tags``), which the target's model
gate holds it to (policies.model_rules.no_regression_against_source).

The job's code folder is the one the Function App package carries (``retraining/``),
assembled here from the checkout, so what the pipeline trains with is what was reviewed.
The embedded platform retrains through its automation (drift, quality); this command
drives Azure environments only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from infra.package import training_code_files
from policies.model_rules import source_metrics_tag
from tenancy import contracts
from tenancy.errors import DependencyError, InvalidInputError, MlopsError
from tenancy.spec import Environment, PlatformSpec


class Trainer(Protocol):
    """What submits a tenant's training job (AzurePlatform on Azure)."""

    def request_retraining(
        self, tenant: str, reason: str, tags: Mapping[str, str] | None = None
    ) -> None: ...


class SourceChampions(Protocol):
    """Where the promoted code's metrics are read (the source's AzurePlatform)."""

    def champion_version(self, tenant: str, name: str) -> str | None: ...

    def promotion_record(
        self, tenant: str, name: str, version: str
    ) -> tuple[dict[str, str], dict[str, float], bytes | None]: ...


def tenants_to_train(
    spec: PlatformSpec, stack: str, asked: Sequence[str], promotion: str | None = None
) -> list[str]:
    """The tenants asked (every tenant of the stack when none is), each named if unknown;
    with ``promotion``, only those the stack promotes so (``deploy_code``: the model
    pipeline's promotion jobs retrain exactly the tenants whose training code moves)."""
    if spec.environment == Environment.LOCAL:
        raise InvalidInputError(
            f"{stack} is an embedded platform stack: its automation retrains (drift, "
            "quality); `mlops retrain` submits training jobs to an Azure environment"
        )
    known = [t.id for t in spec.tenants]
    unknown = [t for t in asked if t not in known]
    if unknown:
        raise InvalidInputError(f"not tenants of {stack}: {', '.join(unknown)}")
    chosen = list(asked) or known
    if promotion is None:
        return chosen
    return [t for t in chosen if spec.tenant(t).promotion == promotion]


def write_training_code(root: Path, folder: Path) -> Path:
    """The training job's code folder, as the Function App package holds it."""
    code = folder / contracts.TRAINING_CODE_DIR
    for relative, source in training_code_files(root).items():
        target = code / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return code


def submit(
    trainer: Trainer,
    tenants: Sequence[str],
    reason: str,
    tags: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """One training job per tenant (its version registered with ``tags[tenant]``); the
    tenants whose job was submitted. A failure names the tenants already submitted (their
    jobs run; submitting them again trains again)."""
    submitted: list[str] = []
    for tenant in tenants:
        try:
            trainer.request_retraining(tenant, reason, (tags or {}).get(tenant))
        except MlopsError as error:
            done = ", ".join(submitted) or "none"
            raise DependencyError(
                f"the training job of {tenant} was not submitted ({error.message}); "
                f"submitted before it: {done}"
            ) from error
        submitted.append(tenant)
    return submitted


def tenant_model(spec: PlatformSpec, tenant: str) -> str:
    """The name of the model that serves ``tenant`` (its own, or its kind's shared one)."""
    from ml.registry import model_name  # noqa: PLC0415 - MLflow loads slowly
    from ml.training import SHARED_OWNER  # noqa: PLC0415

    found = spec.tenant(tenant)
    owner = SHARED_OWNER if found.model_strategy == "shared" else found.id
    return model_name(owner, found.model_kind)


def promotion_tags(
    source_stack: str, source_spec: PlatformSpec, source: SourceChampions, tenants: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Per tenant, the tags its retrained version carries: the source's champion and that
    champion's metrics. A tenant with no champion in the source has nothing to be held to:
    every such tenant is named, and nothing is submitted."""
    tags: dict[str, dict[str, str]] = {}
    missing = []
    for tenant in tenants:
        name = tenant_model(source_spec, tenant)
        champion = source.champion_version(tenant, name)
        if champion is None:
            missing.append(f"{tenant} ({name})")
            continue
        _, metrics, _ = source.promotion_record(tenant, name, champion)
        tags[tenant] = deploy_code_tags(f"{source_stack}:{name}/{champion}", metrics)
    if missing:
        raise InvalidInputError(
            f"no champion in {source_stack} to hold the retrained versions to: "
            + ", ".join(missing)
        )
    return tags


def signed_in_subscription() -> str | None:
    """The subscription the pipeline signed in to (azure-sign-in.sh sets ARM_SUBSCRIPTION_ID;
    the Function App's setting otherwise)."""
    import os  # noqa: PLC0415

    return os.environ.get("ARM_SUBSCRIPTION_ID") or os.environ.get(contracts.SETTING_SUBSCRIPTION)


def retrain_on_azure(  # noqa: PLR0917 - the command's options
    root: Path,
    spec: PlatformSpec,
    stack: str,
    asked: Sequence[str],
    reason: str,
    promotion: str | None = None,
    source: tuple[str, PlatformSpec, str | None] | None = None,
) -> list[str]:
    """Sign in as the environment's pipeline (DefaultAzureCredential: the workflow's
    `az login` through OIDC) and submit the jobs. ``source`` (stack, spec, subscription):
    the environment the training code is promoted from (deploy_code), whose champions'
    metrics the new versions are held to."""

    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    from adapters.azure import AzurePlatform  # noqa: PLC0415
    from mlops.promote import chain_refusals  # noqa: PLC0415

    if promotion == "deploy_code" and source is None:
        raise InvalidInputError("--promotion deploy_code needs --from: the stack the code leaves")
    if source is not None:
        problems = chain_refusals((source[0], source[1]), stack)
        if problems:
            raise InvalidInputError("promotion refused: " + "; ".join(problems))
    tenants = tenants_to_train(spec, stack, asked, promotion)
    if not tenants:
        return []
    subscription = signed_in_subscription()
    if not subscription:
        raise InvalidInputError(
            f"set ARM_SUBSCRIPTION_ID (or {contracts.SETTING_SUBSCRIPTION}) to {stack}'s "
            "subscription"
        )
    credential = DefaultAzureCredential()
    tags = None
    if source is not None:
        source_stack, source_spec, source_subscription = source
        champions = AzurePlatform(source_spec, credential, source_subscription or subscription)
        tags = promotion_tags(source_stack, source_spec, champions, tenants)
    with tempfile.TemporaryDirectory(prefix="mlops-retrain-") as scratch:
        code = write_training_code(root, Path(scratch))
        platform = AzurePlatform(spec, credential, subscription, training_code=code)
        return submit(platform, tenants, reason, tags)


def deploy_code_tags(origin: str, source_metrics: dict[str, float]) -> dict[str, str]:
    """What a version retrained from promoted code is registered with."""
    return {
        contracts.MODEL_TAG_PROMOTED_FROM: origin,
        contracts.MODEL_TAG_PROMOTION: "deploy_code",
        contracts.MODEL_TAG_CODE_VERSION: code_version(),
        contracts.MODEL_TAG_SOURCE_METRICS: source_metrics_tag(source_metrics),
    }


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

