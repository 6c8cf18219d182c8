"""Promotion between two environments of the embedded platform, on their real MLflow stores:
the source's champion copied with its lineage, metrics, digest and baseline (deploy models)
or retrained from the same code on the target's data (deploy code); the target's gate and an
audit record naming the source; and every refusal named before anything is written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from automation.store import MemoryStore
from ml.lifecycle import train_stack
from ml.registry import BASELINE_FILE, RegistryLayout, registry_of
from mlops.promote import Environment, Promotion, promote, refusals
from tenancy import PlatformSpec, contracts, parse_platform_spec
from tenancy.errors import InvalidInputError, NotFoundError
from tests.tenancy.conftest import stack_document

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
MODEL = "contoso-classical"


def _spec(promotes_to: str | None, pattern: str = "deploy_models") -> PlatformSpec:
    """The local stack with contoso alone (quick to train), as one environment."""
    document = stack_document("local")
    document["tenants"] = [t for t in document["tenants"] if t["id"] == "contoso"]
    document["tenants"][0]["promotion"] = pattern
    document["pools"] = []
    document["delivery"] = {"promotes_to": promotes_to} if promotes_to else {}
    return parse_platform_spec(document)


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """The source: contoso trained, and its first version crowned (it serves)."""
    spec = _spec("prod-local")
    data_dir = tmp_path_factory.mktemp("staging")
    layout = RegistryLayout(spec, data_dir)
    [registered] = train_stack(spec, data_dir, layout)
    registry_of(layout, "contoso", MODEL).crown(MODEL, registered.model.version)
    return Environment("local", spec, layout)


def _target(tmp_path: Path, pattern: str = "deploy_models") -> Environment:
    spec = _spec(None, pattern)
    return Environment("prod-local", spec, RegistryLayout(spec, tmp_path / "prod"))


def _promotion(source: Environment, target: Environment, **overrides: Any) -> Promotion:
    fields: dict[str, Any] = {"tenant": "contoso", "model": MODEL, "version": "1"}
    return Promotion(**{**fields, **overrides}, source=source, target=target)


def test_a_promoted_version_keeps_its_lineage_metrics_digest_and_baseline(
    staging: Environment, tmp_path: Path
) -> None:
    target, audit = _target(tmp_path), MemoryStore()
    done = promote(_promotion(staging, target), audit, NOW)
    assert done.passed, done.gate
    assert (done.source, done.target) == (f"local:{MODEL}/1", f"prod-local:{MODEL}/1")
    source = registry_of(staging.layout, "contoso", MODEL)
    copied = registry_of(target.layout, "contoso", MODEL)
    original, promoted = source.version(MODEL, "1"), copied.version(MODEL, "1")
    for tag in (contracts.MODEL_TAG_DIGEST, contracts.MODEL_TAG_DATA_VERSION,
                contracts.MODEL_TAG_OWNER, contracts.MODEL_TAG_STRATEGY):  # fmt: skip
        assert promoted.tags[tag] == original.tags[tag], tag
    assert promoted.tags[contracts.MODEL_TAG_PROMOTED_FROM] == f"local:{MODEL}/1"
    assert copied.run_metrics(promoted.run_id) == source.run_metrics(original.run_id)
    # Its baseline lives in the target's store now, and is the source's data.
    assert str(target.layout.data_dir) in promoted.tags[contracts.MODEL_TAG_BASELINE]
    fetched = copied.client.download_artifacts(
        promoted.run_id, f"baseline/{BASELINE_FILE}", str(tmp_path)
    )
    before = source.client.download_artifacts(
        original.run_id, f"baseline/{BASELINE_FILE}", str(tmp_path / "before")
    )
    assert Path(fetched).read_bytes() == Path(before).read_bytes()
    # The target's audit names where it came from.
    [record] = [r.data for r in audit.query(contracts.TABLE_AUDIT, "contoso")]
    assert record["event"] == "promoted_in" and record["from"] == f"local:{MODEL}/1"
    assert record["gate"] == "passed" and record["pattern"] == "deploy_models"
    # Again: the copy made before, nothing new.
    again = promote(_promotion(staging, target), audit, NOW)
    assert again.target == done.target
    assert len(copied.client.search_model_versions(f"name='{MODEL}'")) == 1


def test_refusals_are_named_before_anything_is_written(
    staging: Environment, tmp_path: Path
) -> None:
    target, audit = _target(tmp_path), MemoryStore()
    skipping = Environment("prod", target.spec, target.layout)
    assert refusals(_promotion(staging, skipping)) == [
        "local promotes to prod-local, not prod: promote through prod-local first"
    ]
    backwards = _promotion(target, staging)
    assert refusals(backwards) == ["prod-local is the last environment: it promotes to none"]
    stranger = _promotion(staging, target, tenant="fabrikam")
    assert refusals(stranger) == [
        "tenant fabrikam is not in local",
        "tenant fabrikam is not in prod-local",
    ]
    for promotion in (_promotion(staging, skipping), backwards, stranger):
        with pytest.raises(InvalidInputError, match="refused"):
            promote(promotion, audit, NOW)
    # A version the source does not serve has not been promoted there.
    source = registry_of(staging.layout, "contoso", MODEL)
    source.client.create_model_version(
        MODEL, source.version(MODEL, "1").source, tags={contracts.MODEL_TAG_TENANT: "contoso"}
    )
    with pytest.raises(InvalidInputError, match="not promoted in local: its champion there is"):
        promote(_promotion(staging, target, version="2"), audit, NOW)
    with pytest.raises(NotFoundError, match="model version"):
        promote(_promotion(staging, target, version="9"), audit, NOW)
    with pytest.raises(NotFoundError):  # another tenant's model is not found
        promote(_promotion(staging, target, model="adatum-cv"), audit, NOW)
    assert audit.query(contracts.TABLE_AUDIT) == []
    registry = registry_of(target.layout, "contoso", MODEL)
    assert registry.client.search_registered_models() == []


def test_deploy_code_retrains_in_the_target_and_compares_with_the_source(
    staging: Environment, tmp_path: Path
) -> None:
    target, audit = _target(tmp_path, "deploy_code"), MemoryStore()
    done = promote(_promotion(staging, target), audit, NOW)
    assert done.pattern == "deploy_code" and done.passed, done.gate
    assert "accuracy" in done.compared
    assert set(done.compared["accuracy"]) == {"source", "target"}
    version = done.target.rsplit("/", 1)[-1]
    retrained = registry_of(target.layout, "contoso", MODEL).version(MODEL, version)
    assert retrained.tags[contracts.MODEL_TAG_PROMOTED_FROM] == f"local:{MODEL}/1"
    assert retrained.tags["promotion"] == "deploy_code"
    assert len(retrained.tags["code_version"]) in (40, len("unknown"))
    # Trained here, not copied: its own run.
    source_run = registry_of(staging.layout, "contoso", MODEL).version(MODEL, "1").run_id
    assert retrained.run_id != source_run
    [record] = [r.data for r in audit.query(contracts.TABLE_AUDIT, "contoso")]
    assert record["pattern"] == "deploy_code"


def test_the_command_names_every_refusal_and_needs_the_target_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops.cli import EXIT_CONFIG, main  # noqa: PLC0415

    def run(*args: str) -> str:
        assert main(["promote", "--tenant", "contoso", "--model", MODEL, "--version", "1",
                     *args]) == EXIT_CONFIG  # fmt: skip
        return capsys.readouterr().err

    skipping = run("--from", "dev", "--to", "prod")
    assert "dev promotes to staging, not prod: promote through staging first" in skipping
    assert "are not both Azure environments" in run("--from", "local", "--to", "staging")
    monkeypatch.delenv("ARM_SUBSCRIPTION_ID", raising=False)
    monkeypatch.delenv(contracts.SETTING_SUBSCRIPTION, raising=False)
    unsigned = run("--from", "staging", "--to", "prod")
    assert "no subscription for the source and the target" in unsigned
    # Named from the stacks alone, before any sign-in.
    missing = run("--tenant", "nobody", "--from", "staging", "--to", "prod")
    assert "tenant nobody is not in staging" in missing
    assert "tenant nobody is not in prod" in missing
    stopped = run(
        "--from", "local", "--to", "local-prod",
        "--from-data-dir", str(tmp_path / "a"), "--to-data-dir", str(tmp_path / "b"),
    )  # fmt: skip
    assert "local-prod is not running" in stopped and "mlops up --stack local-prod" in stopped
