"""Model folders for deployments, fetched from the stack's MLflow registries."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ml.export import MODEL_FILE, SCHEMA_FILE
from ml.registry import RegistryLayout, registry_of


class ModelFetcher:
    """``fetch(tenant, "<name>/<version>", folder)``: the ONNX file and its schema."""

    def __init__(self, layout: RegistryLayout) -> None:
        self.layout = layout

    def __call__(self, tenant: str, ref: str, folder: Path) -> None:
        name, version = ref.split("/")
        registry = registry_of(self.layout, tenant, name)
        with tempfile.TemporaryDirectory() as scratch:
            downloaded = registry.download(name, version, Path(scratch))
            folder.mkdir(parents=True, exist_ok=True)
            for file in (MODEL_FILE, SCHEMA_FILE):
                shutil.copyfile(downloaded / file, folder / file)
