from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def stack_document(stack: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return copy.deepcopy(document["config"]["tenant-mlops:platform"])


@pytest.fixture
def local_raw() -> dict[str, Any]:
    """A valid platform document (the local stack's), fresh for each test to break."""
    return stack_document("local")
