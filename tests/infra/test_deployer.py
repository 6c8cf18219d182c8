"""What the deployer meets in `pulumi up`: the Functions package goes up with Entra
authentication once the deployer may write its container (D1), the Event Grid
subscriptions to functions wait for it, and a destroyed installation can be re-created
(purge-protected vaults)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from infra.offline import OfflineRun, RecordedResource, run_offline
from infra.package import digest_of
from infra.program import deploy
from tenancy import contracts, load_stack
from tenancy.rbac import ROLE_IDS
from tests.conftest import ROOT
from tests.infra.conftest import of_type

DEPLOYER_OBJECT_ID = "00000000-0000-4000-8000-0000000000d2"  # the mocks' client config


def _uploads(run: OfflineRun) -> list[RecordedResource]:
    return [r for r in run.records if r.inputs.get("kind") == contracts.KIND_PACKAGE_UPLOAD]


def test_no_blob_is_written_with_the_account_key(planned: dict[str, OfflineRun]) -> None:
    """D1: azure-native's storage.Blob signs with the account key, which keyless accounts
    refuse; the package is the program's own upload instead."""
    for stack, run in planned.items():
        assert of_type(run, "storage:Blob") == [], stack
        [upload] = _uploads(run)
        assert upload.type == contracts.DYNAMIC_RESOURCE_TYPE
        assert upload.inputs["containerName"] == contracts.CONTAINER_FUNCTION_PACKAGE
        assert upload.inputs["blobName"] == "released-package.zip"
        assert upload.inputs["uploaderObjectId"] == DEPLOYER_OBJECT_ID
        # The zip itself, named by its digest: the upload refuses a zip rebuilt since.
        package = Path(upload.inputs["packagePath"])
        assert upload.inputs["digest"] == digest_of(package), stack
        assert "function_app.py" in zipfile.ZipFile(package).namelist()


def test_the_upload_waits_for_the_deployers_role_on_the_package_container(
    planned: dict[str, OfflineRun],
) -> None:
    for stack, run in planned.items():
        [upload] = _uploads(run)
        by_urn = {r.urn: r for r in run.records}
        grants = [
            by_urn[u] for u in upload.dependencies if by_urn[u].type.endswith("RoleAssignment")
        ]
        [grant] = grants
        assert grant.inputs["principalId"] == DEPLOYER_OBJECT_ID, stack
        assert grant.inputs["roleDefinitionId"].endswith(ROLE_IDS["BlobDataContributor"])
        assert grant.inputs["scope"].endswith(
            f"/blobServices/default/containers/{contracts.CONTAINER_FUNCTION_PACKAGE}"
        )


def test_function_subscriptions_wait_for_the_code_package(planned: dict[str, OfflineRun]) -> None:
    for stack, run in planned.items():
        [upload] = _uploads(run)
        subscriptions = of_type(run, "eventgrid:SystemTopicEventSubscription")
        assert subscriptions, stack
        for subscription in subscriptions:
            assert upload.urn in subscription.dependencies, subscription.urn


def test_vaults_keep_a_short_retention_outside_production_and_can_be_recovered(
    planned: dict[str, OfflineRun],
) -> None:
    """W14: a purge-protected vault keeps its name while soft-deleted; re-creating the
    installation after a destroy recovers the vaults (createMode) instead of failing."""
    spec = load_stack("dev", ROOT)
    recovering = spec.model_copy(
        update={"key_vaults": spec.key_vaults.model_copy(update={"create_mode": "recover"})}
    )
    runs = {
        ("dev", "default"): planned["dev"],
        ("prod", "default"): planned["prod"],
        ("dev", "recover"): run_offline(lambda: deploy(recovering, stack="dev"), stack="dev"),
    }
    for (stack, mode), run in runs.items():
        vaults = of_type(run, "keyvault:Vault")
        assert vaults
        for vault in vaults:
            properties = vault.inputs["properties"]
            assert properties["createMode"] == mode, vault.urn
            assert properties["softDeleteRetentionInDays"] == (90 if stack == "prod" else 7)
            assert properties["enablePurgeProtection"] is True
            assert "properties.createMode" in vault.ignore_changes


def test_the_expected_state_is_written_once_the_deployer_may_and_lists_every_governed_resource(
    planned: dict[str, OfflineRun],
) -> None:
    from policies.live import ARM_TYPE_OF  # noqa: PLC0415

    for stack, run in planned.items():
        [upload] = [r for r in run.records if r.inputs.get("kind") == contracts.KIND_EXPECTED_STATE]
        assert upload.type == contracts.DYNAMIC_RESOURCE_TYPE
        assert (upload.inputs["containerName"], upload.inputs["blobName"]) == (
            contracts.CONTAINER_PLATFORM_STATE,
            contracts.BLOB_EXPECTED_STATE,
        )
        by_urn = {r.urn: r for r in run.records}
        container = f"/containers/{contracts.CONTAINER_PLATFORM_STATE}"
        [grant] = [
            by_urn[u]
            for u in upload.dependencies
            if str(by_urn[u].inputs.get("scope", "")).endswith(container)
        ]
        assert grant.inputs["principalId"] == DEPLOYER_OBJECT_ID, stack
        assert grant.inputs["roleDefinitionId"].endswith(ROLE_IDS["BlobDataContributor"])
        # Every governed resource of the plan is in the document, by its id.
        document = json.loads(upload.inputs["document"])
        governed = {r.id for r in run.custom_resources() if r.type in ARM_TYPE_OF}
        assert {e["id"] for e in document["resources"]} == governed, stack
        assert (
            upload.inputs["digest"]
            == hashlib.sha256(upload.inputs["document"].encode()).hexdigest()
        )
