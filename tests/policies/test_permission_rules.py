"""identity-permissions: a compliant and a violating plan for each way a grant can be
missing (no role, wrong role, wrong scope, too late, wrong principal)."""

from __future__ import annotations

from typing import Any

from infra.offline import OfflineRun
from policies.catalogue import BY_NAME
from policies.core import Finding, Props, Resource, Stack, run_stack_rule
from tenancy import contracts
from tenancy.permissions import NEEDS, SCORE_ACTION
from tenancy.rbac import ROLE_IDS
from tests.policies.conftest import planned_resource as res

SUB = "/subscriptions/00000000-0000-4000-8000-00000000c0de"


def grant(name: str, principal: str, role: str, scope: str) -> Resource:
    props = {
        "roleDefinitionId": f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
        f"{ROLE_IDS[role]}"
    }
    return res(
        "authorization:RoleAssignment", name, props, {"principalId": [principal], "scope": [scope]}
    )


WORKSPACE_GRANTS = [
    grant("g-rg", "id", "C", "rg"),
    grant("g-st", "id", "BlobDataContributor", "st"),
    grant("g-kv", "id", "KVA", "kv"),
    grant("g-appi", "id", "MonitoringMetricsPublisher", "appi"),
]


def workspace_plan(grants: list[Resource], *, cmk: bool = False) -> list[Resource]:
    props: dict[str, Any] = {"encryption": {"status": "Enabled"}} if cmk else {}
    return [
        res("resources:ResourceGroup", "rg"),
        res("managedidentity:UserAssignedIdentity", "id", {}, {"resourceGroupName": ["rg"]}),
        res("storage:StorageAccount", "st", {}, {"resourceGroupName": ["rg"]}),
        res("keyvault:Vault", "kv", {}, {"resourceGroupName": ["rg"]}),
        res("containerregistry:Registry", "acr", {}, {"resourceGroupName": ["rg"]}),
        res("applicationinsights:Component", "appi", {}, {"resourceGroupName": ["rg"]}),
        *grants,
        res(
            "machinelearningservices:Workspace",
            "ws",
            props,
            {
                "resourceGroupName": ["rg"],
                "primaryUserAssignedIdentity": ["id"],
                "storageAccount": ["st"],
                "keyVault": ["kv"],
                "containerRegistry": ["acr"],
                "applicationInsights": ["appi"],
            },
            after=[g.name for g in grants],
        ),
    ]


def run(resources: list[Resource]) -> list[Finding]:
    return run_stack_rule(BY_NAME["identity-permissions"], Stack(resources), {})


def test_a_workspace_identity_with_what_microsoft_documents_passes() -> None:
    assert run(workspace_plan(WORKSPACE_GRANTS)) == []
    # Key Vault Administrator also wraps and unwraps a customer-managed key.
    assert run(workspace_plan(WORKSPACE_GRANTS, cmk=True)) == []


def test_a_cmk_workspace_whose_identity_only_reads_the_vault_is_named() -> None:
    """D4: Key Vault Reader reads metadata only; the key cannot be unwrapped."""
    grants = [g for g in WORKSPACE_GRANTS if g.name != "g-kv"] + [grant("g-kv", "id", "KVR", "kv")]
    [finding] = run(workspace_plan(grants, cmk=True))
    assert finding.urn == "urn:ws"
    assert "cannot get, wrap and unwrap the customer-managed key on 'kv'" in finding.message
    assert "how-to-setup-customer-managed-keys" in finding.message


def test_control_plane_storage_contributor_is_no_data_access() -> None:
    """D5: Storage Account Contributor (here Contributor on the group) does not read blobs."""
    grants = [g for g in WORKSPACE_GRANTS if g.name != "g-st"]
    [finding] = run(workspace_plan(grants))
    assert "read and write its system datastores on 'st'" in finding.message


