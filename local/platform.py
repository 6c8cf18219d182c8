"""The embedded platform: the local stack's parts started together, on free loopback ports,
with state under one data directory, and stopped together.

``EmbeddedPlatform.start()``: Azurite (blob and table storage), one MLflow tracking server per
store of the stack, the scoring gateway with the deployments it runs, and the Functions host
running ``functions/function_app.py`` against the local adapter, with every tracking server's
registry webhook pointing at it. Then every tenant's first model is trained and registered,
and the automation takes it from there as it would in Azure: the webhook reaches the
registration handler, the model gate passes it, and a rollout puts it live. ``start``
returns once every tenant is served (or says which tenant's first rollout failed and why).

Endpoints and deployments are saved at every routing change and restored by the next
``start`` on the same data directory, whose registries already hold the models: a warm
start trains nothing, after a clean stop or a SIGKILL alike.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient, LinearRetry

from adapters.local import (
    ADMIN_TOKEN_FILE,
    COLLECTED_CONTAINER,
    DATA_DIR,
    GATEWAY_URL,
    REGISTRY_URIS,
    GatewayAdmin,
    LocalPlatform,
)
from adapters.table_store import TableStore
from automation.rollout import Phase
from automation.runner import decode, rollout_key
from local.azurite import Azurite, start_azurite
from local.collector import BlobCollector
from local.deployments import DeploymentManager, Running, Supervision
from local.functions_host import FunctionsHost, load_app
from local.gateway import Gateway, GroundTruth, TenantLimits
from local.genai_host import GenAIHost
from local.keys import KeyRing
from local.models import ModelFetcher
from local.operations import (
    FUNCTIONS_KEY_FILE,
    KEYS_FILE,
    REQUEST_ID_KEY_FILE,
    SIGN_IN_KEY_FILE,
)
from local.serve import BackgroundServer
from local.sign_in import SignInModule
from local.tracking import TrackingServer, start_tracking_servers, subscribe
from ml.baseline import sample_of
from ml.lifecycle import Registered, train_stack
from ml.registry import RegistryLayout
from tenancy import contracts
from tenancy.errors import DependencyError
from tenancy.spec import PlatformSpec

logger = logging.getLogger("tenant_mlops.platform")
GATEWAY_STATE_FILE = "gateway-state.json"
#: Tenants the gateway refuses (a spent budget) and until when, kept across restarts.
GATEWAY_STOPS_FILE = "gateway-budget-stops.json"


def bounded_storage_calls() -> dict[str, Any]:
    """Settings of the collector's storage client: two retries a second apart, short waits. The
    storage SDK's default (ExponentialRetry, 15 s then 3x) spends 40 s on one write to an
    unreachable account."""
    return {
        "retry_policy": LinearRetry(backoff=1, random_jitter_range=0, retry_total=2),
        "connection_timeout": 2,
        "read_timeout": 10,
    }


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
    genai: GenAIHost | None = None
    store: TableStore | None = None
    tracking: dict[str, TrackingServer] = field(default_factory=dict)
    registered: dict[str, Registered] = field(default_factory=dict)
    trained_in_seconds: float = 0.0
    _saving: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _restored: bool = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, *, timers: bool = True, rollout_timeout: float = 600) -> EmbeddedPlatform:
        """Everything up and every tenant served. Without ``timers`` the timer functions run
        only when called (tests drive them); the first rollouts are then ticked here."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_storage()
            self._start_tracking()
            self._start_gateway()
            self._start_functions(timers)
            self._restore()
            self._restored = True  # from now on, routing changes are the state to keep
            self._bootstrap(timers, rollout_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """In order, each step bounded in time: the automation stops acting, the gateway
        stops taking requests, what it collected goes to storage while storage still runs
        (the services are out of reach of a terminal's Ctrl-C, see ``local/lifeline.py``),
        then the deployments, the registries and storage. Each step's time is logged."""
        steps: list[tuple[str, Callable[[], object]]] = [("state", self._save)]
        if self.functions is not None:
            steps.append(("timers", self.functions.stop))
        if self.genai is not None:
            steps.append(("prompt rollouts", self.genai.stop))
        for name, server in (
            ("functions", self.functions_server),
            ("gateway", self.gateway_server),
        ):
            if server is not None:
                steps.append((name, server.stop))
        if self.collector is not None:
            steps.append(("collected data", self.collector.stop))
        if self.gateway is not None and self.gateway.deployer is not None:
            steps.append(("deployments", self.gateway.deployer.stop_all))
        steps.append(("registries", self._stop_tracking))
        if self.azurite is not None:
            steps.append(("storage", self.azurite.stop))
        for name, step in steps:
            started = time.monotonic()
            step()
            logger.info("stopped %s in %.1f s", name, time.monotonic() - started)

    def _stop_tracking(self) -> None:
        for tracking in self.tracking.values():
            tracking.terminate()  # all at once, then wait for each
        for tracking in self.tracking.values():
            tracking.stop()

    # --- parts --------------------------------------------------------------------------

    def _start_storage(self) -> None:
        self.azurite = start_azurite(self.data_dir / "azurite")
        # Bounded calls: a write that cannot land is retried at the next flush, not for
        # minutes inside this one (the SDK's default policy backs off up to ten times).
        blobs = BlobServiceClient.from_connection_string(
            self.azurite.connection_string, **bounded_storage_calls()
        )
        container = blobs.get_container_client(COLLECTED_CONTAINER)
        if not container.exists():
            container.create_container()
        self.collector = BlobCollector(container).start()
        self.store = TableStore.from_connection_string(self.azurite.connection_string)

    def _start_tracking(self) -> None:
        keys = RegistryLayout(self.spec, self.data_dir).store_keys()
        self.tracking = start_tracking_servers(keys, self.data_dir)

    def _layout(self) -> RegistryLayout:
        uris = {key: server.url for key, server in self.tracking.items()}
        return RegistryLayout(self.spec, self.data_dir, uris)

    def _start_gateway(self) -> None:
        assert self.store is not None and self.collector is not None
        ring = KeyRing(self.store)
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
            t.id: TenantLimits(
                t.quota.rate_limit_per_minute,
                t.quota.max_payload_kb * 1024,
                t.quota.max_concurrency,
            )
            for t in self.spec.tenants
        }
        token = secrets.token_urlsafe(32)
        token_file = self.data_dir / ADMIN_TOKEN_FILE
        token_file.write_text(token)
        token_file.chmod(0o600)
        layout = self._layout()
        if any(t.genai is not None for t in self.spec.tenants):
            self.genai = GenAIHost(self.spec, self.data_dir, layout)
        self.gateway = Gateway(
            ring,
            limits,
            token,
            collector=self.collector.submit,
            fetch=ModelFetcher(layout),
            on_change=self._save,
            ground_truth=self._ground_truth(),
            chat=self.genai.chat if self.genai else None,
            admin_routes=self.genai.routes(self._check_admin) if self.genai else (),
        )
        gateway = self.gateway
        gateway.budget_stops = self._saved_stops()
        gateway.deployer = DeploymentManager(
            self.data_dir / "deployments",
            gateway.register,
            gateway.unregister,
            supervision=Supervision.of(self.spec.serving),
            suspend=gateway.suspend,
            on_failed=self._deployment_failed,
        )
        self.gateway_server = BackgroundServer(gateway.app).start()
        admin = GatewayAdmin(self.gateway_server.url, token)
        self.adapter = LocalPlatform(self.spec, layout, admin, self.collector.container)
        for name, tenants, pooled, timeout in self._endpoints():
            admin.put_endpoint(name, tenants, pooled, timeout)

    def _check_admin(self, request: Any) -> Any:
        assert self.gateway is not None
        return self.gateway._admin(request)

    def _ground_truth(self) -> GroundTruth:
        """Labels go where the collected data is, written at once (not batched): a label
        the gateway counted as accepted is stored."""
        assert self.collector is not None
        quality = self.spec.quality
        return GroundTruth(
            key=_secret_file(self.data_dir / REQUEST_ID_KEY_FILE).encode(),
            horizon=timedelta(hours=quality.label_horizon_hours),
            max_labels=quality.max_labels_per_request,
            write=self.collector.container.upload_blob,
        )

    def _deployment_failed(self, running: Running) -> None:
        """A crash loop: the automation sees the deployment failed; when it carries live
        traffic (a champion), its tenants' contacts hear of it."""
        endpoint = self.gateway.endpoints.get(running.endpoint) if self.gateway else None
        if endpoint is None or self.adapter is None or not endpoint.traffic.get(running.name):
            return
        for tenant in sorted(endpoint.tenants):
            self.adapter.notify(
                tenant,
                "error",
                f"deployment {running.name} of {running.endpoint}, serving live traffic, "
                f"failed: {running.message}",
            )

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
        """The Functions host, with the app settings Azure would give the Function App."""
        assert self.azurite is not None and self.gateway_server is not None
        webhook_secret = secrets.token_urlsafe(32)  # a new one each run, never written down
        os.environ.update(
            {
                contracts.SETTING_STACK: self.stack,
                contracts.SETTING_PLATFORM_SPEC: json.dumps(self.spec.model_dump(mode="json")),
                contracts.SETTING_ROLLOUT_SCHEDULE: self.spec.rollout_tick_schedule(),
                contracts.SETTING_DRIFT_SCHEDULE: self.spec.drift.schedule,
                contracts.SETTING_AUDIT_SCHEDULE: self.spec.audit.schedule,
                contracts.SETTING_QUALITY_SCHEDULE: self.spec.quality.schedule,
                contracts.SETTING_STATE_CONNECTION: self.azurite.connection_string,
                contracts.SETTING_ADAPTER: "local",
                contracts.SETTING_WEBHOOK_SECRET: webhook_secret,
                GATEWAY_URL: self.gateway_server.url,
                DATA_DIR: str(self.data_dir),
                REGISTRY_URIS: json.dumps({k: s.url for k, s in self.tracking.items()}),
                # The host runs the sign-in module, so identity headers are the platform's.
                contracts.SETTING_AUTH_ENABLED: "True",
            }
        )
        master_key = _secret_file(self.data_dir / FUNCTIONS_KEY_FILE)
        sign_in = SignInModule(
            _secret_file(self.data_dir / SIGN_IN_KEY_FILE),
            contracts.entra_audiences(self.spec.function_app.alert_webhook_app_id),
        )
        app = load_app()
        _fresh_worker()
        self.functions = FunctionsHost(app, master_key=master_key, sign_in=sign_in)
        self.functions_server = BackgroundServer(self.functions.app).start()
        hook = f"{self.functions_server.url}/api/registry/mlflow"
        for server in self.tracking.values():
            subscribe(server, hook, webhook_secret)
        if timers:
            self.functions.start_timers()
            if self.genai is not None:
                self.genai.start_ticking()

    # --- endpoints across restarts ------------------------------------------------------

    def _save(self) -> None:
        """Endpoints' deployments (their models), traffic and mirror, for the next start:
        written at every routing change (the gateway calls this), atomically, so a platform
        killed at any moment comes back as it was. A deployment still being created or
        restarting is kept (a rollout in flight expects its green); a failed one is not."""
        if not self._restored or self.gateway is None or self.gateway.deployer is None:
            return  # a start that has not restored yet must not overwrite what it restores
        deployer = self.gateway.deployer
        saved = {}
        for name, endpoint in list(self.gateway.endpoints.items()):
            deployments = {}
            for deployment in list(endpoint.deployments):
                running = deployer.get(name, deployment)
                if running is not None and running.status != "failed":
                    deployments[deployment] = dict(running.models)
            saved[name] = {
                "traffic": {d: s for d, s in endpoint.traffic.items() if d in deployments},
                "mirror": {d: s for d, s in endpoint.mirror.items() if d in deployments},
                "deployments": deployments,
            }
        stops = {tenant: until for tenant, (until, _) in self.gateway.budget_stops.items()}
        with self._saving:
            write_atomically(self.data_dir / GATEWAY_STOPS_FILE, json.dumps(stops, indent=2))
            if any(e["deployments"] for e in saved.values()):
                write_atomically(self.data_dir / GATEWAY_STATE_FILE, json.dumps(saved, indent=2))

    def _saved_stops(self) -> dict[str, tuple[float, str]]:
        """The budget stops in force when the platform last ran (the automation applies
        them again on its next run too, from its own records)."""
        path = self.data_dir / GATEWAY_STOPS_FILE
        saved = json.loads(path.read_text()) if path.is_file() else {}
        return {
            tenant: (until, datetime.fromtimestamp(until, UTC).date().isoformat())
            for tenant, until in saved.items()
            if until > time.time()
        }

    def _restore(self) -> None:
        path = self.data_dir / GATEWAY_STATE_FILE
        if self.adapter is None or self.gateway is None or not path.is_file():
            return
        saved = json.loads(path.read_text())
        admin = self.adapter.gateway
        known = {name for name, *_ in self._endpoints()}
        for name, endpoint in saved.items():
            for deployment, models in endpoint["deployments"].items():
                if name in known:
                    admin.create_deployment(name, deployment, models, None)
        assert self.gateway.deployer is not None
        self.gateway.deployer.wait()
        for name, endpoint in saved.items():
            ready = [
                d
                for d in endpoint["deployments"]
                if name in known and admin.deployment(name, d)["status"] == "ready"
            ]
            traffic, mirror = endpoint["traffic"], endpoint.get("mirror", {})
            if ready and set(traffic) | set(mirror) <= set(ready) and sum(traffic.values()) == 100:
                admin.set_traffic(name, traffic, mirror)

    # --- first models -------------------------------------------------------------------

    def _served(self, tenant: str) -> bool:
        """Its live deployment serves the tenant. Not "at 100 %": an endpoint restored in
        the middle of a canary is served (a first rollout switches 0 -> 100 in one step)."""
        assert self.adapter is not None
        endpoint = self.adapter.endpoint(tenant)
        return endpoint.serving and self.adapter.serves_tenant(tenant, endpoint.live)

    def _awaiting_approval(self, tenant: str) -> list[str]:
        """The tenant's rollouts that wait for an approver. A stack whose rollouts need
        approval (as a production stack's do) serves nothing of a tenant until someone
        approves, and `mlops up` cannot wait for that."""
        assert self.store is not None
        return [
            decode(record.data)[0].model
            for record in self.store.query(contracts.TABLE_ROLLOUTS, tenant)
            if record.data.get("phase") == Phase.AWAITING_APPROVAL.value
        ]

    def _settled(self, tenant: str) -> bool:
        return self._served(tenant) or bool(self._awaiting_approval(tenant))

    def _bootstrap(self, timers: bool, timeout_seconds: float) -> None:
        """Train and register the tenants' models; the automation rolls them out (up to
        an approval, where the stack asks for one)."""
        if all(self._settled(t.id) for t in self.spec.tenants):
            return  # restored: the registries and endpoints are as they were
        started = time.monotonic()
        layout = self._layout()
        self.registered = {r.tenant: r for r in train_stack(self.spec, self.data_dir, layout)}
        self.trained_in_seconds = round(time.monotonic() - started, 1)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            waiting = [t.id for t in self.spec.tenants if not self._settled(t.id)]
            if not waiting:
                return
            self._fail_on_refusals(waiting)
            if not timers and self.functions is not None:
                self.functions.run("rollout_tick")
            time.sleep(0.5)  # rollouts advance on the timer; this only waits for them
        raise DependencyError(
            f"first rollouts not finished within {timeout_seconds:g} s: "
            f"{', '.join(t.id for t in self.spec.tenants if not self._served(t.id))}"
        )

    def _fail_on_refusals(self, tenants: list[str]) -> None:
        """A first model the gate rejected, or whose rollout rolled back, will never serve."""
        assert self.store is not None
        for tenant in tenants:
            registered = self.registered.get(tenant)
            if registered is None:
                continue
            record = self.store.get(
                contracts.TABLE_ROLLOUTS, tenant, rollout_key(registered.model.ref)
            )
            if record is None:
                continue
            if record.data.get("rejected"):
                reasons = "; ".join(record.data.get("reasons", []))
                raise DependencyError(f"{tenant}'s first model failed the gate: {reasons}")
            if record.data.get("phase") == "rolled_back":
                raise DependencyError(
                    f"{tenant}'s first rollout rolled back: {record.data.get('reason')}"
                )

    # --- what is where ------------------------------------------------------------------

    def status(self, show_keys: bool = False) -> dict[str, Any]:
        """Services, and per tenant: endpoint, scoring URI, input schema, a sample request,
        deployments with the model each serves the tenant, traffic, its latest rollout;
        keys only when asked."""
        assert self.adapter is not None and self.gateway_server is not None
        assert self.functions_server is not None and self.azurite is not None
        keys = json.loads((self.data_dir / KEYS_FILE).read_text()) if show_keys else {}
        tenants = [self._tenant_status(t.id) for t in self.spec.tenants]
        if show_keys:
            for entry in tenants:
                entry["keys"] = keys.get(entry["id"], {})
        return {
            "stack": self.stack,
            "data_dir": str(self.data_dir),
            "services": {
                "gateway": self.gateway_server.url,
                "functions": self.functions_server.url,
                "azurite_blob": f"http://127.0.0.1:{self.azurite.blob_port}",
                "azurite_table": f"http://127.0.0.1:{self.azurite.table_port}",
                "azurite_blob_port": self.azurite.blob_port,
                "azurite_table_port": self.azurite.table_port,
                "tracking": {key: server.url for key, server in self.tracking.items()},
            },
            "tenants": tenants,
        }

    def _tenant_status(self, tenant_id: str) -> dict[str, Any]:
        assert self.adapter is not None and self.gateway_server is not None
        tenant = self.spec.tenant(tenant_id)
        endpoint = self.adapter.endpoint(tenant_id)
        found = self.adapter.gateway.endpoint(endpoint.name)
        deployments = {}
        for name in found["deployments"]:
            state = self.adapter.gateway.deployment(endpoint.name, name)
            models = state.get("models", {})
            deployments[name] = {
                "status": state["status"],
                "restarts": state.get("restarts", 0),
                "model": models.get(tenant_id if tenant.tier == "pooled" else "*", ""),
            }
        live = endpoint.live if endpoint.serving else None
        columns: list[str] = []
        sample = None
        if live:
            _, columns, reference = self.adapter.baseline(tenant_id, live)
            sample = sample_of(columns, reference)
        schema = {"type": "tabular", "columns": columns} if columns else {"type": "text"}
        return {
            "id": tenant.id,
            "tier": tenant.tier,
            "strategy": tenant.model_strategy,
            "kind": tenant.model_kind,
            "endpoint": endpoint.name,
            "scoring_uri": f"{self.gateway_server.url}/{endpoint.name}/score",
            "champion": {"deployment": live, **deployments.get(live or "", {})},
            "traffic": dict(endpoint.traffic),
            "deployments": deployments,
            "input_schema": schema,
            "sample_request": sample,
            "awaiting_approval": self._awaiting_approval(tenant_id),
        }


def write_atomically(path: Path, text: str) -> None:
    """The whole new content or the whole old one, whenever the process dies."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    with partial.open("w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    partial.replace(path)


def _secret_file(path: Path) -> str:
    """A secret kept in a file only its owner reads (made on first use)."""
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _fresh_worker() -> None:
    """A new host is a new worker: the app's services are built again from its settings."""
    module = sys.modules.get("services")
    if module is not None:
        module.services.cache_clear()
