"""A promotion and a rollback through the real automation on the embedded parts: MLflow
registries, the model gate, the rollout runner, the local adapter, the gateway and
deployment processes. Time is a shared clock the test moves; requests are real."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapters.local import GatewayAdmin, LocalPlatform
from automation.registry_events import RegistrationHandler, RegistryEvent
from automation.rollout import Phase
from automation.runner import RolloutRunner
from automation.store import MemoryStore
from local.deployments import DeploymentManager
from local.gateway import Gateway, TenantLimits
from local.keys import KeyRing
from local.models import ModelFetcher
from local.serve import BackgroundServer
from ml.export import MODEL_FILE
from ml.lifecycle import train_stack
from ml.registry import RegistryLayout
from ml.retrain import retrain_tenant
from tenancy import parse_platform_spec
from tests.contract.harness import Clock
from tests.tenancy.conftest import stack_document


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    document = stack_document("local")
    document["rollout"] = {
        "strategy": "canary",
        "steps": [20, 100],
        "smoke_test_requests": 3,
        "drain_delay_seconds": 60,
        "analysis": {"interval_seconds": 60, "min_requests": 10, "failure_threshold": 2},
    }
    spec = parse_platform_spec(document)
    data_dir = tmp_path_factory.mktemp("e2e")
    first = {r.tenant: r for r in train_stack(spec, data_dir)}
    clock = Clock()
    ring = KeyRing(MemoryStore())
    keys = {t.id: ring.issue(t.id)["primary"] for t in spec.tenants}
    gateway = Gateway(
        ring,
        {t.id: TenantLimits(600_000, 1 << 20) for t in spec.tenants},
        "admin",
        seed=3,
        clock=clock.epoch,
        fetch=ModelFetcher(RegistryLayout(spec, data_dir)),
    )
    manager = DeploymentManager(data_dir / "deployments", gateway.register, gateway.unregister)
    gateway.deployer = manager
    server = BackgroundServer(gateway.app).start()
    admin = GatewayAdmin(server.url, "admin")
    port = LocalPlatform(spec, RegistryLayout(spec, data_dir), admin)
    admin.put_endpoint(port.endpoint_name("contoso"), ["contoso"], False, 5)
    admin.create_deployment(
        port.endpoint_name("contoso"), "blue", {"*": first["contoso"].model.ref}, None
    )
    manager.wait()
    port.set_traffic("contoso", {"blue": 100}, {})
    store = MemoryStore()
    runner = RolloutRunner(spec, store, port, clock.now)
    handler = RegistrationHandler(spec, store, port, runner, clock.now)
    yield {
        "spec": spec,
        "port": port,
        "runner": runner,
        "handler": handler,
        "clock": clock,
        "keys": keys,
        "gateway": server,
        "manager": manager,
        "gateway_app": gateway,
        "data_dir": data_dir,
    }
    manager.stop_all()
    server.stop()


def _traffic(world: dict[str, Any], requests_count: int) -> list[int]:
    port: LocalPlatform = world["port"]
    url = f"{world['gateway'].url}/{port.endpoint_name('contoso')}/score"
    body = port.sample_request("contoso")
    headers = {"Authorization": f"Bearer {world['keys']['contoso']}"}
    return [
        requests.post(url, json=body, headers=headers, timeout=30).status_code
        for _ in range(requests_count)
    ]


def _advance(world: dict[str, Any], model: str) -> Phase:
    """One interval of real traffic, then one tick of the automation."""
    runner: RolloutRunner = world["runner"]
    manager: DeploymentManager = world["manager"]
    manager.wait()  # a deployment being created finishes first
    # Half an interval on, an interval's requests, the other half: the analysis is due and
    # sees them all in its window.
    world["clock"].skip(30)
    _traffic(world, 100)
    world["clock"].skip(31)
    runner.tick("contoso", model)
    return runner.get("contoso", model).phase


def test_a_new_version_is_gated_rolled_out_and_promoted(platform: dict[str, Any]) -> None:
    world = platform
    new = retrain_tenant(
        world["spec"],
        "contoso",
        RegistryLayout(world["spec"], world["data_dir"]),
        world["data_dir"] / "scratch",
    )
    event = RegistryEvent(
        "evt-1", "mlflow", new.model.name, new.model.version, {"tenant": "contoso"}
    )
    outcome = world["handler"].handle(event)
    assert outcome.status == "started", outcome
    phases = [_advance(world, new.model.ref) for _ in range(3)]
    assert phases == [Phase.SMOKE_TESTING, Phase.SHIFTING, Phase.DRAINING]
    port: LocalPlatform = world["port"]
    assert port.endpoint("contoso").traffic == {"blue": 0, "green": 100}
    assert set(_traffic(world, 10)) == {200}  # served by green
    world["clock"].skip(120)
    world["runner"].tick("contoso", new.model.ref)
    assert world["runner"].get("contoso", new.model.ref).phase == Phase.PROMOTED
    assert port.deployment_status("contoso", "blue")[0] == "missing"


def test_a_green_whose_process_dies_is_rolled_back_in_one_update(platform: dict[str, Any]) -> None:
    world = platform
    port: LocalPlatform = world["port"]
    manager: DeploymentManager = world["manager"]
    live = port.endpoint("contoso").live
    new = retrain_tenant(
        world["spec"],
        "contoso",
        RegistryLayout(world["spec"], world["data_dir"]),
        world["data_dir"] / "scratch",
    )
    assert (
        world["handler"]
        .handle(
            RegistryEvent(
                "evt-2", "mlflow", new.model.name, new.model.version, {"tenant": "contoso"}
            )
        )
        .status
        == "started"
    )
    assert _advance(world, new.model.ref) == Phase.SMOKE_TESTING
    assert _advance(world, new.model.ref) == Phase.SHIFTING
    green = world["runner"].get("contoso", new.model.ref).green
    running = manager.get(port.endpoint_name("contoso"), green)
    assert running is not None and running.server is not None
    running.server.kill()  # the model's process dies under load
    phases = [_advance(world, new.model.ref) for _ in range(2)]
    assert phases[-1] == Phase.ROLLED_BACK
    assert port.endpoint("contoso").traffic == {live: 100, green: 0}
    assert set(_traffic(world, 10)) == {200}  # blue serves again


def test_a_model_that_cannot_load_never_gets_traffic(platform: dict[str, Any]) -> None:
    world = platform
    port: LocalPlatform = world["port"]
    new = retrain_tenant(
        world["spec"],
        "contoso",
        RegistryLayout(world["spec"], world["data_dir"]),
        world["data_dir"] / "scratch",
    )
    gateway = world["gateway_app"]
    original = gateway.fetch

    def corrupt(tenant: str, ref: str, folder: Any) -> None:
        original(tenant, ref, folder)
        (folder / MODEL_FILE).write_bytes(b"not an onnx model")

    gateway.fetch = corrupt
    try:
        assert (
            world["handler"]
            .handle(
                RegistryEvent(
                    "evt-3", "mlflow", new.model.name, new.model.version, {"tenant": "contoso"}
                )
            )
            .status
            == "started"
        )
        assert _advance(world, new.model.ref) == Phase.ROLLED_BACK
    finally:
        gateway.fetch = original
    assert (
        0 not in port.endpoint("contoso").traffic.values()
        or sum(port.endpoint("contoso").traffic.values()) == 100
    )
    assert set(_traffic(world, 5)) == {200}
    shutil.rmtree(world["data_dir"] / "scratch", ignore_errors=True)
