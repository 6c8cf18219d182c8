"""Ground truth on Azure: API Management signs each score's request id for the tenant and
takes labels on ``POST /score/feedback``, judged as the embedded gateway judges them and
written to the tenant's datastore with the gateway's own identity."""

from __future__ import annotations

from xml.etree import ElementTree

from infra.gateway import FEEDBACK_OPERATION, REQUEST_ID_KEY, STORAGE_TOKEN_AUDIENCE
from infra.offline import OfflineRun
from tenancy import PlatformSpec, contracts
from tenancy.rbac import ROLE_IDS
from tests.infra.conftest import of_type, scoring_policies, stamp_of, tenant_of


def _policies(run: OfflineRun) -> dict[str | None, ElementTree.Element]:
    return {
        tenant_of(run, p): ElementTree.fromstring(p.inputs["value"]) for p in scoring_policies(run)
    }


def test_the_api_takes_labels_beside_scores_and_keeps_the_signing_key_secret(
    planned: dict[str, OfflineRun],
) -> None:
    run = planned["prod"]
    operations = {
        o.inputs["operationId"]: o.inputs for o in of_type(run, "apimanagement:ApiOperation")
    }
    assert operations[FEEDBACK_OPERATION]["method"] == "POST"
    assert operations[FEEDBACK_OPERATION]["urlTemplate"] == "/feedback"
    [key] = [
        v
        for v in of_type(run, "apimanagement:NamedValue")
        if v.inputs["namedValueId"] == REQUEST_ID_KEY
    ]
    assert key.inputs["namedValueId"] == REQUEST_ID_KEY and key.inputs["secret"] is True
    [random] = [r for r in run.records if r.type == "random:index/randomPassword:RandomPassword"]
    assert random.inputs["special"] is False and random.inputs["length"] >= 32
    # Only scores are rewritten to the endpoint's /score.
    [api_policy] = [
        p for p in of_type(run, "apimanagement:ApiPolicy") if p.inputs["apiId"] == "scoring"
    ]
    [rewrite] = [
        when
        for when in ElementTree.fromstring(api_policy.inputs["value"]).findall(
            "./inbound/choose/when"
        )
        if when.find("rewrite-uri") is not None
    ]
    assert rewrite.get("condition") == f'@(context.Operation.Id != "{FEEDBACK_OPERATION}")'


def test_each_tenants_scores_carry_a_request_id_signed_for_that_tenant(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    for tenant_id, xml in _policies(planned["prod"]).items():
        assert tenant_id is not None
        issue = xml.find("./inbound/set-variable[@name='requestId']")
        assert issue is not None
        code = str(issue.get("value"))
        # tenancy.request_ids: HMAC-SHA256 over "<tenant>:<issued>:<nonce>", 16 bytes in hex.
        assert f'"{tenant_id}:" + issued + ":" + nonce' in code
        assert f"{{{{{REQUEST_ID_KEY}}}}}" in code and "HMACSHA256" in code
        assert "Substring(0, 32)" in code and "Substring(0, 16)" in code
        for section in ("inbound", "outbound"):
            header = xml.find(f"./{section}/set-header[@name='x-request-id']")
            assert header is not None, (tenant_id, section)


def test_labels_are_judged_and_written_to_the_tenants_datastore_by_the_gateway(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    run, spec = planned["prod"], specs["prod"]
    storage = {stamp_of(run, s): s for s in of_type(run, "storage:StorageAccount")}
    workspaces = {stamp_of(run, w): w for w in of_type(run, "machinelearningservices:Workspace")}
    policies = _policies(run)
    for tenant in spec.tenants:
        if tenant.id not in policies:
            continue  # batch only
        feedback = policies[tenant.id].find("./inbound/choose/when")
        assert feedback is not None and FEEDBACK_OPERATION in str(feedback.get("condition"))
        judge = str(feedback.find("set-variable[@name='labels']").get("value"))  # type: ignore[union-attr]
        assert f"seconds <= issued + {spec.quality.label_horizon_hours * 3600}" in judge
        assert f"labels.Count > {spec.quality.max_labels_per_request}" in judge
        assert f'new JProperty("tenant", "{tenant.id}")' in judge
        write = feedback.find("choose/when/send-request")
        assert write is not None and write.findtext("set-method") == "PUT"
        identity = write.find("authentication-managed-identity")
        assert identity is not None and identity.get("resource") == STORAGE_TOKEN_AUDIENCE
        account = storage[tenant.stamp_key].state["name"]
        workspace = workspaces[tenant.stamp_key].state["workspaceId"]
        folder = (
            f"https://{account}.blob.core.windows.net/azureml-blobstore-{workspace}/"
            f"{contracts.COLLECTOR_ROOT}/{spec.online_endpoint_name(tenant.id)}/"
            f"{contracts.COLLECTION_LABELS}/"
        )
        assert folder in str(write.findtext("set-url")), tenant.id
        # The endpoint never sees labels: every path of the branch returns a response.
        assert len(feedback.findall(".//return-response")) == 3


def test_the_gateway_may_write_labels_only_into_each_datastore_container(
    planned: dict[str, OfflineRun],
) -> None:
    run = planned["prod"]
    [service] = of_type(run, "apimanagement:ApiManagementService")
    gateway = service.state["identity"]["principalId"]
    workspaces = {stamp_of(run, w): w for w in of_type(run, "machinelearningservices:Workspace")}
    grants = [
        g for g in of_type(run, "authorization:RoleAssignment")
        if g.inputs["principalId"] == gateway
        and g.inputs["roleDefinitionId"].endswith(ROLE_IDS["BlobDataContributor"])
    ]  # fmt: skip
    endpoints = {stamp_of(run, e) for e in of_type(run, "machinelearningservices:OnlineEndpoint")}
    assert {stamp_of(run, g) for g in grants} == endpoints
    for grant in grants:
        workspace = workspaces[stamp_of(run, grant)].state["workspaceId"]
        assert grant.inputs["scope"].endswith(f"/containers/azureml-blobstore-{workspace}")
