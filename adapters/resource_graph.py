"""Azure Resource Graph: the deployed resources of one installation and environment, read
for the policy audit (``automation.audit``) in the shape ARM returns them.

Resource Graph's query API is one POST
(https://learn.microsoft.com/rest/api/azureresourcegraph/resourcegraph/resources/resources,
api-version 2022-10-01): a KQL query over the subscriptions, answered in pages of at most
1,000 rows with ``$skipToken`` naming the next page
(https://learn.microsoft.com/azure/governance/resource-graph/concepts/work-with-data#paging-results).
Resource groups are in the ``resourcecontainers`` table, role assignments in
``authorizationresources``, everything else in ``resources``.
It is called through an azure-core pipeline (bearer token, retries), with no SDK of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest

from policies.live import ARM_TYPES, LiveResource

ARM = "https://management.azure.com"
API_VERSION = "2022-10-01"
SCOPE = f"{ARM}/.default"
PAGE_ROWS = 1000

COLUMNS = "id, type, name, location, tags, sku, identity, kind, properties"
ROLE_ASSIGNMENT = "microsoft.authorization/roleassignments"
#: Governed types the ``resources`` table does not hold: role assignments are in
#: ``authorizationresources`` (read by a query of their own) and budgets are not indexed
#: (https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources).
NOT_IN_RESOURCES_TABLE = frozenset({ROLE_ASSIGNMENT, "microsoft.consumption/budgets"})
#: Rules that need what this inventory does not read yet (budgets), left to the plan.
UNJUDGED_RULES = frozenset({"tenant-budgets"})


def inventory_query(prefix: str, environment: str) -> str:
    """The governed resources in the installation's resource groups (``rg-<prefix>-<env>-``)."""
    groups = f"rg-{prefix}-{environment}-"
    types = ", ".join(f"'{t}'" for t in sorted(set(ARM_TYPES) - NOT_IN_RESOURCES_TABLE))
    return (
        f"resources | where resourceGroup startswith '{groups}' and type in~ ({types})"
        f" | project {COLUMNS}"
        " | union (resourcecontainers"
        " | where type =~ 'microsoft.resources/subscriptions/resourcegroups'"
        f" and name startswith '{groups}' | project {COLUMNS})"
    )


def role_assignments_query(subscription_id: str, prefix: str, environment: str) -> str:
    """The role assignments whose scope is in the installation's resource groups."""
    groups = f"/subscriptions/{subscription_id}/resourceGroups/rg-{prefix}-{environment}-"
    return (
        f"authorizationresources | where type =~ '{ROLE_ASSIGNMENT}'"
        f" and tostring(properties.scope) startswith '{groups}'"
        " | project id, type, name, properties"
    )


class ResourceGraph:
    def __init__(
        self, credential: TokenCredential, subscription_id: str, **client_options: Any
    ) -> None:
        self.subscription_id = subscription_id
        policies = [
            UserAgentPolicy(user_agent="tenant-mlops-audit"),
            RetryPolicy(),  # throttling (429) and transient 5xx, as the SDKs retry
            BearerTokenCredentialPolicy(credential, SCOPE),
        ]
        self.client: PipelineClient[HttpRequest, Any] = PipelineClient(
            base_url=ARM, policies=policies, transport=client_options.get("transport")
        )

    def rows(self, query: str) -> Iterator[Mapping[str, Any]]:
        """Every row of ``query``, page by page."""
        skip_token: str | None = None
        while True:
            options: dict[str, Any] = {"resultFormat": "objectArray", "$top": PAGE_ROWS}
            if skip_token:
                options["$skipToken"] = skip_token
            request = HttpRequest(
                "POST",
                f"{ARM}/providers/Microsoft.ResourceGraph/resources?api-version={API_VERSION}",
                json={"subscriptions": [self.subscription_id], "query": query, "options": options},
            )
            response = self.client.send_request(request)
            response.raise_for_status()
            answer = response.json()
            yield from answer.get("data") or []
            skip_token = answer.get("$skipToken")
            if not skip_token:
                return

    def inventory(self, prefix: str, environment: str) -> list[LiveResource]:
        queries = (
            inventory_query(prefix, environment),
            role_assignments_query(self.subscription_id, prefix, environment),
        )
        return [
            LiveResource(str(row["id"]), str(row["type"]), str(row["name"]), _body(row))
            for query in queries
            for row in self.rows(query)
        ]


def _body(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: row.get(key) for key in ("location", "tags", "sku", "identity", "kind", "properties")
    }
