"""The identities the CI/CD pipelines (``.github/workflows``) sign in to Azure as.

Two per environment, each a user-assigned managed identity with one federated credential
that trusts GitHub's OIDC tokens for one GitHub environment of the repository
(``repo:<owner>/<repo>:environment:<name>``), so no client secret exists anywhere:

- ``id-pipeline-<env>``, the ``deploy`` workflow's ``pulumi up`` in GitHub environment
  ``<env>`` (staging and prod behind required reviewers): Contributor and Role Based Access
  Control Administrator on the subscription, *standing* assignments. `pulumi up` creates
  resource groups and role assignments; a just-in-time eligibility is no use to a pipeline,
  which cannot activate one.
- ``id-preview-<env>``, the pull request's ``pulumi preview`` in GitHub environment
  ``<env>-preview``: Reader on the subscription, nothing it could change.
- ``id-report-<env>``, the scheduled drift and quality report (``watch-report`` workflow)
  in GitHub environment ``<env>-report``: Storage Table Data Reader on the platform storage
  account alone, where the automation records what it measured and did. Reading table
  data takes a data-plane role; Reader on the subscription grants none
  (https://learn.microsoft.com/azure/storage/tables/authorize-access-azure-active-directory#azure-built-in-roles-for-tables).

- the next environment's deploy pipeline (``delivery.promoted_by``, its object id): Reader
  and Storage Blob Data Reader on this subscription, to read the champion it promotes.

The first `pulumi up` of a stack is a person's (the identities do not exist before it); the
pipelines run every later one. Rules relied on:
- a user-assigned identity trusts an external issuer through a federated identity credential
  (issuer, subject, audience ``api://AzureADTokenExchange``):
  https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust-user-assigned-managed-identity
- GitHub's token for a job in an environment has the subject
  ``repo:<owner>/<repo>:environment:<name>``:
  https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect#example-subject-claims
- Role Based Access Control Administrator may create role assignments, which Contributor may
  not: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/privileged
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import managedidentity

from infra.common import Principal, assign_role
from infra.shared import SharedServices
from tenancy.spec import PlatformSpec

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
#: Role codes (tenancy.rbac.ROLE_IDS) of each pipeline identity, on the subscription
#: (deploy, preview) or on the platform storage account (report).
DEPLOY_ROLES = ("C", "RBACAdministrator")
PREVIEW_ROLES = ("R",)
REPORT_ROLES = ("TableDataReader",)
#: What the next environment's deploy pipeline (delivery.promoted_by) holds here.
PROMOTER_ROLES = ("R", "BlobDataReader")


def github_subject(repository: str, environment: str) -> str:
    return f"repo:{repository}:environment:{environment}"


@dataclass
class DeliveryArgs:
    spec: PlatformSpec
    shared: SharedServices
    subscription_id: pulumi.Input[str]
    repository: str  # owner/name


class Delivery(pulumi.ComponentResource):
    """The deploy and preview pipelines' identities, trusted for their GitHub environments."""

    def __init__(
        self, name: str, args: DeliveryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:delivery:Delivery", name, {"stamp": "platform"}, opts)
        self._name = name
        self._args = args
        env = args.spec.environment.value
        subscription = pulumi.Output.concat("/subscriptions/", args.subscription_id)
        on_subscription = (subscription, f"{args.spec.prefix}/{env}/subscription")
        self.deploy_identity = self._create_pipeline_identity(
            "deploy", env, DEPLOY_ROLES, on_subscription
        )
        self.preview_identity = self._create_pipeline_identity(
            "preview", f"{env}-preview", PREVIEW_ROLES, on_subscription
        )
        on_state = (args.shared.storage.id, f"{args.spec.prefix}/{env}/platform-storage")
        self.report_identity = self._create_pipeline_identity(
            "report", f"{env}-report", REPORT_ROLES, on_state
        )
        self._grant_promotion_reads(subscription, f"{args.spec.prefix}/{env}/subscription")
        self.register_outputs(
            {
                "deployClientId": self.deploy_identity.client_id,
                # What the previous environment's stack names in delivery.promoted_by.
                "deployPrincipalId": self.deploy_identity.principal_id,
                "previewClientId": self.preview_identity.client_id,
                "reportClientId": self.report_identity.client_id,
                "githubEnvironments": [env, f"{env}-preview", f"{env}-report"],
            }
        )

    def _grant_promotion_reads(self, scope: pulumi.Input[str], scope_key: str) -> None:
        """The next environment's deploy pipeline reads this one's champion to promote it:
        its tags and training run (Reader: read actions) and its baseline blob (Storage Blob
        Data Reader: reading blob data is a data action, which Reader does not hold:
        https://learn.microsoft.com/azure/storage/blobs/assign-azure-role-data-access).
        That the registry's import of the workspace model reads it with the caller's
        rights is an assumption no Microsoft document states; Reader is what it needs if so."""
        delivery = self._args.spec.delivery
        for index, object_id in enumerate(delivery.promoted_by):
            principal = Principal(f"promoter-{index}", object_id, "ServicePrincipal")
            for role in PROMOTER_ROLES:
                assign_role(
                    f"{self._name}-promoter-{index}-{role.lower()}",
                    principal=principal,
                    role_code=role,
                    scope=scope,
                    scope_key=scope_key,
                    subscription_id=self._args.subscription_id,
                    parent=self,
                    description=f"{delivery.promotes_to}'s deploy pipeline: promotes from here",
                )

    def _create_pipeline_identity(
        self,
        purpose: str,
        github_environment: str,
        roles: tuple[str, ...],
        on: tuple[pulumi.Input[str], str],
    ) -> managedidentity.UserAssignedIdentity:
        """The identity, its federated credential, and ``roles`` on ``on`` (scope, key)."""
        spec, shared = self._args.spec, self._args.shared
        label = "pipeline" if purpose == "deploy" else purpose
        identity = managedidentity.UserAssignedIdentity(
            f"{self._name}-{purpose}-id",
            resource_group_name=shared.resource_group.name,
            resource_name_=f"id-{label}-{spec.environment.value}",
            location=spec.location,
            tags=shared.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        managedidentity.FederatedIdentityCredential(
            f"{self._name}-{purpose}-github",
            resource_group_name=shared.resource_group.name,
            resource_name_=identity.name,
            federated_identity_credential_resource_name="github",
            issuer=GITHUB_ISSUER,
            subject=github_subject(self._args.repository, github_environment),
            audiences=[TOKEN_EXCHANGE_AUDIENCE],
            opts=pulumi.ResourceOptions(parent=identity),
        )
        principal = Principal(f"{purpose}-pipeline", identity.principal_id, "ServicePrincipal")
        scope, scope_key = on
        for role in roles:
            assign_role(
                f"{self._name}-{purpose}-{role.lower()}",
                principal=principal,
                role_code=role,
                scope=scope,
                scope_key=scope_key,
                subscription_id=self._args.subscription_id,
                parent=identity,
                description=f"{purpose} pipeline ({github_environment}): standing, not eligible",
            )
        return identity
