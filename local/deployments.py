"""Deployments of the embedded platform: one ``score.py`` server process each (under
azureml-inference-server-http, in the scoring environment), created in the background as
Azure ML creates them, registered with the gateway once healthy.

A pooled endpoint's deployment serves every tenant of the pool: a new deployment carries the
other tenants' models over from the live one and replaces only the tenant being rolled out.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.serving import InferenceServer, start_inference_server


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
        folder = self.root / endpoint / name
        previous = self.running.get((endpoint, carry_from)) if carry_from else None
        merged = {**(previous.models if previous else {}), **models}
        running = Running(endpoint, name, folder, merged)
        with self._lock:
            old = self.running.get((endpoint, name))
            if old and old.server:
                old.server.stop()
            self.running[(endpoint, name)] = running
        arguments = (running, models, fetch, previous)
        thread = threading.Thread(target=self._build, args=arguments, daemon=True)
        self._threads.append(thread)
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
            running.server = start_inference_server(running.model_dir, log, server="lean")
            self.register(running.endpoint, running.name, running.url)
            running.status = "ready"
        except Exception as error:  # whatever broke, it broke this deployment only
            running.status, running.message = "failed", str(getattr(error, "message", error))

    def wait(self, timeout_seconds: float = 180) -> None:
        """Until every deployment started so far is ready or failed."""
        for thread in list(self._threads):
            thread.join(timeout=timeout_seconds)
        self._threads = [t for t in self._threads if t.is_alive()]

    def delete(self, endpoint: str, name: str) -> None:
        with self._lock:
            running = self.running.pop((endpoint, name), None)
        self.unregister(endpoint, name)
        if running and running.server:
            running.server.stop()

    def stop_all(self) -> None:
        self.wait(60)
        for running in list(self.running.values()):
            if running.server:
                running.server.stop()
        self.running.clear()
