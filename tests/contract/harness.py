"""The two platforms the contract scenarios run on, behind one small harness each.

- ``LocalHarness``: the embedded platform's real parts (MLflow registries in sqlite, the
  gateway, deployment processes under azureml-inference-server-http, the gateway's collector
  writing to Azurite) and the local adapter.
- ``AzureHarness``: the Azure adapter making its real SDK calls (azure-ai-ml, azure-core,
  azure-monitor-query, azure-storage-blob) over ``FakeAzure``; the model versions it
  registers are the same MLflow models, pushed as an Azure ML training job leaves them.
  The fake runs each deployed model with score.py and onnxruntime, as its container does,
  and score.py's collector writes where Azure ML's data collector does.

A harness does only what the outside world does: register a model version, let time pass,
send tenants' requests, and break a deployment. The automation under test is the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import requests
from azure.ai.ml._artifacts import _blob_storage_helper
from azure.core.rest import HttpRequest
from azure.monitor.query import LogsQueryClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from adapters.azure import AzurePlatform
from adapters.local import COLLECTED_CONTAINER, GatewayAdmin, LocalPlatform
from automation.port import PlatformPort
from automation.registry_events import RegistryEvent
from automation.store import MemoryStore
from infra.package import training_code_files
from local.azurite import start_azurite
from local.collector import BlobCollector
from local.deployments import DeploymentManager
from local.gateway import Gateway, GroundTruth, TenantLimits
from local.keys import KeyRing
from local.models import ModelFetcher
from local.serve import BackgroundServer
from ml.registry import BASELINE_FILE, RegistryLayout, registry_of
from tenancy import contracts, naming, request_ids
from tenancy.errors import BudgetExceededError
from tenancy.spec import PlatformSpec
from tests.adapters.fake_arm import FakeCredential
from tests.conftest import ROOT
from tests.contract.fake_azure import FakeAzure, iter_model_files

SUBSCRIPTION = "00000000-0000-4000-8000-0000000c0417"
#: The installation's request-id key, as the gateway (or API Management) holds it.
REQUEST_ID_KEY = b"contract-request-id-key-0123456789abcdef"
LOGS_WORKSPACE = "11111111-2222-4333-8444-555555555555"
BOOTSTRAP = "azureml://registries/reg-tmlops/models/tenant-mlops-baseline/versions/1"


class Clock:
    """The automation's, the gateway's and the fake's time: real time plus what the
    scenario skipped."""

    def __init__(self) -> None:
        self.skipped = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skipped

    def epoch(self) -> float:
        return self.now().timestamp()

    def skip(self, seconds: float) -> None:
        self.skipped += timedelta(seconds=seconds)


class Harness(Protocol):
    name: str
    spec: PlatformSpec
    port: PlatformPort
    clock: Clock
    #: The statuses this platform can make a deployment answer (the embedded gateway maps a
    #: model's 5xx to 424, as Azure ML does: it never passes a 500 on).
    failures: frozenset[int]

    def publish(self, tenant: str) -> RegistryEvent:
        """A new version of the tenant's model in its registry, and the registry's event."""
        ...

    def settle(self) -> None:
        """Time passes for the platform: deployments being created finish."""
        ...

    def traffic(self, tenant: str, count: int) -> list[int]:
        """``count`` of the tenant's own requests through its endpoint; their statuses."""
        ...

    def score(self, tenant: str, body: Mapping[str, Any]) -> int:
        """One of the tenant's requests through its endpoint; its status."""
        ...

    def collected(self) -> None:
        """What was scored so far is in the collected data drift reads."""
        ...

    def break_deployment(self, tenant: str, deployment: str, status: int) -> None:
        """From now on, the tenant's model on ``deployment`` answers ``status``."""
        ...

    def heal(self) -> None:
        """Broken deployments answer again (what is stopped resumes)."""
        ...

    def champion(self, tenant: str, name: str) -> str | None:
        """The version the registry names the champion of the tenant's model ``name``."""
        ...

    def scored(self, tenant: str, body: Mapping[str, Any]) -> tuple[int, str, Any]:
        """One of the tenant's requests: status, its request id, the answer."""
        ...

    def send_labels(self, tenant: str, labels: list[tuple[str, Any]]) -> dict[str, Any]:
        """The tenant's labels for request ids, through the gateway's feedback operation."""
        ...

    def bill(self, stamp: str, amount: float) -> None:
        """The stamp has cost ``amount`` so far in its budget's current period."""
        ...

    def answer(self, tenant: str) -> tuple[int, Any]:
        """One of the tenant's requests through the gateway: status and body."""
        ...


