"""What `pulumi up` does through Azure's data and resource planes itself, where the
azure-native provider would do it wrongly or cannot: the Functions package upload, a batch
endpoint's default deployment, and the expected state the audit compares with. Each runs
as a Pulumi dynamic resource, in the deployer's process, with the deployer's Entra credential
(``DefaultAzureCredential``: the Azure CLI login, a pipeline's federated identity, ...).

- **The package upload** (the review's D1). azure-native's ``storage.Blob`` authenticates
  with the account key (``ListKeys`` then a shared-key client), which accounts with
  ``allowSharedKeyAccess=false`` refuse (KeyBasedAuthenticationNotPermitted). This uploads
  with a bearer token: https://learn.microsoft.com/azure/storage/blobs/authorize-access-azure-active-directory.
  A role assignment takes effect up to ten minutes after it is made
  (https://learn.microsoft.com/azure/role-based-access-control/troubleshooting#symptom---role-assignment-changes-are-not-being-detected),
  so a 403 ``AuthorizationPermissionMismatch`` is retried, within a bound.
- **The batch default** (D8). A batch endpoint cannot name a default deployment before that
  deployment exists, and its PATCH takes only tags and identity (REST example
  ``BatchEndpoint/update.json``), so the default is set once, after the deployment, by a
  GET and a PUT of the endpoint as the service returned it (what the SDK samples do:
  ``endpoint.defaults.deployment_name = ...; begin_create_or_update(endpoint)``). A later
  `pulumi up` never sends it again unless the program names another deployment.
- **The expected state** (``policies.plan_drift``): a JSON blob in the platform account,
  written with a bearer token as the package is, read by the Function App's policy audit.
- **The scoring container's environment**, in the environment's Azure ML registry: built by
  Azure ML from the build context (``serving.image``) that azure-ai-ml uploads to the
  registry's own storage, as ``az ml environment create --registry-name`` does
  (https://learn.microsoft.com/azure/machine-learning/how-to-share-models-pipelines-across-workspaces-with-registries#create-environment-in-registry),
  with the inference config of a custom container
  (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container). Its
  version is the context's digest: an existing version is never built again.

Every call is bounded in time; the SDK clients are made inside the calls (the provider
object is pickled into the engine's state and must hold no client).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from adapters.azure_arm import ARM
from adapters.azure_inventory import ML_API_VERSION
from tenancy.errors import DependencyError

ARM_SCOPE = "https://management.azure.com/.default"
#: How long a data-plane call may wait for a new role assignment to take effect.
ROLE_PROPAGATION_SECONDS = 600.0
#: How long the endpoint's update may run before `pulumi up` reports it.
OPERATION_SECONDS = 900.0
POLL_SECONDS = 10.0
TERMINAL = {"Succeeded", "Failed", "Canceled"}

Sleep = Callable[[float], None]
Clock = Callable[[], float]


def _credential() -> Any:
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - deploy time only

    return DefaultAzureCredential()


@dataclass(frozen=True)
class Bounds:
    """Waiting, injectable so tests neither sleep nor depend on the clock."""

    sleep: Sleep = time.sleep
    clock: Clock = time.monotonic
    propagation_seconds: float = ROLE_PROPAGATION_SECONDS
    operation_seconds: float = OPERATION_SECONDS
    poll_seconds: float = POLL_SECONDS


def upload_package(
    *,
    blob_endpoint: str,
    container: str,
    blob: str,
    package: Path,
    digest: str,
    credential: Any = None,
    transport: Any = None,
    bounds: Bounds = Bounds(),
) -> str:
    """Upload the package with Entra authentication; returns the blob's URL (no secret in
    it). Retries while the deployer's new role assignment propagates. The zip must still be
    the one the plan saw: a package rebuilt since then is refused, never uploaded."""
    data = package.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise DependencyError(
            f"{package} changed since the plan (its sha256 is not {digest}): run `pulumi up` "
            "again to upload the package you built"
        )
    return upload_blob(
        blob_endpoint=blob_endpoint,
        container=container,
        blob=blob,
        data=data,
        content_type="application/zip",
        metadata={"digest": digest},
        what="the Functions package",
        credential=credential,
        transport=transport,
        bounds=bounds,
    )


def upload_blob(
    *,
    blob_endpoint: str,
    container: str,
    blob: str,
    data: bytes,
    content_type: str,
    metadata: dict[str, str],
    what: str,
    credential: Any = None,
    transport: Any = None,
    bounds: Bounds = Bounds(),
) -> str:
    """Write one blob with Entra authentication, retrying while the deployer's new role
    assignment propagates; returns its URL (no secret in it)."""
    from azure.core.exceptions import HttpResponseError  # noqa: PLC0415
    from azure.storage.blob import BlobClient, ContentSettings  # noqa: PLC0415

    client = BlobClient(
        account_url=blob_endpoint,
        container_name=container,
        blob_name=blob,
        credential=credential or _credential(),
        **({"transport": transport} if transport is not None else {}),
    )
    deadline = bounds.clock() + bounds.propagation_seconds
    while True:
        try:
            client.upload_blob(
                data,
                overwrite=True,
                metadata=metadata,
                content_settings=ContentSettings(content_type=content_type),
            )
            return str(client.url)
        except HttpResponseError as error:
            # The storage SDK's errors carry the service's x-ms-error-code.
            code = getattr(error, "error_code", None)
            waiting_for_role = (
                error.status_code == 403 and code == "AuthorizationPermissionMismatch"
            )
            if not waiting_for_role or bounds.clock() >= deadline:
                raise DependencyError(
                    f"uploading {what} to {client.url} failed "
                    f"({error.status_code} {code}): the deployer needs Storage "
                    "Blob Data Contributor on the account and network access to it"
                ) from None
            bounds.sleep(bounds.poll_seconds)


def _arm_client(credential: Any, transport: Any) -> Any:
    from azure.core.pipeline import policies  # noqa: PLC0415
    from azure.mgmt.core import ARMPipelineClient  # noqa: PLC0415
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy  # noqa: PLC0415

    pipeline = [
        policies.HeadersPolicy(),
        policies.RetryPolicy(retry_total=3),
        ARMChallengeAuthenticationPolicy(credential, ARM_SCOPE),
    ]
    extra = {"transport": transport} if transport is not None else {}
    return ARMPipelineClient(base_url=ARM, policies=pipeline, **extra)


def _send(client: Any, method: str, url: str, body: Any = None) -> Any:
    from azure.core.rest import HttpRequest  # noqa: PLC0415

    absolute = f"{ARM}{url}" if url.startswith("/") else url
    request = HttpRequest(method, absolute, params={"api-version": ML_API_VERSION}, json=body)
    response = client.send_request(request)
    response.read()
    if response.status_code >= 400:
        raise DependencyError(
            f"{method} {url} answered {response.status_code}: {response.text()[:500]}"
        )
    return response


def set_batch_default(
    *,
    endpoint_id: str,
    deployment: str,
    credential: Any = None,
    transport: Any = None,
    bounds: Bounds = Bounds(),
) -> str:
    """Make ``deployment`` the endpoint's default: GET, set ``defaults.deploymentName``, PUT
    the endpoint as returned, wait until its provisioning ends. Returns the state reached."""
    client = _arm_client(credential or _credential(), transport)
    current = _send(client, "GET", endpoint_id).json()
    body = {
        key: current[key]
        for key in ("location", "tags", "kind", "identity", "sku")
        if current.get(key) is not None
    }
    properties = {
        key: value
        for key, value in (current.get("properties") or {}).items()
        # Read-only on the wire (GET shape): the service refuses or ignores them in a PUT.
        if key not in ("scoringUri", "swaggerUri", "provisioningState")
    }
    properties["defaults"] = {"deploymentName": deployment}
    body["properties"] = properties
    _send(client, "PUT", endpoint_id, body)
    deadline = bounds.clock() + bounds.operation_seconds
    while True:
        state = (_send(client, "GET", endpoint_id).json().get("properties") or {}).get(
            "provisioningState", "Succeeded"
        )
        if state in TERMINAL:
            if state != "Succeeded":
                raise DependencyError(f"setting the default of {endpoint_id} ended {state}")
            return str(state)
        if bounds.clock() >= deadline:
            raise DependencyError(
                f"the default of {endpoint_id} was still {state} after "
                f"{bounds.operation_seconds:g} s"
            )
        bounds.sleep(bounds.poll_seconds)


class FunctionPackageProvider(ResourceProvider):
    """Uploads when the package's digest (or where it goes) changes; never deletes (the
    container belongs to the platform account, and the app reads the blob)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        url = upload_package(
            blob_endpoint=props["blobEndpoint"],
            container=props["containerName"],
            blob=props["blobName"],
            package=Path(props["packagePath"]),
            digest=props["digest"],
        )
        return CreateResult(id_=url, outs={**props, "url": url})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("blobEndpoint", "containerName", "blobName", "digest")
        changed = [key for key in keys if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)


