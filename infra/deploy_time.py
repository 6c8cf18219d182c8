"""Dynamic resources of the program: what `pulumi up` does itself, in the deployer's
process, where azure-native would do it wrongly (adapters.deploy_time says why). Each
carries a ``kind`` the policy pack recognises it by (tenancy.contracts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from adapters.deploy_time import (
    BatchDefaultProvider,
    ExpectedStateProvider,
    FunctionPackageProvider,
    ServingEnvironmentProvider,
)
from tenancy import contracts


@dataclass(frozen=True)
class FunctionPackageInputs:
    account_name: pulumi.Input[str]
    blob_endpoint: pulumi.Input[str]
    container_name: str
    blob_name: str
    package_path: str
    digest: str
    uploader_object_id: pulumi.Input[str]


class PackageUpload(pulumi.dynamic.Resource):
    """The Functions package in its deployment container (adapters.deploy_time uploads it
    with Entra authentication)."""

    url: pulumi.Output[str]

    def __init__(
        self, name: str, inputs: FunctionPackageInputs, opts: pulumi.ResourceOptions
    ) -> None:
        props: dict[str, Any] = {
            "kind": contracts.KIND_PACKAGE_UPLOAD,
            "accountName": inputs.account_name,
            "blobEndpoint": inputs.blob_endpoint,
            "containerName": inputs.container_name,
            "blobName": inputs.blob_name,
            "packagePath": inputs.package_path,
            "digest": inputs.digest,
            "uploaderObjectId": inputs.uploader_object_id,
            "url": None,
        }
        super().__init__(FunctionPackageProvider(), name, props, opts)


class BatchDefault(pulumi.dynamic.Resource):
    """A batch endpoint's default deployment, set once that deployment exists."""

    def __init__(
        self,
        name: str,
        *,
        endpoint_id: pulumi.Input[str],
        deployment_name: pulumi.Input[str],
        opts: pulumi.ResourceOptions,
    ) -> None:
        props = {
            "kind": contracts.KIND_BATCH_DEFAULT,
            "endpointId": endpoint_id,
            "deploymentName": deployment_name,
        }
        super().__init__(BatchDefaultProvider(), name, props, opts)


@dataclass(frozen=True)
class ExpectedStateInputs:
    account_name: pulumi.Input[str]
    blob_endpoint: pulumi.Input[str]
    document: pulumi.Input[str]  # JSON (policies.plan_drift.expected_state)
    digest: pulumi.Input[str]  # its sha256: written again only when it changes
    uploader_object_id: pulumi.Input[str]
    # A shard stack's document is a blob of its own beside the shared stack's
    # (contracts.expected_state_blob); the audit reads them all.
    blob_name: str = contracts.BLOB_EXPECTED_STATE


class ExpectedStateUpload(pulumi.dynamic.Resource):
    """The expected state in the platform account (adapters.deploy_time writes it with
    Entra authentication)."""

    url: pulumi.Output[str]
    digest: pulumi.Output[str]

    def __init__(
        self, name: str, inputs: ExpectedStateInputs, opts: pulumi.ResourceOptions
    ) -> None:
        props: dict[str, Any] = {
            "kind": contracts.KIND_EXPECTED_STATE,
            "accountName": inputs.account_name,
            "blobEndpoint": inputs.blob_endpoint,
            "containerName": contracts.CONTAINER_PLATFORM_STATE,
            "blobName": inputs.blob_name,
            "document": inputs.document,
            "digest": inputs.digest,
            "uploaderObjectId": inputs.uploader_object_id,
            "url": None,
        }
        super().__init__(ExpectedStateProvider(), name, props, opts)


class ServingEnvironment(pulumi.dynamic.Resource):
    """The scoring container's environment in the environment's Azure ML registry, built by
    Azure ML from the checkout's build context (adapters.deploy_time publishes it with
    azure-ai-ml, which uploads the context to the registry's storage). ``version`` is the
    context's digest, so the resource changes only when the container does."""

    asset_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        subscription_id: pulumi.Input[str],
        registry_name: pulumi.Input[str],
        context_root: str,
        version: str,
        opts: pulumi.ResourceOptions,
    ) -> None:
        props: dict[str, Any] = {
            "kind": contracts.KIND_SERVING_ENVIRONMENT,
            "subscriptionId": subscription_id,
            "registryName": registry_name,
            "contextRoot": context_root,
            "version": version,
            "assetId": None,
        }
        super().__init__(ServingEnvironmentProvider(), name, props, opts)