def _copy_version(layout: RegistryLayout, tenant: str, name: str, version: str) -> str:
    """Register the artifacts and run of ``version`` again as a new version (what a
    retraining that reproduces its model registers): fast, and a real registration."""
    registry = registry_of(layout, tenant, name)
    found = registry.version(name, version)
    created = registry.client.create_model_version(
        name, found.source, run_id=found.run_id, tags=dict(found.tags)
    )
    return str(created.version)


# --- the embedded platform ----------------------------------------------------------------


class LocalHarness:
    name = "local"
    failures = frozenset({408, 424})

    def __init__(
        self, spec: PlatformSpec, data_dir: Path, registered: dict[str, Any], clock: Clock
    ) -> None:
        self.spec, self.clock, self.data_dir = spec, clock, data_dir
        self.layout = RegistryLayout(spec, data_dir)
        ring = KeyRing(MemoryStore())
        self.keys = {t.id: ring.issue(t.id)["primary"] for t in spec.tenants}
        # Collected data goes where `mlops up` puts it: Azurite, in the collector's layout.
        self.azurite = start_azurite(data_dir / "azurite")
        storage = BlobServiceClient.from_connection_string(self.azurite.connection_string)
        container = storage.create_container(COLLECTED_CONTAINER)
        self.collector = BlobCollector(container, flush_seconds=3600).start()
        self.gateway = Gateway(
            ring,
            {t.id: TenantLimits(600_000, 1 << 20) for t in spec.tenants},
            "admin",
            collector=self.collector.submit,
            seed=5,
            clock=clock.epoch,
            fetch=ModelFetcher(self.layout),
            ground_truth=GroundTruth(
                REQUEST_ID_KEY,
                timedelta(hours=spec.quality.label_horizon_hours),
                spec.quality.max_labels_per_request,
                container.upload_blob,
            ),
        )
        self.manager = DeploymentManager(
            data_dir / "deployments", self.gateway.register, self.gateway.unregister
        )
        self.gateway.deployer = self.manager
        self.server = BackgroundServer(self.gateway.app).start()
        admin = GatewayAdmin(self.server.url, "admin")
        # Its own copy of the spec: the bill is the spec's price table (:meth:`bill`).
        self.port = LocalPlatform(spec.model_copy(deep=True), self.layout, admin, container)
        # The endpoints `mlops up` creates, serving nothing until a first model arrives; a
        # short timeout so that a stopped model shows as 408 quickly.
        for endpoint, tenants, pooled in _endpoints(spec):
            admin.put_endpoint(endpoint, tenants, pooled, 0.5)
        self.versions = {t: (r.model.name, r.model.version) for t, r in registered.items()}
        self._stopped: list[int] = []

    def publish(self, tenant: str) -> RegistryEvent:
        name, version = self.versions[tenant]
        new = _copy_version(self.layout, tenant, name, version)
        self.versions[tenant] = (name, new)
        tags = dict(registry_of(self.layout, tenant, name).version(name, new).tags)
        return RegistryEvent(f"local-{tenant}-{name}-{new}", "mlflow", name, new, tags)

    def settle(self) -> None:
        self.manager.wait()

    def traffic(self, tenant: str, count: int) -> list[int]:
        body = self.port.sample_request(tenant, self.port.endpoint(tenant).live)
        return [self.score(tenant, body) for _ in range(count)]

    def score(self, tenant: str, body: Mapping[str, Any]) -> int:
        url = f"{self.server.url}/{self.port.endpoint_name(tenant)}/score"
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"}
        return requests.post(url, json=body, headers=headers, timeout=30).status_code

    def collected(self) -> None:
        self.collector.flush()

    def break_deployment(self, tenant: str, deployment: str, status: int) -> None:
        running = self.manager.get(self.port.endpoint_name(tenant), deployment)
        assert running is not None and running.server is not None, deployment
        if status == 408:  # alive but silent: every request times out
            service = running.server.service_pid
            assert service is not None, deployment
            os.kill(service, signal.SIGSTOP)
            self._stopped.append(service)
        else:  # gone: the gateway answers 424, as Azure ML does for a failed model
            running.server.kill()

    def heal(self) -> None:
        for pid in self._stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                continue
        self._stopped.clear()

    def champion(self, tenant: str, name: str) -> str | None:
        found = registry_of(self.layout, tenant, name).alias(name, contracts.ALIAS_CHAMPION)
        return str(found.version) if found is not None else None

    def scored(self, tenant: str, body: Mapping[str, Any]) -> tuple[int, str, Any]:
        url = f"{self.server.url}/{self.port.endpoint_name(tenant)}/score"
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"}
        answer = requests.post(url, json=body, headers=headers, timeout=30)
        return answer.status_code, answer.headers.get("x-request-id", ""), answer.json()

    def send_labels(self, tenant: str, labels: list[tuple[str, Any]]) -> dict[str, Any]:
        url = f"{self.server.url}/{self.port.endpoint_name(tenant)}/feedback"
        body = {"labels": [{"request_id": r, "label": label} for r, label in labels]}
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"}
        answer = requests.post(url, json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def bill(self, stamp: str, amount: float) -> None:
        """The embedded platform bills a stamp's instance-hours at the spec's price since
        the period began: the price that makes them cost ``amount`` now."""
        spec = self.port.spec
        online = spec.stamp(stamp).endpoints.online
        spent = self.port.stamp_spend(stamp, self.clock.now()).amount
        prices = spec.budget_policy.instance_hour_prices
        assert spent > 0, "no hour of the period has passed"
        prices[online.instance_type] *= amount / spent

    def answer(self, tenant: str) -> tuple[int, Any]:
        body = self.port.sample_request(tenant)
        url = f"{self.server.url}/{self.port.endpoint_name(tenant)}/score"
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"}
        answer = requests.post(url, json=body, headers=headers, timeout=30)
        return answer.status_code, answer.json()

    def close(self) -> None:
        self.heal()
        self.manager.stop_all()
        self.server.stop()
        self.collector.stop()
        self.azurite.stop()


def _training_code(folder: Path) -> Path:
    """The retraining/ folder as the Function App package holds it."""
    code = folder / contracts.TRAINING_CODE_DIR
    for arcname, path in training_code_files(ROOT).items():
        (code / arcname).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, code / arcname)
    return code


