"""Batch scoring as a batch deployment runs it: mini-batches, append_row, error threshold."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from local.batch_runner import run_batch
from ml.data import TenantData

Splits = dict[str, tuple[TenantData, TenantData]]
ENTRY = Path(__file__).resolve().parents[2] / "ml" / "scoring" / "batch_score.py"


@pytest.fixture
def entry(model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_dirs["single"]))
    spec = importlib.util.spec_from_file_location("batch_entry", ENTRY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_inputs(folder: Path, splits: Splits, files: int, rows: int) -> list[Path]:
    holdout = splits["contoso"][1]
    folder.mkdir()
    paths = []
    for index in range(files):
        path = folder / f"part-{index:03d}.csv"
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(holdout.feature_names)
            writer.writerows(holdout.X[index * rows : (index + 1) * rows].tolist())
        paths.append(path)
    return paths


def test_every_row_of_every_file_lands_in_predictions_csv(
    entry: ModuleType, local_splits: Splits, tmp_path: Path
) -> None:
    inputs = _write_inputs(tmp_path / "in", local_splits, files=7, rows=5)
    summary = run_batch(entry, inputs, tmp_path / "out", mini_batch_size=3)
    assert summary.status == "completed"
    assert (summary.files, summary.mini_batches, summary.rows) == (7, 3, 35)
    lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert len(lines) == 35
    first = lines[0].split(",")
    assert first[:2] == ["part-000.csv", "0"]
    assert np.isclose(sum(float(p) for p in first[3:]), 1.0, atol=1e-5)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows"] == 35


def test_bad_files_count_against_the_error_threshold(
    entry: ModuleType, local_splits: Splits, tmp_path: Path
) -> None:
    inputs = _write_inputs(tmp_path / "in", local_splits, files=6, rows=2)
    inputs[1].write_text("mean_radius\nnot-a-number\n")
    inputs[4].write_text("")
    tolerant = run_batch(
        entry, inputs, tmp_path / "tolerant", mini_batch_size=2, error_threshold=-1
    )
    assert tolerant.status == "completed"
    assert tolerant.failed_files == ["part-001.csv", "part-004.csv"]
    assert tolerant.rows == 8
    strict = run_batch(entry, inputs, tmp_path / "strict", mini_batch_size=2, error_threshold=0)
    assert strict.status == "failed"
    assert strict.mini_batches == 1  # stopped at the first failure
    assert strict.reason == "1 file(s) failed, above the error threshold of 0"


def test_a_script_that_raises_is_retried_then_counted(tmp_path: Path) -> None:
    class Flaky:
        calls = 0

        def init(self) -> None:
            pass

        def run(self, mini_batch: list[str]) -> list[str]:
            self.calls += 1
            if self.calls < 3:
                raise RuntimeError("transient")
            return [f"{Path(name).name},0,1" for name in mini_batch]

    files = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in files:
        path.write_text("x\n1\n")
    summary = run_batch(Flaky(), files, tmp_path / "out", mini_batch_size=2, max_retries=3)
    assert (summary.retries, summary.rows, summary.failed_files) == (2, 2, [])
    never = run_batch(Flaky(), files, tmp_path / "never", mini_batch_size=2, max_retries=1)
    assert never.failed_files == ["a.csv", "b.csv"]
