"""The platform port on the embedded platform: the gateway's admin API for endpoints,
traffic and metrics; deployment processes started by the DeploymentManager; the MLflow
registries of the stack; collected data in Azurite; retraining as a local job."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import requests

from adapters.collected import collected_rows, endpoint_usage, labelled_window, owner_of
from adapters.mlflow_facts import MlflowModelFacts
from automation.budgets import period_of
from automation.port import DeploymentStatus, Endpoint, Spend, Usage
from automation.rollout import Stats
from ml.baseline import Baseline, sample_of
from ml.quality import LabelledWindow
from ml.registry import BASELINE_FILE, RegistryLayout, registry_of
from policies.core import ML
from policies.live import LiveResource
from policies.model_rules import ModelFacts
from tenancy import contracts, naming
from tenancy.errors import ConfigError, DependencyError, NotFoundError
from tenancy.spec import PlatformSpec, TenantSpec

logger = logging.getLogger("tenant_mlops.local")
GATEWAY_URL = "TENANT_MLOPS_GATEWAY_URL"
DATA_DIR = "TENANT_MLOPS_DATA_DIR"
#: {store key: tracking server URL}, JSON: the embedded platform's MLflow servers.
REGISTRY_URIS = "TENANT_MLOPS_REGISTRY_URIS"
ADMIN_TOKEN_FILE = "gateway-admin.token"  # noqa: S105 - a file name
COLLECTED_CONTAINER = "workspaceblobstore"
NOTIFICATIONS_FILE = "notifications.jsonl"
#: The currency of the embedded platform's bill (``stamp_spend``).
CURRENCY = "USD"


class GatewayAdmin:
    """The gateway's admin API (loopback, admin token)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.session.request(method, self.url + path, timeout=30, **kwargs)
        except requests.RequestException as error:
            raise DependencyError(f"the gateway is not reachable: {error}") from None
        if answer.status_code == 404:
            raise NotFoundError(answer.json().get("error", {}).get("message", path))
        if answer.status_code >= 400:
            raise DependencyError(
                f"gateway {method} {path}: {answer.status_code} {answer.text[:200]}"
            )
        return answer.json()

    def put_endpoint(
        self, name: str, tenants: Sequence[str], pooled: bool, timeout_seconds: float
    ) -> Any:
        body = {"tenants": list(tenants), "pooled": pooled, "timeout_seconds": timeout_seconds}
        return self._call("PUT", f"/admin/endpoints/{name}", json=body)

    def endpoint(self, name: str) -> Any:
        return self._call("GET", f"/admin/endpoints/{name}")

    def endpoints(self) -> list[Any]:
        return list(self._call("GET", "/admin/endpoints"))

    def set_traffic(self, name: str, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> Any:
        body = {"traffic": dict(traffic), "mirror": dict(mirror)}
        return self._call("PUT", f"/admin/endpoints/{name}/traffic", json=body)

    def create_deployment(
        self, endpoint: str, name: str, models: Mapping[str, str], carry_from: str | None
    ) -> Any:
        """Have the platform start a deployment process serving ``models``."""
        body = {"models": dict(models), "carry_from": carry_from}
        return self._call("PUT", f"/admin/endpoints/{endpoint}/deployments/{name}", json=body)

    def deployment(self, endpoint: str, name: str) -> Any:
        return self._call("GET", f"/admin/endpoints/{endpoint}/deployments/{name}")

    def put_deployment(self, endpoint: str, name: str, url: str) -> Any:
        return self._call(
            "PUT", f"/admin/endpoints/{endpoint}/deployments/{name}", json={"url": url}
        )

    def delete_deployment(self, endpoint: str, name: str) -> Any:
        return self._call("DELETE", f"/admin/endpoints/{endpoint}/deployments/{name}")

    def genai_status(self) -> dict[str, Any]:
        """Per genai tenant: tokens, spend, prompts and their rollouts."""
        return dict(self._call("GET", "/admin/genai"))

    def prompt_action(self, tenant: str, prompt: str, version: str, action: str) -> Any:
        """``gate`` (evaluate on its evaluation set) or ``rollout`` a prompt version."""
        path = f"/admin/genai/{tenant}/prompts/{prompt}/versions/{version}/{action}"
        return self._call("POST", path)

    def tick_prompts(self) -> Any:
        return self._call("POST", "/admin/genai/tick")

    def rotate_key(self, tenant: str, slot: str, actor: str) -> str:
        """A new key for the tenant's slot, returned once."""
        answer = self._call(
            "POST", f"/admin/keys/{tenant}/{slot}/rotate", headers={"x-actor": actor}
        )
        return str(answer["key"])

    def budget_stop(self, tenant: str, until: datetime | None) -> Any:
        """Refuse ``tenant``'s scoring until ``until``; None serves it again."""
        path = f"/admin/tenants/{tenant}/budget-stop"
        if until is None:
            return self._call("DELETE", path)
        return self._call("PUT", path, json={"until": until.isoformat()})

    def stats(self, endpoint: str, name: str, since: float, until: float) -> Any:
        params = {"since": since, "until": until}
        return self._call(
            "GET", f"/admin/endpoints/{endpoint}/deployments/{name}/stats", params=params
        )


@dataclass
class LocalPlatform:
    spec: PlatformSpec
    layout: RegistryLayout
    gateway: GatewayAdmin
    container: Any = None  # collected data (Azurite blob container)
    notifications: list[tuple[str, str, str]] = field(default_factory=list)
    compute_caps: dict[str, int] = field(default_factory=dict)
    activity: dict[str, datetime] = field(default_factory=dict)
    _notify_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Any, env: Mapping[str, str] | None = None) -> LocalPlatform:
        """The adapter of a Functions host running beside the embedded platform: where the
        gateway is, its admin token (a file under the data directory, never a setting's
        value), the registries' data directory, and Azurite for collected data."""
        env = dict(os.environ if env is None else env)
        missing = [k for k in (GATEWAY_URL, DATA_DIR) if not env.get(k)]
        if missing:
            raise DependencyError(f"the local adapter needs {', '.join(missing)}")
        data_dir = Path(env[DATA_DIR])
        token_file = data_dir / ADMIN_TOKEN_FILE
        if not token_file.is_file():
            raise DependencyError(f"no gateway admin token at {token_file}: is the platform up?")
        try:
            uris = json.loads(env.get(REGISTRY_URIS) or "{}")
        except json.JSONDecodeError:
            raise DependencyError(f"{REGISTRY_URIS} is not JSON") from None
        if not isinstance(uris, dict):
            raise DependencyError(f"{REGISTRY_URIS} must map store keys to URLs")
        container = None
        if settings.state_connection:
            from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

            service = BlobServiceClient.from_connection_string(settings.state_connection)
            container = service.get_container_client(COLLECTED_CONTAINER)
        return cls(
            settings.spec,
            RegistryLayout(settings.spec, data_dir, uris),
            GatewayAdmin(env[GATEWAY_URL], token_file.read_text(encoding="utf-8").strip()),
            container,
        )

    # --- where a tenant lives ----------------------------------------------------------

    def _tenant(self, tenant: str) -> TenantSpec:
        return self.spec.tenant(tenant)

    def endpoint_name(self, tenant: str) -> str:
        return self.spec.online_endpoint_name(tenant)

    def _pooled(self, tenant: str) -> bool:
        return self._tenant(tenant).tier == "pooled"

    def _slot(self, tenant: str) -> str:
        """Where a tenant's model sits in a deployment: its own folder in a pool."""
        return tenant if self._pooled(tenant) else "*"

    # --- serving -----------------------------------------------------------------------

    def endpoint(self, tenant: str) -> Endpoint:
        found = self.gateway.endpoint(self.endpoint_name(tenant))
        return Endpoint(tenant, found["name"], found["traffic"], found["mirror"])

    def create_deployment(self, tenant: str, name: str, model: str) -> None:
        endpoint = self.endpoint(tenant)
        # A pooled deployment carries the other pool tenants' models from the live one.
        live = endpoint.live if endpoint.serving else None
        self.gateway.create_deployment(endpoint.name, name, {self._slot(tenant): model}, live)

    def _deployment(self, tenant: str, name: str) -> Any | None:
        try:
            return self.gateway.deployment(self.endpoint_name(tenant), name)
        except NotFoundError:
            return None

    def deployment_status(self, tenant: str, name: str) -> tuple[DeploymentStatus, str]:
        found = self._deployment(tenant, name)
        if found is None:
            return "missing", ""
        if found["status"] == "restarting":
            # Azure ML keeps a deployment Succeeded while it restarts its container; its
            # requests fail meanwhile, and the rollout's analysis counts them.
            return "ready", str(found["message"])
        status: DeploymentStatus = found["status"]
        return status, str(found["message"])

    def set_traffic(
        self, tenant: str, traffic: Mapping[str, int], mirror: Mapping[str, int]
    ) -> None:
        self.gateway.set_traffic(self.endpoint_name(tenant), traffic, mirror)

    def delete_deployment(self, tenant: str, name: str) -> None:
        with contextlib.suppress(NotFoundError):  # gone already: deleting is done
            self.gateway.delete_deployment(self.endpoint_name(tenant), name)

    def invoke(self, tenant: str, deployment: str, body: Mapping[str, Any]) -> int:
        """Straight to the deployment, as the deployment header routes it."""
        found = self._deployment(tenant, deployment)
        if found is None or not found["url"]:
            return 404
        headers = {"x-tenant-id": tenant} if self._pooled(tenant) else {}
        url = f"{found['url']}/score"
        try:
            return requests.post(url, json=dict(body), headers=headers, timeout=30).status_code
        except requests.RequestException:
            return 503

    def _model_of(self, tenant: str, deployment: str) -> str:
        found = self._deployment(tenant, deployment)
        if found is None:
            raise NotFoundError.for_item("deployment", deployment)
        models: dict[str, str] = found["models"]
        return models.get(self._slot(tenant)) or models.get("*", "")

    def serves_tenant(self, tenant: str, deployment: str) -> bool:
        found = self._deployment(tenant, deployment)
        return found is not None and self._slot(tenant) in found["models"]

    def serving_model(self, tenant: str, deployment: str) -> str:
        """The model ("<name>/<version>") ``deployment`` serves for ``tenant``, or ""."""
        found = self._deployment(tenant, deployment)
        if found is None:
            return ""
        models: dict[str, str] = found["models"]
        return models.get(self._slot(tenant), "")

    def sample_request(self, tenant: str, deployment: str | None = None) -> Mapping[str, Any]:
        live = deployment or self.endpoint(tenant).live
        _, columns, reference = self.baseline(tenant, live)
        return sample_of(columns, reference)

    def deployment_stats(
        self, tenant: str, deployment: str, since: datetime, until: datetime
    ) -> Stats:
        stats = self.gateway.stats(
            self.endpoint_name(tenant), deployment, since.timestamp(), until.timestamp()
        )
        return Stats(int(stats["requests"]), int(stats["errors"]), stats["p99_ms"])

    # --- drift -------------------------------------------------------------------------

    def baseline(self, tenant: str, deployment: str) -> tuple[str, list[str], np.ndarray]:
        model = self._model_of(tenant, deployment)
        name, version = model.split("/")
        registry = registry_of(self.layout, tenant, name)
        found = registry.version(name, version)
        with tempfile.TemporaryDirectory() as scratch:
            path = registry.client.download_artifacts(
                found.run_id, f"baseline/{BASELINE_FILE}", scratch
            )
            baseline = Baseline.load(Path(path))
        return model, baseline.columns, baseline.reference()

    def inference_data(
        self,
        tenant: str,
        deployment: str,
        features: Sequence[str],
        *,
        since: datetime,
        until: datetime,
    ) -> Iterator[np.ndarray]:
        if self.container is None:
            return iter(())
        endpoint = self.endpoint_name(tenant)
        return collected_rows(
            self.container,
            endpoint,
            deployment,
            features,
            since=since,
            until=until,
            tenant=tenant,  # a pool's tenants are measured apart
            owner=owner_of(self.spec, tenant),
        )

    def live_model(self, tenant: str, deployment: str) -> tuple[str, str]:
        name, _, version = self._model_of(tenant, deployment).partition("/")
        return name, version

    def labelled(
        self, tenant: str, deployment: str, *, since: datetime, until: datetime
    ) -> LabelledWindow:
        """The tenant's rows the gateway collected, joined to the labels it took."""
        if self.container is None:
            return LabelledWindow()
        return labelled_window(
            self.container,
            self.endpoint_name(tenant),
            deployment,
            tenant=tenant,
            owner=owner_of(self.spec, tenant),
            since=since,
            until=until,
            horizon=timedelta(hours=self.spec.quality.label_horizon_hours),
        )

    def usage(self, tenant: str, *, since: datetime, until: datetime) -> dict[str, Usage]:
        """What the tenants of ``tenant``'s endpoint took of it (the gateway's collected
        data: every row names its tenant and its share of the request's time)."""
        if self.container is None:
            return {}
        return endpoint_usage(
            self.container,
            self.endpoint_name(tenant),
            since=since,
            until=until,
            owner=owner_of(self.spec, tenant),
        )

    def request_retraining(self, tenant: str, reason: str) -> None:
        """A local training job (a thread): the new version is registered and announced."""
        from ml.retrain import retrain_tenant  # noqa: PLC0415

        stamp = self._tenant(tenant).stamp_key
        self.activity[stamp] = datetime.now(UTC)

        def job() -> None:
            try:
                retrain_tenant(self.spec, tenant, self.layout, self.layout.data_dir / "scratch")
            except Exception:
                logger.exception("retraining of %s failed", tenant)

        threading.Thread(target=job, name=f"retrain-{tenant}", daemon=True).start()

    # --- registry, compute, notifications ----------------------------------------------

    def model_facts(self, tenant: str, name: str, version: str) -> ModelFacts:
        registry = registry_of(self.layout, tenant, name)
        return MlflowModelFacts(registry.store.tracking_uri).model_facts(name, version)

    def crown(self, tenant: str, name: str, version: str) -> None:
        registry_of(self.layout, tenant, name).crown(name, version)

    def scale_compute(self, tenant: str, max_nodes: int) -> None:
        # No GPU cluster on one machine: the cap is recorded and shown by `mlops status`.
        self.compute_caps[self._tenant(tenant).stamp_key] = max_nodes

    def last_compute_activity(self, stamp: str) -> datetime | None:
        return self.activity.get(stamp)

    def refuse_scoring(self, tenant: str, until: datetime, reason: str) -> None:
        self.gateway.budget_stop(tenant, until)

    def admit_scoring(self, tenant: str) -> None:
        self.gateway.budget_stop(tenant, None)

    # --- cost ----------------------------------------------------------------------------

    def stamp_spend(self, stamp: str, now: datetime) -> Spend:
        """The embedded platform's bill (it has none of its own): the stamp's online
        endpoint runs its instance count for the whole budget period so far, at the spec's
        price per instance-hour of its type, as Azure bills provisioned instances."""
        owner = self.spec.stamp(stamp)
        start, _ = period_of(
            self.spec.budget_start(owner.budget, now.date()), owner.budget.time_grain, now
        )
        online = owner.endpoints.online
        if not online.enabled:
            return Spend(0.0, CURRENCY, start)
        price = self.spec.budget_policy.instance_hour_prices.get(online.instance_type)
        if price is None:  # tenancy.relations names it at parse time for a local stack
            raise ConfigError.single(
                "platform spec",
                "budget_policy.instance_hour_prices",
                f"no price for {online.instance_type} ({stamp}'s online instance type)",
            )
        began = datetime(start.year, start.month, start.day, tzinfo=UTC)
        hours = max(0.0, (now - began).total_seconds() / 3600)
        return Spend(price * online.instance_count * hours, CURRENCY, start)

    # --- what is deployed, for the policy audit ------------------------------------------

    #: The rules that judge what the embedded platform has: its serving plane (endpoints'
    #: traffic and mirror, deployments' probes and request settings). Workspaces, storage,
    #: networks and identities exist only in Azure.
    judged_rules: frozenset[str] | None = frozenset(
        {
            "endpoint-traffic-valid",
            "endpoint-mirror-traffic",
            "deployment-probes",
            "deployment-request-settings",
        }
    )

    #: What it has of the governed types: endpoints and deployments.
    inventoried_types: frozenset[str] | None = frozenset(
        {f"{ML}:OnlineEndpoint", f"{ML}:OnlineDeployment"}
    )

    def expected_state(self) -> Mapping[str, Any] | None:
        """No `pulumi up` made the embedded platform: there is no plan to drift from."""
        return None

    def live_resources(self) -> list[LiveResource]:
        """The gateway's endpoints and deployments as Azure ML would show them: under the
        workspace of the stamp that serves them, tagged with its owner."""
        found: list[LiveResource] = []
        for endpoint in self.gateway.endpoints():
            tenant = self.spec.tenant(sorted(endpoint["tenants"])[0])
            stamp_id, endpoints, pooled = self.spec.serving_of(tenant.id)
            owner = contracts.pool_tenant_tag(stamp_id) if pooled else stamp_id
            cost_center = self.spec.pool(stamp_id).cost_center if pooled else tenant.cost_center
            tags = {
                contracts.TAG_TENANT: owner,
                contracts.TAG_ENV: self.spec.environment.value,
                contracts.TAG_COST_CENTER: cost_center,
            }
            group = naming.resource_group(self.spec.prefix, self.spec.environment, tenant.stamp_key)
            workspace = naming.workspace(self.spec.environment, tenant.stamp_key)
            endpoint_id = (
                f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{group}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/{workspace}/onlineEndpoints/"
                f"{endpoint['name']}"
            )
            traffic = {"traffic": endpoint["traffic"], "mirrorTraffic": endpoint["mirror"]}
            found.append(_online(endpoint_id, "onlineendpoints", tags, traffic))
            timeout = endpoints.online.request_timeout_ms
            for name in endpoint["deployments"]:
                state = self.gateway.deployment(endpoint["name"], name)
                found.append(
                    _online(
                        f"{endpoint_id}/deployments/{name}",
                        "onlineendpoints/deployments",
                        tags,
                        _deployment_properties(state, timeout),
                    )
                )
        return found

    def notify(self, tenant: str, severity: str, message: str) -> None:
        """Logged, and appended to ``notifications.jsonl`` in the data directory: what the
        action group's e-mail would say in Azure, where `mlops demo` and people read it."""
        self.notifications.append((tenant, severity, message))
        logger.warning("[%s] %s: %s", severity, tenant, message)
        record = {
            "at": datetime.now(UTC).isoformat(),
            "tenant": tenant,
            "severity": severity,
            "message": message,
        }
        with self._notify_lock, (self.layout.data_dir / NOTIFICATIONS_FILE).open("a") as out:
            out.write(json.dumps(record) + "\n")


