"""The local adapter over the real embedded parts: trained registries, the gateway, and
deployment processes under azureml-inference-server-http."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.local import GatewayAdmin, LocalPlatform
from automation.store import MemoryStore
from local.deployments import DeploymentManager
from local.gateway import Gateway, TenantLimits
from local.keys import KeyRing
from local.models import ModelFetcher
from local.serve import BackgroundServer
from ml.lifecycle import train_stack
from ml.registry import RegistryLayout
from policies.model_rules import evaluate_model
from tenancy import PlatformSpec


@pytest.fixture(scope="module")
def world(
    specs: dict[str, PlatformSpec], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    spec = specs["local"]
    data_dir = tmp_path_factory.mktemp("local-platform")
    registered = {r.tenant: r for r in train_stack(spec, data_dir)}
    ring = KeyRing(MemoryStore())
    keys = {t.id: ring.issue(t.id)["primary"] for t in spec.tenants}
    limits = {t.id: TenantLimits(600_000, 1 << 20) for t in spec.tenants}
    layout = RegistryLayout(spec, data_dir)
    gateway = Gateway(ring, limits, "admin", seed=1, fetch=ModelFetcher(layout))
    # The gateway runs the deployments (as the embedded platform does): processes it starts.
    gateway.deployer = DeploymentManager(
        data_dir / "deployments", gateway.register, gateway.unregister
    )
    manager = gateway.deployer
    server = BackgroundServer(gateway.app).start()
    admin = GatewayAdmin(server.url, "admin")
    platform = LocalPlatform(spec, layout, admin)
    admin.put_endpoint(platform.endpoint_name("contoso"), ["contoso"], False, 5)
    pool = [t.id for t in spec.tenants_in_pool("shared")]
    admin.put_endpoint(platform.endpoint_name("fabrikam"), pool, True, 5)
    admin.create_deployment(
        platform.endpoint_name("contoso"), "blue", {"*": registered["contoso"].model.ref}, None
    )
    models = {t: registered[t].model.ref for t in pool}
    admin.create_deployment(platform.endpoint_name("fabrikam"), "blue", models, None)
    manager.wait()
    for tenant in ("contoso", "fabrikam"):
        platform.set_traffic(tenant, {"blue": 100}, {})
    yield {
        "platform": platform,
        "manager": manager,
        "keys": keys,
        "gateway": server,
        "registered": registered,
        "data_dir": data_dir,
    }
    manager.stop_all()
    server.stop()


def _score(world: dict[str, Any], tenant: str, body: Any) -> requests.Response:
    platform: LocalPlatform = world["platform"]
    url = f"{world['gateway'].url}/{platform.endpoint_name(tenant)}/score"
    return requests.post(
        url, json=body, headers={"Authorization": f"Bearer {world['keys'][tenant]}"}, timeout=30
    )


def test_the_live_deployment_serves_through_the_gateway(world: dict[str, Any]) -> None:
    platform: LocalPlatform = world["platform"]
    endpoint = platform.endpoint("contoso")
    assert (endpoint.live, endpoint.traffic) == ("blue", {"blue": 100})
    sample = platform.sample_request("contoso")
    answer = _score(world, "contoso", sample)
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    assert platform.deployment_status("contoso", "blue") == ("ready", "")


def test_a_green_deployment_is_created_invoked_measured_and_deleted(world: dict[str, Any]) -> None:
    platform: LocalPlatform = world["platform"]
    manager: DeploymentManager = world["manager"]
    platform.create_deployment("contoso", "green", world["registered"]["contoso"].model.ref)
    manager.wait()
    assert platform.deployment_status("contoso", "green") == ("ready", "")
    assert platform.invoke("contoso", "green", platform.sample_request("contoso")) == 200
    assert platform.invoke("contoso", "green", {"data": [[1.0]]}) == 400
    platform.set_traffic("contoso", {"blue": 50, "green": 50}, {})
    started = datetime.now(UTC)
    for _ in range(20):
        _score(world, "contoso", platform.sample_request("contoso"))
    stats = [
        platform.deployment_stats("contoso", d, started, datetime.now(UTC) + timedelta(seconds=1))
        for d in ("blue", "green")
    ]
    assert sum(s.requests for s in stats) == 20 and all(s.errors == 0 for s in stats)
    platform.set_traffic("contoso", {"blue": 100, "green": 0}, {})
    platform.delete_deployment("contoso", "green")
    assert platform.deployment_status("contoso", "green") == ("missing", "")


def test_a_pooled_deployment_carries_the_other_tenants_models(world: dict[str, Any]) -> None:
    platform: LocalPlatform = world["platform"]
    manager: DeploymentManager = world["manager"]
    platform.create_deployment("northwind", "green", world["registered"]["northwind"].model.ref)
    manager.wait()
    green = manager.get(platform.endpoint_name("northwind"), "green")
    assert green is not None and set(green.models) == {"fabrikam", "northwind", "litware"}
    for tenant in ("fabrikam", "northwind", "litware"):
        assert platform.invoke(tenant, "green", platform.sample_request(tenant)) == 200
    platform.delete_deployment("northwind", "green")


def test_baselines_and_facts_come_from_the_registries(
    world: dict[str, Any], specs: dict[str, PlatformSpec]
) -> None:
    platform: LocalPlatform = world["platform"]
    model, columns, reference = platform.baseline("contoso", "blue")
    assert model == world["registered"]["contoso"].model.ref
    assert len(columns) == 30 and reference.shape[1] == 31
    _, text_columns, text_reference = platform.baseline("litware", "blue")
    assert text_columns == [] and text_reference.shape[1] == 1  # predictions only
    name, version = model.split("/")
    assert (
        evaluate_model(platform.model_facts("contoso", name, version), "contoso", specs["local"])
        == []
    )


def test_a_tenants_key_never_reaches_another_tenants_endpoint(world: dict[str, Any]) -> None:
    platform: LocalPlatform = world["platform"]
    url = f"{world['gateway'].url}/{platform.endpoint_name('contoso')}/score"
    answer = requests.post(
        url,
        json=platform.sample_request("contoso"),
        headers={
            "Authorization": f"Bearer {world['keys']['fabrikam']}",
            "azureml-model-deployment": "blue",
        },
        timeout=30,
    )
    assert answer.status_code == 401


def test_a_functions_host_builds_the_adapter_from_its_settings(
    world: dict[str, Any], specs: dict[str, PlatformSpec], tmp_path: Path
) -> None:
    import json  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from adapters.local import ADMIN_TOKEN_FILE  # noqa: PLC0415
    from tests.conftest import ROOT  # noqa: PLC0415

    if str(ROOT / "functions") not in sys.path:  # the app's own import root, as in Azure
        sys.path.insert(0, str(ROOT / "functions"))
    from settings import Settings  # noqa: PLC0415

    from tenancy import contracts  # noqa: PLC0415
    from tenancy.errors import DependencyError  # noqa: PLC0415

    env = {
        contracts.SETTING_STACK: "local",
        contracts.SETTING_PLATFORM_SPEC: json.dumps(specs["local"].model_dump(mode="json")),
        "TENANT_MLOPS_STATE_CONNECTION": "",
        contracts.SETTING_STORAGE_ACCOUNT: "unused",
        "TENANT_MLOPS_ADAPTER": "local",
    }
    settings = Settings.from_env(env)
    with pytest.raises(DependencyError, match="TENANT_MLOPS_GATEWAY_URL, TENANT_MLOPS_DATA_DIR"):
        LocalPlatform.from_settings(settings, env)
    env |= {
        "TENANT_MLOPS_GATEWAY_URL": world["gateway"].url,
        "TENANT_MLOPS_DATA_DIR": str(tmp_path),
    }
    with pytest.raises(DependencyError, match="no gateway admin token"):
        LocalPlatform.from_settings(settings, env)
    shutil.copytree(world["data_dir"] / "registries", tmp_path / "registries")
    (tmp_path / ADMIN_TOKEN_FILE).write_text("admin\n")
    adapter = LocalPlatform.from_settings(settings, env)
    assert adapter.endpoint("contoso").traffic["blue"] == 100


def test_a_restarting_deployment_is_ready_to_the_automation(
    specs: dict[str, PlatformSpec], tmp_path: Path
) -> None:
    """As Azure ML keeps a deployment Succeeded while its container restarts: the rollout's
    analysis sees the failed requests, the deployment is not failed."""

    class Admin:
        def deployment(self, endpoint: str, name: str) -> dict[str, Any]:
            return {"status": "restarting", "message": "its process exited (-9); restarting it"}

    platform = LocalPlatform(specs["local"], RegistryLayout(specs["local"], tmp_path), Admin())  # type: ignore[arg-type]
    assert platform.deployment_status("contoso", "blue") == (
        "ready",
        "its process exited (-9); restarting it",
    )
