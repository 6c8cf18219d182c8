"""A tenant's prompts in its own MLflow store (a real sqlite-backed MLflow here): versions
with their lineage, the champion and challenger aliases, and no way into another tenant's."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.mlflow_prompts import MlflowPromptStore
from genai.prompts import ALIAS_CHALLENGER, ALIAS_CHAMPION, PromptLineage, render
from tenancy.errors import InvalidInputError, NotFoundError

TEMPLATE = "Answer in one word. What is the capital of {{ country }}?"
LINEAGE = PromptLineage("chat", "capitals-v3", {"temperature": 0.0, "max_tokens": 16})


def _store(folder: Path, tenant: str) -> MlflowPromptStore:
    return MlflowPromptStore(f"sqlite:///{folder / f'tenant-{tenant}.db'}")


def test_versions_keep_their_template_and_lineage_and_aliases_move(tmp_path: Path) -> None:
    store = _store(tmp_path, "contoso")
    first = store.register("capitals", TEMPLATE, LINEAGE, "first version")
    second = store.register("capitals", "{{country}}: its capital, one word.", LINEAGE, "shorter")
    assert (first.version, second.version) == ("1", "2")
    found = store.get("capitals", "1")
    assert found.template == TEMPLATE and found.lineage == LINEAGE
    assert found.variables == ["country"]
    assert render(found, {"country": "France"}).endswith("capital of France?")
    store.set_alias("capitals", ALIAS_CHAMPION, "1")
    store.set_alias("capitals", ALIAS_CHALLENGER, "2")
    champion = store.by_alias("capitals", ALIAS_CHAMPION)
    assert champion is not None and champion.version == "1"
    store.set_alias("capitals", ALIAS_CHAMPION, "2")  # the challenger promoted
    promoted = store.by_alias("capitals", ALIAS_CHAMPION)
    assert promoted is not None and promoted.version == "2"
    assert store.by_alias("capitals", "nightly") is None


def test_bad_prompts_and_missing_variables_are_named(tmp_path: Path) -> None:
    store = _store(tmp_path, "contoso")
    with pytest.raises(InvalidInputError) as refused:
        store.register("Capitals!", "  ", LINEAGE, "bad")
    assert "prompt name 'Capitals!'" in refused.value.message
    assert "the template is empty" in refused.value.message
    version = store.register("capitals", TEMPLATE, LINEAGE, "ok")
    with pytest.raises(InvalidInputError, match=r"prompt capitals/1 needs country"):
        render(version, {"city": "Paris"})
    with pytest.raises(NotFoundError, match="prompt version 'capitals/7' does not exist"):
        store.set_alias("capitals", ALIAS_CHAMPION, "7")


def test_a_tenant_cannot_reach_another_tenants_prompts(tmp_path: Path) -> None:
    _store(tmp_path, "contoso").register("capitals", TEMPLATE, LINEAGE, "contoso's")
    other = _store(tmp_path, "adatum")
    with pytest.raises(NotFoundError):
        other.get("capitals", "1")
    assert other.by_alias("capitals", ALIAS_CHAMPION) is None


def test_pooled_tenants_sharing_a_store_see_only_their_own_prompts(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'pool-shared.db'}"
    fabrikam = MlflowPromptStore(uri, owner="fabrikam")
    northwind = MlflowPromptStore(uri, owner="northwind")
    mine = fabrikam.register("capitals", TEMPLATE, LINEAGE, "fabrikam's")
    theirs = northwind.register("capitals", "Capital of {{country}}?", LINEAGE, "northwind's")
    assert (mine.name, mine.version) == ("capitals", "1") == (theirs.name, theirs.version)
    fabrikam.set_alias("capitals", ALIAS_CHAMPION, "1")
    assert northwind.by_alias("capitals", ALIAS_CHAMPION) is None
    assert northwind.get("capitals", "1").template == "Capital of {{country}}?"
    assert fabrikam.names() == ["capitals"] == northwind.names()
    fabrikam.delete_alias("capitals", ALIAS_CHAMPION)
    fabrikam.delete_alias("capitals", ALIAS_CHAMPION)  # nothing to do the second time
    assert fabrikam.by_alias("capitals", ALIAS_CHAMPION) is None
