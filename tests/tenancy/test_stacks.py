"""The shipped example stacks parse and have the shape the product promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenancy import ConfigError, Environment, load_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_every_example_stack_parses(stack: str) -> None:
    spec = load_stack(stack, ROOT)
    assert spec.environment == Environment(stack)


def test_local_covers_both_tiers_and_every_strategy_and_kind() -> None:
    spec = load_stack("local", ROOT)
    assert len(spec.tenants) >= 3
    assert {t.tier for t in spec.tenants} == {"dedicated", "pooled"}
    assert {t.model_strategy for t in spec.tenants} == {"tenant_specific", "shared", "tuned_shared"}
    assert {t.model_kind for t in spec.tenants} == {"classical", "cv", "nlp"}


def test_prod_is_private_gated_and_redundant() -> None:
    spec = load_stack("prod", ROOT)
    assert len(spec.tenants) >= 6
    assert len(spec.pools) >= 2
    assert any(not t.shared_training_consent for t in spec.tenants)
    assert spec.networking.private
    assert spec.rollout.approval_required
    online_counts = [t.endpoints.online.instance_count for t in spec.dedicated_tenants]
    online_counts += [p.endpoints.online.instance_count for p in spec.pools]
    assert min(online_counts) >= 2


def test_missing_stack_file_names_the_stacks_that_exist(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: tenant-mlops\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    with pytest.raises(
        ConfigError, match=r"stack 'qa' has no file Pulumi.qa.yaml \(found: Pulumi.dev.yaml\)"
    ):
        load_stack("qa", tmp_path)


def test_missing_platform_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  azure-native:location: westeurope\n")
    with pytest.raises(ConfigError) as caught:
        load_stack("dev", tmp_path)
    assert caught.value.paths == ["config.tenant-mlops:platform"]


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  tenant-mlops:platform: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_stack("dev", tmp_path)
    assert caught.value.paths[0].startswith("line 3")
    assert "not valid YAML" in caught.value.issues[0].message


def test_tenant_defaults_resolve_through_the_platform() -> None:
    spec = load_stack("local", ROOT)
    contoso = spec.tenant("contoso")
    assert spec.rollout_for(contoso) is spec.rollout
    assert spec.stop_at_percent_for(contoso) == spec.budget_policy.stop_at_percent
    assert spec.min_metrics_for(contoso) == spec.model_gate.min_metrics
    assert contoso.stamp_key == "tenant-contoso"
    assert spec.tenant("fabrikam").stamp_key == "pool-shared"
    assert [t.id for t in spec.tenants_in_pool("shared")] == ["fabrikam", "northwind", "litware"]
    with pytest.raises(KeyError):
        spec.tenant("nobody")
