"""`mlops retrain`: the model pipeline's training step on an Azure environment. Each tenant
asked gets one training job with this checkout's training code (the folder the Function
App package carries); what cannot be done is named before anything is submitted. The job
itself, its code upload and its spec on Azure ML are the contract suite's
(AzurePlatform.request_retraining over the stateful Azure fake)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from infra.package import build_function_package
from mlops.cli import EXIT_CONFIG, main
from mlops.retrain import (
    promotion_tags,
    submit,
    tenant_model,
    tenants_to_train,
    write_training_code,
)
from tenancy import PlatformSpec, contracts
from tenancy.errors import DependencyError, InvalidInputError, NotFoundError
from tests.conftest import ROOT


class Recorder:
    """Submits nothing: records, and fails for one tenant when asked to."""

    def __init__(self, failing: str = "") -> None:
        self.failing, self.asked = failing, list[tuple[str, str]]()
        self.tags: dict[str, Mapping[str, str] | None] = {}

    def request_retraining(
        self, tenant: str, reason: str, tags: Mapping[str, str] | None = None
    ) -> None:
        if tenant == self.failing:
            raise NotFoundError.for_item("compute", "gpu-cluster")
        self.asked.append((tenant, reason))
        self.tags[tenant] = tags


class Champions:
    """A source environment: the champions it serves, with their runs' metrics."""

    def __init__(self, champions: dict[tuple[str, str], tuple[str, dict[str, float]]]) -> None:
        self.champions = champions

    def champion_version(self, tenant: str, name: str) -> str | None:
        found = self.champions.get((tenant, name))
        return found[0] if found else None

    def promotion_record(
        self, tenant: str, name: str, version: str
    ) -> tuple[dict[str, str], dict[str, float], bytes | None]:
        champion, metrics = self.champions[(tenant, name)]
        assert version == champion
        return {}, metrics, None


def test_every_tenant_by_default_and_unknown_ones_named(specs: dict[str, PlatformSpec]) -> None:
    dev = specs["dev"]
    assert tenants_to_train(dev, "dev", []) == [t.id for t in dev.tenants]
    assert tenants_to_train(dev, "dev", ["fabrikam"]) == ["fabrikam"]
    # The promotion jobs: only the tenants whose training code moves.
    by_code = [t.id for t in dev.tenants if t.promotion == "deploy_code"]
    assert tenants_to_train(dev, "dev", [], "deploy_code") == by_code
    assert set(tenants_to_train(dev, "dev", [], "deploy_models")).isdisjoint(by_code)
    with pytest.raises(InvalidInputError, match="not tenants of dev: nobody, acme"):
        tenants_to_train(dev, "dev", ["contoso", "nobody", "acme"])
    with pytest.raises(InvalidInputError, match="local is an embedded platform stack"):
        tenants_to_train(specs["local"], "local", [])


def test_the_jobs_code_is_what_the_function_app_package_carries(tmp_path: Path) -> None:
    code = write_training_code(ROOT, tmp_path)
    written = {p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()}
    prefix = f"{contracts.TRAINING_CODE_DIR}/"
    packaged = {
        name.removeprefix(prefix)
        for name in build_function_package(ROOT).files
        if name.startswith(prefix)
    }
    assert written == packaged and "ml/retrain.py" in written
    for name in written:
        assert (code / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_one_job_per_tenant_and_a_failure_names_what_was_submitted() -> None:
    recorder = Recorder()
    assert submit(recorder, ["contoso", "adatum"], "code change") == ["contoso", "adatum"]
    assert recorder.asked == [("contoso", "code change"), ("adatum", "code change")]
    failing = Recorder(failing="adatum")
    with pytest.raises(DependencyError) as raised:
        submit(failing, ["contoso", "adatum", "fabrikam"], "code change")
    assert "training job of adatum was not submitted" in raised.value.message
    assert raised.value.message.endswith("submitted before it: contoso")
    assert failing.asked == [("contoso", "code change")]  # nothing after the failure


def test_the_command_names_what_is_missing_before_submitting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retrain", "--stack", "local"]) == EXIT_CONFIG
    assert "local is an embedded platform stack" in capsys.readouterr().err
    assert main(["retrain", "--stack", "dev", "--tenant", "nobody"]) == EXIT_CONFIG
    assert "not tenants of dev: nobody" in capsys.readouterr().err
    monkeypatch.delenv("ARM_SUBSCRIPTION_ID", raising=False)
    monkeypatch.delenv(contracts.SETTING_SUBSCRIPTION, raising=False)
    assert main(["retrain", "--stack", "dev", "--tenant", "contoso"]) == EXIT_CONFIG
    assert "set ARM_SUBSCRIPTION_ID" in capsys.readouterr().err


def test_code_promoted_from_the_source_is_held_to_its_champions_metrics(
    specs: dict[str, PlatformSpec],
) -> None:
    staging = specs["staging"]
    name = tenant_model(staging, "adatum")
    assert name == "adatum-cv"
    source = Champions({("adatum", name): ("4", {"accuracy": 0.9})})
    tags = promotion_tags("staging", staging, source, ["adatum"])
    assert tags["adatum"][contracts.MODEL_TAG_PROMOTED_FROM] == "staging:adatum-cv/4"
    assert tags["adatum"][contracts.MODEL_TAG_PROMOTION] == "deploy_code"
    assert tags["adatum"][contracts.MODEL_TAG_SOURCE_METRICS] == '{"accuracy": 0.9}'
    recorder = Recorder()
    assert submit(recorder, ["adatum"], "code promoted", tags) == ["adatum"]
    assert recorder.tags["adatum"] == tags["adatum"]
    # Without a champion in the source there is nothing to hold the new version to.
    with pytest.raises(InvalidInputError) as refused:
        promotion_tags("staging", staging, Champions({}), ["adatum", "contoso"])
    assert refused.value.message == (
        "no champion in staging to hold the retrained versions to: "
        "adatum (adatum-cv), contoso (contoso-classical)"
    )


def test_a_code_promotion_names_its_source_and_takes_no_shortcut(
    capsys: pytest.CaptureFixture[str],
) -> None:
    retrain = ["retrain", "--stack", "prod", "--promotion", "deploy_code"]
    assert main(retrain) == EXIT_CONFIG
    assert "--promotion deploy_code needs --from" in capsys.readouterr().err
    assert main([*retrain, "--from", "dev"]) == EXIT_CONFIG
    assert "dev promotes to staging, not prod: promote through staging first" in (
        capsys.readouterr().err
    )