def _endpoints(spec: PlatformSpec) -> Iterator[tuple[str, list[str], bool]]:
    seen: set[str] = set()
    for tenant in spec.tenants:
        endpoint = spec.online_endpoint_name(tenant.id)
        if endpoint in seen:
            continue
        seen.add(endpoint)
        if tenant.tier == "pooled":
            yield endpoint, [t.id for t in spec.tenants_in_pool(str(tenant.pool))], True
        else:
            yield endpoint, [tenant.id], False


# --- Azure, through the fake ---------------------------------------------------------------


class AzureHarness:
    name = "azure"
    failures = frozenset({500, 503, 408, 424})

    def __init__(
        self,
        spec: PlatformSpec,
        data_dir: Path,
        registered: dict[str, Any],
        clock: Clock,
        fake: FakeAzure | None = None,
    ) -> None:
        """``fake``: the Azure another harness runs on (two environments, one Azure)."""
        self.spec, self.clock = spec, clock
        self.layout = RegistryLayout(spec, data_dir)
        self.fake = fake or FakeAzure(SUBSCRIPTION, clock.now, data_dir / "azure-endpoints")
        self.workspaces: dict[str, str] = {}
        for tenant in spec.tenants:
            key = tenant.stamp_key
            if key not in self.workspaces:
                group = naming.resource_group(spec.prefix, spec.environment, key)
                workspace = naming.workspace(spec.environment, key)
                self.workspaces[key] = self.fake.add_workspace(group, workspace, f"st{key[-12:]}")
        for endpoint, tenants, _ in _endpoints(spec):
            self.fake.add_endpoint(self._workspace(tenants[0]), endpoint, BOOTSTRAP)
        # What `pulumi up` leaves at API Management: each pooled tenant's budget stop, off.
        for tenant in spec.tenants:
            if tenant.tier == "pooled":
                self.fake._put(self._budget_stop(tenant.id), {
                    "properties": {"displayName": contracts.budget_stop_named_value(tenant.id),
                                   "value": contracts.BUDGET_STOP_NONE, "secret": False}
                })  # fmt: skip
        self.port = AzurePlatform(
            spec,
            FakeCredential(),  # type: ignore[arg-type]
            SUBSCRIPTION,
            logs=LogsQueryClient(FakeCredential(), transport=self.fake),  # type: ignore[arg-type]
            logs_workspace_id=LOGS_WORKSPACE,
            client_options={"transport": self.fake},
            container_factory=self._container,
            training_code=_training_code(data_dir / "package"),
        )
        # azure-ai-ml uploads code with storage clients of its own, built from the SAS URL
        # the service returned: the same clients, over the same fake.
        fake = self.fake

        class SdkContainerClient(ContainerClient):
            @classmethod
            def from_container_url(cls, container_url: str, **kwargs: Any) -> Any:
                return ContainerClient.from_container_url(container_url, transport=fake, **kwargs)

        self._sdk_storage = [
            mock.patch.object(
                _blob_storage_helper,
                "BlobServiceClient",
                partial(BlobServiceClient, transport=fake),
            ),
            mock.patch.object(_blob_storage_helper, "ContainerClient", SdkContainerClient),
        ]
        for patch in self._sdk_storage:
            patch.start()
        self.versions = {t: (r.model.name, r.model.version) for t, r in registered.items()}
        self._run = 0

    def _workspace(self, tenant: str) -> str:
        return self.workspaces[self.spec.tenant(tenant).stamp_key]

    def _group(self, scope: str) -> str:
        group = naming.resource_group(self.spec.prefix, self.spec.environment, scope)
        return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}"

    def _budget_stop(self, tenant: str) -> str:
        spec = self.spec
        service = naming.api_management(spec.prefix, spec.environment, spec.installation)
        return (
            f"{self._group(naming.PLATFORM_SCOPE)}/providers/Microsoft.ApiManagement/service/"
            f"{service}/namedValues/{contracts.budget_stop_named_value(tenant)}"
        )

    def bill(self, stamp: str, amount: float) -> None:
        """Cost Management's figure on the stamp's budget (``currentSpend``), as the
        Consumption API returns it; the budget started in January, monthly."""
        owner = self.spec.stamp(stamp)
        name = f"budget-{stamp}-budget"
        self.fake._put(f"{self._group(stamp)}/providers/Microsoft.Consumption/budgets/{name}", {
            "name": name,
            "properties": {
                "category": "Cost", "amount": owner.budget.amount, "timeGrain": "Monthly",
                "timePeriod": {"startDate": "2026-01-01T00:00:00Z"},
                "currentSpend": {"amount": amount, "unit": "EUR"},
            },
        })  # fmt: skip

    def answer(self, tenant: str) -> tuple[int, Any]:
        return self._post(tenant, self.port.sample_request(tenant), {})

    def _container(self, account: str, container: str, endpoint: str) -> ContainerClient:
        return ContainerClient(
            f"https://{account}.blob.core.windows.net",
            container,
            credential=FakeCredential(),  # type: ignore[arg-type]
            transport=self.fake,
        )

    def publish(self, tenant: str) -> RegistryEvent:
        """A version as `python -m ml.retrain` registers it from an Azure ML job: the MLflow
        model's files on the workspace datastore, its tags (the baseline's on the datastore)
        and the job's run with the evaluation's metrics."""
        name, version = self.versions[tenant]
        new = _copy_version(self.layout, tenant, name, version)
        self.versions[tenant] = (name, new)
        registry = registry_of(self.layout, tenant, name)
        found = registry.version(name, new)
        self._run += 1
        run_id = f"job-{tenant}-{self._run}"
        workspace = self._workspace(tenant)
        store = self.fake.resource(f"{workspace}/datastores/workspaceblobstore")
        assert store is not None
        account = store["properties"]["accountName"]
        container = store["properties"]["containerName"]
        with tempfile.TemporaryDirectory() as scratch:
            folder = registry.download(name, new, Path(scratch) / "model")
            files = dict(iter_model_files(folder))
            baseline = registry.client.download_artifacts(
                found.run_id, f"baseline/{BASELINE_FILE}", scratch
            )
            baseline_path = f"baselines/{name}/{new}/{BASELINE_FILE}"
            self.fake.put_blob(account, container, baseline_path, Path(baseline).read_bytes())
        tags = {
            **dict(found.tags),
            contracts.MODEL_TAG_TRAINING_RUN: run_id,
            contracts.MODEL_TAG_BASELINE: f"azureml://datastores/workspaceblobstore/paths/{baseline_path}",
        }
        self.fake.add_model(
            workspace, name, new, files, tags, run_id, registry.run_metrics(found.run_id)
        )
        return RegistryEvent(f"eg-{tenant}-{name}-{new}", "eventgrid", name, new, tags)

    def settle(self) -> None:
        self.fake.settle()

    def traffic(self, tenant: str, count: int) -> list[int]:
        body = self.port.sample_request(tenant)
        return [self.score(tenant, body) for _ in range(count)]

    def score(self, tenant: str, body: Mapping[str, Any]) -> int:
        return self._post(tenant, body, {})[0]

    def _post(
        self, tenant: str, body: Mapping[str, Any], extra: dict[str, str]
    ) -> tuple[int, Any]:
        """A tenant's request as APIM forwards it (the tenant header set, for a pool's
        tenants as for a dedicated one); a pooled tenant whose budget stop is set is
        refused as its product policy refuses it (infra.gateway), before the endpoint."""
        if self.spec.tenant(tenant).tier == "pooled":
            stop = self.fake.resource(self._budget_stop(tenant))
            assert stop is not None, "pulumi up creates every pooled tenant's stop"
            until = stop["properties"]["value"]
            if until != contracts.BUDGET_STOP_NONE:
                refused = BudgetExceededError.for_tenant(tenant, until)
                return 403, {"error": {"code": refused.code, "message": refused.message}}
        endpoint = self.fake.resource(
            f"{self._workspace(tenant)}/onlineEndpoints/{self.spec.online_endpoint_name(tenant)}"
        )
        assert endpoint is not None
        headers = {"Authorization": "Bearer apim-token", "x-tenant-id": tenant, **extra}
        request = HttpRequest(
            "POST", endpoint["properties"]["scoringUri"], json=dict(body), headers=headers
        )
        response = self.fake.send(request)
        try:
            answer = response.json()
        except ValueError:
            answer = response.text()
        return int(response.status_code), answer

    def collected(self) -> None:
        """Azure ML's collector writes as requests are scored: nothing is held back."""

    def break_deployment(self, tenant: str, deployment: str, status: int) -> None:
        found = self.port._tenant_model(tenant, deployment)
        assert found is not None, deployment
        self.fake.model_answers[":".join(found)] = (status, "<html>upstream failure</html>")

    def heal(self) -> None:
        self.fake.model_answers.clear()

    def champion(self, tenant: str, name: str) -> str | None:
        """What Azure's registry says: the version tagged champion (at stage Production)."""
        crowned = [
            (r["id"].rsplit("/", 1)[-1], r["properties"].get("stage"))
            for key, r in self.fake.arm.items()
            if f"/models/{name}/versions/" in key
            and key.startswith(tuple(w.lower() for w in self.workspaces.values()))
            and (r["properties"].get("tags") or {}).get(contracts.MODEL_TAG_ALIAS)
            == contracts.ALIAS_CHAMPION
        ]
        assert len(crowned) <= 1, crowned  # one champion at most
        assert all(stage == contracts.STAGE_CHAMPION for _, stage in crowned), crowned
        return crowned[0][0] if crowned else None

    def scored(self, tenant: str, body: Mapping[str, Any]) -> tuple[int, str, Any]:
        """As API Management forwards it: the tenant named, a request id signed for it
        (the product policy's HMAC, infra.gateway), sent on and answered."""
        request_id = request_ids.issue(REQUEST_ID_KEY, tenant, self.clock.now())
        status, answer = self._post(tenant, body, {"x-request-id": request_id})
        return status, request_id, answer

    def send_labels(self, tenant: str, labels: list[tuple[str, Any]]) -> dict[str, Any]:
        """What the product policy's feedback operation does (infra.gateway): each id judged
        for the tenant within the horizon, the accepted labels written as one blob of JSON
        lines to the tenant's datastore, with the tenant and the time."""
        now = self.clock.now()
        horizon = timedelta(hours=self.spec.quality.label_horizon_hours)
        accepted = {
            rid: label for rid, label in labels
            if request_ids.labellable(REQUEST_ID_KEY, tenant, rid, now, horizon)
        }  # fmt: skip
        unknown = [rid for rid, _ in labels if rid not in accepted]
        if accepted:
            lines = [
                json.dumps({"correlationid": rid, "tenant": tenant, "label": label,
                            "time": now.isoformat()})
                for rid, label in accepted.items()
            ]  # fmt: skip
            account, container = self.fake._datastore(self._workspace(tenant))
            name = f"{contracts.labels_prefix(self.port.endpoint_name(tenant), now)}x.jsonl"
            self.fake.put_blob(account, container, name, "\n".join(lines).encode())
        return {"accepted": len(accepted), "unknown": unknown}

    def close(self) -> None:
        for patch in self._sdk_storage:
            patch.stop()
        self.fake.settle()
