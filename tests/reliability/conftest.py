"""The reliability suite's world: the real gateway with real deployment processes (score.py
under the platform's endpoint host, an ONNX model trained here), the automation's local
adapter in front of it, and a steady load of real HTTP requests that records every answer.

Waits are on conditions (so many answers recorded), never on time."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.local import GatewayAdmin, LocalPlatform
from automation.store import MemoryStore
from local.collector import Exchange
from local.deployments import DeploymentManager, Supervision
from local.gateway import DEPLOYMENT_HEADER, Gateway, TenantLimits
from local.keys import KeyRing
from local.serve import BackgroundServer
from ml.export import SCHEMA_FILE
from ml.registry import RegistryLayout
from tenancy import PlatformSpec

# The Function App's composition on a memory store and the fake platform (it also puts
# functions/ on the path, as the Functions host does).
from tests.functions.conftest import wired  # noqa: F401

ADMIN_TOKEN = "reliability-admin"
TENANTS = ("contoso", "adatum")  # the local stack's dedicated tenants: one endpoint each
MAX_PAYLOAD = 64 * 1024


@dataclass
class Answer:
    started: float
    ended: float
    status: int
    deployment: str
    body: str


@dataclass
class Load:
    """Requests sent back to back by ``threads`` clients until stopped."""

    url: str
    key: str
    body: dict[str, Any]
    threads: int = 4
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _grown: threading.Condition = field(default_factory=threading.Condition)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.key}"}
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = session.post(self.url, json=self.body, headers=headers, timeout=30)
                status, deployment, text = (
                    answer.status_code,
                    answer.headers.get(DEPLOYMENT_HEADER, ""),
                    answer.text[:300],
                )
            except requests.RequestException as error:  # a dropped connection is a failure
                status, deployment, text = 0, "", str(error)[:300]
            with self._grown:
                self.answers.append(Answer(started, time.monotonic(), status, deployment, text))
                self._grown.notify_all()

    def wait_for(self, more: int, timeout_seconds: float = 60) -> None:
        """Until ``more`` answers beyond those recorded now have come back."""
        with self._grown:
            wanted = len(self.answers) + more
            if not self._grown.wait_for(lambda: len(self.answers) >= wanted, timeout_seconds):
                raise AssertionError(f"the load stalled at {len(self.answers)} answers")

    def stop(self) -> list[Answer]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        return list(self.answers)


@dataclass
class World:
    spec: PlatformSpec
    gateway: Gateway
    server: BackgroundServer
    manager: DeploymentManager
    port: LocalPlatform
    admin: GatewayAdmin
    keys: dict[str, str]
    model_dir: Path

    def url(self, tenant: str) -> str:
        return f"{self.server.url}/{self.port.endpoint_name(tenant)}/score"

    def deploy(self, tenant: str, name: str) -> None:
        """A deployment process serving the test model, ready before this returns."""
        self.admin.create_deployment(self.port.endpoint_name(tenant), name, {"*": "m/1"}, None)
        self.manager.wait()
        status, message = self.port.deployment_status(tenant, name)
        assert status == "ready", message

    def load(self, tenant: str, threads: int = 4) -> Load:
        return Load(self.url(tenant), self.keys[tenant], self.sample(), threads).start()

    def stop(self) -> None:
        self.manager.stop_all()
        self.server.stop()

    def sample(self) -> dict[str, Any]:
        """Two valid rows for the test model."""
        width = len(json.loads((self.model_dir / SCHEMA_FILE).read_text())["columns"])
        return {"data": [[0.5] * width, [1.5] * width]}


def build_world(
    spec: PlatformSpec,
    model_dir: Path,
    data_dir: Path,
    *,
    collector: Callable[[Exchange], None] | None = None,
    supervision: Supervision | None = None,
) -> World:
    """The gateway, its deployments (supervised when asked) and the local adapter."""
    ring = KeyRing(MemoryStore())
    keys = {tenant: ring.issue(tenant)["primary"] for tenant in TENANTS}
    limits = {t: TenantLimits(6_000_000, MAX_PAYLOAD) for t in TENANTS}

    def fetch(tenant: str, ref: str, folder: Path) -> None:
        shutil.copytree(model_dir, folder, dirs_exist_ok=True)

    gateway = Gateway(ring, limits, ADMIN_TOKEN, seed=11, fetch=fetch, collector=collector)
    manager = DeploymentManager(
        data_dir / "deployments",
        gateway.register,
        gateway.unregister,
        supervision=supervision,
        suspend=gateway.suspend,
    )
    gateway.deployer = manager
    server = BackgroundServer(gateway.app).start()
    admin = GatewayAdmin(server.url, ADMIN_TOKEN)
    port = LocalPlatform(spec, RegistryLayout(spec, data_dir / "registry"), admin)
    for tenant in TENANTS:
        admin.put_endpoint(port.endpoint_name(tenant), [tenant], False, 5)
    return World(spec, gateway, server, manager, port, admin, keys, model_dir)


@pytest.fixture
def world(specs: dict[str, PlatformSpec], model_dir: Path, tmp_path: Path) -> Iterator[World]:
    built = build_world(specs["local"], model_dir, tmp_path)
    try:
        yield built
    finally:
        built.stop()
