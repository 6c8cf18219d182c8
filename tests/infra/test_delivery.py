"""The pipelines' identities: per Azure stack, a deploy identity trusted for the GitHub
environment of the stack with standing rights to run `pulumi up`, and a preview identity
trusted for `<env>-preview` that can only read. No secret: federated credentials only."""

from __future__ import annotations

from infra.delivery import GITHUB_ISSUER, PROMOTER_ROLES, TOKEN_EXCHANGE_AUDIENCE
from infra.offline import SUBSCRIPTION_ID, OfflineRun, RecordedResource
from tenancy import PlatformSpec
from tenancy.rbac import ROLE_IDS
from tests.infra.conftest import of_type

AZURE_STACKS = ("dev", "staging", "prod")


def _identity(run: OfflineRun, name: str) -> RecordedResource:
    [found] = [
        i
        for i in of_type(run, "managedidentity:UserAssignedIdentity")
        if i.inputs["resourceName"] == name
    ]
    return found


def _roles_of(run: OfflineRun, identity: RecordedResource) -> dict[str, str]:
    """Role definition id -> scope of each assignment to ``identity``."""
    return {
        a.inputs["roleDefinitionId"].rsplit("/", 1)[-1]: a.inputs["scope"]
        for a in of_type(run, "authorization:RoleAssignment")
        if identity.urn in a.property_dependencies.get("principalId", frozenset())
    }


def test_each_azure_stack_trusts_its_github_environments_and_no_other(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    for stack in AZURE_STACKS:
        run = planned[stack]
        repository = specs[stack].delivery.github_repository
        credentials = of_type(run, "managedidentity:FederatedIdentityCredential")
        subjects = sorted(c.inputs["subject"] for c in credentials)
        assert subjects == [
            f"repo:{repository}:environment:{stack}",
            f"repo:{repository}:environment:{stack}-preview",
            f"repo:{repository}:environment:{stack}-report",
        ], stack
        for credential in credentials:
            assert credential.inputs["issuer"] == GITHUB_ISSUER
            assert credential.inputs["audiences"] == [TOKEN_EXCHANGE_AUDIENCE]
    # The embedded platform's stack is deployed by nobody's pipeline.
    assert not of_type(planned["local"], "managedidentity:FederatedIdentityCredential")


def test_the_deploy_identity_holds_standing_rights_and_the_preview_identity_reads(
    planned: dict[str, OfflineRun],
) -> None:
    for stack in AZURE_STACKS:
        run = planned[stack]
        subscription = f"/subscriptions/{SUBSCRIPTION_ID}"
        deploy = _roles_of(run, _identity(run, f"id-pipeline-{stack}"))
        assert deploy == {
            ROLE_IDS["C"]: subscription,
            ROLE_IDS["RBACAdministrator"]: subscription,
        }, stack
        preview = _roles_of(run, _identity(run, f"id-preview-{stack}"))
        assert preview == {ROLE_IDS["R"]: subscription}, stack
        # The scheduled report reads the state tables of its installation, and nothing else.
        reporter = _identity(run, f"id-report-{stack}")
        assert list(_roles_of(run, reporter)) == [ROLE_IDS["TableDataReader"]], stack
        [granted] = [
            a
            for a in of_type(run, "authorization:RoleAssignment")
            if reporter.urn in a.property_dependencies.get("principalId", frozenset())
        ]
        [scope] = granted.property_dependencies["scope"]
        assert scope.endswith("SharedServices$azure-native:storage:StorageAccount::platform-st")
        # Standing assignments: an eligibility is no use to a pipeline, which cannot
        # activate one (even in prod, where people's CI/CD rights are just in time).
        eligible = of_type(run, "authorization:PimRoleEligibilitySchedule")
        pipelines = {
            _identity(run, f"id-{p}-{stack}").urn for p in ("pipeline", "preview", "report")
        }
        assert not [
            e
            for e in eligible
            if pipelines & set(e.property_dependencies.get("principalId", frozenset()))
        ]


def test_the_next_environments_pipeline_may_read_the_champion_it_promotes(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    subscription = f"/subscriptions/{SUBSCRIPTION_ID}"
    for stack in AZURE_STACKS:
        run = planned[stack]
        promoters = specs[stack].delivery.promoted_by
        granted = sorted(
            (a.inputs["principalId"], a.inputs["roleDefinitionId"].rsplit("/", 1)[-1])
            for a in of_type(run, "authorization:RoleAssignment")
            if a.inputs.get("principalId") in promoters
        )
        assert granted == sorted(
            (promoter, ROLE_IDS[role]) for promoter in promoters for role in PROMOTER_ROLES
        ), stack
        scopes = {
            a.inputs["scope"]
            for a in of_type(run, "authorization:RoleAssignment")
            if a.inputs.get("principalId") in promoters
        }
        assert scopes <= {subscription}, stack
    # dev and staging promote onwards; prod, the last, is promoted from by nobody.
    assert specs["dev"].delivery.promoted_by and specs["staging"].delivery.promoted_by
    assert not specs["prod"].delivery.promoted_by
