"""The batch deployment's entry script: ``init()`` / ``run(mini_batch)`` as Azure ML's
parallel driver calls them, over the same scoring service as the online endpoint.

Each input file is a CSV whose header names the model's columns (any order; for text
models, one ``text`` column). ``run`` returns one output row per input row,
``file,row,prediction,probability...``; a file that cannot be scored returns no rows and is
counted as failed by the driver (Azure ML counts a mini-batch item failed when run()
returns nothing for it).
"""

import csv
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("tenant_mlops.batch_score")


def _load_score_module() -> Any:
    """score.py sits beside this file in the code asset (loaded by path, as the server does)."""
    path = Path(__file__).with_name("score.py")
    spec = importlib.util.spec_from_file_location("tenant_mlops_score", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_score = _load_score_module()
# The driver calls init() once per worker and run() per mini-batch: the service lives between.
_service: list[Any] = []


def init() -> None:
    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    _service[:] = [_score.ScoringService(model_dir)]


def _score_file(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        columns = next(reader)
        raw_rows = list(reader)
    service = _service[0]
    schema = service.single.schema
    rows = [[cell if schema.text else float(cell) for cell in row] for row in raw_rows]
    body = {"input_data": {"columns": columns, "data": rows}}
    result = service.single.score(body)
    return [
        ",".join([path.name, str(index), str(label), *(f"{p:.6f}" for p in probabilities)])
        for index, (label, probabilities) in enumerate(
            zip(result["predictions"], result["probabilities"], strict=True)
        )
    ]


def run(mini_batch: list[str]) -> list[str]:
    output: list[str] = []
    for name in mini_batch:
        try:
            output.extend(_score_file(Path(name)))
        except (ValueError, OSError, StopIteration, _score.ScoringError) as error:
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            logger.warning("file %s failed: %s", Path(name).name, message)
    return output
