"""`mlops retrain`: the model pipeline's training step on an Azure environment. For each
tenant asked, a command job on its stamp's GPU cluster runs this commit's training code
(``python -m ml.retrain``: train on the tenant's data, evaluate, register through the
workspace's MLflow endpoint, with the code version as a tag). Registration raises Event
Grid's ModelRegistered, which brings the version through the environment's model gate and
rollout, exactly as the automation's own retraining does (AzurePlatform.request_retraining).

The job's code folder is the one the Function App package carries (``retraining/``),
assembled here from the checkout, so what the pipeline trains with is what was reviewed.
The embedded platform retrains through its automation (drift, quality); this command
drives Azure environments only.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from infra.package import training_code_files
from tenancy import contracts
from tenancy.errors import DependencyError, InvalidInputError, MlopsError
from tenancy.spec import Environment, PlatformSpec


class Trainer(Protocol):
    """What submits a tenant's training job (AzurePlatform on Azure)."""

    def request_retraining(self, tenant: str, reason: str) -> None: ...


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


def submit(trainer: Trainer, tenants: Sequence[str], reason: str) -> list[str]:
    """One training job per tenant; the tenants whose job was submitted. A failure names
    the tenants already submitted (their jobs run; submitting them again trains again)."""
    submitted: list[str] = []
    for tenant in tenants:
        try:
            trainer.request_retraining(tenant, reason)
        except MlopsError as error:
            done = ", ".join(submitted) or "none"
            raise DependencyError(
                f"the training job of {tenant} was not submitted ({error.message}); "
                f"submitted before it: {done}"
            ) from error
        submitted.append(tenant)
    return submitted


def retrain_on_azure(  # noqa: PLR0917 - the command's options
    root: Path,
    spec: PlatformSpec,
    stack: str,
    asked: Sequence[str],
    reason: str,
    promotion: str | None = None,
) -> list[str]:
    """Sign in as the environment's pipeline (DefaultAzureCredential: the workflow's
    `az login` through OIDC) and submit the jobs."""
    import os  # noqa: PLC0415

    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    from adapters.azure import AzurePlatform  # noqa: PLC0415

    tenants = tenants_to_train(spec, stack, asked, promotion)
    if not tenants:
        return []
    subscription = os.environ.get("ARM_SUBSCRIPTION_ID") or os.environ.get(
        contracts.SETTING_SUBSCRIPTION
    )
    if not subscription:
        raise InvalidInputError(
            f"set ARM_SUBSCRIPTION_ID (or {contracts.SETTING_SUBSCRIPTION}) to {stack}'s "
            "subscription"
        )
    with tempfile.TemporaryDirectory(prefix="mlops-retrain-") as scratch:
        code = write_training_code(root, Path(scratch))
        platform = AzurePlatform(spec, DefaultAzureCredential(), subscription, training_code=code)
        return submit(platform, tenants, reason)