class BatchDefaultProvider(ResourceProvider):
    """Sets a batch endpoint's default deployment once it exists."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        set_batch_default(endpoint_id=props["endpointId"], deployment=props["deploymentName"])
        return CreateResult(id_=f"{props['endpointId']}#default", outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("endpointId", "deploymentName")
        changed = any(olds.get(key) != news.get(key) for key in keys)
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)


class ExpectedStateProvider(ResourceProvider):
    """Writes the expected state (``policies.plan_drift``) where the audit reads it, when
    it changes; never deletes (the audit of a stack being torn down still reads it)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        url = upload_blob(
            blob_endpoint=props["blobEndpoint"],
            container=props["containerName"],
            blob=props["blobName"],
            data=str(props["document"]).encode(),
            content_type="application/json",
            metadata={"digest": str(props["digest"])},
            what="the expected state",
        )
        return CreateResult(id_=url, outs={**props, "url": url})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("blobEndpoint", "containerName", "blobName", "digest")
        changed = any(olds.get(key) != news.get(key) for key in keys)
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)


def publish_serving_environment(
    *,
    subscription_id: str,
    registry: str,
    context_root: Path,
    credential: Any = None,
    transport: Any = None,
) -> str:
    """The scoring container's environment in ``registry`` (created once per version);
    its asset id, as deployments name it."""
    import tempfile  # noqa: PLC0415

    from azure.ai.ml import MLClient  # noqa: PLC0415 - deploy time only
    from azure.ai.ml.entities import BuildContext, Environment  # noqa: PLC0415
    from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415

    from serving.image import (  # noqa: PLC0415
        ENVIRONMENT_NAME,
        INFERENCE_CONFIG,
        environment_version,
        write_context,
    )

    version = environment_version(context_root)
    asset = f"azureml://registries/{registry}/environments/{ENVIRONMENT_NAME}/versions/{version}"
    client = MLClient(
        credential or _credential(),
        subscription_id,
        registry_name=registry,
        show_progress=False,
        **({"transport": transport} if transport is not None else {}),
    )
    try:
        client.environments.get(ENVIRONMENT_NAME, version)
        return asset  # built from this very context already
    except ResourceNotFoundError:
        pass
    with tempfile.TemporaryDirectory(prefix="tenant-mlops-context-") as scratch:
        context = write_context(context_root, Path(scratch) / "context")
        client.environments.create_or_update(
            Environment(
                name=ENVIRONMENT_NAME,
                version=version,
                description="score.py under the lean host, a worker per vCPU (serving/)",
                build=BuildContext(path=str(context), dockerfile_path="Dockerfile"),
                inference_config=INFERENCE_CONFIG,
                os_type="Linux",
            )
        )
    return asset


class ServingEnvironmentProvider(ResourceProvider):
    """Publishes the scoring container's environment when its context changes; never
    deletes (deployments of earlier versions may still run on it)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        asset = publish_serving_environment(
            subscription_id=props["subscriptionId"],
            registry=props["registryName"],
            context_root=Path(props["contextRoot"]),
        )
        return CreateResult(id_=asset, outs={**props, "assetId": asset})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("subscriptionId", "registryName", "version")
        changed = any(olds.get(key) != news.get(key) for key in keys)
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.create(news).outs)
