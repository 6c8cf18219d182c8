"""The whole stack trained and registered (real MLflow sqlite stores under tmp_path):
lineage, aliases, stores per tenancy, isolation through the library's API, the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.mlflow_facts import MlflowModelFacts
from ml.export import MODEL_FILE, SCHEMA_FILE
from ml.lifecycle import Registered, train_stack
from ml.registry import RegistryLayout
from ml.training import train_shared
from policies.model_rules import evaluate_model
from tenancy import PlatformSpec, contracts
from tenancy.errors import InvalidInputError, NotFoundError


@pytest.fixture(scope="module")
def trained(
    specs: dict[str, PlatformSpec], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Registered]]:
    data_dir = tmp_path_factory.mktemp("platform-data")
    registered = train_stack(specs["local"], data_dir)
    return data_dir, {r.tenant: r for r in registered}


def test_each_tenant_is_registered_where_its_tenancy_says(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, registered = trained
    assert {t: (r.strategy, r.store, r.model.name) for t, r in registered.items()} == {
        "contoso": ("tenant_specific", "tenant-contoso", "contoso-classical"),
        "adatum": ("tenant_specific", "tenant-adatum", "adatum-cv"),
        "fabrikam": ("shared", "platform", "shared-classical"),
        "northwind": ("tuned_shared", "pool-shared", "northwind-classical"),
        "litware": ("tenant_specific", "pool-shared", "litware-nlp"),
    }
    stores = sorted(p.name for p in (data_dir / "registries").glob("*.db"))
    assert stores == ["platform.db", "pool-shared.db", "tenant-adatum.db", "tenant-contoso.db"]


def test_lineage_tags_and_the_challenger_alias(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, _registered = trained
    layout = RegistryLayout(specs["local"], data_dir)
    registry = layout.registry_for("contoso")
    version = registry.version("contoso-classical", "1")
    tags = version.tags
    assert tags[contracts.MODEL_TAG_TENANT] == "contoso"
    assert tags[contracts.MODEL_TAG_TRAINING_RUN] == version.run_id
    assert tags[contracts.MODEL_TAG_DATA_VERSION].startswith("contoso-classical-")
    assert tags[contracts.MODEL_TAG_STRATEGY] == "tenant_specific"
    assert tags[contracts.MODEL_TAG_CONTRIBUTORS] == "contoso"
    assert tags[contracts.MODEL_TAG_DIGEST].startswith("sha256:")
    assert str(registry.alias("contoso-classical", contracts.ALIAS_CHALLENGER).version) == "1"
    assert registry.alias("contoso-classical", contracts.ALIAS_CHAMPION) is None
    metrics = registry.run_metrics(version.run_id)
    assert metrics["accuracy"] > 0.85 and "f1_macro" in metrics
    folder = registry.download("contoso-classical", "1", data_dir / "dl")
    assert (folder / MODEL_FILE).is_file() and (folder / SCHEMA_FILE).is_file()


def test_the_shared_models_lineage_names_exactly_the_consenting_tenants(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, _registered = trained
    consenting = {t.id for t in specs["local"].consenting_tenants if t.model_kind == "classical"}
    shared = RegistryLayout(specs["local"], data_dir).platform_registry()
    tags = shared.version("shared-classical", "1").tags
    assert set(tags[contracts.MODEL_TAG_CONTRIBUTORS].split(",")) == consenting
    assert tags[contracts.MODEL_TAG_IDENTIFIERS_REMOVED] == "true"
    tuned = RegistryLayout(specs["local"], data_dir).registry_for("northwind")
    assert tuned.version("northwind-classical", "1").tags[contracts.MODEL_TAG_BASE] == (
        "shared-classical/1"
    )


def test_pooled_tenants_cannot_reach_each_others_models(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, _ = trained
    layout = RegistryLayout(specs["local"], data_dir)
    northwind, litware = layout.registry_for("northwind"), layout.registry_for("litware")
    assert northwind.store == litware.store  # one pool, one store
    assert northwind.list_models() == ["northwind-classical"]
    assert litware.list_models() == ["litware-nlp"]
    for attempt in (
        lambda: northwind.version("litware-nlp", "1"),
        lambda: northwind.download("litware-nlp", "1", data_dir / "stolen"),
        lambda: northwind.set_alias("litware-nlp", contracts.ALIAS_CHAMPION, "1"),
        lambda: northwind.alias("litware-nlp", contracts.ALIAS_CHALLENGER),
    ):
        with pytest.raises(NotFoundError, match="model 'litware-nlp' does not exist"):
            attempt()
    assert not (data_dir / "stolen").exists()


def test_shared_models_are_read_only_and_only_for_tenants_that_use_them(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, _ = trained
    layout = RegistryLayout(specs["local"], data_dir)
    view = layout.registry_for("northwind").shared_view()
    assert view.list_models() == ["shared-classical"]
    with pytest.raises(NotFoundError):
        view.set_alias("shared-classical", contracts.ALIAS_CHAMPION, "1")
    with pytest.raises(NotFoundError):
        layout.registry_for("contoso").shared_view()  # tenant-specific: no shared models


def test_a_model_cannot_be_registered_in_another_tenants_registry(
    specs: dict[str, PlatformSpec],
    trained: tuple[Path, dict[str, Registered]],
    local_splits: dict[str, tuple[object, object]],
) -> None:
    data_dir, _ = trained
    layout = RegistryLayout(specs["local"], data_dir)
    train = {t: parts[0] for t, parts in local_splits.items()}
    shared = train_shared(specs["local"], "classical", train)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cannot be registered in 'contoso'"):
        layout.registry_for("contoso").register(shared, None, {}, owner_contact="x")  # type: ignore[arg-type]


def test_every_registered_model_passes_the_model_gate(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, registered = trained
    for tenant, result in registered.items():
        uri = f"sqlite:///{data_dir / 'registries' / result.store}.db"
        facts = MlflowModelFacts(uri).model_facts(result.model.name, result.model.version)
        assert evaluate_model(facts, tenant, specs["local"]) == [], tenant


def test_a_second_version_is_evaluated_against_the_champion_on_the_same_rows(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, _ = trained
    registry = RegistryLayout(specs["local"], data_dir).registry_for("adatum")
    registry.set_alias("adatum-cv", contracts.ALIAS_CHAMPION, "1")
    result = {r.tenant: r for r in train_stack(specs["local"], data_dir)}["adatum"]
    assert result.model.version == "2"
    # Same data, same seed: the challenger equals the champion on the same held-out rows.
    assert result.metrics["champion_accuracy"] == pytest.approx(result.metrics["accuracy"])
    facts = MlflowModelFacts(f"sqlite:///{data_dir / 'registries' / 'tenant-adatum'}.db")
    champion = facts.model_facts("adatum-cv", "2").champion
    assert champion is not None and champion.version == "1"
    assert champion.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])


def test_retraining_a_tenant_registers_its_next_version(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    from ml.retrain import main  # noqa: PLC0415

    data_dir, _ = trained
    assert main(["--tenant", "northwind", "--stack", "local", "--data-dir", str(data_dir)]) == 0
    layout = RegistryLayout(specs["local"], data_dir)
    # A tuned tenant: the shared base is retrained first, then tuned from the new base.
    shared = layout.platform_registry()
    newest_base = max(
        int(v.version) for v in shared.client.search_model_versions("name='shared-classical'")
    )
    tuned = layout.registry_for("northwind")
    latest = max(
        int(v.version) for v in tuned.client.search_model_versions("name='northwind-classical'")
    )
    tags = tuned.version("northwind-classical", str(latest)).tags
    assert latest >= 2 and tags[contracts.MODEL_TAG_BASE] == f"shared-classical/{newest_base}"
    assert str(tuned.alias("northwind-classical", contracts.ALIAS_CHALLENGER).version) == str(
        latest
    )


def test_a_retraining_job_registers_with_the_tags_it_was_sent(
    specs: dict[str, PlatformSpec],
    trained: tuple[Path, dict[str, Registered]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A promotion's tags (`mlops retrain --promotion deploy_code`) reach the new version at
    its registration, beside its lineage, which they cannot replace."""
    from ml.retrain import main  # noqa: PLC0415

    data_dir, _ = trained
    sent = {
        contracts.MODEL_TAG_PROMOTED_FROM: "staging:litware-nlp/4",
        contracts.MODEL_TAG_PROMOTION: "deploy_code",
        contracts.MODEL_TAG_TENANT: "contoso",  # lineage is the registry's to write
    }
    monkeypatch.setenv(contracts.SETTING_MODEL_TAGS, json.dumps(sent))
    assert main(["--tenant", "litware", "--stack", "local", "--data-dir", str(data_dir)]) == 0
    registry = RegistryLayout(specs["local"], data_dir).registry_for("litware")
    versions = registry.client.search_model_versions("name='litware-nlp'")
    latest = max(int(v.version) for v in versions)
    tags = registry.version("litware-nlp", str(latest)).tags
    assert tags[contracts.MODEL_TAG_PROMOTED_FROM] == "staging:litware-nlp/4"
    assert tags[contracts.MODEL_TAG_PROMOTION] == "deploy_code"
    assert tags[contracts.MODEL_TAG_TENANT] == "litware"
    monkeypatch.setenv(contracts.SETTING_MODEL_TAGS, "[not json")
    with pytest.raises(SystemExit, match=f"{contracts.SETTING_MODEL_TAGS} is not JSON"):
        main(["--tenant", "litware", "--stack", "local", "--data-dir", str(data_dir)])