def test_a_group_grant_covers_the_groups_resources_and_a_grant_elsewhere_does_not() -> None:
    elsewhere = [res("resources:ResourceGroup", "rg-other")]
    grants = [g for g in WORKSPACE_GRANTS if g.name != "g-st"]
    moved = [*grants, grant("g-st", "id", "BlobDataContributor", "rg-other")]
    assert run([*elsewhere, *workspace_plan(moved)]) != []
    at_group = [*grants, grant("g-st", "id", "BlobDataOwner", "rg")]
    assert run(workspace_plan(at_group)) == []


def test_a_grant_to_another_principal_does_not_count() -> None:
    grants = [g for g in WORKSPACE_GRANTS if g.name != "g-kv"] + [
        grant("g-kv", "other", "KVA", "kv")
    ]
    other = res("managedidentity:UserAssignedIdentity", "other")
    [finding] = run([other, *workspace_plan(grants)])
    assert "manage the workspace's secrets" in finding.message


def test_a_grant_the_workspace_does_not_wait_for_is_too_late() -> None:
    plan = workspace_plan(WORKSPACE_GRANTS)
    workspace = plan[-1]
    hurried = Resource(
        workspace.type,
        workspace.urn,
        workspace.name,
        workspace.props,
        property_dependencies=workspace.property_dependencies,
        dependencies=frozenset({"urn:g-rg", "urn:g-st", "urn:g-appi"}),
    )
    [finding] = run([*plan[:-1], hurried])
    assert "before ws is created, which does not wait for the assignment" in finding.message


def _gateway_plan(actions: list[str]) -> list[Resource]:
    role = res(
        "authorization:RoleDefinition",
        "scorer",
        {"permissions": [{"actions": actions}]},
    )
    assignment = res(
        "authorization:RoleAssignment",
        "g-score",
        {"roleDefinitionId": "computed"},
        {"principalId": ["apim"], "scope": ["ep"], "roleDefinitionId": ["scorer"]},
    )
    return [
        res("apimanagement:ApiManagementService", "apim"),
        res("machinelearningservices:OnlineEndpoint", "ep"),
        res("apimanagement:Backend", "backend", {}, {"serviceName": ["apim"], "url": ["ep"]}),
        role,
        assignment,
    ]


def test_the_gateway_scores_through_a_custom_role_that_holds_the_score_action() -> None:
    assert run(_gateway_plan([SCORE_ACTION])) == []
    [finding] = run(_gateway_plan(["Microsoft.MachineLearningServices/workspaces/read"]))
    assert "cannot score the online endpoint it routes to on 'ep'" in finding.message


def _chat_plan(grants: list[Resource]) -> list[Resource]:
    """The gateway with a backend on an AI Services account and a token metrics logger."""
    return [
        res("apimanagement:ApiManagementService", "apim"),
        res("cognitiveservices:Account", "ai"),
        res("applicationinsights:Component", "appi"),
        res("apimanagement:Backend", "ai-backend", {}, {"serviceName": ["apim"], "url": ["ai"]}),
        res(
            "apimanagement:Logger",
            "logger",
            {},
            {"serviceName": ["apim"], "resourceId": ["appi"]},
        ),
        *grants,
    ]


def test_the_gateway_calls_ai_accounts_and_publishes_metrics_only_with_its_roles() -> None:
    granted = [
        grant("g-ai", "apim", "CognitiveServicesOpenAIUser", "ai"),
        grant("g-appi", "apim", "MonitoringMetricsPublisher", "appi"),
    ]
    assert run(_chat_plan(granted)) == []
    # Reader on the account is no data-plane access: the chat calls would be refused.
    [finding] = run(_chat_plan([grant("g-ai", "apim", "R", "ai")]))
    assert "cannot call its tenants' model deployments (chat completions)" in finding.message
    assert "on 'ai'" in finding.message
    assert (
        "send token metrics (llm-emit-token-metric) to the platform's App Insights on 'appi'"
        in (finding.message)
    )


def test_every_need_links_the_microsoft_document_and_names_known_roles() -> None:
    for need in NEEDS:
        assert need.doc.startswith("https://learn.microsoft.com/"), need
        for role in need.roles:
            assert role.startswith("action:") or role in ROLE_IDS, (need, role)


