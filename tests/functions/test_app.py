"""The app: blueprints composed in the v2 model, settings validated up front."""

from __future__ import annotations

import json

import function_app
import pytest
from settings import Settings

from local.functions_host import index
from tenancy import PlatformSpec, contracts
from tenancy.errors import ConfigError
from tests.functions.conftest import environment


def test_function_app_registers_every_trigger_of_the_blueprints() -> None:
    names = {name for name, _, _ in index(function_app.app)}
    assert names == {
        contracts.FUNCTION_MODEL_REGISTERED,
        "mlflow_registry_webhook",
        "rollout_tick",
        "rollout_command",
        contracts.FUNCTION_BUDGET_ALERT,
        "idle_workspaces",
        "pooled_budgets",
        "drift_check",
        "quality_check",
        contracts.FUNCTION_RUN_STATUS_CHANGED,
        "policy_audit",
    }


def test_settings_name_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"TENANT_MLOPS_ADAPTER": "cloud"})
    assert sorted(raised.value.paths) == sorted(
        [
            contracts.SETTING_STACK,
            "TENANT_MLOPS_ADAPTER",
            "TENANT_MLOPS_STATE_CONNECTION",
            contracts.SETTING_PLATFORM_SPEC,
        ]
    )


def test_a_bad_spec_in_the_settings_names_its_keys(specs: dict[str, PlatformSpec]) -> None:
    env = environment(specs["local"])
    document = json.loads(env[contracts.SETTING_PLATFORM_SPEC])
    document["tenants"][0]["tier"] = "gold"
    env[contracts.SETTING_PLATFORM_SPEC] = json.dumps(document)
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert any("tenants[0].tier" in path for path in raised.value.paths)


def test_settings_from_the_stack(specs: dict[str, PlatformSpec]) -> None:
    settings = Settings.from_env(environment(specs["local"]))
    assert settings.spec == specs["local"] and settings.adapter == "local"
