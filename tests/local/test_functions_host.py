"""The local Functions host: the real app's HTTP routes, Event Grid webhook and timers,
served on loopback with the domain wired to a memory store and the fake platform."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from local.functions_host import FunctionsHost, Schedule, load_app
from local.serve import BackgroundServer
from local.sign_in import SignInModule, mint
from tenancy import PlatformSpec, contracts
from tenancy.errors import DependencyError
from tests.functions.conftest import APP_ID
from tests.functions.test_triggers import _principal

SIGN_IN_KEY = "local-sign-in-key-of-the-tests-0123456789"


def test_ncrontab_schedules() -> None:
    moment = datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC)
    assert Schedule("0 * * * * *").next_after(moment) == datetime(
        2026, 11, 22, 12, 1, 0, tzinfo=UTC
    )
    assert Schedule("0 0 6 * * *").next_after(moment) == datetime(2026, 11, 23, 6, 0, 0, tzinfo=UTC)
    assert Schedule("*/15 * * * * *").next_after(moment) == datetime(
        2026, 11, 22, 12, 0, 45, tzinfo=UTC
    )
    assert Schedule("0 30 9 * * 1-5").next_after(moment) == datetime(
        2026, 11, 23, 9, 30, tzinfo=UTC
    )  # Monday
    for bad in ("* * * * *", "61 * * * * *", "0 0 25 * * *"):
        with pytest.raises(ValueError):
            Schedule(bad)


@pytest.fixture
def host(
    specs: dict[str, PlatformSpec], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FunctionsHost, BackgroundServer, Any]]:
    app = load_app()
    import services as app_services  # noqa: PLC0415 - on the path once the app is loaded
    from blueprints import audit, budgets, drift, registry, rollouts  # noqa: PLC0415
    from settings import Settings  # noqa: PLC0415

    from automation.store import MemoryStore  # noqa: PLC0415
    from tests.automation.fakes import FakePlatform  # noqa: PLC0415
    from tests.functions.conftest import environment  # noqa: PLC0415

    platform = FakePlatform()
    platform.serve("contoso", "contoso-classical/1")
    composed = app_services.compose(
        Settings.from_env(environment(specs["local"])), MemoryStore(), platform
    )
    for module in (registry, rollouts, budgets, drift, audit):
        monkeypatch.setattr(module, "services", lambda: composed)
    schedules = {
        contracts.SETTING_ROLLOUT_SCHEDULE: "0 * * * * *",
        contracts.SETTING_DRIFT_SCHEDULE: "0 0 * * * *",
        contracts.SETTING_AUDIT_SCHEDULE: "0 15 * * * *",
        contracts.SETTING_QUALITY_SCHEDULE: "0 30 * * * *",
    }
    sign_in = SignInModule(SIGN_IN_KEY, contracts.entra_audiences(APP_ID))
    functions = FunctionsHost(app, settings=schedules, master_key="master-key", sign_in=sign_in)
    server = BackgroundServer(functions.app).start()
    yield functions, server, composed
    server.stop()


def test_every_function_of_the_app_is_indexed(
    host: tuple[FunctionsHost, BackgroundServer, Any],
) -> None:
    _, server, _ = host
    status = requests.get(f"{server.url}/admin/host/status", timeout=10).json()
    assert status["eventGrid"] == sorted(
        [contracts.FUNCTION_MODEL_REGISTERED, contracts.FUNCTION_RUN_STATUS_CHANGED]
    )
    assert "rollouts/{tenant}/{model}/{version}/{action}" in status["http"]
    assert status["timers"]["rollout_tick"] == "0 * * * * *"


def test_http_routes_reach_the_functions(host: tuple[FunctionsHost, BackgroundServer, Any]) -> None:
    _, server, _ = host
    unsigned = requests.post(f"{server.url}/api/registry/mlflow", data=b"{}", timeout=10)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "unauthenticated"
    denied = requests.post(
        f"{server.url}/api/rollouts/contoso/contoso-classical/2/approve", timeout=10
    )
    assert denied.status_code == 401


def test_event_grid_deliveries_and_the_validation_handshake(
    host: tuple[FunctionsHost, BackgroundServer, Any],
) -> None:
    _, server, composed = host
    url = f"{server.url}/runtime/webhooks/eventgrid"
    handshake = [
        {
            "id": "v",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "data": {"validationCode": "abc"},
        }
    ]
    assert requests.post(
        url,
        params={"functionName": contracts.FUNCTION_MODEL_REGISTERED},
        json=handshake,
        timeout=10,
    ).json() == {"validationResponse": "abc"}
    malformed = [
        {
            "id": "e-9",
            "eventType": contracts.EVENT_MODEL_REGISTERED,
            "data": {},
            "eventTime": "2026-11-22T12:00:00Z",
        }
    ]
    answer = requests.post(
        url,
        params={"functionName": contracts.FUNCTION_MODEL_REGISTERED},
        json=malformed,
        timeout=10,
    )
    assert answer.status_code == 200  # refused and recorded, not retried
    assert [r.row for r in composed.store.query(contracts.TABLE_EVENTS, "refused-eventgrid")] == [
        "e-9"
    ]
    assert (
        requests.post(url, params={"functionName": "nope"}, json=[], timeout=10).status_code == 404
    )


def test_timers_run_when_their_schedule_fires(
    host: tuple[FunctionsHost, BackgroundServer, Any],
) -> None:
    functions, _, _ = host
    ran = functions.run_due(
        datetime(2026, 11, 22, 5, 59, 59, tzinfo=UTC), datetime(2026, 11, 22, 6, 0, 0, tzinfo=UTC)
    )
    assert sorted(ran) == ["drift_check", "idle_workspaces", "rollout_tick"]
    assert (
        functions.run_due(
            datetime(2026, 11, 22, 6, 0, 1, tzinfo=UTC),
            datetime(2026, 11, 22, 6, 0, 30, tzinfo=UTC),
        )
        == []
    )


def test_a_schedule_naming_an_unset_setting_fails_at_start() -> None:
    with pytest.raises(DependencyError, match="TENANT_MLOPS_ROLLOUT_SCHEDULE"):
        FunctionsHost(load_app(), settings={}, master_key="k")


def test_the_admin_api_runs_a_timer_now_only_with_the_master_key(
    host: tuple[FunctionsHost, BackgroundServer, Any],
) -> None:
    _, server, composed = host
    composed.runner.begin("contoso", "contoso-classical/2", "automation", "c-1")
    url = f"{server.url}/admin/functions/rollout_tick"
    assert requests.post(url, json={}, timeout=10).status_code == 401
    wrong = {"x-functions-key": "guess"}
    assert requests.post(url, json={}, headers=wrong, timeout=10).status_code == 401
    key = {"x-functions-key": "master-key"}
    missing = requests.post(f"{server.url}/admin/functions/nope", headers=key, timeout=10)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    assert requests.post(url, json={}, headers=key, timeout=10).status_code == 202
    # The tick ran: green was ready, so the rollout moved on to its smoke test.
    assert composed.runner.get("contoso", "contoso-classical/2").phase.value != "creating"


def test_the_sign_in_module_writes_the_principal_and_drops_forged_ones(
    host: tuple[FunctionsHost, BackgroundServer, Any],
) -> None:
    """As App Service authentication: a caller's own x-ms-client-principal never reaches
    the app, a token that fails validation never reaches the function, a valid one signs
    its holder in."""
    _, server, composed = host
    lead = composed.settings.spec.tenant("contoso").personas.project_lead[0]
    url = f"{server.url}/api/rollouts/contoso/contoso-classical/9/abort"
    forged = requests.post(url, headers={"x-ms-client-principal": _principal(lead)}, timeout=10)
    assert forged.status_code == 401
    assert "no authenticated principal" in forged.json()["error"]["message"]
    claims = {"aud": f"api://{APP_ID}", "name": "lee", "groups": [lead]}
    refused = {
        "another key": mint("another-key-of-at-least-32-bytes-000", claims),
        "another audience": mint(SIGN_IN_KEY, {**claims, "aud": "api://another-app"}),
        "expired": mint(SIGN_IN_KEY, claims, lifetime_s=-60),
        "no audience": mint(SIGN_IN_KEY, {"name": "lee", "groups": [lead]}),
    }
    for why, token in refused.items():
        answer = requests.post(url, headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 401, why
        assert answer.json()["error"]["code"] == "unauthenticated", why
    signed_in = requests.post(
        url, headers={"authorization": f"Bearer {mint(SIGN_IN_KEY, claims)}"}, timeout=10
    )
    # Signed in as a lead: the abort reaches the runner, which has no such rollout.
    assert signed_in.status_code == 404, signed_in.text
