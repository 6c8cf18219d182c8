"""The embedded platform: the local stack's parts started together, on free loopback ports,
with state under one data directory, and stopped together.

``EmbeddedPlatform.start()``: Azurite (blob and table storage), the scoring gateway with the
deployments it runs, the Functions host running ``functions/function_app.py`` against the
local adapter; then every tenant's first model is trained and registered, and every endpoint
starts serving it from its first deployment (``blue``, as ``pulumi up`` creates it in
Azure). From there the automation owns rollouts.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from adapters.local import (
    ADMIN_TOKEN_FILE,
    COLLECTED_CONTAINER,
    DATA_DIR,
    GATEWAY_URL,
    GatewayAdmin,
    LocalPlatform,
)
from automation.store import TableStore
from local.azurite import Azurite, start_azurite
from local.collector import BlobCollector
from local.deployments import DeploymentManager
from local.functions_host import FunctionsHost, load_app
from local.gateway import Gateway, TenantLimits
from local.keys import KeyRing
from local.models import ModelFetcher
from local.serve import BackgroundServer
from ml.lifecycle import Registered, train_stack
from ml.registry import RegistryLayout
from tenancy import contracts
from tenancy.errors import DependencyError
from tenancy.spec import PlatformSpec

KEYS_FILE = "tenant-keys.json"  # shown only by `mlops status --show-keys`


@dataclass
class EmbeddedPlatform:
    spec: PlatformSpec
    stack: str
    data_dir: Path
    azurite: Azurite | None = None
    gateway: Gateway | None = None
    gateway_server: BackgroundServer | None = None
    functions_server: BackgroundServer | None = None
    functions: FunctionsHost | None = None
    collector: BlobCollector | None = None
    adapter: LocalPlatform | None = None
    registered: dict[str, Registered] = field(default_factory=dict)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, *, timers: bool = True) -> EmbeddedPlatform:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_storage()
            self._start_gateway()
            self._start_functions(timers)
            self._bootstrap()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (self.functions_server, self.gateway_server):
            if server is not None:
                server.stop()
        if self.functions is not None:
            self.functions.stop()
        if self.gateway is not None and self.gateway.deployer is not None:
            self.gateway.deployer.stop_all()
        if self.collector is not None:
            self.collector.stop()
        if self.azurite is not None:
            self.azurite.stop()

    # --- parts --------------------------------------------------------------------------

    def _start_storage(self) -> None:
        self.azurite = start_azurite(self.data_dir / "azurite")
        blobs = BlobServiceClient.from_connection_string(self.azurite.connection_string)
        container = blobs.get_container_client(COLLECTED_CONTAINER)
        if not container.exists():
            container.create_container()
        self.collector = BlobCollector(container).start()

    def _start_gateway(self) -> None:
        assert self.azurite is not None and self.collector is not None
        store = TableStore.from_connection_string(self.azurite.connection_string)
        ring = KeyRing(store)
        keys = {}
        for tenant in self.spec.tenants:
            if tenant.id not in ring.tenants:
                keys[tenant.id] = ring.issue(tenant.id)
        if keys:
            path = self.data_dir / KEYS_FILE
            known = json.loads(path.read_text()) if path.is_file() else {}
            path.write_text(json.dumps({**known, **keys}, indent=2))
            path.chmod(0o600)
        limits = {
            t.id: TenantLimits(t.quota.rate_limit_per_minute, t.quota.max_payload_kb * 1024)
            for t in self.spec.tenants
        }
        token = secrets.token_urlsafe(32)
        token_file = self.data_dir / ADMIN_TOKEN_FILE
        token_file.write_text(token)
        token_file.chmod(0o600)
        layout = RegistryLayout(self.spec, self.data_dir)
        self.gateway = Gateway(
            ring, limits, token, collector=self.collector, fetch=ModelFetcher(layout)
        )
        gateway = self.gateway
        gateway.deployer = DeploymentManager(
            self.data_dir / "deployments", gateway.register, gateway.unregister
        )
        self.gateway_server = BackgroundServer(gateway.app).start()
        admin = GatewayAdmin(self.gateway_server.url, token)
        self.adapter = LocalPlatform(self.spec, layout, admin, self.collector.container)
        for name, tenants, pooled, timeout in self._endpoints():
            admin.put_endpoint(name, tenants, pooled, timeout)

    def _endpoints(self) -> list[tuple[str, list[str], bool, float]]:
        assert self.adapter is not None
        found: dict[str, tuple[list[str], bool, float]] = {}
        for tenant in self.spec.tenants:
            name = self.adapter.endpoint_name(tenant.id)
            serving = tenant if tenant.tier == "dedicated" else self.spec.pool(str(tenant.pool))
            timeout = serving.endpoints.online.request_timeout_ms / 1000
            members, pooled, _ = found.get(name, ([], tenant.tier == "pooled", timeout))
            found[name] = ([*members, tenant.id], pooled, timeout)
        return [(name, *values) for name, values in sorted(found.items())]

    def _start_functions(self, timers: bool) -> None:
        assert self.azurite is not None and self.gateway_server is not None
        os.environ.update(
            {
                contracts.SETTING_STACK: self.stack,
                contracts.SETTING_PLATFORM_SPEC: json.dumps(self.spec.model_dump(mode="json")),
                "TENANT_MLOPS_STATE_CONNECTION": self.azurite.connection_string,
                "TENANT_MLOPS_ADAPTER": "local",
                GATEWAY_URL: self.gateway_server.url,
                DATA_DIR: str(self.data_dir),
            }
        )
        self.functions = FunctionsHost(load_app())
        self.functions_server = BackgroundServer(self.functions.app).start()
        if timers:
            self.functions.start_timers()

    def _bootstrap(self) -> None:
        """Every tenant's first model, served from each endpoint's first deployment."""
        assert self.adapter is not None and self.gateway is not None
        self.registered = {r.tenant: r for r in train_stack(self.spec, self.data_dir)}
        admin = self.adapter.gateway
        for name, tenants, pooled, _ in self._endpoints():
            models = {(t if pooled else "*"): self.registered[t].model.ref for t in tenants}
            admin.create_deployment(name, contracts.FIRST_DEPLOYMENT, models, None)
        deployer = self.gateway.deployer
        assert deployer is not None
        deployer.wait()
        for name, *_ in self._endpoints():
            state = admin.deployment(name, contracts.FIRST_DEPLOYMENT)
            if state["status"] != "ready":
                raise DependencyError(
                    f"{name}'s first deployment did not start: {state['message']}"
                )
            admin.set_traffic(name, {contracts.FIRST_DEPLOYMENT: 100}, {})

    # --- what is where ------------------------------------------------------------------

    def status(self, show_keys: bool = False) -> dict[str, Any]:
        assert self.adapter is not None and self.gateway_server is not None
        keys = json.loads((self.data_dir / KEYS_FILE).read_text()) if show_keys else {}
        tenants = []
        for tenant in self.spec.tenants:
            endpoint = self.adapter.endpoint(tenant.id)
            entry: dict[str, Any] = {
                "id": tenant.id,
                "tier": tenant.tier,
                "strategy": tenant.model_strategy,
                "endpoint": endpoint.name,
                "scoring_uri": f"{self.gateway_server.url}/{endpoint.name}/score",
                "traffic": endpoint.traffic,
                "sample_request": self.adapter.sample_request(tenant.id),
            }
            if show_keys:
                entry["keys"] = keys.get(tenant.id, {})
            tenants.append(entry)
        assert self.functions_server is not None and self.azurite is not None
        return {
            "stack": self.stack,
            "data_dir": str(self.data_dir),
            "services": {
                "gateway": self.gateway_server.url,
                "functions": self.functions_server.url,
                "azurite_blob": f"http://127.0.0.1:{self.azurite.blob_port}",
                "azurite_table": f"http://127.0.0.1:{self.azurite.table_port}",
            },
            "tenants": tenants,
        }
