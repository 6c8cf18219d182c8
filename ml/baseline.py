"""A model's drift baseline: the training rows' numeric features and the model's predictions
on them, saved beside the model (``baseline.npz``). Text models keep predictions only (their
input is not a numeric feature)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


@dataclass(frozen=True)
class Baseline:
    columns: list[str]
    features: np.ndarray  # (rows, len(columns)), float
    predictions: np.ndarray  # (rows,)

    def reference(self) -> np.ndarray:
        """Rows as drift reads them: features, then the prediction."""
        return np.column_stack([self.features, self.predictions.astype(np.float64)])

    def save(self, path: Path) -> Path:
        np.savez_compressed(
            path,
            columns=np.array(self.columns, dtype=str),
            features=self.features,
            predictions=self.predictions,
        )
        return path

    @classmethod
    def load(cls, source: Path | BinaryIO) -> Baseline:
        with np.load(source, allow_pickle=False) as saved:
            return cls(list(saved["columns"].tolist()), saved["features"], saved["predictions"])


def sample_of(columns: Sequence[str], reference: np.ndarray) -> Mapping[str, Any]:
    """A valid request body from a model's baseline, for smoke tests on either platform
    (text models have no feature columns)."""
    if not columns:
        return {"data": [["please reset my password"]]}
    return {"data": [reference[0, : len(columns)].tolist()]}
