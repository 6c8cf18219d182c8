"""Deployments of the embedded platform: one ``score.py`` server process each (under
azureml-inference-server-http, in the scoring environment), created in the background as
Azure ML creates them, registered with the gateway once healthy.

A pooled endpoint's deployment serves every tenant of the pool: a new deployment carries the
other tenants' models over from the live one and replaces only the tenant being rolled out.

Every process a build starts is owned by exactly one party: the deployment it was built for,
if that deployment is still the current one when the build ends, else the build itself, which
stops it. So a deployment deleted, replaced or stopped while it is still being built leaves no
process behind and is never registered with the gateway.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.inference_server import InferenceServer, start_inference_server
from tenancy.errors import DependencyError

#: How long to wait for builds in progress (each is bounded by its model fetch and the
#: server's 60 s health timeout).
BUILD_WAIT_SECONDS = 180


@dataclass
class Running:
    endpoint: str
    name: str
    model_dir: Path
    models: dict[str, str] = field(default_factory=dict)  # tenant (or "*") -> "<name>/<version>"
    status: str = "creating"  # creating | ready | failed
    message: str = ""
    server: InferenceServer | None = None

    @property
    def url(self) -> str:
        return self.server.url if self.server else ""


class DeploymentManager:
    def __init__(
        self,
        root: Path,
        register: Callable[[str, str, str], Any],
        unregister: Callable[[str, str], Any],
    ) -> None:
        self.root = root
        self.register = register  # (endpoint, deployment, url): tell the gateway
        self.unregister = unregister
        self.running: dict[tuple[str, str], Running] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        # Each build has its own folder: a replaced deployment still runs from its own.
        self._builds = itertools.count(1)

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
            log = self.root / f"{running.endpoint}-{running.name}.log"
            server = start_inference_server(running.model_dir, log, server="lean")
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

    def stop_all(self) -> None:
        """Every deployment stopped, including those still being built, and no new ones."""
        with self._lock:
            self._stopping = True
        self.wait()  # builds in progress stop their own servers
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
