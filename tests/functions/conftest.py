"""The Function App's triggers called host-free, with the domain wired to a memory store and
the fake platform (the same composition the app builds, another port)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))

import services as app_services
from blueprints import audit, budgets, drift, quality, registry, rollouts
from settings import Settings

from automation.store import MemoryStore
from tenancy import PlatformSpec, contracts
from tests.automation.fakes import FakePlatform
from tests.automation.test_costs import FixedCosts, HourlyUsage
from tests.automation.test_drift_watch import FakeSource
from tests.automation.test_quality_watch import FakeSource as LabelledSource
from tests.automation.test_quality_watch import window_of as labelled_window

SECRET = "test-webhook-secret"
# function_app.alert_webhook_app_id of Pulumi.local.yaml: the automation's Entra application.
APP_ID = "6a1f0c2e-0000-4000-8000-00000000a001"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def environment(spec: PlatformSpec) -> dict[str, str]:
    return {
        contracts.SETTING_STACK: "local",
        contracts.SETTING_PLATFORM_SPEC: json.dumps(spec.model_dump(mode="json")),
        "TENANT_MLOPS_STATE_CONNECTION": "UseDevelopmentStorage=true",
        "TENANT_MLOPS_ADAPTER": "local",
        "TENANT_MLOPS_MLFLOW_WEBHOOK_SECRET": SECRET,
        # What App Service sets when its authentication module runs (the platform's proof).
        "WEBSITE_AUTH_ENABLED": "True",
    }


@pytest.fixture
def wired(
    specs: dict[str, PlatformSpec], monkeypatch: pytest.MonkeyPatch
) -> Iterator[app_services.Services]:
    settings = Settings.from_env(environment(specs["local"]))
    platform = FakePlatform()
    platform.serve("contoso", "contoso-classical/1")
    composed = app_services.compose(
        settings,
        MemoryStore(),
        platform,
        lambda: NOW,
        drift_source=FakeSource(shift=0.8),
        # contoso's clients label its requests, and it is right about half the time.
        quality_source=LabelledSource(labelled_window(2000, 500, accuracy=0.5)),
        # The shared pool has cost 200 this month; fabrikam scored 60 % of its time.
        usage_source=HourlyUsage({"fabrikam": 60.0, "northwind": 30.0, "litware": 10.0}),
        cost_source=FixedCosts({"pool-shared": 200.0, "tenant-contoso": 10.0}),
    )
    for module in (registry, rollouts, budgets, drift, audit, quality):
        monkeypatch.setattr(module, "services", lambda: composed)
    yield composed
