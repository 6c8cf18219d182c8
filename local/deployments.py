"""Deployments of the embedded platform: one ``score.py`` server process each (under
azureml-inference-server-http, in the scoring environment), created in the background as
Azure ML creates them, registered with the gateway once healthy.

A pooled endpoint's deployment serves every tenant of the pool: a new deployment carries the
other tenants' models over from the live one and replaces only the tenant being rolled out.

Every process a build starts is owned by exactly one party: the deployment it was built for,
if that deployment is still the current one when the build ends, else the build itself, which
stops it. So a deployment deleted, replaced or stopped while it is still being built leaves no
process behind and is never registered with the gateway.

With a :class:`Supervision`, deployments are kept alive as Azure ML keeps a container alive:
one whose process exits, or that fails its liveness probe ``failure_threshold`` times in a
row, is restarted after a backoff that doubles; meanwhile the gateway answers its requests
503 with ``Retry-After``. Too many restarts within the window is a crash loop: the
deployment is failed (the automation sees ``failed``; ``on_failed`` is told) and its
requests get 424. Restarts are counted per deployment.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.inference_server import InferenceServer, start_inference_server
from tenancy.errors import DependencyError
from tenancy.spec import ServingSpec

#: How long to wait for builds in progress (each is bounded by its model fetch and the
#: server's 60 s health timeout).
BUILD_WAIT_SECONDS = 180


#: How long stopping waits for builds and restarts in progress.
STOP_WAIT_SECONDS = 15
#: A restarted server's allowance to become healthy, added to the backoff in Retry-After.
START_ALLOWANCE_SECONDS = 5
#: A deployment's process gets this long to stop on SIGTERM (then it is killed): a hung
#: process is replaced, not waited for.
STOP_GRACE_SECONDS = 3


@dataclass(frozen=True)
class Supervision:
    """The liveness probe and restart policy of the spec (``serving``)."""

    period_seconds: float
    timeout_seconds: float
    failure_threshold: int
    max_restarts: int
    window_seconds: float
    backoff_initial_seconds: float
    backoff_max_seconds: float

    @classmethod
    def of(cls, serving: ServingSpec) -> Supervision:
        probe, restarts = serving.liveness, serving.restarts
        return cls(
            probe.period_seconds,
            probe.timeout_seconds,
            probe.failure_threshold,
            restarts.max_restarts,
            restarts.window_seconds,
            restarts.backoff_initial_seconds,
            restarts.backoff_max_seconds,
        )

    def backoff(self, recent_restarts: int) -> float:
        return min(self.backoff_initial_seconds * 2.0**recent_restarts, self.backoff_max_seconds)


@dataclass
class Running:
    endpoint: str
    name: str
    model_dir: Path
    models: dict[str, str] = field(default_factory=dict)  # tenant (or "*") -> "<name>/<version>"
    status: str = "creating"  # creating | ready | restarting | failed
    message: str = ""
    server: InferenceServer | None = None
    restarts: int = 0
    restarted_at: list[float] = field(default_factory=list)  # monotonic, within the window
    probe_failures: int = 0

    @property
    def url(self) -> str:
        return self.server.url if self.server else ""


class DeploymentManager:
    def __init__(
        self,
        root: Path,
        register: Callable[[str, str, str], Any],
        unregister: Callable[[str, str], Any],
        *,
        supervision: Supervision | None = None,
        suspend: Callable[[str, str, float | None, str], Any] | None = None,
        on_failed: Callable[[Running], Any] | None = None,
    ) -> None:
        self.root = root
        self.register = register  # (endpoint, deployment, url): tell the gateway
        self.unregister = unregister
        # (endpoint, deployment, seconds or None for good, why): the gateway refuses it
        self.suspend = suspend
        self.supervision = supervision
        self.on_failed = on_failed
        self.running: dict[tuple[str, str], Running] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stopped = threading.Event()  # wakes the supervisor and restarts waiting out
        # Each build has its own folder: a replaced deployment still runs from its own.
        self._builds = itertools.count(1)
        if supervision is not None:
            threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()

    def get(self, endpoint: str, name: str) -> Running | None:
        return self.running.get((endpoint, name))

    def create(
        self,
        endpoint: str,
        name: str,
        models: dict[str, str],
        fetch: Callable[[str, str, Path], None],
        *,
        carry_from: str | None = None,
        wait: bool = False,
    ) -> Running:
        """Start ``name`` with ``models`` ({tenant or "*": model ref}); ``fetch(tenant, ref,
        folder)`` writes a model folder. Models of ``carry_from`` not replaced are copied."""
        folder = self.root / endpoint / f"{name}.{next(self._builds)}"
        previous = self.running.get((endpoint, carry_from)) if carry_from else None
        merged = {**(previous.models if previous else {}), **models}
        running = Running(endpoint, name, folder, merged)
        with self._lock:
            if self._stopping:
                raise DependencyError(f"deployment {name} not created: the platform is stopping")
            replaced = self.running.get((endpoint, name))
            self.running[(endpoint, name)] = running
            arguments = (running, models, fetch, previous)
            thread = threading.Thread(target=self._build, args=arguments, daemon=True)
            self._threads.append(thread)  # under the lock: stop_all waits for every build
        if replaced:  # one still building stops its own process when its build ends
            _retire(replaced)
        thread.start()
        if wait:
            thread.join()
        return running

    def _build(
        self,
        running: Running,
        models: dict[str, str],
        fetch: Callable[[str, str, Path], None],
        previous: Running | None,
    ) -> None:
        try:
            if running.model_dir.exists():
                shutil.rmtree(running.model_dir)
            running.model_dir.mkdir(parents=True)
            for tenant, ref in running.models.items():
                target = running.model_dir if tenant == "*" else running.model_dir / tenant
                if tenant in models or previous is None:
                    fetch(tenant, ref, target)
                else:
                    source = previous.model_dir if tenant == "*" else previous.model_dir / tenant
                    shutil.copytree(source, target, dirs_exist_ok=True)
            server = self._start(running)
        except Exception as error:  # whatever broke, it broke this deployment only
            running.status, running.message = "failed", str(getattr(error, "message", error))
            return
        if not self._adopt(running, server):
            server.stop()
            shutil.rmtree(running.model_dir, ignore_errors=True)

    def _adopt(self, running: Running, server: InferenceServer) -> bool:
        """Hand the built server to its deployment, registered with the gateway, unless the
        deployment was deleted, replaced or stopped meanwhile (then the caller stops it)."""
        with self._lock:  # one step against delete() and stop_all(): the process has one owner
            current = self.running.get((running.endpoint, running.name)) is running
            if not current or self._stopping:
                gone = "the platform stopped" if self._stopping else "it was deleted or replaced"
                running.status, running.message = "failed", f"{gone} while it was being built"
                return False
            running.server = server
            self.register(running.endpoint, running.name, running.url)
            running.status = "ready"
            return True

    def wait(self, timeout_seconds: float = BUILD_WAIT_SECONDS) -> None:
        """Until every deployment started so far is ready or failed."""
        deadline = time.monotonic() + timeout_seconds
        with self._lock:
            building = list(self._threads)
        for thread in building:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]

    def delete(self, endpoint: str, name: str) -> None:
        """Out of the gateway and stopped; one still being built stops when its build ends."""
        with self._lock:
            running = self.running.pop((endpoint, name), None)
            self.unregister(endpoint, name)
        if running:
            _retire(running)

    def liveness(self) -> dict[str, float] | None:
        """The probe the supervisor runs on every deployment it manages (None: none)."""
        if self.supervision is None:
            return None
        return {
            "period_seconds": self.supervision.period_seconds,
            "timeout_seconds": self.supervision.timeout_seconds,
            "failure_threshold": self.supervision.failure_threshold,
        }

    def status_of(self, running: Running) -> tuple[str, str]:
        """(status, message) as the automation should see them: a ready deployment whose
        process is gone is restarting under supervision, failed without."""
        process = running.server.process if running.server else None
        if running.status == "ready" and process is not None and process.poll() is not None:
            if self.supervision is not None:
                return "restarting", f"its process exited ({process.poll()}); restarting it"
            return "failed", f"the deployment's process exited ({process.poll()})"
        return running.status, running.message

    # --- supervision -----------------------------------------------------------------------

    def _supervise(self) -> None:
        assert self.supervision is not None
        while not self._stopped.wait(self.supervision.period_seconds):
            with self._lock:
                ready = [r for r in self.running.values() if r.status == "ready"]
            for running in ready:
                reason = self._unhealthy(running)
                if reason:
                    self._begin_restart(running, reason)

    def _unhealthy(self, running: Running) -> str:
        """Why the deployment must be restarted ("" when it is alive)."""
        assert self.supervision is not None and running.server is not None
        code = running.server.process.poll()
        if code is not None:
            return f"its process exited ({code})"
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own loopback server
                f"{running.url}/", timeout=self.supervision.timeout_seconds
            ) as answer:
                alive = answer.status == 200
        except OSError:
            alive = False
        running.probe_failures = 0 if alive else running.probe_failures + 1
        if running.probe_failures >= self.supervision.failure_threshold:
            return f"it failed {running.probe_failures} liveness probes in a row"
        return ""

    def _begin_restart(self, running: Running, reason: str) -> None:
        with self._lock:
            if self.running.get((running.endpoint, running.name)) is not running:
                return  # deleted or replaced meanwhile
            running.status, running.message = "restarting", reason
        thread = threading.Thread(
            target=self._restart, args=(running, reason), name=f"restart-{running.name}"
        )
        with self._lock:
            self._threads.append(thread)  # stop_all waits for it
        thread.start()

    def _restart(self, running: Running, reason: str) -> None:
        """Backoff, start, adopt; again while the start fails; failed on a crash loop."""
        assert self.supervision is not None
        policy = self.supervision
        old = running.server
        if old is not None:
            old.stop()
        while self._current(running):  # a deployment deleted or replaced is not restarted
            now = time.monotonic()
            running.restarted_at = [
                t for t in running.restarted_at if now - t < policy.window_seconds
            ]
            if len(running.restarted_at) >= policy.max_restarts:
                self._fail(running, reason)
                return
            delay = policy.backoff(len(running.restarted_at))
            self._suspend(running, delay + START_ALLOWANCE_SECONDS, reason)
            if self._stopped.wait(delay):
                return  # the platform is stopping
            running.restarted_at.append(time.monotonic())
            running.restarts += 1
            try:
                server = self._start(running)
            except Exception as error:  # it did not come back: that counts, and again
                reason = str(getattr(error, "message", error))
                continue
            if not self._readopt(running, server):
                server.stop()
            return

    def _current(self, running: Running) -> bool:
        with self._lock:
            current = self.running.get((running.endpoint, running.name)) is running
            return current and not self._stopping

    def _suspend(self, running: Running, seconds: float | None, reason: str) -> None:
        if self.suspend is not None:
            verb = "is restarting" if seconds is not None else "failed"
            self.suspend(
                running.endpoint,
                running.name,
                seconds,
                f"deployment {running.name} {verb}: {reason}",
            )

    def _fail(self, running: Running, reason: str) -> None:
        window = self.supervision.window_seconds if self.supervision else 0
        message = (
            f"crash loop: {len(running.restarted_at)} restarts within {window:g} s (last: {reason})"
        )
        with self._lock:
            if self.running.get((running.endpoint, running.name)) is not running:
                return
            running.status, running.message = "failed", message
        self._suspend(running, None, message)
        if self.on_failed is not None:
            self.on_failed(running)

    def _readopt(self, running: Running, server: InferenceServer) -> bool:
        """The restarted server back in the gateway, unless the deployment is gone."""
        with self._lock:
            if self.running.get((running.endpoint, running.name)) is not running or self._stopping:
                return False
            running.server, running.probe_failures = server, 0
            self.register(running.endpoint, running.name, running.url)
            running.status, running.message = "ready", f"restarted ({running.restarts} in all)"
            return True

    def _start(self, running: Running) -> InferenceServer:
        log = self.root / f"{running.endpoint}-{running.name}.log"
        return start_inference_server(
            running.model_dir, log, server="lean", grace_seconds=STOP_GRACE_SECONDS
        )

    def stop_all(self) -> None:
        """Every deployment stopped, including those still being built, and no new ones."""
        with self._lock:
            self._stopping = True
        self._stopped.set()
        # Builds and restarts in progress stop their own servers; waited for a bounded time
        # (stopping is bounded): one still starting after it ends with the platform, whose
        # death its lifeline sees.
        self.wait(STOP_WAIT_SECONDS)
        with self._lock:
            stopping, self.running = list(self.running.values()), {}
        for running in stopping:
            _retire(running)


def _retire(running: Running) -> None:
    """Stop a deployment's process (if it has one yet) and remove its model folder, unless
    its build is still writing there (that build cleans up after itself)."""
    if running.server:
        running.server.stop()
    if running.status != "creating":
        shutil.rmtree(running.model_dir, ignore_errors=True)