def test_a_retraining_job_trains_with_the_spec_it_was_sent(
    specs: dict[str, PlatformSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Azure ML job has no stack files: the automation sends its spec as an environment
    variable, and that spec (here with a tenant removed) is the one the job uses."""
    from ml.retrain import _spec  # noqa: PLC0415

    document = specs["local"].model_dump(mode="json")
    document["tenants"] = [t for t in document["tenants"] if t["id"] != "adatum"]
    monkeypatch.setenv(contracts.SETTING_PLATFORM_SPEC, json.dumps(document))
    sent = _spec("a-stack-that-has-no-file")
    assert "adatum" not in {t.id for t in sent.tenants}
    monkeypatch.delenv(contracts.SETTING_PLATFORM_SPEC)
    assert _spec("local") == specs["local"]


def test_crowning_moves_the_champion_clears_the_challenger_and_repeats_harmlessly(
    specs: dict[str, PlatformSpec], trained: tuple[Path, dict[str, Registered]]
) -> None:
    data_dir, _ = trained
    registry = RegistryLayout(specs["local"], data_dir).registry_for("contoso")
    challenger = str(registry.alias("contoso-classical", contracts.ALIAS_CHALLENGER).version)
    registry.crown("contoso-classical", challenger)
    registry.crown("contoso-classical", challenger)  # a rollout's pending action, again
    champion = registry.alias("contoso-classical", contracts.ALIAS_CHAMPION)
    assert str(champion.version) == challenger
    assert registry.alias("contoso-classical", contracts.ALIAS_CHALLENGER) is None
    # A tenant's registry crowns its own models only.
    with pytest.raises(NotFoundError):
        registry.crown("shared-classical", "1")
