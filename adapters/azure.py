"""The platform port on Azure: azure-ai-ml's MLClient for endpoints, deployments, models and
compute; Azure Monitor Logs for per-deployment request statistics.

One MLClient per stamp (its workspace and resource group follow the program's naming).
Traffic and mirror are written in one endpoint update, as the rollout asks. Every SDK call
goes through the clients' azure-core pipeline, which the tests replace with a fake transport
to assert the ARM requests themselves.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from datetime import date, datetime, timedelta
from functools import cache, cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    AmlCompute,
    DataCollector,
    DeploymentCollection,
    ManagedOnlineDeployment,
    Model,
)
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.monitor.query import LogsQueryStatus

from adapters.azure_arm import Arm
from adapters.azure_data import DataPlane
from adapters.azure_inventory import CONSUMPTION_API_VERSION, AzureInventory
from adapters.azure_monitor import ModelMonitors, MonitorTarget
from adapters.collected import collected_rows, endpoint_usage, labelled_window, owner_of
from automation.budgets import period_of
from automation.port import DeploymentStatus, Endpoint, Spend, Usage
from automation.rollout import Stats
from ml.baseline import Baseline, sample_of
from ml.model_folder import read_model_folder
from ml.quality import LabelledWindow
from policies.live import LiveResource
from policies.model_rules import (
    ChampionFacts,
    ModelFacts,
    approvals_from_tags,
    champion_on_same_rows,
    own_metrics,
    source_metrics,
)
from tenancy import contracts, naming
from tenancy.errors import DependencyError, InvalidInputError, NotFoundError
from tenancy.placement import place
from tenancy.spec import PlatformSpec, TenantSpec

logger = logging.getLogger("tenant_mlops.azure")
COMPUTE_NAME = "gpu-cluster"
#: Where the Function App package keeps the retraining job's code (infra/package.py).
PACKAGED_TRAINING_CODE = Path(__file__).resolve().parent.parent / contracts.TRAINING_CODE_DIR
_DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)$")
#: A model's files on a datastore, as a GET returns its path (short or long form:
#: ``azureml://[subscriptions/.../workspaces/<ws>/]datastores/<ds>/paths/<path>``).
_MODEL_FILES = re.compile(r"^azureml://(?:.*/)?datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)$")
#: azure-native 3.29's API Management API version (apimanagement.NamedValue).
APIM_API_VERSION = "2024-05-01"
_MODEL_ID = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")


def _green_collector(collects: bool, blue: DataCollector | None) -> DataCollector | None:
    """Green's data collector: both collections drift reads, on when the tenant's spec
    collects (as the first deployment's are), with blue's sampling settings.

    Whether collection is on is decided by the spec, not read back from blue: azure-ai-ml
    1.35 reads a collection as enabled only when the service spells the mode ``Enabled``
    (``DeploymentCollection._from_rest_object``) while it sends ``enabled`` itself, so a
    copy of blue's flag could switch collection off at every rollout. Blue's data assets
    are never copied: a GET returns them as ARM id strings, which the SDK then reads as
    assets (``value.data.name``: AttributeError, the review's W4); the service registers
    green's own."""
    if not collects:
        return None
    kept = (blue.collections or {}) if blue is not None else {}
    return DataCollector(
        collections={
            # Read as attributes the SDK may not set on a GET's collections.
            name: DeploymentCollection(
                enabled="true",
                sampling_rate=getattr(kept.get(name), "sampling_rate", None),
                client_id=getattr(kept.get(name), "client_id", None),
            )
            for name in contracts.COLLECTIONS
        },
        rolling_rate=getattr(blue, "rolling_rate", None),
        sampling_rate=getattr(blue, "sampling_rate", None),
        request_logging=getattr(blue, "request_logging", None),
    )


def _pool_models(tags: Mapping[str, str] | None) -> dict[str, str]:
    """{tenant: "<name>/<version>"} of a pool asset's tag (an empty map for other models)."""
    raw = (tags or {}).get(contracts.MODEL_TAG_POOL_MODELS)
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInputError(f"tag {contracts.MODEL_TAG_POOL_MODELS} is not JSON") from None
    if not isinstance(found, dict):
        raise InvalidInputError(f"tag {contracts.MODEL_TAG_POOL_MODELS} must map tenants to models")
    return {str(k): str(v) for k, v in found.items()}


#: Tags a promoted version does not carry over: which alias or stage it held, and who
#: approved it, belong to the source environment.
_NOT_PROMOTED = frozenset(
    {contracts.MODEL_TAG_ALIAS, contracts.MODEL_TAG_APPROVED_BY, contracts.MODEL_TAG_APPROVED_AS}
)


def _carried(tags: Mapping[str, str]) -> dict[str, float]:
    """The source run's metrics a promoted version carries (none: an empty map)."""
    found = source_metrics(tags)
    if found is None:
        raise InvalidInputError(
            f"tag {contracts.MODEL_TAG_SOURCE_METRICS} is not a JSON map of metrics"
        )
    return found


def model_reference(model: str) -> tuple[str, str]:
    """(name, version) of a deployment's model: an ARM id or ``azureml:<name>:<version>``."""
    found = _MODEL_ID.search(model)
    if found:
        return found["name"], found["version"]
    parts = model.removeprefix("azureml:").split(":")
    if len(parts) == 2:
        return parts[0], parts[1]
    raise InvalidInputError(f"cannot read a model name and version from {model!r}")


#: Requests, failures and p99 latency of one deployment over a window, from the endpoint's
#: traffic log (diagnostic settings send it to Log Analytics). A failure is a server error,
#: and also what Azure ML answers for the model: 424 when the model's container fails or
#: answers an error, 408 when it does not answer in time
#: (https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints#http-status-codes).
#: The embedded gateway counts the same codes (local/gateway.py, Metrics.stats).
STATS_QUERY = """
AmlOnlineEndpointTrafficLog
| where EndpointName == '{endpoint}' and DeploymentName == '{deployment}'
| summarize requests = count(),
            errors = countif(toint(ResponseCode) >= 500 or toint(ResponseCode) in (408, 424)),
            p99 = percentile(todouble(TotalDurationMs), 99)
"""


class AzurePlatform:
    def __init__(
        self,
        spec: PlatformSpec,
        credential: TokenCredential,
        subscription_id: str,
        *,
        logs: Any = None,
        logs_workspace_id: str = "",
        client_options: Mapping[str, Any] | None = None,
        container_factory: Callable[[str, str, str], Any] | None = None,
        training_code: Path = PACKAGED_TRAINING_CODE,
        platform_account: str | None = None,
    ) -> None:
        self.spec = spec
        # The platform's storage account: where `pulumi up` leaves the expected state.
        self.platform_account = platform_account
        self.training_code = training_code
        self.credential = credential
        self.subscription_id = subscription_id
        self.logs = logs  # an azure.monitor.query LogsQueryClient
        self.logs_workspace_id = logs_workspace_id
        self.client_options = dict(client_options or {})
        self._client = cache(self._new_client)
        self.container_factory = container_factory or self._default_container

    @classmethod
    def from_settings(cls, settings: Any) -> AzurePlatform:
        import os  # noqa: PLC0415

        from azure.identity import DefaultAzureCredential  # noqa: PLC0415
        from azure.monitor.query import LogsQueryClient  # noqa: PLC0415

        credential = DefaultAzureCredential()
        return cls(
            settings.spec,
            credential,
            os.environ[contracts.SETTING_SUBSCRIPTION],
            logs=LogsQueryClient(credential),
            logs_workspace_id=os.environ.get(contracts.SETTING_LOGS_WORKSPACE, ""),
            platform_account=settings.storage_account,
        )

    # --- where a tenant lives ------------------------------------------------------------

    def _tenant(self, tenant: str) -> TenantSpec:
        return self.spec.tenant(tenant)

    def _stamp(self, tenant: str) -> tuple[str, str]:
        """(stamp key, stamp id: the tenant or its pool)."""
        spec = self._tenant(tenant)
        return spec.stamp_key, spec.id if spec.tier == "dedicated" else str(spec.pool)

    def _subscription_of(self, stamp_key: str) -> str:
        """The subscription a stamp is placed in (the spec's ``target_of``), else the
        automation's own."""
        return self.spec.target_of(stamp_key).subscription_id or self.subscription_id

    def _new_client(self, stamp_key: str) -> MLClient:
        spec = self.spec
        return MLClient(
            self.credential,
            self._subscription_of(stamp_key),
            naming.resource_group(spec.prefix, spec.environment, stamp_key),
            naming.workspace(spec.environment, stamp_key),
            show_progress=False,  # no progress bars in the Functions log (code uploads)
            **self.client_options,
        )

    def _workspace_id(self, tenant: str) -> str:
        stamp_key = self._stamp(tenant)[0]
        spec = self.spec
        group = naming.resource_group(spec.prefix, spec.environment, stamp_key)
        workspace = naming.workspace(spec.environment, stamp_key)
        return (
            f"/subscriptions/{self._subscription_of(stamp_key)}/resourceGroups/{group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{workspace}"
        )

    def client(self, tenant: str) -> MLClient:
        return self._client(self._stamp(tenant)[0])

    def endpoint_name(self, tenant: str) -> str:
        return self.spec.online_endpoint_name(tenant)

    # --- serving -------------------------------------------------------------------------

    @cached_property
    def _data_plane(self) -> DataPlane:
        return DataPlane(self.credential, self.client_options.get("transport"))

    def _pooled(self, tenant: str) -> bool:
        return self._tenant(tenant).tier == "pooled"

    def endpoint(self, tenant: str) -> Endpoint:
        found = self.client(tenant).online_endpoints.get(self.endpoint_name(tenant))
        return Endpoint(
            tenant, found.name, dict(found.traffic or {}), dict(found.mirror_traffic or {})
        )

    def create_deployment(self, tenant: str, name: str, model: str) -> None:
        """Green is blue's twin (environment and its variables, code, size, probes,
        collection) with the new model; creation runs on in Azure, deployment_status reports
        it. A pooled green serves an asset that holds every pool tenant's model: the live
        one's, with this tenant's replaced (a managed deployment serves one model asset)."""
        client = self.client(tenant)
        endpoint = self.endpoint(tenant)
        blue = client.online_deployments.get(endpoint.live, endpoint.name)
        model_name, version = model.split("/")
        asset = f"azureml:{model_name}:{version}"
        tags = {**(blue.tags or {}), "model": model}
        if self._pooled(tenant):
            live = endpoint.live if endpoint.serving else None
            asset, carried = self._pool_asset(tenant, live, model)
            tags["model"] = asset.removeprefix("azureml:")
            tags[contracts.MODEL_TAG_POOL_MODELS] = json.dumps(carried, sort_keys=True)
        green = ManagedOnlineDeployment(
            name=name,
            endpoint_name=endpoint.name,
            model=asset,
            environment=blue.environment,
            code_configuration=blue.code_configuration,
            # Its workers (WORKER_COUNT) among them: a green without them would serve on one.
            environment_variables=dict(blue.environment_variables or {}),
            instance_type=blue.instance_type,
            instance_count=blue.instance_count,
            request_settings=blue.request_settings,
            liveness_probe=blue.liveness_probe,
            readiness_probe=blue.readiness_probe,
            app_insights_enabled=blue.app_insights_enabled,
            egress_public_network_access=blue.egress_public_network_access,
            data_collector=_green_collector(
                self.spec.serving_of(tenant)[1].online.data_collection, blue.data_collector
            ),
            tags=tags,
        )
        client.online_deployments.begin_create_or_update(green)

    def deployment_status(self, tenant: str, name: str) -> tuple[DeploymentStatus, str]:
        try:
            found = self.client(tenant).online_deployments.get(name, self.endpoint_name(tenant))
        except ResourceNotFoundError:
            return "missing", ""
        state = (found.provisioning_state or "").lower()
        if state == "succeeded":
            return "ready", ""
        if state in ("failed", "canceled"):
            return "failed", f"provisioning {state}"
        return "creating", ""

    def set_traffic(
        self, tenant: str, traffic: Mapping[str, int], mirror: Mapping[str, int]
    ) -> None:
        """Live and mirrored traffic in one endpoint update (one PUT)."""
        client = self.client(tenant)
        endpoint = client.online_endpoints.get(self.endpoint_name(tenant))
        endpoint.traffic = {name: int(share) for name, share in traffic.items()}
        endpoint.mirror_traffic = {name: int(share) for name, share in mirror.items() if share}
        client.online_endpoints.begin_create_or_update(endpoint).result()

    def delete_deployment(self, tenant: str, name: str) -> None:
        try:
            self.client(tenant).online_deployments.begin_delete(name, self.endpoint_name(tenant))
        except ResourceNotFoundError:
            return  # gone already: deleting is done

    def invoke(self, tenant: str, deployment: str, body: Mapping[str, Any]) -> int:
        """Through the endpoint's scoring URI with the deployment header (and, pooled, the
        tenant header APIM sets for tenants): the status of the answer."""
        found = self.client(tenant).online_endpoints.get(self.endpoint_name(tenant))
        tenant_header = tenant if self._pooled(tenant) else None
        return self._data_plane.score(str(found.scoring_uri), body, deployment, tenant_header)

    def sample_request(self, tenant: str, deployment: str | None = None) -> Mapping[str, Any]:
        """A request built from the baseline of the tenant's model on ``deployment``."""
        name = deployment or self.endpoint(tenant).live
        _, columns, reference = self.baseline(tenant, name)
        return sample_of(columns, reference)

    def serves_tenant(self, tenant: str, deployment: str) -> bool:
        """Whether ``deployment`` carries a model of ``tenant``: any deployment of a
        dedicated endpoint; in a pool, one whose asset holds the tenant's model."""
        return self._tenant_model(tenant, deployment) is not None

    def deployment_stats(
        self, tenant: str, deployment: str, since: datetime, until: datetime
    ) -> Stats:
        if self.logs is None:
            return Stats(0, 0, None)  # no data is inconclusive, never a pass
        query = STATS_QUERY.format(endpoint=self.endpoint_name(tenant), deployment=deployment)
        answer = self.logs.query_workspace(self.logs_workspace_id, query, timespan=(since, until))
        if getattr(answer, "status", None) == LogsQueryStatus.PARTIAL:
            # A partial answer (LogsQueryPartialResult has no .tables, W15) may miss errors:
            # judging green on it could pass a failing deployment, so it is inconclusive.
            logger.warning(
                "partial traffic-log answer for %s: %s", deployment, answer.partial_error
            )
            return Stats(0, 0, None)
        rows = answer.tables[0].rows if answer.tables else []
        if not rows:
            return Stats(0, 0, None)
        requests, errors, p99 = rows[0]
        return Stats(int(requests or 0), int(errors or 0), float(p99) if p99 is not None else None)

    # --- models on deployments -----------------------------------------------------------

    def _tenant_model(self, tenant: str, deployment: str) -> tuple[str, str] | None:
        """(name, version) of the tenant's model on ``deployment``, None if it has none."""
        client = self.client(tenant)
        try:
            found = client.online_deployments.get(deployment, self.endpoint_name(tenant))
        except ResourceNotFoundError:
            return None
        name, version = model_reference(str(found.model))
        if not self._pooled(tenant):
            return name, version
        carried = _pool_models(client.models.get(name, version).tags)
        ref = carried.get(tenant)
        return (ref.split("/")[0], ref.split("/")[1]) if ref else None

    def _pool_asset(self, tenant: str, live: str | None, model: str) -> tuple[str, dict[str, str]]:
        """Register (once per content) the pool asset for ``live``'s tenant models with
        ``model`` for ``tenant``: each model's files copied under one folder per tenant,
        as score.py loads a pooled deployment. Tenants no longer in the pool are dropped."""
        client = self.client(tenant)
        pool = str(self._tenant(tenant).pool)
        members = {t.id for t in self.spec.tenants_in_pool(pool)}
        carried: dict[str, str] = {}
        if live is not None:
            name, version = model_reference(
                str(client.online_deployments.get(live, self.endpoint_name(tenant)).model)
            )
            with suppress(ResourceNotFoundError):  # blue's model is gone: carry nothing
                carried = _pool_models(client.models.get(name, version).tags)
        carried = {t: m for t, m in carried.items() if t in members}
        carried[tenant] = model
        # The version is the content's digest: a retried event re-registers the same asset.
        version = hashlib.sha256(json.dumps(carried, sort_keys=True).encode()).hexdigest()[:12]
        bundle = contracts.pool_bundle_model(pool)
        store = client.datastores.get_default()
        prefix = f"pool-models/{pool}/{version}"
        target = self._container(tenant, store.name)
        for member, ref in sorted(carried.items()):
            member_name, member_version = ref.split("/")
            for relative, content in self._model_files(tenant, member_name, member_version):
                target.upload_blob(f"{prefix}/{member}/{relative}", content, overwrite=True)
        client.models.create_or_update(
            Model(
                name=bundle,
                version=version,
                type="custom_model",
                path=f"azureml://datastores/{store.name}/paths/{prefix}/",
                description=f"the models of pool {pool}'s tenants, one folder per tenant",
                tags={
                    contracts.MODEL_TAG_POOL_MODELS: json.dumps(carried, sort_keys=True),
                    "pool": pool,
                },
            )
        )
        return f"azureml:{bundle}:{version}", carried

    def _model_files(self, tenant: str, name: str, version: str) -> Iterator[tuple[str, bytes]]:
        """(path below the model's folder, content) of every file of a workspace model."""
        model = self.client(tenant).models.get(name, version)
        match = _MODEL_FILES.match(str(model.path or ""))
        if not match:
            raise InvalidInputError(
                f"model {name}/{version} is not on a workspace datastore ({model.path!r})"
            )
        container = self._container(tenant, match["datastore"])
        prefix = match["path"].rstrip("/") + "/"
        for blob in container.list_blobs(name_starts_with=prefix):
            relative = str(blob.name)[len(prefix) :]
            if relative and not relative.endswith("/"):
                yield relative, container.download_blob(blob.name).readall()

    # --- drift ---------------------------------------------------------------------------------

    def _container(self, tenant: str, datastore: str | None = None) -> Any:
        client = self.client(tenant)
        store = client.datastores.get(datastore) if datastore else client.datastores.get_default()
        return self.container_factory(store.account_name, store.container_name, store.endpoint)

    def _default_container(self, account: str, container: str, endpoint: str) -> Any:
        from azure.storage.blob import ContainerClient  # noqa: PLC0415

        url = f"https://{account}.blob.{endpoint or 'core.windows.net'}"
        return ContainerClient(url, container, credential=self.credential)

    def _live_baseline(self, tenant: str, deployment: str) -> tuple[str, str, re.Match[str]]:
        """("<name>/<version>", its baseline's URI and that URI's datastore and path) of the
        tenant's model on ``deployment``, from its ``baseline_dataset`` tag
        (``azureml://datastores/<datastore>/paths/<path>``)."""
        found = self._tenant_model(tenant, deployment)
        if found is None:
            raise NotFoundError(f"deployment {deployment} serves no model of tenant {tenant}")
        name, version = found
        model = self.client(tenant).models.get(name, version)
        uri = (model.tags or {}).get(contracts.MODEL_TAG_BASELINE, "")
        match = _DATASTORE_URI.match(uri)
        if not match:
            raise InvalidInputError(f"model {name}/{version} has no datastore baseline ({uri!r})")
        return f"{name}/{version}", uri, match

    def baseline(self, tenant: str, deployment: str) -> tuple[str, list[str], np.ndarray]:
        """The live model's baseline (:meth:`_live_baseline`)."""
        model, _, match = self._live_baseline(tenant, deployment)
        blob = self._container(tenant, match["datastore"]).download_blob(match["path"]).readall()
        baseline = Baseline.load(io.BytesIO(blob))
        return model, baseline.columns, baseline.reference()

    def ensure_model_monitor(self, tenant: str, deployment: str) -> str:
        """The tenant's Azure ML model monitor on ``deployment`` (adapters.azure_monitor):
        "created", "updated" or "unchanged"."""
        model, uri, match = self._live_baseline(tenant, deployment)
        target = MonitorTarget(
            tenant=tenant,
            workspace_id=self._workspace_id(tenant),
            endpoint=self.endpoint_name(tenant),
            deployment=deployment,
            model=model,
            baseline_uri=uri,
            datastore=match["datastore"],
            collector_datastore=self.client(tenant).datastores.get_default().name,
        )
        return ModelMonitors(self.spec, self._arm, self._container).ensure(target)

    def inference_data(
        self,
        tenant: str,
        deployment: str,
        features: Sequence[str],
        *,
        since: datetime,
        until: datetime,
    ) -> Iterator[np.ndarray]:
        container = self._container(tenant)
        endpoint = self.endpoint_name(tenant)
        yield from collected_rows(
            container,
            endpoint,
            deployment,
            features,
            since=since,
            until=until,
            tenant=tenant,  # a pool's tenants are measured apart
            owner=owner_of(self.spec, tenant),
        )

    def live_model(self, tenant: str, deployment: str) -> tuple[str, str]:
        found = self._tenant_model(tenant, deployment)
        if found is None:
            raise NotFoundError(f"deployment {deployment} serves no model of tenant {tenant}")
        return found

    def labelled(
        self, tenant: str, deployment: str, *, since: datetime, until: datetime
    ) -> LabelledWindow:
        """The tenant's rows score.py collected on the datastore, joined to the labels the
        gateway wrote beside them (a pooled row names its tenant in ``tenant_id``)."""
        return labelled_window(
            self._container(tenant),
            self.endpoint_name(tenant),
            deployment,
            tenant=tenant,
            owner=owner_of(self.spec, tenant),
            since=since,
            until=until,
            horizon=timedelta(hours=self.spec.quality.label_horizon_hours),
        )

    def usage(self, tenant: str, *, since: datetime, until: datetime) -> dict[str, Usage]:
        """What the tenants of ``tenant``'s endpoint took of it (score.py's collected data
        on the datastore: every row names its tenant and its share of the request's time)."""
        return endpoint_usage(
            self._container(tenant),
            self.endpoint_name(tenant),
            since=since,
            until=until,
            owner=owner_of(self.spec, tenant),
        )

    def request_retraining(
        self, tenant: str, reason: str, tags: Mapping[str, str] | None = None
    ) -> None:
        """A command job on the stamp's GPU cluster running ``python -m ml.retrain``: it
        registers the new version through the workspace's MLflow endpoint, and Event Grid's
        ModelRegistered brings it back through the gate (W11).

        - The code is the package's ``retraining/`` folder. azure-ai-ml uploads it through
          the workspace's pending-upload API and registers it as a workspace code asset
          named by its content hash. The same code is therefore uploaded once, and nothing
          has to be published before the first retraining.
          (https://learn.microsoft.com/rest/api/azureml/code-versions/create-or-get-start-pending-upload)
        - The job gets the spec the automation runs with, as the app gets it (an app setting
          there, an environment variable here): it has no stack files.
        - ``tags`` (a promotion's: the source's champion and metrics) go to the job, which
          registers the version with them, so that Event Grid's event carries them to the
          gate.
        """
        from azure.ai.ml import command  # noqa: PLC0415

        if not (self.training_code / contracts.TRAINING_ENTRY.replace(".", "/")).with_suffix(
            ".py"
        ).is_file():
            raise DependencyError(
                f"the retraining code is missing ({self.training_code}): the Function App "
                "package carries it (make package)"
            )
        registry = naming.ml_registry(
            self.spec.prefix, self.spec.environment, self.spec.installation
        )
        env_name, env_version = self.spec.serving.training_environment.split(":")
        job = command(
            command=f"python -m {contracts.TRAINING_ENTRY} --tenant ${{{{inputs.tenant}}}}",
            code=str(self.training_code),
            environment=f"azureml://registries/{registry}/environments/{env_name}/versions/{env_version}",
            environment_variables={
                contracts.SETTING_PLATFORM_SPEC: json.dumps(self.spec.model_dump(mode="json")),
                **({contracts.SETTING_MODEL_TAGS: json.dumps(dict(tags))} if tags else {}),
            },
            compute=COMPUTE_NAME,
            inputs={"tenant": tenant},
            display_name=f"retrain-{tenant}",
            experiment_name=f"{tenant}-retraining",
            tags={
                "tenant": tenant,
                "reason": reason[:250],
                "requested_by": "tenant-mlops automation",
                **{
                    k: tags[k]
                    for k in (contracts.MODEL_TAG_PROMOTED_FROM, contracts.MODEL_TAG_PROMOTION)
                    if tags and k in tags
                },
            },
        )
        self.client(tenant).jobs.create_or_update(job)

    # --- registry, compute, notifications ------------------------------------------------------

    def model_facts(self, tenant: str, name: str, version: str) -> ModelFacts:
        """Tags, the model folder's own facts, the training run's metrics (the workspace's
        MLflow API), the champion (the model the tenant's endpoint serves now) and the
        approvals the tags record."""
        client = self.client(tenant)
        try:
            model = client.models.get(name, version)
        except ResourceNotFoundError:
            raise NotFoundError.for_item("model version", f"{name}/{version}") from None
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            for relative, content in self._model_files(tenant, name, str(version)):
                path = folder.joinpath(*PurePosixPath(relative).parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            artifacts = next(folder.rglob("MLmodel"), None)
            facts = read_model_folder(artifacts.parent) if artifacts else {}
        tags = dict(model.tags or {})
        # A promoted version's run stays in the source's workspace: its metrics travel as a tag.
        metrics = self._run_metrics(tenant, getattr(model, "job_name", None)) or _carried(tags)
        return ModelFacts(
            name=name,
            version=str(version),
            tags=tags,
            metrics=own_metrics(metrics),
            champion=self._champion(tenant, name, str(version), metrics),
            approvals=approvals_from_tags(tags),
            **facts,
        )

    def _run_metrics(self, tenant: str, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        return self._data_plane.run_metrics(self._tracking_uri(self._stamp(tenant)[0]), run_id)

    def _tracking_uri(self, stamp_key: str) -> str:
        client = self._client(stamp_key)
        uri = client.workspaces.get(client.workspace_name).mlflow_tracking_uri
        if not uri:
            raise DependencyError(f"workspace {client.workspace_name} has no MLflow tracking URI")
        return str(uri)

    def _champion(
        self, tenant: str, name: str, version: str, candidate: Mapping[str, float]
    ) -> ChampionFacts | None:
        """The model of the same name live for the tenant, with its metrics on the
        candidate's rows when the candidate's run recorded them."""
        endpoint = self.endpoint(tenant)
        live = self._tenant_model(tenant, endpoint.live) if endpoint.serving else None
        if live is None or live[0] != name or live[1] == version:
            return None
        same_rows = champion_on_same_rows(candidate)
        if same_rows:
            return ChampionFacts(live[1], same_rows)
        champion = self.client(tenant).models.get(*live)
        return ChampionFacts(
            live[1], self._run_metrics(tenant, getattr(champion, "job_name", None))
        )

    def crown(self, tenant: str, name: str, version: str) -> None:
        """The champion and challenger as tags of the versions (``alias``), the champion
        at stage Production: the former champion goes back to Development and the challenger
        tag is cleared. Only versions whose tags change are written (each a PUT of the
        version, the fields Azure ML lets change on one: tags, description, stage; "Tags can
        be added, removed, and updated":
        https://learn.microsoft.com/rest/api/azureml/model-versions/create-or-update, and
        https://learn.microsoft.com/powershell/module/az.machinelearningservices/update-azmlworkspacemodelversion
        updates -Stage and -Tag of a version in place)."""
        client = self.client(tenant)
        for found in client.models.list(name=name):
            tags = dict(found.tags or {})
            alias = tags.get(contracts.MODEL_TAG_ALIAS)
            if str(found.version) == str(version):
                if alias != contracts.ALIAS_CHAMPION or found.stage != contracts.STAGE_CHAMPION:
                    tags[contracts.MODEL_TAG_ALIAS] = contracts.ALIAS_CHAMPION
                    self._retag(client, found, tags, contracts.STAGE_CHAMPION)
            elif alias in (contracts.ALIAS_CHAMPION, contracts.ALIAS_CHALLENGER):
                del tags[contracts.MODEL_TAG_ALIAS]
                was_champion = alias == contracts.ALIAS_CHAMPION
                stage = contracts.STAGE_DEMOTED if was_champion else found.stage
                self._retag(client, found, tags, stage)

    @staticmethod
    def _retag(client: MLClient, model: Model, tags: dict[str, str], stage: str | None) -> None:
        model.tags = tags
        model.stage = stage
        client.models.create_or_update(model)

    # --- promotion between environments -------------------------------------------------------

    def champion_version(self, tenant: str, name: str) -> str | None:
        """The version of the tenant's model ``name`` tagged champion (crown's tag)."""
        try:
            versions = list(self.client(tenant).models.list(name=name))
        except ResourceNotFoundError:
            return None
        crowned = [
            str(v.version)
            for v in versions
            if (v.tags or {}).get(contracts.MODEL_TAG_ALIAS) == contracts.ALIAS_CHAMPION
        ]
        return crowned[0] if crowned else None

    def workspace_asset_id(self, tenant: str, name: str, version: str) -> str:
        """How a registry names the workspace's version when it is shared:
        ``azureml://locations/<region>/workspaces/<workspace guid>/models/<name>/versions/<v>``
        (what azure-ai-ml's ``ModelOperations.share`` builds)."""
        client = self.client(tenant)
        workspace = client.workspaces.get(client.workspace_name)
        return (
            f"azureml://locations/{workspace.location}/workspaces/{workspace._workspace_id}"
            f"/models/{name}/versions/{version}"
        )

    def promotion_record(
        self, tenant: str, name: str, version: str
    ) -> tuple[dict[str, str], dict[str, float], bytes | None]:
        """What travels with a promoted version beside its files: its tags, its training
        run's metrics (the run stays in this workspace) and its baseline's content."""
        client = self.client(tenant)
        try:
            model = client.models.get(name, version)
        except ResourceNotFoundError:
            raise NotFoundError.for_item("model version", f"{name}/{version}") from None
        tags = dict(model.tags or {})
        metrics = self._run_metrics(tenant, getattr(model, "job_name", None)) or _carried(tags)
        match = _DATASTORE_URI.match(tags.get(contracts.MODEL_TAG_BASELINE, ""))
        baseline = None
        if match:
            container = self._container(tenant, match["datastore"])
            baseline = container.download_blob(match["path"]).readall()
        return tags, metrics, baseline

    def register_promoted(
        self,
        tenant: str,
        name: str,
        files: Mapping[str, bytes],
        baseline: bytes | None,
        tags: Mapping[str, str],
    ) -> str:
        """Register a promoted version in the tenant's workspace: its files and baseline on
        the workspace's datastore, the next version number. The registration is what
        raises the workspace's ModelRegistered event, which brings the version to this
        environment's automation (gate, rollout under its approval rules). A version
        promoted from the same source already is returned, not registered twice."""
        client = self.client(tenant)
        origin = tags[contracts.MODEL_TAG_PROMOTED_FROM]
        try:
            existing = list(client.models.list(name=name))
        except ResourceNotFoundError:
            existing = []
        for found in existing:
            if (found.tags or {}).get(contracts.MODEL_TAG_PROMOTED_FROM) == origin:
                return str(found.version)
        version = str(max((int(str(v.version)) for v in existing), default=0) + 1)
        store = client.datastores.get_default()
        container = self._container(tenant, store.name)
        prefix = f"promoted/{name}/{version}"
        for relative, content in sorted(files.items()):
            container.upload_blob(f"{prefix}/model/{relative}", content, overwrite=True)
        kept = {k: v for k, v in tags.items() if k not in _NOT_PROMOTED}
        if baseline is not None:
            path = f"{prefix}/baseline/{Path(tags[contracts.MODEL_TAG_BASELINE]).name}"
            container.upload_blob(path, baseline, overwrite=True)
            kept[contracts.MODEL_TAG_BASELINE] = f"azureml://datastores/{store.name}/paths/{path}"
        client.models.create_or_update(
            Model(
                name=name,
                version=version,
                type="mlflow_model",
                path=f"azureml://datastores/{store.name}/paths/{prefix}/model/",
                description=f"promoted from {origin}",
                tags=kept,
            )
        )
        return version

    def scale_compute(self, tenant: str, max_nodes: int) -> None:
        client = self.client(tenant)
        cluster = client.compute.get(COMPUTE_NAME)
        if isinstance(cluster, AmlCompute):
            cluster.max_instances = max_nodes
            cluster.min_instances = 0
            client.compute.begin_update(cluster)

    # --- budgets ---------------------------------------------------------------------------

    @cached_property
    def _arm(self) -> Arm:
        return Arm(
            self.credential,
            user_agent="tenant-mlops-automation",
            transport=self.client_options.get("transport"),
        )

    def _group_path(self, scope: str) -> str:
        group = naming.resource_group(self.spec.prefix, self.spec.environment, scope)
        return f"/subscriptions/{self._subscription_of(scope)}/resourceGroups/{group}"

    def stamp_spend(self, stamp: str, now: datetime) -> Spend:
        """The stamp budget's ``currentSpend``: the actual cost of its resource group in
        the budget's current period (https://learn.microsoft.com/rest/api/consumption/budgets/get).
        The automation reads it with Monitoring Reader on the group (``*/read``)."""
        name = f"budget-{stamp}-budget"  # infra.stamp names it so
        path = f"{self._group_path(stamp)}/providers/Microsoft.Consumption/budgets/{name}"
        budget = self._arm.get(path, CONSUMPTION_API_VERSION, f"budget {name}")
        properties = budget.get("properties") or {}
        try:
            anchor = date.fromisoformat(str(properties["timePeriod"]["startDate"])[:10])
            grain = str(properties.get("timeGrain", "Monthly"))
        except (KeyError, TypeError, ValueError):
            raise DependencyError(f"budget {name} has no start date in {properties}") from None
        spent = properties.get("currentSpend") or {}
        return Spend(
            float(spent.get("amount") or 0.0),
            str(spent.get("unit") or "USD"),
            period_of(anchor, grain, now)[0],
        )

    def _budget_stop(self, tenant: str, value: str) -> None:
        """Set the named value the tenant's product policy reads (``infra.gateway``): a PUT
        with ``If-Match: *`` replaces it whatever its version
        (https://learn.microsoft.com/rest/api/apimanagement/named-value/create-or-update);
        API Management substitutes named values into policies where they are used
        (https://learn.microsoft.com/azure/api-management/api-management-howto-properties)."""
        spec = self.spec
        service = naming.api_management(spec.prefix, spec.environment, spec.installation)
        named_value = contracts.budget_stop_named_value(tenant)
        path = (
            f"{self._group_path(naming.PLATFORM_SCOPE)}/providers/Microsoft.ApiManagement/service/"
            f"{service}/namedValues/{named_value}"
        )
        body = {"properties": {"displayName": named_value, "value": value, "secret": False}}
        what = f"the budget stop of {tenant} at API Management"
        self._arm.put(path, APIM_API_VERSION, body, what, headers={"If-Match": "*"})

    def refuse_scoring(self, tenant: str, until: datetime, reason: str) -> None:
        self._budget_stop(tenant, until.date().isoformat())

    def admit_scoring(self, tenant: str) -> None:
        self._budget_stop(tenant, contracts.BUDGET_STOP_NONE)

    def last_compute_activity(self, stamp: str) -> datetime | None:
        """When a job last ran on the stamp's GPU cluster (None: never)."""
        client = self._client(stamp)
        if list(client.compute.list_nodes(COMPUTE_NAME)):
            return datetime.now().astimezone()  # nodes are up right now
        started = [
            job.creation_context.created_at
            for job in client.jobs.list()
            if getattr(job, "compute", None) == COMPUTE_NAME and job.creation_context
        ]
        return max(started, default=None)

    #: Every live rule judges the inventory, of every governed type.
    judged_rules: frozenset[str] | None = None
    inventoried_types: frozenset[str] | None = None

    def live_resources(self) -> list[LiveResource]:
        """What is deployed, for the policy audit (Resource Graph, the Azure ML and
        Consumption APIs: adapters.azure_inventory)."""
        # Every subscription the stack places stamps in, its own first.
        subscriptions = list(dict.fromkeys([self.subscription_id, *self.spec.subscriptions()]))
        inventory = AzureInventory(self.credential, subscriptions, **self.client_options)
        return inventory.inventory(self.spec.prefix, self.spec.environment)

    def expected_state(self) -> Mapping[str, Any] | None:
        """What the last `pulumi up` set (``policies.plan_drift``), from the platform
        account; None before one has written it (the audit then judges rules only). With
        shard stacks, each shard's document (``expected-state.<target>.json``) joins the
        shared stack's."""
        if not self.platform_account:
            return None
        container = self.container_factory(
            self.platform_account, contracts.CONTAINER_PLATFORM_STATE, ""
        )
        document = self._state_document(container, contracts.BLOB_EXPECTED_STATE)
        if document is None:
            logger.warning("no expected state yet: the audit compares nothing with the plan")
            return None
        if self.spec.placement.shard_stacks:
            # The spec is resolved (every stamp pinned): placing it again moves nothing.
            for target in place(self.spec).targets_in_use():
                shard = self._state_document(container, contracts.expected_state_blob(target))
                if shard is None:
                    logger.warning("shard %s has left no expected state yet", target)
                    continue
                document["resources"] = [*document["resources"], *shard.get("resources", [])]
        return document

    @staticmethod
    def _state_document(container: Any, blob: str) -> dict[str, Any] | None:
        try:
            loaded = json.loads(container.download_blob(blob).readall())
        except ResourceNotFoundError:
            return None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("resources", []), list):
            return None
        loaded.setdefault("resources", [])
        return loaded

    def notify(self, tenant: str, severity: str, message: str) -> None:
        """A notification line in Application Insights; the program's log search alert
        rules parse it and e-mail the stack's alert contacts (infra/alerting.py)."""
        log = logger.error if severity == "critical" else logger.warning
        log("%s", contracts.notification_line(severity, tenant, message))
