"""The README documents every rule of the pack and every model-rule code."""

from __future__ import annotations

import re
from pathlib import Path

from policies import model_rules
from policies.catalogue import RULES
from tests.conftest import ROOT


def test_readme_documents_every_infrastructure_rule_with_its_level() -> None:
    readme = (ROOT / "README.md").read_text()
    for rule in RULES:
        row = next(
            (line for line in readme.splitlines() if line.startswith(f"| `{rule.name}` |")), ""
        )
        assert rule.description in row and rule.why in row, rule.name
        assert rule.level.prod in row, rule.name


def test_readme_documents_every_model_rule_code() -> None:
    readme = (ROOT / "README.md").read_text()
    source = Path(model_rules.__file__).read_text()
    codes = set(re.findall(r'"(MODEL_[A-Z_]+)"', source))
    assert codes and all(f"`{code}`" in readme for code in codes), codes
