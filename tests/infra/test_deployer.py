"""What the deployer does in `pulumi up` itself: the Functions package goes up with Entra
authentication once the deployer may write its container (D1), and the Event Grid
subscriptions to functions wait for it."""

from __future__ import annotations

from infra.offline import OfflineRun, RecordedResource
from tenancy import contracts
from tenancy.rbac import ROLE_IDS
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
        assert "function_app.py" in upload.inputs["files"]


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
