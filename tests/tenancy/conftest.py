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


#: A valid `genai` section for a tenant (two deployments, a judge among them).
GENAI: dict[str, Any] = {
    "models": [
        {"name": "gpt-4o-mini", "version": "2024-07-18", "deployment": "chat",
         "capacity_k_tpm": 10, "usd_per_million_prompt_tokens": 0.15,
         "usd_per_million_completion_tokens": 0.6},
        {"name": "gpt-4o", "version": "2024-08-06", "deployment": "judge", "capacity_k_tpm": 5,
         "usd_per_million_prompt_tokens": 2.5, "usd_per_million_completion_tokens": 10.0},
    ],
    "tokens_per_minute": 12_000,
    "tokens_per_month": 5_000_000,
    "guardrails": {"blocked_terms": ["password", "wire transfer"], "max_tokens": 512},
    "evaluation": {"thresholds": {"exact": 0.6, "rouge_l": 0.5, "judge": 0.7},
                   "judge_deployment": "judge"},
}  # fmt: skip
