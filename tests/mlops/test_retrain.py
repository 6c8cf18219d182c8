"""`mlops retrain`: the model pipeline's training step on an Azure environment. Each tenant
asked gets one training job with this checkout's training code (the folder the Function
App package carries); what cannot be done is named before anything is submitted. The job
itself, its code upload and its spec on Azure ML are the contract suite's
(AzurePlatform.request_retraining over the stateful Azure fake)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.package import build_function_package
from mlops.cli import EXIT_CONFIG, main
from mlops.retrain import submit, tenants_to_train, write_training_code
from tenancy import PlatformSpec, contracts
from tenancy.errors import DependencyError, InvalidInputError, NotFoundError
from tests.conftest import ROOT


class Recorder:
    """Submits nothing: records, and fails for one tenant when asked to."""

    def __init__(self, failing: str = "") -> None:
        self.failing, self.asked = failing, list[tuple[str, str]]()

    def request_retraining(self, tenant: str, reason: str) -> None:
        if tenant == self.failing:
            raise NotFoundError.for_item("compute", "gpu-cluster")
        self.asked.append((tenant, reason))


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
