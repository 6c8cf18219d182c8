"""A stateful fake of the Azure surface the Azure adapter reaches, as one azure-core
transport: Azure Resource Manager for Azure ML (workspaces, online endpoints and
deployments, models, datastores, compute, jobs), the workspace's MLflow API, blob storage,
online endpoint scoring and Log Analytics queries.

It answers as the services document, not as our code expects; each answer names its source:

- ARM shapes: the REST specification's examples (Azure/azure-rest-api-specs,
  ``specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/
  stable/2024-04-01/examples/``): ``OnlineDeployment/ManagedOnlineDeployment/createOrUpdate.json``
  answers 201 with ``provisioningState: Creating`` and the operation runs on (an
  ``Azure-AsyncOperation`` header, polled); ``OnlineEndpoint/createOrUpdate.json`` likewise;
  ``OnlineDeployment/delete.json`` answers 202.
- Traffic rules (https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints):
  live traffic sums to 0 or 100 and names existing deployments; mirroring goes to at most
  one deployment, at most 50 %, and never to one that takes live traffic; a deployment
  with traffic cannot be deleted (409 here).
- A GET of a deployment returns its data collector's data as ARM id strings (the review's
  W4), as the service fills them in.
- Scoring (https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints#http-status-codes):
  ``azureml-model-deployment`` routes to one deployment, 404 when it does not exist; a
  model's failure answers 424, a timeout 408; an error body need not be JSON. Every
  request is written to the traffic log, as AmlOnlineEndpointTrafficLog holds it.
- Azure ML registries (azure-ai-ml 1.35's ``_registry_utils``, which drives them): the
  discovery service names the registry's subscription, group and regional front end;
  ``/import`` copies a workspace model (by its ``azureml://locations/.../workspaces/<guid>``
  asset id) into the registry's own storage; ``/datarefs`` answers a SAS for its files.
- Log Analytics (https://learn.microsoft.com/rest/api/loganalytics/dataaccess/query/execute):
  tables of columns and rows; a partial answer carries ``error`` beside its tables.

Every request is recorded (method, URL, body), so a scenario asserts what Azure received.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import requests
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from ml.scoring import score as score_contract
from tenancy import contracts
from tests.adapters.fake_arm import InMemoryTransport

API = "2024-04-01"
LOCATION = "westeurope"
ARM = "management.azure.com"
_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
    r"microsoft\.machinelearningservices/workspaces/(?P<ws>[^/]+)(?P<rest>/.*)?$"
)
_OPERATION = re.compile(r"/mfeoperationsstatus/(?P<id>[^/]+)$")
#: The registries' regional front end (the discovery's primaryRegionResourceProviderUri).
REGISTRY_HOST = f"cert-{LOCATION}.experiments.azureml.net"
_REGISTRY_PATH = re.compile(
    r"^/mferp/managementfrontend/subscriptions/[^/]+/resourcegroups/[^/]+/providers/"
    r"microsoft\.machinelearningservices/registries/(?P<registry>[^/]+)(?P<rest>/.*)$"
)
_DISCOVERY = re.compile(r"^/registrymanagement/v1\.0/registries/(?P<registry>[^/]+)/discovery$")
_WORKSPACE_ASSET = re.compile(
    r"^azureml://locations/[^/]+/workspaces/(?P<guid>[^/]+)/models/(?P<name>[^/]+)"
    r"/versions/(?P<version>[^/]+)$"
)
_QUERY_FILTER = re.compile(
    r"EndpointName == '(?P<endpoint>[^']+)' and DeploymentName == '(?P<dep>[^']+)'"
)


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    body: Any

    @property
    def path(self) -> str:
        return urlparse(self.url).path


@dataclass(frozen=True)
class LoggedRequest:
    """One row of AmlOnlineEndpointTrafficLog."""

    at: datetime
    endpoint: str
    deployment: str
    status: int
    duration_ms: float


class DatastoreCollector:
    """What Azure ML's data collector does with what score.py hands its ``Collector``
    (azureml-ai-monitoring): each DataFrame becomes one JSON line in the workspace's default
    blob datastore under ``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/
    <mm>/<dd>/<hh>/``, rows as objects keyed by column in ``data``, and the outputs keep the
    inputs' ``correlationid`` (the schema of "Collected data" in
    https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data)."""

    def __init__(self, fake: FakeAzure, store: tuple[str, str], deployment: str, name: str) -> None:
        """``deployment`` as "<endpoint>/<deployment>", ``name`` the collection's."""
        self.fake, self.store, self.collection = fake, store, name
        self.endpoint, _, self.deployment = deployment.partition("/")

    def collect(self, frame: Any, context: Any = None) -> str:
        """``context``: a correlation context (its ``get_id()``), the id an earlier collect
        returned, or none (a new id), as the collector takes them."""
        given = context.get_id() if hasattr(context, "get_id") else context
        correlation = str(given or uuid.uuid4())
        now = self.fake.clock()
        record = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "type": f"azureml.inference.{self.collection}",
            "datacontenttype": "application/json",
            "time": now.isoformat(),
            "data": json.loads(frame.to_json(orient="records")),
            "correlationid": correlation,
            "collectdatatype": "pandas.core.frame.DataFrame",
        }
        folder = contracts.collector_prefix(self.endpoint, self.deployment, self.collection, now)
        name = f"{folder}{uuid.uuid4().hex}.jsonl"
        self.fake.put_blob(*self.store, name, json.dumps(record).encode() + b"\n")
        return correlation


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class FakeAzure(InMemoryTransport):
    def __init__(self, subscription: str, clock: Callable[[], datetime], scratch: Path) -> None:
        self.subscription = subscription
        self.clock = clock
        #: Where deployed models are unpacked to be run by score.py and onnxruntime, as the
        #: deployment's container runs them.
        self.scratch = scratch
        self._services: dict[str, Any] = {}
        self.arm: dict[str, dict[str, Any]] = {}
        self.blobs: dict[tuple[str, str, str], bytes] = {}
        self.blob_metadata: dict[tuple[str, str, str], dict[str, str]] = {}
        self.runs: dict[str, dict[str, float]] = {}
        #: Azure ML registries: name -> (resource group, storage account, container) and
        #: their model versions ((registry, name, version) -> the asset as the front end shows it).
        self.registries: dict[str, tuple[str, str, str]] = {}
        self.registry_models: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.registry_environments: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.traffic_log: list[LoggedRequest] = []
        self.calls: list[Call] = []
        self._operations: dict[str, dict[str, Any]] = {}
        #: What a model answers when scored ("name:version" -> status, optional body).
        self.model_answers: dict[str, tuple[int, str]] = {}
        #: Models whose deployments fail to provision ("name:version").
        self.unloadable: set[str] = set()
        self.partial_logs = False
        self._random = random.Random(7)  # noqa: S311 - traffic routing, not secrets
        self._lock = threading.RLock()

    # --- seeding (what `pulumi up` and the training jobs leave behind) ---------------------

    def workspace_path(self, group: str, workspace: str) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{workspace}"
        )

    def add_workspace(self, group: str, workspace: str, account: str) -> str:
        path = self.workspace_path(group, workspace)
        self._put(path, {
            "name": workspace,
            "location": LOCATION,
            "properties": {
                "discoveryUrl": f"https://{LOCATION}.api.azureml.ms/discovery",
                "mlFlowTrackingUri": f"azureml://{LOCATION}.api.azureml.ms/mlflow/v1.0{path}",
                "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_URL, path)),
                "provisioningState": "Succeeded",
            },
        })  # fmt: skip
        self._put(f"{path}/datastores/workspaceblobstore", {
            "name": "workspaceblobstore",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": account,
                "containerName": f"azureml-blobstore-{workspace}",
                "endpoint": "core.windows.net",
                "protocol": "https",
                "isDefault": True,
                "credentials": {"credentialsType": "None"},
                "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
            },
        })  # fmt: skip
        self._put(f"{path}/computes/gpu-cluster", {
            "name": "gpu-cluster",
            "location": LOCATION,
            "properties": {
                "computeType": "AmlCompute",
                "provisioningState": "Succeeded",
                "properties": {
                    "vmSize": "Standard_NC4as_T4_v3",
                    "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0},
                },
            },
        })  # fmt: skip
        return path

    def add_endpoint(self, workspace: str, name: str, bootstrap_model: str) -> None:
        """The endpoint `pulumi up` creates (no traffic) and its first deployment, ``blue``,
        serving the bootstrap model until the automation replaces it."""
        path = f"{workspace}/onlineEndpoints/{name}"
        self._put(path, {
            "name": name,
            "location": LOCATION,
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "authMode": "AADToken",
                "scoringUri": f"https://{name}.{LOCATION}.inference.ml.azure.com/score",
                "traffic": {},
                "mirrorTraffic": {},
                "provisioningState": "Succeeded",
            },
        })  # fmt: skip
        self._put(f"{path}/deployments/blue", {
            "name": "blue",
            "location": LOCATION,
            "sku": {"name": "Default", "capacity": 1},
            "tags": {"tenant-id": name},
            "properties": {
                "endpointComputeType": "Managed",
                "provisioningState": "Succeeded",
                "model": bootstrap_model,
                "environmentId": f"{workspace}/environments/scoring/versions/1",
                "codeConfiguration": {
                    "codeId": f"{workspace}/codes/score/versions/1",
                    "scoringScript": "score.py",
                },
                "instanceType": "Standard_DS3_v2",
                # As `pulumi up` sets them: a worker per vCPU of a DS3_v2, as many requests.
                "environmentVariables": {"WORKER_COUNT": "4"},
                "scaleSettings": {"scaleType": "Default"},
                "requestSettings": {
                    "requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 4
                },
                "appInsightsEnabled": True,
                "dataCollector": {
                    "collections": {
                        name: {"dataCollectionMode": "Enabled",
                               "dataId": f"{workspace}/data/{name}-blue-{name}/versions/1"}
                        for name in ("model_inputs", "model_outputs")
                    },
                },
            },
        })  # fmt: skip

    def add_model(  # noqa: PLR0917 - what one registration holds
        self,
        workspace: str,
        name: str,
        version: str,
        files: dict[str, bytes],
        tags: dict[str, str],
        run_id: str,
        metrics: dict[str, float],
    ) -> None:
        """A model version as an MLflow registration from a training job leaves it: files on
        the workspace datastore, tags, the job's run with its metrics."""
        store = self.arm[f"{workspace}/datastores/workspaceblobstore".lower()]["properties"]
        prefix = f"ExperimentRun/dcid.{run_id}/model"
        for relative, content in files.items():
            self.blobs[(store["accountName"], store["containerName"], f"{prefix}/{relative}")] = (
                content
            )
        self._put(f"{workspace}/models/{name}/versions/{version}", {
            "name": version,
            "properties": {
                "modelType": "mlflow_model",
                "modelUri": f"azureml://{workspace.strip('/')}/datastores/workspaceblobstore/paths/{prefix}",
                "jobName": run_id,
                "tags": dict(tags),
                "flavors": {"onnx": {"data": {"onnx_version": "1.17"}}},
            },
        })  # fmt: skip
        self.runs[run_id] = dict(metrics)

    def add_registry(self, group: str, name: str) -> None:
        """An environment's Azure ML registry, with the storage account it creates."""
        account = "mlr" + hashlib.sha256(name.encode()).hexdigest()[:16]
        self.registries[name.lower()] = (group, account, "registry-assets")

    def put_blob(self, account: str, container: str, name: str, content: bytes) -> None:
        self.blobs[(account, container, name)] = content

    def settle(self) -> None:
        """Time passes: operations in progress finish (deployments of an unloadable model
        fail, as a container that never gets ready does)."""
        with self._lock:
            for operation in self._operations.values():
                if operation["status"] != "InProgress":
                    continue
                resource = self.arm.get(operation["target"])
                failed = False
                if resource is not None and "/deployments/" in operation["target"]:
                    failed = self._model_key(resource) in self.unloadable
                    resource["properties"]["provisioningState"] = (
                        "Failed" if failed else "Succeeded"
                    )
                operation["status"] = "Failed" if failed else "Succeeded"

    # --- reading state -----------------------------------------------------------------------

    def resource(self, path: str) -> dict[str, Any] | None:
        return self.arm.get(path.lower())

    def writes(self, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method != "GET" and re.search(pattern, c.path, re.I)]

    # --- the transport -------------------------------------------------------------------------

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = self._answer_request(request)
        if not kwargs.get("stream", False):
            response.read()  # as azure-core's requests transport does for a non-stream call
        return response

    def _answer_request(self, request: Any) -> Any:  # noqa: PLR0911 - a router
        url = urlparse(request.url)
        content = getattr(request, "content", None)
        body: Any = None
        if content:
            try:
                body = json.loads(content)
            except (TypeError, ValueError, UnicodeDecodeError):
                body = content
        with self._lock:
            self.calls.append(Call(request.method, request.url, body))
            host = url.netloc.lower()
            if host == ARM:
                return self._arm(request, url, body)
            if host.endswith(".blob.core.windows.net"):
                return self._blob(request, url, content)
            if host.endswith(".inference.ml.azure.com"):
                return self._score(request, url, body)
            if host == "api.loganalytics.io":
                return self._logs(request, url, body)
            if host.endswith(".api.azureml.ms") and _DISCOVERY.match(url.path):
                return self._discovery(request, url)
            if host.endswith(".api.azureml.ms"):
                return self._mlflow(request, url)
            if host == REGISTRY_HOST:
                return self._registry(request, url, body)
        return self._json(request, 404, _error("HostNotFound", host))

    # --- ARM -----------------------------------------------------------------------------------

    def _put(self, path: str, resource: dict[str, Any]) -> dict[str, Any]:
        stored = {**resource, "id": path}
        stored.setdefault("properties", {})
        self.arm[path.lower()] = stored
        return stored

    def _arm(self, request: Any, url: Any, body: Any) -> Any:  # noqa: PLR0911 - a router
        path = url.path.rstrip("/").lower()
        operation = _OPERATION.search(path)
        if operation:
            found = self._operations.get(operation["id"])
            if found is None:
                return self._json(request, 404, _error("NotFound", path))
            return self._json(request, 200, {"status": found["status"]}, {"Retry-After": "1"})
        method = request.method
        if method == "GET":
            return self._arm_get(request, path, url)
        if method == "PUT":
            return self._arm_put(request, url.path.rstrip("/"), body)
        if method == "DELETE":
            return self._arm_delete(request, path)
        if method == "POST" and path.endswith("/listnodes"):
            return self._json(request, 200, {"nodes": [], "nextLink": None})
        if method == "POST" and path.endswith("/startpendingupload"):
            return self._pending_upload(request, path)
        if method == "POST" and path.endswith("/token"):
            return self._json(request, 200, {"accessToken": "scoring-token", "tokenType": "Bearer"})
        return self._json(request, 405, _error("MethodNotAllowed", f"{method} {path}"))

    def _codes_with_hash(self, request: Any, path: str, content_hash: str) -> Any:
        """Code Versions - List with ``hash``: "return CodeVersion assets with specified
        content hash value, regardless of name" (the REST reference). This is how a code
        folder already uploaded is found again."""
        workspace = path.split("/codes/", maxsplit=1)[0]
        same = [
            self._shown(r) for key, r in sorted(self.arm.items())
            if re.fullmatch(rf"{re.escape(workspace)}/codes/[^/]+/versions/[^/]+", key)
            and r["properties"].get("properties", {}).get("hash_sha256") == content_hash
        ]  # fmt: skip
        return self._json(request, 200, {"value": same})

    def _pending_upload(self, request: Any, path: str) -> Any:
        """A code version's temporary blob container in the workspace's storage, with a
        container SAS the service signs (REST: Code Versions - Create Or Get Start Pending
        Upload). azure-ai-ml opens the SAS URL as a container (``from_container_url``) and
        uploads the folder to its root; the container's name here is the fake's choice."""
        workspace = path.split("/codes/", maxsplit=1)[0]
        store = self.arm.get(f"{workspace}/datastores/workspaceblobstore")
        if store is None:
            return self._json(request, 404, _error("ResourceNotFound", workspace))
        account = store["properties"]["accountName"]
        upload = uuid.uuid4().hex
        blob = f"https://{account}.blob.core.windows.net/{upload}"
        return self._json(request, 200, {
            "blobReferenceForConsumption": {
                "blobUri": blob,
                "storageAccountArmId": f"/storageAccounts/{account}",
                "credential": {
                    "credentialType": "SAS",
                    "sasUri": f"{blob}?sv=2021-10-04&sr=c&sp=rcwl&sig=signed-by-the-service",
                },
            },
            "pendingUploadId": upload,
            "pendingUploadType": "TemporaryBlobReference",
        })  # fmt: skip

    def _arm_get(self, request: Any, path: str, url: Any) -> Any:
        content_hash = parse_qs(url.query).get("hash")
        if content_hash and re.search(r"/codes/[^/]+/versions$", path):
            return self._codes_with_hash(request, path, content_hash[0])
        found = self.arm.get(path)
        if found is not None:
            return self._json(request, 200, self._shown(found))
        children = [
            self._shown(r) for key, r in sorted(self.arm.items())
            if key.startswith(path + "/") and "/" not in key[len(path) + 1 :]
        ]  # fmt: skip
        if path.endswith("/datastores") and parse_qs(url.query).get("isDefault") == ["true"]:
            children = [c for c in children if c["properties"].get("isDefault")]
        if children or path.endswith(("/jobs", "/deployments", "/datastores", "/versions")):
            return self._json(request, 200, {"value": children})
        return self._json(request, 404, _error("ResourceNotFound", f"{path} was not found"))

    @staticmethod
    def _shown(resource: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(resource))  # a copy: callers never edit the state

    def _arm_put(self, request: Any, path: str, body: Any) -> Any:
        body = body if isinstance(body, dict) else {}
        lower = path.lower()
        if re.search(r"/onlineendpoints/[^/]+$", lower):
            return self._put_endpoint(request, path, body)
        if re.search(r"/onlineendpoints/[^/]+/deployments/[^/]+$", lower):
            return self._put_deployment(request, path, body)
        existed = lower in self.arm
        if existed and "/namedvalues/" in lower and "If-Match" not in request.headers:
            # Named Value - Create Or Update: If-Match "is required when updating an entity"
            # (https://learn.microsoft.com/rest/api/apimanagement/named-value/create-or-update).
            return self._json(request, 412, _error("PreconditionFailed", "If-Match required"))
        name = path.rsplit("/", 1)[-1]
        if existed and re.search(r"/models/[^/]+/versions/[^/]+$", lower):
            # An existing version changes only its tags, description and stage; what it
            # was registered from (files, the job that trained it) stays
            # (https://learn.microsoft.com/rest/api/azureml/model-versions/create-or-update).
            kept = self.arm[lower]["properties"]
            changed = body.get("properties", {})
            body = {**body, "properties": {
                **kept, **{k: changed[k] for k in ("tags", "description", "stage") if k in changed}
            }}  # fmt: skip
        stored = self._put(path, {**body, "name": name})
        stored["properties"].setdefault("provisioningState", "Succeeded")
        if "/models/" in lower:
            stored["properties"].setdefault("flavors", {})  # Model/ModelVersion/get.json
        return self._json(request, 200 if existed else 201, self._shown(stored))

    def _put_endpoint(self, request: Any, path: str, body: dict[str, Any]) -> Any:
        current = self.arm.get(path.lower())
        properties = body.get("properties") or {}
        traffic = {k: int(v) for k, v in (properties.get("traffic") or {}).items()}
        mirror = {k: int(v) for k, v in (properties.get("mirrorTraffic") or {}).items() if v}
        deployments = {
            key.rsplit("/", 1)[-1]
            for key in self.arm
            if key.startswith(path.lower() + "/deployments/")
            and key.count("/") == path.count("/") + 2
        }
        problem = self._traffic_problem(traffic, mirror, deployments)
        if problem:
            return self._json(request, 400, _error("BadArgument", problem))
        kept = dict(current["properties"]) if current else {}
        kept.update(properties, traffic=traffic, mirrorTraffic=mirror, provisioningState="Updating")
        kept["scoringUri"] = (current or {}).get("properties", {}).get("scoringUri", "")
        stored = self._put(path, {**(current or {}), **body, "properties": kept})
        stored["name"] = path.rsplit("/", 1)[-1]
        # Traffic updates finish at the first poll.
        stored["properties"]["provisioningState"] = "Succeeded"
        return self._accepted(request, path, stored, status="Succeeded")

    @staticmethod
    def _traffic_problem(traffic: dict[str, int], mirror: dict[str, int], exist: set[str]) -> str:
        unknown = sorted((set(traffic) | set(mirror)) - exist)
        if unknown:
            return f"traffic names deployments that do not exist: {', '.join(unknown)}"
        total = sum(traffic.values())
        if total not in (0, 100) or any(not 0 <= v <= 100 for v in traffic.values()):
            return f"traffic must sum to 0 or 100, got {total}"
        if len(mirror) > 1:
            return "mirror traffic can go to one deployment only"
        for name, share in mirror.items():
            if share > 50:
                return f"mirror traffic to {name} is above 50 %"
            if traffic.get(name, 0) > 0:
                return f"deployment {name} takes live traffic and cannot also take mirror traffic"
        return ""

    def _put_deployment(self, request: Any, path: str, body: dict[str, Any]) -> Any:
        endpoint = path.rsplit("/deployments/", 1)[0]
        if endpoint.lower() not in self.arm:
            return self._json(request, 404, _error("ResourceNotFound", endpoint))
        properties = dict(body.get("properties") or {})
        model = str(properties.get("model") or "")
        if not self._model_exists(endpoint, model):
            return self._json(request, 400, _error("BadArgument", f"model {model} was not found"))
        properties["provisioningState"] = "Creating"
        # What the service fills in when a request leaves it out (the GET shape of
        # OnlineDeployment/ManagedOnlineDeployment/get.json).
        properties.setdefault("scaleSettings", {"scaleType": "Default"})
        properties.setdefault("endpointComputeType", "Managed")
        collector = properties.get("dataCollector") or {}
        for collection_name, collection in (collector.get("collections") or {}).items():
            # The service registers green's own data assets and returns their ids.
            deployment = path.rsplit("/", 1)[-1]
            workspace = path.split("/onlineEndpoints/", maxsplit=1)[0]
            collection["dataId"] = f"{workspace}/data/{deployment}-{collection_name}/versions/1"
        stored = self._put(
            path, {**body, "name": path.rsplit("/", 1)[-1], "properties": properties}
        )
        return self._accepted(request, path, stored, status="InProgress")

    def _model_exists(self, endpoint: str, model: str) -> bool:
        if "/registries/" in model:
            return True  # the bootstrap model lives in the platform's registry
        workspace = endpoint.split("/onlineEndpoints/", maxsplit=1)[0]
        match = re.match(r"^azureml:(?P<name>[^:]+):(?P<version>.+)$", model)
        if match:
            model = f"{workspace}/models/{match['name']}/versions/{match['version']}"
        return model.lower() in self.arm

    def _arm_delete(self, request: Any, path: str) -> Any:
        if path not in self.arm:
            return self._json(request, 204, None)
        deployment = re.search(
            r"^(?P<endpoint>.*/onlineendpoints/[^/]+)/deployments/(?P<name>[^/]+)$", path
        )
        if deployment:
            endpoint = self.arm.get(deployment["endpoint"], {}).get("properties", {})
            name = deployment["name"]
            shares = {**endpoint.get("traffic", {}), **endpoint.get("mirrorTraffic", {})}
            if any(k.lower() == name and v for k, v in shares.items()):
                return self._json(
                    request,
                    409,
                    _error("Conflict", f"deployment {name} has traffic and cannot be deleted"),
                )
        del self.arm[path]
        operation = self._new_operation(path, "Succeeded")
        return self._json(request, 202, None, {"Location": operation, "Retry-After": "0"})

    def _new_operation(self, target: str, status: str) -> str:
        op_id = uuid.uuid4().hex
        self._operations[op_id] = {"status": status, "target": target.lower()}
        return (
            f"https://{ARM}/subscriptions/{self.subscription}/providers/"
            f"Microsoft.MachineLearningServices/locations/{LOCATION}/mfeOperationsStatus/{op_id}"
            f"?api-version={API}"
        )

    def _accepted(self, request: Any, path: str, stored: dict[str, Any], status: str) -> Any:
        operation = self._new_operation(path, status)
        headers = {
            "Azure-AsyncOperation": operation,
            "Retry-After": "0" if status != "InProgress" else "1",
        }
        return self._json(request, 201, self._shown(stored), headers)

    def _model_key(self, deployment: dict[str, Any]) -> str:
        model = str(deployment["properties"].get("model") or "")
        found = re.search(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", model)
        if found:
            return f"{found['name']}:{found['version']}"
        return model.removeprefix("azureml:")

    # --- scoring ---------------------------------------------------------------------------

    def _score(self, request: Any, url: Any, body: Any) -> Any:
        endpoint_name = url.netloc.split(".", 1)[0]
        endpoint_key = next(
            (k for k in self.arm if k.endswith(f"/onlineendpoints/{endpoint_name}")), None
        )
        headers = {k.lower(): v for k, v in request.headers.items()}
        if endpoint_key is None:
            return self._json(request, 404, _error("NotFound", endpoint_name))
        if not headers.get("authorization", "").startswith("Bearer "):
            return self._json(request, 401, _error("Unauthorized", "no token"))
        endpoint = self.arm[endpoint_key]["properties"]
        deployment = headers.get("azureml-model-deployment") or self._route(endpoint["traffic"])
        found = (
            self.arm.get(f"{endpoint_key}/deployments/{deployment}".lower()) if deployment else None
        )
        if found is None or found["properties"]["provisioningState"] != "Succeeded":
            return self._json(request, 404, _error("DeploymentNotFound", str(deployment)))
        tenant = headers.get("x-tenant-id")
        status, text = self._answer(found, tenant)
        passed = {k: headers[k] for k in ("x-tenant-id", "x-request-id") if k in headers}
        ran = self._run_model(found, request.content, passed) if status == 200 else None
        if ran is not None:
            status = ran[0]
        self.traffic_log.append(
            LoggedRequest(self.clock(), endpoint_name, str(deployment), status, 12.0)
        )
        if ran is None:  # a failing model: its answer need not be JSON
            return self._text(request, status, text)
        return self._json(request, status, ran[1])

    def _run_model(
        self, deployment: dict[str, Any], raw: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """score.py over the deployment's model, as its container runs it (the request's
        headers handed to ``run``). The bootstrap model (a registry model whose files are
        not here) answers class 0 to any rows."""
        service = self._scoring_service(deployment)
        if service is not None:
            return cast(tuple[int, dict[str, Any]], score_contract.score(service, raw, headers))
        try:
            body = json.loads(raw or b"")
        except ValueError:
            body = None
        if isinstance(body, dict) and ("data" in body or "input_data" in body):
            return 200, {"predictions": [0]}
        return 400, _error("BadRequest", "the body holds no data")

    def _scoring_service(self, deployment: dict[str, Any]) -> Any:
        """score.py's service over the deployment's model folder, as its container runs it:
        the files from the datastore, and the data collector Azure ML gives a deployment
        whose collections are on. None for a registry model (the bootstrap one), whose
        files are not here."""
        model = str(deployment["properties"].get("model") or "")
        key = f"{deployment['id']}|{model}".lower()
        if key in self._services:
            return self._services[key]
        workspace = deployment["id"].split("/onlineEndpoints/")[0]
        name, _, version = self._model_key(deployment).partition(":")
        registered = (
            None
            if "/registries/" in model
            else self.arm.get(f"{workspace}/models/{name}/versions/{version}".lower())
        )
        uri = str((registered or {}).get("properties", {}).get("modelUri") or "")
        prefix = uri.partition("/paths/")[2].rstrip("/")
        account, container = self._datastore(workspace)
        files = {
            blob[len(prefix) + 1 :]: data
            for (a, c, blob), data in self.blobs.items()
            if (a, c) == (account, container) and prefix and blob.startswith(prefix + "/")
        }
        if not files:
            return None
        folder = self.scratch / uuid.uuid4().hex
        for relative, data in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(data)
        self._services[key] = score_contract.ScoringService(
            folder, collection=self._data_collection(deployment)
        )
        return self._services[key]

    def _datastore(self, workspace: str) -> tuple[str, str]:
        """(account, container) of the workspace's default blob datastore."""
        store = self.arm[f"{workspace}/datastores/workspaceblobstore".lower()]["properties"]
        return store["accountName"], store["containerName"]

    def _data_collection(self, deployment: dict[str, Any]) -> Any:
        """The collectors score.py gets when both collections of the deployment are on
        (``AZUREML_MDC_*`` set), writing where Azure ML's collector does."""
        collections = (deployment["properties"].get("dataCollector") or {}).get("collections")
        # The enum's case is free on the wire (azure-ai-ml sends "enabled", the REST
        # specification spells "Enabled"): the service reads it either way.
        enabled = {
            n
            for n, c in (collections or {}).items()
            if str(c.get("dataCollectionMode")).lower() == "enabled"
        }
        if not set(contracts.COLLECTIONS) <= enabled:
            return None
        served = "/".join(deployment["id"].split("/onlineEndpoints/")[1].split("/deployments/"))
        workspace = deployment["id"].split("/onlineEndpoints/")[0]
        store = self._datastore(workspace)
        inputs, outputs = (
            DatastoreCollector(self, store, served, c) for c in contracts.COLLECTIONS
        )
        # As from_environment builds it: the collector's correlation is the request's id.
        return score_contract.DataCollection(
            inputs, outputs, pd.DataFrame, correlation=lambda request_id: request_id
        )

    def _route(self, traffic: dict[str, int]) -> str | None:
        live = [(k, v) for k, v in sorted(traffic.items()) if v > 0]
        if not live:
            return None
        pick = self._random.uniform(0, 100)
        for name, share in live:
            pick -= share
            if pick <= 0:
                return name
        return live[-1][0]

    def _answer(self, deployment: dict[str, Any], tenant: str | None) -> tuple[int, str]:
        key = self._model_key(deployment)
        tags = self._model_tags(deployment)
        carried = json.loads(tags.get(contracts.MODEL_TAG_POOL_MODELS) or "{}")
        if carried:  # a pool asset: score.py loads the header's tenant's folder
            if not tenant or tenant not in carried:
                return 404, json.dumps(_error("not_found", f"no model for tenant '{tenant}'"))
            key = carried[tenant].replace("/", ":")
        return self.model_answers.get(key, (200, ""))

    def _model_tags(self, deployment: dict[str, Any]) -> dict[str, str]:
        model = str(deployment["properties"].get("model") or "")
        workspace = deployment["id"].split("/onlineEndpoints/")[0]
        key = self._model_key(deployment)
        name, _, version = key.partition(":")
        found = self.arm.get(f"{workspace}/models/{name}/versions/{version}".lower())
        if found is None or "/registries/" in model:
            return {}
        return dict(found["properties"].get("tags") or {})

    # --- Log Analytics -----------------------------------------------------------------------

    def _logs(self, request: Any, url: Any, body: Any) -> Any:
        query = str((body or {}).get("query", ""))
        where = _QUERY_FILTER.search(query)
        start, _, end = str((body or {}).get("timespan", "")).partition("/")
        since, until = datetime.fromisoformat(start), datetime.fromisoformat(end)
        rows = [
            r for r in self.traffic_log
            if where and r.endpoint == where["endpoint"] and r.deployment == where["dep"]
            and since <= r.at < until
        ]  # fmt: skip
        failed = _predicate(_countif(query, "errors"))
        durations = [r.duration_ms for r in rows]
        p99 = float(np.percentile(durations, 99)) if durations else None
        answer: dict[str, Any] = {
            "tables": [{
                "name": "PrimaryResult",
                "columns": [{"name": "requests", "type": "long"},
                            {"name": "errors", "type": "long"},
                            {"name": "p99", "type": "real"}],
                "rows": [[len(rows), sum(1 for r in rows if failed(r.status)), p99]],
            }],
        }  # fmt: skip
        if self.partial_logs:
            answer["error"] = {
                "code": "PartialError",
                "message": "There were some errors when processing your query.",
                "details": [{"code": "EngineError", "message": "the query ran out of time"}],
            }
        return self._json(request, 200, answer)

    # --- the workspace's MLflow API ------------------------------------------------------------

    def _mlflow(self, request: Any, url: Any) -> Any:
        if url.path.endswith("/api/2.0/mlflow/runs/get"):
            run_id = parse_qs(url.query).get("run_id", [""])[0]
            if run_id not in self.runs:
                return self._json(request, 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
            metrics = [{"key": k, "value": v, "step": 0} for k, v in self.runs[run_id].items()]
            return self._json(
                request, 200, {"run": {"info": {"run_id": run_id}, "data": {"metrics": metrics}}}
            )
        if url.path.endswith("/discovery"):
            return self._json(request, 200, {"api": f"https://{LOCATION}.api.azureml.ms"})
        return self._json(request, 404, {"error_code": "ENDPOINT_NOT_FOUND"})

    # --- Azure ML registries ------------------------------------------------------------------

    def _discovery(self, request: Any, url: Any) -> Any:
        name = unquote(_DISCOVERY.match(url.path)["registry"]).lower()  # type: ignore[index]
        if name not in self.registries:
            return self._json(request, 404, _error("RegistryNotFound", name))
        group = self.registries[name][0]
        return self._json(request, 200, {
            "registryName": name, "primaryRegion": LOCATION, "regions": [LOCATION],
            "subscriptionId": self.subscription, "resourceGroup": group,
            "primaryRegionResourceProviderUri": f"https://{REGISTRY_HOST}/",
            "registryFqdns": {LOCATION: {}},
        })  # fmt: skip

    def _registry(self, request: Any, url: Any, body: Any) -> Any:  # noqa: PLR0911 - a router
        found = _REGISTRY_PATH.match(url.path.lower())
        if found is None or found["registry"] not in self.registries:
            return self._json(request, 404, _error("RegistryNotFound", url.path))
        registry = found["registry"]
        # The names as sent (the match above is on the lower-cased path).
        rest = unquote(url.path)[len(url.path) - len(found["rest"]) :]
        environment = re.fullmatch(
            r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", rest
        )
        if environment:
            return self._registry_environment(request, registry, environment, body)
        temporary = re.fullmatch(r"/tempdatarefs/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", rest)
        if request.method == "PUT" and temporary:
            # Temporary Data References: where the client uploads an asset's files before it
            # creates the asset (a container SAS in the registry's storage).
            _, account, container = self.registries[registry]
            prefix = f"{temporary['name']}/{temporary['version']}"
            blob = f"https://{account}.blob.core.windows.net/{container}"
            return self._json(request, 200, {"blobReferenceForConsumption": {
                "blobUri": f"{blob}/{prefix}",
                "credential": {"credentialType": "SAS",
                               "sasUri": f"{blob}?sv=2021-10-04&sr=c&sp=rcwl&sig=by-the-registry"},
            }})  # fmt: skip
        versions = re.fullmatch(r"/models/(?P<name>[^/]+)/versions", rest)
        version = re.fullmatch(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", rest)
        dataref = re.fullmatch(r"/datarefs/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", rest)
        if request.method == "GET" and versions:
            same = [
                self._shown(m) for (r, n, _), m in sorted(self.registry_models.items())
                if (r, n) == (registry, versions["name"])
            ]  # fmt: skip
            return self._json(request, 200, {"value": same[-1:] if same else []})
        if request.method == "GET" and version:
            model = self.registry_models.get((registry, version["name"], version["version"]))
            if model is None:
                return self._json(request, 404, _error("ResourceNotFound", rest))
            return self._json(request, 200, self._shown(model))
        if request.method == "POST" and rest == "/import":
            return self._import(request, registry, body)
        if request.method == "POST" and dataref:
            _, account, container = self.registries[registry]
            blob = f"https://{account}.blob.core.windows.net/{container}"
            return self._json(request, 200, {"blobReferenceForConsumption": {
                "blobUri": body.get("blobUri", blob) if isinstance(body, dict) else blob,
                "credential": {"credentialType": "SAS",
                               "sasUri": f"{blob}?sv=2021-10-04&sr=c&sp=rl&sig=by-the-registry"},
            }})  # fmt: skip
        return self._json(request, 405, _error("MethodNotAllowed", f"{request.method} {rest}"))

    def _registry_environment(
        self, request: Any, registry: str, found: Any, body: Any
    ) -> Any:
        """An environment version in a registry: GET, or PUT (its build context must be
        in the registry's storage already, as the client uploaded it)."""
        key = (registry, found["name"], found["version"])
        if request.method == "GET":
            stored = self.registry_environments.get(key)
            if stored is None:
                return self._json(request, 404, _error("ResourceNotFound", str(key)))
            return self._json(request, 200, self._shown(stored))
        if request.method != "PUT" or not isinstance(body, dict):
            return self._json(request, 405, _error("MethodNotAllowed", request.method))
        properties = body.get("properties", {})
        context = str((properties.get("build") or {}).get("contextUri", ""))
        _, account, container = self.registries[registry]
        inside = f"https://{account}.blob.core.windows.net/{container}/"
        prefix = context.removeprefix(inside).rstrip("/") + "/"
        uploaded = [n for (a, c, n) in self.blobs if (a, c) == (account, container)
                    and n.startswith(prefix)]  # fmt: skip
        if not context.startswith(inside) or not uploaded:
            return self._json(request, 400, _error("UserError", f"no build context at {context}"))
        stored = {"id": f"azureml://registries/{registry}/environments/{found['name']}"
                        f"/versions/{found['version']}",
                  "name": found["version"], "properties": {**properties}}  # fmt: skip
        self.registry_environments[key] = stored
        return self._json(request, 201, self._shown(stored))

    def _import(self, request: Any, registry: str, body: Any) -> Any:
        """Resource Management Asset Reference - Import: the workspace asset is copied, files
        and metadata (tags, the job that trained it), into the registry's storage."""
        properties = body.get("properties", {}) if isinstance(body, dict) else {}
        source = _WORKSPACE_ASSET.match(str(properties.get("sourceAssetId", "")))
        name, version = properties.get("destinationName"), properties.get("destinationVersion")
        if source is None or not name or not version:
            return self._json(request, 400, _error("UserError", "sourceAssetId, destination"))
        if (registry, name, version) in self.registry_models:
            return self._json(request, 409, _error("Conflict", f"{name}/{version} exists"))
        workspace = next(
            (path for path, r in self.arm.items()
             if r["properties"].get("workspaceId") == source["guid"]),
            None,
        )  # fmt: skip
        model = self.arm.get(
            f"{workspace}/models/{source['name']}/versions/{source['version']}".lower()
        )
        if workspace is None or model is None:
            return self._json(request, 404, _error("AssetNotFound", source.string))
        account, container = self._datastore(workspace)
        files = re.match(r"^azureml://.*?/paths/(?P<path>.+)$", model["properties"]["modelUri"])
        assert files is not None, model["properties"]["modelUri"]
        prefix = files["path"].rstrip("/") + "/"
        _, target_account, target_container = self.registries[registry]
        copied = f"models/{name}/{version}/model"
        for (a, c, blob), data in list(self.blobs.items()):
            if (a, c) == (account, container) and blob.startswith(prefix):
                self.blobs[(target_account, target_container, f"{copied}/{blob[len(prefix):]}")] = (
                    data
                )
        kept = model["properties"]
        self.registry_models[(registry, name, version)] = {
            "id": f"azureml://registries/{registry}/models/{name}/versions/{version}",
            "name": version,
            "properties": {
                "modelType": kept.get("modelType"),
                "modelUri": f"https://{target_account}.blob.core.windows.net/"
                f"{target_container}/{copied}",
                "jobName": kept.get("jobName"),
                "tags": dict(kept.get("tags") or {}),
                "flavors": kept.get("flavors") or {},
                "properties": {"sourceAssetId": source.string},
            },
        }
        return self._raw(request, 200, b"", {})

    # --- blob storage ------------------------------------------------------------------------

    def _blob(self, request: Any, url: Any, content: Any) -> Any:  # noqa: PLR0911 - a router
        account = url.netloc.split(".", 1)[0]
        container, _, name = unquote(url.path.lstrip("/")).partition("/")
        query = parse_qs(url.query)
        if request.method == "GET" and not name and query.get("comp") == ["list"]:
            prefix, delimiter = query.get("prefix", [""])[0], query.get("delimiter", [""])[0]
            return self._list(request, account, container, prefix, delimiter)
        key = (account, container, name)
        if request.method == "PUT" and query.get("comp") == ["metadata"]:
            if key not in self.blobs:
                return self._raw(request, 404, b"", {"x-ms-error-code": "BlobNotFound"})
            self.blob_metadata[key] = {
                k.lower(): v
                for k, v in request.headers.items()
                if k.lower().startswith("x-ms-meta-")
            }
            return self._raw(request, 200, b"", self._blob_headers(self.blobs[key]))
        if request.method == "PUT":
            data = content if isinstance(content, bytes) else (content or b"")
            if not isinstance(data, bytes):
                data = data.read() if hasattr(data, "read") else str(data).encode()
            self.blobs[key] = data
            return self._raw(request, 201, b"", self._blob_headers(data))
        if request.method in ("GET", "HEAD"):
            data = self.blobs.get(key)
            if data is None:
                return self._raw(request, 404, b"", {"x-ms-error-code": "BlobNotFound"})
            headers = {**self._blob_headers(data), **self.blob_metadata.get(key, {})}
            if data:
                headers["Content-Range"] = f"bytes 0-{len(data) - 1}/{len(data)}"
                return self._raw(request, 206, data, headers)
            return self._raw(request, 200, data, headers)
        return self._raw(request, 405, b"", {})

    def _blob_headers(self, data: bytes) -> dict[str, str]:
        return {
            "ETag": f'"0x{hashlib.md5(data).hexdigest()[:16].upper()}"',  # noqa: S324 - an ETag
            "Last-Modified": format_datetime(datetime.now(UTC), usegmt=True),
            "x-ms-blob-type": "BlockBlob",
            "Content-Length": str(len(data)),
            "x-ms-request-server-encrypted": "true",
        }

    def _list(
        self, request: Any, account: str, container: str, prefix: str, delimiter: str
    ) -> Any:
        """List Blobs: with a delimiter, the names below the prefix that hold it again are
        rolled up into ``BlobPrefix`` elements, once each, as the service does
        (https://learn.microsoft.com/rest/api/storageservices/list-blobs)."""
        names = sorted(
            n for (a, c, n) in self.blobs if (a, c) == (account, container) and n.startswith(prefix)
        )
        folders: list[str] = []
        if delimiter:
            rolled = {
                n[: len(prefix) + n[len(prefix) :].index(delimiter) + len(delimiter)]
                for n in names
                if delimiter in n[len(prefix) :]
            }
            folders = sorted(rolled)
            names = [n for n in names if delimiter not in n[len(prefix) :]]
        items = "".join(
            f"<BlobPrefix><Name>{escape(f)}</Name></BlobPrefix>" for f in folders
        ) + "".join(
            f"<Blob><Name>{escape(n)}</Name><Properties>"
            f"<Last-Modified>{format_datetime(datetime.now(UTC), usegmt=True)}</Last-Modified>"
            f"<Etag>0x1</Etag>"
            f"<Content-Length>{len(self.blobs[(account, container, n)])}</Content-Length>"
            f"<BlobType>BlockBlob</BlobType></Properties></Blob>"
            for n in names
        )
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<EnumerationResults ServiceEndpoint="https://{account}.blob.core.windows.net/" '
            f'ContainerName="{container}"><Prefix>{escape(prefix)}</Prefix><Blobs>{items}</Blobs>'
            "<NextMarker /></EnumerationResults>"
        )
        return self._raw(request, 200, xml.encode(), {"Content-Type": "application/xml"})

    # --- answers -------------------------------------------------------------------------------

    def _json(
        self, request: Any, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        return self._raw(
            request, status, data, {"Content-Type": "application/json", **(headers or {})}
        )

    def _text(self, request: Any, status: int, text: str) -> Any:
        return self._raw(request, status, text.encode(), {"Content-Type": "text/html"})

    @staticmethod
    def _raw(request: Any, status: int, data: bytes, headers: dict[str, str]) -> Any:
        internal = requests.Response()
        internal.status_code = status
        internal.raw = io.BytesIO(data)
        internal.headers.update(headers)
        internal.headers.setdefault("Content-Length", str(len(data)))
        internal.reason = "OK" if status < 400 else "Error"
        return RestRequestsTransportResponse(request=request, internal_response=internal)


def _countif(query: str, column: str) -> str:
    """The predicate of ``<column> = countif(...)`` in a query (parentheses balanced)."""
    start = query.index(f"{column} = countif(") + len(f"{column} = countif(")
    depth = 1
    for index in range(start, len(query)):
        depth += {"(": 1, ")": -1}.get(query[index], 0)
        if depth == 0:
            return " ".join(query[start:index].split())
    raise AssertionError(f"unbalanced countif in {query!r}")


def _predicate(text: str) -> Callable[[int], bool]:
    """The query's failure predicate over ResponseCode: the clauses our query uses
    (``toint(ResponseCode) >= N``, ``toint(ResponseCode) in (a, b)``) joined by ``or``.
    Anything else fails loudly, so the fake never guesses what a query counts."""
    checks: list[Callable[[int], bool]] = []
    for clause in (c.strip() for c in text.split(" or ")):
        found = re.fullmatch(r"toint\(ResponseCode\)\s*>=\s*(\d+)", clause)
        if found:
            threshold = int(found[1])
            checks.append(lambda code, t=threshold: code >= t)
            continue
        found = re.fullmatch(r"toint\(ResponseCode\)\s+in\s*\(([\d,\s]+)\)", clause)
        if found:
            codes = {int(c) for c in found[1].split(",")}
            checks.append(lambda code, s=frozenset(codes): code in s)
            continue
        raise AssertionError(f"the fake cannot evaluate the clause {clause!r}")
    return lambda code: any(check(code) for check in checks)


def iter_model_files(folder: Any) -> Iterator[tuple[str, bytes]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path.relative_to(folder).as_posix(), path.read_bytes()
