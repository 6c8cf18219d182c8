"""The embedded platform started as a whole: every tenant of the local stack served from its
first deployment through the gateway, keys that work only for their tenant, the Functions
host wired to the local adapter, and nothing left running after stop."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests

from local.platform import EmbeddedPlatform
from tenancy import PlatformSpec


@pytest.fixture(scope="module")
def platform(
    specs: dict[str, PlatformSpec], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedPlatform]:
    saved = dict(os.environ)
    running = EmbeddedPlatform(specs["local"], "local", tmp_path_factory.mktemp("platform")).start(
        timers=False
    )
    yield running
    running.stop()
    os.environ.clear()
    os.environ.update(saved)
    import services  # noqa: PLC0415 - the Functions app's module, loaded by the host

    services.services.cache_clear()


def test_every_tenant_is_served_from_its_first_deployment(platform: EmbeddedPlatform) -> None:
    status = platform.status(show_keys=True)
    assert {t["id"] for t in status["tenants"]} == {t.id for t in platform.spec.tenants}
    for tenant in status["tenants"]:
        assert tenant["traffic"] == {"blue": 100}, tenant["id"]
        answer = requests.post(
            tenant["scoring_uri"],
            json=tenant["sample_request"],
            headers={"Authorization": f"Bearer {tenant['keys']['primary']}"},
            timeout=30,
        )
        assert answer.status_code == 200, (tenant["id"], answer.text)
        assert len(answer.json()["predictions"]) == 1


def test_a_key_works_only_for_its_own_tenant(platform: EmbeddedPlatform) -> None:
    status = platform.status(show_keys=True)
    by_id = {t["id"]: t for t in status["tenants"]}
    contoso, adatum = by_id["contoso"], by_id["adatum"]
    answer = requests.post(
        contoso["scoring_uri"],
        json=contoso["sample_request"],
        headers={"Authorization": f"Bearer {adatum['keys']['secondary']}"},
        timeout=30,
    )
    assert answer.status_code == 401
    assert "keys" not in platform.status()["tenants"][0]  # keys only when asked


def test_the_functions_host_runs_the_app_on_the_local_adapter(platform: EmbeddedPlatform) -> None:
    assert platform.functions_server is not None
    unsigned = requests.post(
        f"{platform.functions_server.url}/api/registry/mlflow", data=b"{}", timeout=30
    )
    assert unsigned.status_code == 401  # the app built its services (local adapter) and refused


def test_stop_leaves_no_process(specs: dict[str, PlatformSpec], platform: EmbeddedPlatform) -> None:
    assert platform.azurite is not None and platform.gateway is not None
    deployer = platform.gateway.deployer
    assert deployer is not None
    processes = [platform.azurite.process] + [
        r.server.process for r in deployer.running.values() if r.server
    ]
    assert all(p.poll() is None for p in processes)
    platform.stop()
    assert all(p.poll() is not None for p in processes)