#: The embedded platform's resources live in no subscription; ids keep Azure's shape.
LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def _online(
    resource_id: str, kind: str, tags: Mapping[str, str], properties: Mapping[str, Any]
) -> LiveResource:
    return LiveResource(
        resource_id,
        f"Microsoft.MachineLearningServices/workspaces/{kind}",
        resource_id.rsplit("/", 1)[-1],
        {"tags": dict(tags), "properties": dict(properties)},
    )


def _deployment_properties(state: Mapping[str, Any], timeout_ms: int) -> dict[str, Any]:
    """What a deployment of the embedded platform has, in Azure ML's names: the probe its
    supervisor runs (none for a server registered by URL, which nothing here watches), the
    gateway's request timeout and its pending-request cap."""
    properties: dict[str, Any] = {
        "requestSettings": {"requestTimeout": f"PT{timeout_ms / 1000:g}S"}
    }
    if state.get("max_pending"):
        properties["requestSettings"]["maxConcurrentRequestsPerInstance"] = state["max_pending"]
    liveness = state.get("liveness")
    if liveness:
        probe = {
            "period": f"PT{liveness['period_seconds']:g}S",
            "timeout": f"PT{liveness['timeout_seconds']:g}S",
            "failureThreshold": liveness["failure_threshold"],
        }
        properties["livenessProbe"] = probe
        properties["readinessProbe"] = probe  # the gateway registers it only once healthy
    return properties
