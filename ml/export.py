"""ONNX export with a parity check: a model ships only if onnxruntime answers as the source
model does on held-out data (probabilities within 1e-5, the same labels).

Classifiers are exported with ``zipmap=False`` (plain probability arrays, ten times faster
to score than ZipMap for linear models). The model folder holds ``model.onnx`` and
``schema.json``, which the scoring contract reads to validate requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType

from ml.training import TrainedModel
from tenancy.errors import MlopsError

PARITY_TOLERANCE = 1e-5
MODEL_FILE = "model.onnx"
SCHEMA_FILE = "schema.json"
LABEL_OUTPUT = "label"
PROBABILITY_OUTPUT = "probabilities"
INPUT_NAME = "input"
DEFAULT_MAX_BATCH = 1000


class ExportParityError(MlopsError):
    """The exported model does not answer as the source model does."""

    code = "export_parity"


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_probability_error: float
    label_mismatches: int

    @property
    def holds(self) -> bool:
        return self.label_mismatches == 0 and self.max_probability_error <= PARITY_TOLERANCE


@dataclass(frozen=True)
class ExportedModel:
    onnx_bytes: bytes
    schema: dict[str, Any]
    parity: ParityReport

    @property
    def digest(self) -> str:
        return f"sha256:{hashlib.sha256(self.onnx_bytes).hexdigest()}"

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_bytes(self.onnx_bytes)
        (folder / SCHEMA_FILE).write_text(json.dumps(self.schema, indent=2))
        return folder


def model_schema(model: TrainedModel, max_batch: int = DEFAULT_MAX_BATCH) -> dict[str, Any]:
    """What a request must look like, for the scoring contract and for callers."""
    text = model.kind == "nlp"
    return {
        "input_name": INPUT_NAME,
        "input_type": "string" if text else "float",
        "columns": list(model.training.feature_names),
        "classes": list(model.classes),
        "max_batch": max_batch,
        "max_text_length": 10_000 if text else None,
        "kind": model.kind,
    }


def to_onnx_bytes(model: TrainedModel) -> bytes:
    columns = len(model.training.feature_names)
    initial = (
        [(INPUT_NAME, StringTensorType([None, 1]))]
        if model.kind == "nlp"
        else [(INPUT_NAME, FloatTensorType([None, columns]))]
    )
    onnx_model = to_onnx(
        model.pipeline,
        initial_types=initial,
        options={id(model.pipeline.named_steps["clf"]): {"zipmap": False}},
        final_types=None,
        target_opset=None,
    )
    for output, name in zip(
        onnx_model.graph.output, (LABEL_OUTPUT, PROBABILITY_OUTPUT), strict=False
    ):
        _rename_output(onnx_model, output.name, name)
    _portable_locale(onnx_model)
    return bytes(onnx_model.SerializeToString())


def _portable_locale(onnx_model: Any) -> None:
    """The converter asks StringNormalizer for ``en_US.UTF-8``, which slim images (and this
    machine) lack; the ``C`` locale exists everywhere and lower-cases ASCII the same."""
    for node in onnx_model.graph.node:
        if node.op_type != "StringNormalizer":
            continue
        kept = [a for a in node.attribute if a.name != "locale"]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute("locale", "C")])


def _rename_output(onnx_model: Any, old: str, new: str) -> None:
    """Stable output names (``label``, ``probabilities``) whatever the converter chose."""
    if old == new:
        return
    for node in onnx_model.graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]
    for output in onnx_model.graph.output:
        if output.name == old:
            output.name = new


def session(onnx_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One intra-op thread per process is fastest at small batches; workers scale out.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def onnx_input(kind: str, X: NDArray[Any]) -> NDArray[Any]:  # noqa: N803
    return X.astype(object) if kind == "nlp" else np.asarray(X, dtype=np.float32)


def check_parity(model: TrainedModel, onnx_bytes: bytes, holdout: NDArray[Any]) -> ParityReport:
    expected_proba = model.predict_proba(holdout)
    expected_label = model.predict(holdout)
    labels, proba = session(onnx_bytes).run(
        [LABEL_OUTPUT, PROBABILITY_OUTPUT], {INPUT_NAME: onnx_input(model.kind, holdout)}
    )
    error = float(np.max(np.abs(np.asarray(proba, dtype=np.float64) - expected_proba)))
    mismatches = int(np.sum(np.asarray(labels).astype(np.int64) != expected_label))
    return ParityReport(len(holdout), error, mismatches)


def export(model: TrainedModel, holdout: NDArray[Any]) -> ExportedModel:
    """The model as ONNX, or ``ExportParityError`` when ONNX does not answer the same."""
    if len(holdout) == 0:
        raise ExportParityError("parity needs held-out rows; got none")
    onnx_bytes = to_onnx_bytes(model)
    report = check_parity(model, onnx_bytes, holdout)
    if not report.holds:
        raise ExportParityError(
            f"ONNX export of the {model.owner} {model.kind} model differs from the source on "
            f"{report.rows} held-out rows: max probability error "
            f"{report.max_probability_error:.2e} (limit {PARITY_TOLERANCE:g}), "
            f"{report.label_mismatches} label(s) differ",
            details={"max_probability_error": report.max_probability_error},
        )
    return ExportedModel(onnx_bytes, model_schema(model), report)
