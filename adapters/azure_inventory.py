"""What is deployed in one installation and environment, read for the policy audit
(``automation.audit``) in the shape ARM returns it, from three sources:

- **Azure Resource Graph** for the inventory and its properties: one POST
  (https://learn.microsoft.com/rest/api/azureresourcegraph/resourcegraph/resources/resources,
  api-version 2022-10-01), a KQL query answered in pages of at most 1,000 rows with
  ``$skipToken`` naming the next
  (https://learn.microsoft.com/azure/governance/resource-graph/concepts/work-with-data#paging-results).
  Resource groups are in its ``resourcecontainers`` table, role assignments in
  ``authorizationresources`` (read at the installation's groups), the rest in ``resources``.
- **The Azure ML API** for each workspace's computes, endpoints and deployments: an
  endpoint's traffic and mirror are what the service holds now, changed by every rollout,
  and Resource Graph's copy of a resource lags behind changes
  (https://learn.microsoft.com/azure/governance/resource-graph/overview#how-resource-graph-is-kept-current).
  ARM lists answer ``{"value": [...], "nextLink": ...}``
  (https://learn.microsoft.com/rest/api/machinelearning/online-endpoints/list).
- **The Consumption API** for each resource group's budgets, which Resource Graph does not
  index (https://learn.microsoft.com/rest/api/consumption/budgets/list).

Every call goes through one azure-core pipeline (``adapters.azure_arm``), with no SDK.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.rest import HttpRequest

from adapters.azure_arm import ARM, Arm
from policies.live import ARM_TYPES, LiveResource

GRAPH_API_VERSION = "2022-10-01"
#: azure-native 3.29's Azure ML API version (the review's table): what `pulumi up` wrote.
ML_API_VERSION = "2025-12-01"
#: azure-native 3.29's Consumption API version (consumption.Budget).
CONSUMPTION_API_VERSION = "2024-08-01"
PAGE_ROWS = 1000

COLUMNS = "id, type, name, location, tags, sku, identity, kind, properties"
ROLE_ASSIGNMENT = "microsoft.authorization/roleassignments"
BUDGET = "microsoft.consumption/budgets"
WORKSPACE = "microsoft.machinelearningservices/workspaces"
RESOURCE_GROUP = "microsoft.resources/subscriptions/resourcegroups"
#: Each workspace's collections read from the Azure ML API: (collection, its children's).
ML_COLLECTIONS: tuple[tuple[str, str | None], ...] = (
    ("computes", None),
    ("onlineEndpoints", "deployments"),
    ("batchEndpoints", "deployments"),
)
FROM_ML_API = frozenset(
    f"{WORKSPACE}/{kind}" for kind in ("computes", "onlineendpoints", "onlineendpoints/deployments",
                                       "batchendpoints", "batchendpoints/deployments")
)  # fmt: skip
#: Governed types the ``resources`` table is not asked for: they come from elsewhere.
NOT_IN_RESOURCES_TABLE = frozenset({ROLE_ASSIGNMENT, BUDGET, *FROM_ML_API})


def inventory_query(prefix: str, environment: str) -> str:
    """The governed resources in the installation's resource groups (``rg-<prefix>-<env>-``)."""
    groups = f"rg-{prefix}-{environment}-"
    types = ", ".join(f"'{t}'" for t in sorted(set(ARM_TYPES) - NOT_IN_RESOURCES_TABLE))
    return (
        f"resources | where resourceGroup startswith '{groups}' and type in~ ({types})"
        f" | project {COLUMNS}"
        " | union (resourcecontainers"
        f" | where type =~ '{RESOURCE_GROUP}'"
        f" and name startswith '{groups}' | project {COLUMNS})"
    )


def role_assignments_query(prefix: str, environment: str) -> str:
    """The role assignments whose scope is in the installation's resource groups (of the
    subscriptions the query is sent to)."""
    groups = f"/resourceGroups/rg-{prefix}-{environment}-"
    return (
        f"authorizationresources | where type =~ '{ROLE_ASSIGNMENT}'"
        f" and tostring(properties.scope) contains '{groups}'"
        " | project id, type, name, properties"
    )


class AzureInventory:
    def __init__(
        self, credential: TokenCredential, subscriptions: Sequence[str], **client_options: Any
    ) -> None:
        # Resource Graph answers one query over several subscriptions: every one the stack
        # places stamps in (https://learn.microsoft.com/azure/governance/resource-graph/concepts/query-language#query-scope).
        self.subscriptions = list(subscriptions)
        self.arm = Arm(
            credential,
            user_agent="tenant-mlops-audit",
            transport=client_options.get("transport"),
        )

    def inventory(self, prefix: str, environment: str) -> list[LiveResource]:
        """Every governed resource of the installation's environment."""
        found = [_live(row) for row in self.graph_rows(inventory_query(prefix, environment))]
        query = role_assignments_query(prefix, environment)
        found += [_live(row) for row in self.graph_rows(query)]
        for resource in list(found):
            kind = resource.type.lower()
            if kind == WORKSPACE:
                found += self._workspace_children(resource.id)
            elif kind == RESOURCE_GROUP:
                budgets = f"{resource.id}/providers/Microsoft.Consumption/budgets"
                found += [_live(row) for row in self.arm_list(budgets, CONSUMPTION_API_VERSION)]
        return found

    def _workspace_children(self, workspace_id: str) -> list[LiveResource]:
        children = []
        for collection, nested in ML_COLLECTIONS:
            for row in self.arm_list(f"{workspace_id}/{collection}", ML_API_VERSION):
                children.append(_live(row))
                if nested:
                    url = f"{row['id']}/{nested}"
                    children += [_live(r) for r in self.arm_list(url, ML_API_VERSION)]
        return children

    def graph_rows(self, query: str) -> Iterator[Mapping[str, Any]]:
        """Every row of a Resource Graph ``query``, page by page."""
        skip_token: str | None = None
        while True:
            options: dict[str, Any] = {"resultFormat": "objectArray", "$top": PAGE_ROWS}
            if skip_token:
                options["$skipToken"] = skip_token
            url = f"{ARM}/providers/Microsoft.ResourceGraph/resources"
            answer = self.arm.send(
                HttpRequest(
                    "POST",
                    f"{url}?api-version={GRAPH_API_VERSION}",
                    json={
                        "subscriptions": self.subscriptions,
                        "query": query,
                        "options": options,
                    },
                ),
                "the Resource Graph query for the policy audit",
            )
            yield from answer.get("data") or []
            skip_token = answer.get("$skipToken")
            if not skip_token:
                return

    def arm_list(self, path: str, api_version: str) -> Iterator[Mapping[str, Any]]:
        """Every item of an ARM list; nothing when the parent is gone (deleted since the
        inventory was read)."""
        return self.arm.list(path, api_version, f"reading {path} for the policy audit")


def _live(row: Mapping[str, Any]) -> LiveResource:
    body = {
        key: row.get(key) for key in ("location", "tags", "sku", "identity", "kind", "properties")
    }
    return LiveResource(str(row["id"]), str(row["type"]), str(row["name"]), body)
