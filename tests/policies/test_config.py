"""Levels per environment, a stack's overrides, and the committed pack config files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.catalogue import BY_NAME, RULES
from policies.config import PackConfig, config_path, setting_schema
from tenancy import PlatformSpec, parse_platform_spec
from tenancy.errors import ConfigError
from tests.conftest import ROOT, STACKS
from tests.tenancy.conftest import stack_document


def _spec(**changes: Any) -> PlatformSpec:
    document = stack_document("local")
    document.update(changes)
    return parse_platform_spec(document)


@pytest.mark.parametrize(
    ("rule", "prod", "elsewhere"),
    [
        ("workspace-public-network-disabled", "mandatory", "advisory"),
        ("deployment-min-instances", "mandatory", "advisory"),
        ("workspace-managed-network", "mandatory", "disabled"),
        ("compute-no-node-public-ip", "mandatory", "disabled"),
        ("deployment-egress-disabled", "mandatory", "disabled"),
        ("deployment-data-collection", "advisory", "advisory"),
        ("tenant-isolation", "mandatory", "mandatory"),
        ("compute-vm-size-allowed", "mandatory", "mandatory"),
    ],
)
def test_default_levels_follow_the_environment(
    specs: dict[str, PlatformSpec], rule: str, prod: str, elsewhere: str
) -> None:
    assert PackConfig.from_spec(specs["prod"])[rule].level == prod
    for stack in ("local", "dev", "staging"):
        # The rule's own default: the example stacks waive some in their spec.
        unwaived = specs[stack].model_copy(update={"policies": {}})
        assert PackConfig.from_spec(unwaived)[rule].level == elsewhere


def test_a_stack_sets_levels_and_limits() -> None:
    spec = _spec(
        policies={
            "tenant-isolation": {"level": "advisory"},
            "deployment-min-instances": {"level": "mandatory", "settings": {"minInstances": 3}},
        }
    )
    config = PackConfig.from_spec(spec)
    assert config["tenant-isolation"].level == "advisory"
    assert config["deployment-min-instances"].level == "mandatory"
    assert config["deployment-min-instances"].settings == {"minInstances": 3}
    exported = config.to_pulumi()["deployment-min-instances"]
    assert exported == {"enforcementLevel": "mandatory", "minInstances": 3}


def test_settings_come_from_the_spec(specs: dict[str, PlatformSpec]) -> None:
    config = PackConfig.from_spec(specs["local"])
    assert (
        config["compute-max-nodes-within-tier"].settings["tenantTiers"]["pool:shared"] == "pooled"
    )
    assert config["workspace-customer-managed-key"].settings["tenantClassifications"]["adatum"] == (
        "restricted"
    )
    assert config["endpoint-public-network-disabled"].settings["privateTiers"] == []
    assert PackConfig.from_spec(specs["prod"])["endpoint-public-network-disabled"].settings[
        "privateTiers"
    ] == ["dedicated", "pooled"]
    assert config["mandatory-tags"].settings["environment"] == "local"


def test_every_bad_override_is_named_at_once() -> None:
    spec = _spec(
        policies={
            "no-such-rule": {"level": "advisory"},
            "deployment-min-instances": {"settings": {"minInstances": "two", "maxInstances": 9}},
            "compute-max-nodes-within-tier": {"settings": {"maxNodes": {"dedicated": 1.5}}},
        }
    )
    with pytest.raises(ConfigError) as raised:
        PackConfig.from_spec(spec)
    assert sorted(raised.value.paths) == [
        "policies.compute-max-nodes-within-tier.settings.maxNodes",
        "policies.deployment-min-instances.settings.maxInstances",
        "policies.deployment-min-instances.settings.minInstances",
        "policies.no-such-rule",
    ]
    assert "no such setting (known: minInstances)" in raised.value.message


def test_a_bad_level_is_named_by_the_spec() -> None:
    with pytest.raises(ConfigError) as raised:
        _spec(policies={"tenant-isolation": {"level": "fatal"}})
    assert raised.value.paths == ["policies.tenant-isolation.level"]


@pytest.mark.parametrize("stack", STACKS)
def test_committed_pack_config_matches_the_stack(
    specs: dict[str, PlatformSpec], stack: str
) -> None:
    """`pulumi preview --policy-pack-config policies/config/<stack>.json` reads this file;
    it must say what the spec says (regenerate with `mlops policy-config --write`)."""
    committed = json.loads(config_path(ROOT, stack).read_text())
    assert committed == PackConfig.from_spec(specs[stack]).to_pulumi()


def test_setting_schemas_are_self_contained_json_schema() -> None:
    for rule in RULES:
        for setting in rule.settings:
            schema = setting_schema(setting)
            assert "$ref" not in json.dumps(schema), (rule.name, setting.name)
            assert schema["type"] in ("object", "array", "integer", "string")
            assert schema["description"]


def test_every_rule_documents_why() -> None:
    for rule in RULES:
        assert rule.description.endswith(".") and rule.why.endswith("."), rule.name
    assert len(BY_NAME) == len(RULES) == 38
