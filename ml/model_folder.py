"""What a model folder (the MLflow model layout: ``MLmodel``, ``requirements.txt``, the
model file) says of itself, read without MLflow: the Azure adapter reads folders it
downloads from an Azure ML registry, in a Function App that does not install MLflow."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_model_folder", "sha256_of"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def read_model_folder(folder: Path) -> dict[str, Any]:
    """Flavors, format, packages, digest and size from an MLflow model folder."""
    mlmodel_path = folder / "MLmodel"
    mlmodel = yaml.safe_load(mlmodel_path.read_text()) if mlmodel_path.is_file() else {}
    flavors: dict[str, Any] = (mlmodel or {}).get("flavors") or {}
    model_file = _model_file(folder, flavors)
    requirements = folder / "requirements.txt"
    packages = requirements.read_text().splitlines() if requirements.is_file() else []
    return {
        "flavors": tuple(flavors),
        "artifact_format": model_file.suffix.lstrip(".").lower() if model_file else None,
        "packages": tuple(line for line in packages if line.strip()),
        "computed_digest": sha256_of(model_file) if model_file else None,
        "size_bytes": model_file.stat().st_size if model_file else None,
    }


def _model_file(folder: Path, flavors: dict[str, Any]) -> Path | None:
    """The file a flavor names as its data (``onnx: {data: model.onnx}``), if present."""
    for flavor in flavors.values():
        data = flavor.get("data") if isinstance(flavor, dict) else None
        path = folder / str(data) if data else None
        if path is not None and path.is_file():
            return path
    return None
