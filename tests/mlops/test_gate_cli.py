"""`mlops gate` against a real MLflow registry (sqlite backend store in tmp_path)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from mlflow import MlflowClient

from mlops.cli import EXIT_CONFIG, EXIT_OK, EXIT_VIOLATION, main
from tests.conftest import ROOT

MODEL = "contoso-churn"
ONNX_BYTES = b"\x08\x07\x12\x07skl2onnx" + bytes(range(256)) * 8


def _model_folder(folder: Path, requirements: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(ONNX_BYTES)
    (folder / "MLmodel").write_text(
        "flavors:\n"
        "  onnx: {data: model.onnx, onnx_version: 1.17.0}\n"
        "  python_function: {loader_module: mlflow.onnx, data: model.onnx}\n"
    )
    (folder / "requirements.txt").write_text(requirements)
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """A registry with version 1 (champion, accuracy 0.90) and version 2 (0.93)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("contoso", artifact_location=(tmp_path / "art").as_uri())
    client.create_registered_model(MODEL)
    digest = f"sha256:{hashlib.sha256(ONNX_BYTES).hexdigest()}"
    for version, accuracy, extra in ((1, 0.90, ""), (2, 0.93, "scikit-learn==1.6\n")):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        folder = _model_folder(tmp_path / f"m{version}", "onnxruntime==1.23.0\nnumpy\n" + extra)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        client.create_model_version(
            MODEL,
            f"{run.info.artifact_uri}/model",
            run_id=run.info.run_id,
            tags={
                "tenant": "contoso",
                "training_run": run.info.run_id,
                "data_version": "contoso-v1",
                "owner": "ds@contoso.example.com",
                "intended_use": "churn scoring",
                "strategy": "tenant_specific",
                "artifact_digest": digest,
                "baseline_dataset": "file:///baseline.parquet",
            },
        )
    client.set_registered_model_alias(MODEL, "champion", "1")
    return uri


def _gate(registry: str, *args: str) -> list[str]:
    return ["gate", "--tenant", "contoso", "--model", MODEL, "--root", str(ROOT),
            "--registry-uri", registry, *args]  # fmt: skip


def test_a_compliant_version_passes(registry: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_gate(registry, "--version", "1")) == EXIT_OK
    assert capsys.readouterr().out.strip() == (f"{MODEL} version 1 for tenant contoso: passes")


def test_a_violating_version_fails_with_every_reason(
    registry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_gate(registry, "--version", "2", "--json")) == EXIT_VIOLATION
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"] is False
    assert verdict["violations"] == [
        {
            "code": "MODEL_PACKAGE_NOT_ALLOWED",
            "message": "environment package(s) outside the allow-list: scikit-learn",
        }
    ]


def test_the_gate_reads_digest_size_and_champion_from_the_registry(registry: str) -> None:
    from adapters.mlflow_facts import MlflowModelFacts  # noqa: PLC0415

    facts = MlflowModelFacts(registry).model_facts(MODEL, "2")
    assert facts.computed_digest == f"sha256:{hashlib.sha256(ONNX_BYTES).hexdigest()}"
    assert facts.size_bytes == len(ONNX_BYTES)
    assert facts.artifact_format == "onnx"
    assert set(facts.flavors) == {"onnx", "python_function"}
    assert facts.champion is not None and facts.champion.version == "1"
    assert facts.champion.metrics == {"accuracy": 0.90}
    assert facts.metrics == {"accuracy": 0.93}


def test_a_missing_version_or_registry_is_a_clear_error(
    registry: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(_gate(registry, "--version", "9")) == EXIT_CONFIG
    assert f"model version '{MODEL}/9' does not exist" in capsys.readouterr().err
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["gate", "--tenant", "contoso", "--model", MODEL, "--version", "1", "--root", str(ROOT)]
    assert main(args) == EXIT_CONFIG
    assert "no registry" in capsys.readouterr().err