def _deployer_plan(grants: list[Resource]) -> list[Resource]:
    """The deployer writes the expected state into the platform account."""
    deployer = "00000000-0000-4000-8000-0000000000d2"
    upload = Resource(
        contracts.DYNAMIC_RESOURCE_TYPE,
        "urn:expected-state",
        "expected-state",
        Props({"kind": contracts.KIND_EXPECTED_STATE, "uploaderObjectId": deployer}),
        property_dependencies={"accountName": frozenset({"urn:st"})},
        dependencies=frozenset(g.urn for g in grants),
    )
    literal = [
        Resource(g.type, g.urn, g.name, Props({**g.props.raw, "principalId": deployer}),
                 property_dependencies={"scope": frozenset({"urn:st"})})
        for g in grants
    ]  # fmt: skip
    return [res("storage:StorageAccount", "st"), *literal, upload]


def test_the_deployer_writes_the_expected_state_only_with_a_data_role_on_the_account() -> None:
    assert run(_deployer_plan([grant("g-st", "-", "BlobDataContributor", "st")])) == []
    [finding] = run(_deployer_plan([]))
    assert finding.urn == "urn:expected-state"
    assert "no BlobDataContributor or BlobDataOwner assigned there" in finding.message
    [control_plane_only] = run(_deployer_plan([grant("g-st", "-", "C", "st")]))
    assert control_plane_only.urn == finding.urn


def _pipeline_plan(environment: str, grants: list[Resource]) -> list[Resource]:
    """One pipeline identity trusting a GitHub environment, the platform's resources."""
    return [
        res("resources:ResourceGroup", "rg"),
        res("storage:StorageAccount", "st", {}, {"resourceGroupName": ["rg"]}),
        res("web:WebApp", "app", {}, {"resourceGroupName": ["rg"], "siteConfig": ["st"]}),
        res("managedidentity:UserAssignedIdentity", "pipe", {}, {"resourceGroupName": ["rg"]}),
        res(
            "managedidentity:FederatedIdentityCredential",
            "pipe-github",
            {"subject": f"repo:contoso-platform/tenant-mlops:environment:{environment}"},
            {"resourceName": ["pipe"]},
        ),
        *grants,
    ]


def test_each_pipeline_identity_is_held_to_what_its_workflow_does() -> None:
    deploy = [grant("g-c", "pipe", "C", "rg"), grant("g-rbac", "pipe", "RBACAdministrator", "rg")]
    assert run(_pipeline_plan("dev", deploy)) == []
    [missing] = run(_pipeline_plan("dev", deploy[:1]))
    assert missing.urn == "urn:pipe" and "deploy_pipeline" in missing.message
    assert "cannot assign the platform identities' roles (pulumi up) on 'rg'" in missing.message
    # The report identity reads tables: Reader on the group is no data access.
    assert run(_pipeline_plan("dev-report", [grant("g-t", "pipe", "TableDataReader", "st")])) == []
    [control_plane] = run(_pipeline_plan("dev-report", [grant("g-r", "pipe", "R", "rg")]))
    assert "cannot read the automation's state tables" in control_plane.message
    assert run(_pipeline_plan("dev-preview", [grant("g-r", "pipe", "R", "rg")])) == []


def test_the_example_stacks_pipeline_identities_are_found_and_hold_their_roles(
    planned: dict[str, OfflineRun],
) -> None:
    from policies.offline import as_resource  # noqa: PLC0415
    from policies.permission_rules import PlanView, holders  # noqa: PLC0415

    for stack in ("dev", "staging", "prod"):
        resources = [as_resource(r) for r in planned[stack].records]
        found = {
            h.identity: h.serves.name
            for h in holders(PlanView(Stack(resources)))
            if h.identity.endswith("_pipeline")
        }
        assert found == {
            "deploy_pipeline": "delivery-deploy-id",
            "preview_pipeline": "delivery-preview-id",
            "report_pipeline": "delivery-report-id",
        }, stack
        assert run(resources) == [], stack
