"""The embedded platform's deployments: every process a build starts ends with its deployment,
whether the deployment is deleted, replaced or the platform stops while it is still being built.

Real deployment processes (score.py under the platform's endpoint host, in the scoring
environment); a build is held inside its model fetch until the test lets it go on."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
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


# --- supervision -------------------------------------------------------------------------------

QUICK = deployments.Supervision(
    period_seconds=0.2,
    timeout_seconds=1,
    failure_threshold=2,
    max_restarts=3,
    window_seconds=120,
    backoff_initial_seconds=0.1,
    backoff_max_seconds=1,
)


@dataclass
class Supervised:
    """A supervising manager and what it told the gateway and the platform."""

    manager: DeploymentManager
    calls: GatewayCalls
    suspended: list[tuple[str, float | None, str]] = field(default_factory=list)
    failed: list[Running] = field(default_factory=list)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    calls = GatewayCalls()
    suspended: list[tuple[str, float | None, str]] = []
    failed: list[Running] = []
    manager = DeploymentManager(
        tmp_path / "deployments",
        calls.register,
        calls.unregister,
        supervision=QUICK,
        suspend=lambda _, name, seconds, why: suspended.append((name, seconds, why)),
        on_failed=failed.append,
    )
    yield Supervised(manager, calls, suspended, failed)
    manager.stop_all()


def _until(condition: Callable[[], bool], timeout_seconds: float = 60) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the supervisor, not timing it
    return condition()


def test_a_deployment_whose_process_dies_is_restarted_and_serves_again(
    supervised: Supervised, model_dir: Path
) -> None:
    blue = supervised.manager.create(ENDPOINT, "blue", MODELS, _copy(model_dir), wait=True)
    first = blue.server
    assert first is not None
    first.kill()  # the container died
    assert _until(lambda: blue.restarts == 1 and blue.status == "ready"), blue.message
    assert blue.server is not first and _running(blue.server)  # type: ignore[arg-type]
    [(name, seconds, why)] = supervised.suspended
    assert name == "blue" and seconds is not None and "process exited" in why
    # Back in the gateway at its new address, with the traffic it had (register keeps it).
    assert supervised.calls.registered[-1] == (ENDPOINT, "blue", blue.url)
    assert supervised.manager.status_of(blue) == ("ready", "restarted (1 in all)")


def test_a_hung_deployment_fails_its_probes_and_is_replaced(
    supervised: Supervised, model_dir: Path
) -> None:
    blue = supervised.manager.create(ENDPOINT, "blue", MODELS, _copy(model_dir), wait=True)
    hung = blue.server
    assert hung is not None
    service = hung.service_pid
    assert service is not None
    os.kill(service, signal.SIGSTOP)  # alive, answering nothing
    try:
        assert _until(lambda: blue.restarts == 1 and blue.status == "ready"), blue.message
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service, signal.SIGCONT)
    assert "liveness probes" in supervised.suspended[0][2]
    assert not _running(hung)  # the hung one was killed, not left behind


def test_a_crash_loop_fails_the_deployment_and_says_so(
    supervised: Supervised, model_dir: Path
) -> None:
    blue = supervised.manager.create(ENDPOINT, "blue", MODELS, _copy(model_dir), wait=True)
    assert blue.server is not None
    (blue.model_dir / "model.onnx").write_bytes(b"not a model")  # every restart fails
    blue.server.kill()
    assert _until(lambda: blue.status == "failed"), blue.message
    assert blue.restarts == QUICK.max_restarts
    assert blue.message.startswith(f"crash loop: {QUICK.max_restarts} restarts within 120 s")
    assert supervised.failed == [blue]
    assert supervised.suspended[-1][1] is None  # for good: the gateway answers 424
    backoffs = [seconds for _, seconds, _ in supervised.suspended[:-1]]
    assert backoffs == sorted(backoffs) and backoffs[0] < backoffs[-1]  # it backed off
    assert supervised.manager.status_of(blue)[0] == "failed"
