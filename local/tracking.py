"""MLflow tracking servers of the embedded platform: one per backend store of the stack (each
dedicated tenant, each pool, and the platform's shared models), as Azure gives each stamp its
own workspace. Each is ``mlflow server`` on sqlite with proxied artifacts, on a free loopback
port, with its data under the platform's data directory.

Each server delivers its registry's webhooks (``model_version.created``,
``model_version_alias.created``) to the Functions host, signed with a secret made for this
run. MLflow refuses loopback and plain-http targets unless told otherwise
(``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS``, ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES``); those switches are
set for these servers only. MLflow's job runner (eight extra processes per server) is off:
nothing here uses MLflow jobs.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from local.inference_server import InferenceServer
from local.processes import free_port, spawn
from ml.stores import prepare_sqlite_store
from tenancy.errors import DependencyError

WEBHOOK_NAME = "tenant-mlops-automation"
WEBHOOK_EVENTS: list[Any] = ["model_version.created", "model_version_alias.created"]
ENCRYPTION_KEY_FILE = "mlflow-webhook-encryption.key"


@dataclass
class TrackingServer(InferenceServer):
    """A loopback server process (as an inference server is) serving one store. Its lifeline
    stops the whole group, the uvicorn worker included."""

    key: str = ""  # the store: "tenant-<id>", "pool-<id>" or "platform"

    def terminate(self) -> None:
        """Ask the server to stop (``stop`` waits for it): several stop at once."""
        if self.process.poll() is None:
            self.process.terminate()


def _environment(data_dir: Path) -> dict[str, str]:
    key_file = data_dir / ENCRYPTION_KEY_FILE
    if not key_file.is_file():  # kept across restarts: stored webhook secrets stay readable
        # A Fernet key: 32 random bytes, url-safe base64 (MLflow encrypts secrets with it).
        key_file.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        key_file.chmod(0o600)
    return {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": key_file.read_text().strip(),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }


def start_tracking_servers(
    keys: Iterable[str], data_dir: Path, timeout_seconds: float = 90
) -> dict[str, TrackingServer]:
    """One server per store key, started together; returns when every one is healthy, or
    stops them all and says which did not start."""
    registries, artifacts = data_dir / "registries", data_dir / "artifacts"
    registries.mkdir(parents=True, exist_ok=True)
    env = _environment(data_dir)
    servers: dict[str, TrackingServer] = {}
    try:
        for key in keys:
            prepare_sqlite_store(registries / f"{key}.db")
            servers[key] = _launch(key, registries, artifacts / key, env)
        _wait_healthy(servers.values(), timeout_seconds)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def _launch(key: str, registries: Path, artifacts: Path, env: Mapping[str, str]) -> TrackingServer:
    port = free_port()
    log = registries / f"{key}.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{registries / key}.db",
        "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    return TrackingServer(spawn(command, log, env=env), port, log, key)


def _wait_healthy(servers: Iterable[TrackingServer], timeout_seconds: float) -> None:
    waiting = list(servers)
    deadline = time.monotonic() + timeout_seconds
    while waiting and time.monotonic() < deadline:
        for server in list(waiting):
            if server.process.poll() is not None:
                raise DependencyError(
                    f"the MLflow server of {server.key} exited ({server.process.returncode}); "
                    f"see {server.log}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{server.url}/health", timeout=2).ok:
                    waiting.remove(server)
        time.sleep(0.2)  # polling for readiness
    if waiting:
        names = ", ".join(s.key for s in waiting)
        raise DependencyError(
            f"MLflow server(s) of {names} did not start within {timeout_seconds:g} s"
        )


def subscribe(server: TrackingServer, url: str, secret: str) -> None:
    """Point the server's registry webhook at ``url`` (replacing an earlier run's)."""
    from mlflow import MlflowClient  # noqa: PLC0415 - MLflow loads slowly

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    for hook in client.list_webhooks():
        if hook.name == WEBHOOK_NAME:
            client.delete_webhook(hook.webhook_id)
    client.create_webhook(
        name=WEBHOOK_NAME,
        url=url,
        events=WEBHOOK_EVENTS,
        description="registry changes to the tenant-mlops automation",
        secret=secret,
    )
