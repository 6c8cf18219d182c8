"""The embedded platform's deployments: every process a build starts ends with its deployment,
whether the deployment is deleted, replaced or the platform stops while it is still being built.

Real deployment processes (score.py under the platform's endpoint host, in the scoring
environment); a build is held inside its model fetch until the test lets it go on."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local import deployments
from local.deployments import DeploymentManager, Running
from local.inference_server import InferenceServer
from tenancy.errors import DependencyError

ENDPOINT = "tmlops-contoso-loc"
MODELS = {"*": "contoso-classical/1"}


@dataclass
class GatewayCalls:
    """What the manager told the gateway."""

    registered: list[tuple[str, str, str]] = field(default_factory=list)
    unregistered: list[tuple[str, str]] = field(default_factory=list)

    def register(self, endpoint: str, name: str, url: str) -> None:
        self.registered.append((endpoint, name, url))

    def unregister(self, endpoint: str, name: str) -> None:
        self.unregistered.append((endpoint, name))


@dataclass
class HeldFetch:
    """Writes the test model once released; ``entered`` is set when a build reaches it."""

    model_dir: Path
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, tenant: str, ref: str, folder: Path) -> None:
        self.entered.set()
        assert self.release.wait(120), "the test never released the build"
        shutil.copytree(self.model_dir, folder, dirs_exist_ok=True)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[InferenceServer]:
    """Every server process the manager starts (real ones), in order."""
    servers: list[InferenceServer] = []
    start = deployments.start_inference_server

    def recording(*args: Any, **kwargs: Any) -> InferenceServer:
        server = start(*args, **kwargs)
        servers.append(server)
        return server

    monkeypatch.setattr(deployments, "start_inference_server", recording)
    return servers


@pytest.fixture
def calls() -> GatewayCalls:
    return GatewayCalls()


@pytest.fixture
def manager(tmp_path: Path, calls: GatewayCalls) -> DeploymentManager:
    return DeploymentManager(tmp_path / "deployments", calls.register, calls.unregister)


def _copy(model_dir: Path) -> Callable[[str, str, Path], None]:
    def fetch(tenant: str, ref: str, folder: Path) -> None:
        shutil.copytree(model_dir, folder, dirs_exist_ok=True)

    return fetch


def _held_build(
    manager: DeploymentManager, name: str, model_dir: Path
) -> tuple[Running, HeldFetch]:
    """``name`` created, its build held inside the model fetch."""
    held = HeldFetch(model_dir)
    building = manager.create(ENDPOINT, name, MODELS, held)
    assert held.entered.wait(60)
    return building, held


def _running(server: InferenceServer) -> bool:
    return server.process.poll() is None


def test_a_deployment_deleted_while_building_stops_the_process_its_build_starts(
    manager: DeploymentManager, calls: GatewayCalls, started: list[InferenceServer], model_dir: Path
) -> None:
    building, held = _held_build(manager, "green", model_dir)
    manager.delete(ENDPOINT, "green")
    held.release.set()
    manager.wait()
    assert len(started) == 1 and not _running(started[0])  # started after the delete, stopped
    assert building.status == "failed" and "deleted" in building.message
    assert calls.registered == [] and calls.unregistered == [(ENDPOINT, "green")]
    assert manager.get(ENDPOINT, "green") is None
    assert not building.model_dir.exists()


def test_a_deployment_replaced_while_building_leaves_only_its_successor_running(
    manager: DeploymentManager, calls: GatewayCalls, started: list[InferenceServer], model_dir: Path
) -> None:
    first, held = _held_build(manager, "green", model_dir)
    second = manager.create(ENDPOINT, "green", MODELS, _copy(model_dir), wait=True)
    assert second.status == "ready", second.message
    held.release.set()
    manager.wait()
    assert first.status == "failed" and "replaced" in first.message
    assert [_running(s) for s in started] == [True, False]  # the successor's, the first's
    assert manager.get(ENDPOINT, "green") is second and second.server is started[0]
    assert calls.registered == [(ENDPOINT, "green", second.url)]
    assert first.model_dir != second.model_dir and second.model_dir.is_dir()
    manager.stop_all()
    assert not _running(started[0]) and not second.model_dir.exists()


def test_stopping_stops_builds_in_progress_and_refuses_new_deployments(
    manager: DeploymentManager,
    calls: GatewayCalls,
    started: list[InferenceServer],
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blue = manager.create(ENDPOINT, "blue", MODELS, _copy(model_dir), wait=True)
    green, held = _held_build(manager, "green", model_dir)
    waits_for_builds = manager.wait

    def release_once_stopping(timeout_seconds: float = deployments.BUILD_WAIT_SECONDS) -> None:
        held.release.set()  # stop_all has refused new deployments by the time it waits
        waits_for_builds(timeout_seconds)

    monkeypatch.setattr(manager, "wait", release_once_stopping)
    manager.stop_all()
    assert len(started) == 2 and not any(_running(s) for s in started)
    assert blue.status == "ready" and green.status == "failed" and "stopped" in green.message
    assert [name for _, name, _ in calls.registered] == ["blue"]
    with pytest.raises(DependencyError, match="stopping"):
        manager.create(ENDPOINT, "green", MODELS, _copy(model_dir))


def test_a_failed_build_is_reported_and_deleting_it_removes_its_folder(
    manager: DeploymentManager, calls: GatewayCalls, started: list[InferenceServer]
) -> None:
    def unreachable_registry(tenant: str, ref: str, folder: Path) -> None:
        (folder / "MLmodel").write_text("partial")  # a fetch that broke half-way
        raise DependencyError(f"the registry did not answer for {ref}")

    failed = manager.create(ENDPOINT, "green", MODELS, unreachable_registry, wait=True)
    assert failed.status == "failed" and "contoso-classical/1" in failed.message
    assert started == [] and calls.registered == []
    assert failed.model_dir.is_dir()  # kept while the deployment exists, to look into
    manager.delete(ENDPOINT, "green")
    assert manager.get(ENDPOINT, "green") is None and not failed.model_dir.exists()
