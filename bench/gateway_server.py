"""The embedded platform's gateway in a process of its own, for `bench/serving.py` and
`bench/pooled.py`: built as `local/platform.py` builds it (keys in Azurite's table service,
the blob collector writing every exchange to Azurite, deployments started by the
DeploymentManager from model folders), so every feature is on: tenant auth, rate limits,
routing, the traffic split, data collection and per-deployment metrics.

    python bench/gateway_server.py --config config.json --ready ready.json

config.json: {"connection_string", "port", "data_dir", "endpoints": [{"name", "tenants",
"pooled", "deployments": {"<name>": {"<tenant or *>": "<model folder>"}}, "traffic"}]}.
It writes ready.json ({"url", "keys": {tenant: key}, "admin_token"}) once every deployment
serves, then runs until terminated.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from adapters.local import COLLECTED_CONTAINER  # noqa: E402
from adapters.table_store import TableStore  # noqa: E402
from local.collector import BlobCollector  # noqa: E402
from local.deployments import DeploymentManager  # noqa: E402
from local.gateway import EndpointConfig, Gateway, TenantLimits  # noqa: E402
from local.keys import KeyRing  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"  # noqa: S105 - loopback only, a throwaway process
MAX_PENDING = 64
UNLIMITED_PER_MINUTE = 100_000_000  # the limiter runs on every request, never refuses here


def copy_model(tenant: str, ref: str, folder: Path) -> None:
    """The bench's fetch: refs are model folders on disk, not registry versions."""
    shutil.copytree(ref, folder, dirs_exist_ok=True)


def build(config: dict[str, Any]) -> tuple[Gateway, BlobCollector, dict[str, str]]:
    blobs = BlobServiceClient.from_connection_string(config["connection_string"])
    container = blobs.get_container_client(COLLECTED_CONTAINER)
    if not container.exists():
        container.create_container()
    collector = BlobCollector(container).start()
    ring = KeyRing(TableStore.from_connection_string(config["connection_string"]))
    tenants = sorted({t for e in config["endpoints"] for t in e["tenants"]})
    keys = {tenant: ring.issue(tenant)["primary"] for tenant in tenants}
    limits = {t: TenantLimits(UNLIMITED_PER_MINUTE, 4 << 20) for t in tenants}
    gateway = Gateway(ring, limits, ADMIN_TOKEN, collector=collector.submit, fetch=copy_model)
    data_dir = Path(config["data_dir"])
    gateway.deployer = DeploymentManager(data_dir, gateway.register, gateway.unregister)
    for endpoint in config["endpoints"]:
        gateway.endpoints[endpoint["name"]] = EndpointConfig(
            endpoint["name"], set(endpoint["tenants"]), bool(endpoint.get("pooled"))
        )
        for name, models in endpoint["deployments"].items():
            gateway.deployer.create(endpoint["name"], name, models, copy_model)
    gateway.deployer.wait()
    failed = [r.message for r in gateway.deployer.running.values() if r.status != "ready"]
    if failed:
        raise SystemExit(f"deployments failed: {failed}")
    for endpoint in config["endpoints"]:
        served = gateway.endpoints[endpoint["name"]]
        served.traffic = dict(endpoint["traffic"])
        for deployment in served.deployments.values():
            # 32 connections on one deployment must queue, not be refused with 429.
            deployment.max_pending = MAX_PENDING
    return gateway, collector, keys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    arguments = parser.parse_args()
    config = json.loads(arguments.config.read_text())
    # Settings of the deployment processes (they inherit this process's environment).
    os.environ.update(config.get("deployment_env", {}))
    gateway, collector, keys = build(config)
    url = f"http://127.0.0.1:{config['port']}"
    ready = {"url": url, "keys": keys, "admin_token": ADMIN_TOKEN}
    server = uvicorn.Server(
        uvicorn.Config(
            gateway.app,
            host="127.0.0.1",
            port=config["port"],
            log_level="warning",
            access_log=False,
            proxy_headers=False,
        )
    )

    def stop(*_: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets)
        arguments.ready.write_text(json.dumps(ready))

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        assert gateway.deployer is not None
        gateway.deployer.stop_all()
        collector.stop()


if __name__ == "__main__":
    main()
