"""Azure Resource Graph at the HTTP level: the inventory query the policy audit runs, sent as
the REST API takes it, read page by page (``$skipToken``) as ARM-shaped resources."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from adapters.azure import AzurePlatform
from adapters.resource_graph import (
    API_VERSION,
    ROLE_ASSIGNMENT,
    ResourceGraph,
    inventory_query,
    role_assignments_query,
)
from policies.live import LiveResource
from tenancy import PlatformSpec
from tests.adapters.fake_arm import FakeArm, FakeCredential

SUB = "00000000-0000-4000-8000-00000000beef"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-tmlops-local-tenant-contoso/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-tenant-contoso-loc"
)


@dataclass
class PagedGraph(FakeArm):
    """Answers the query in pages of one row, as the service pages with ``$skipToken``
    (the response shape of the REST reference's "Basic query" example)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)

    def _table(self, query: str) -> list[dict[str, Any]]:
        """The rows of the table the query reads (role assignments live apart)."""
        assignments = query.startswith("authorizationresources")
        return [r for r in self.rows if (r["type"] == ROLE_ASSIGNMENT) == assignments]

    def send(self, request: Any, **kwargs: Any) -> Any:
        assert request.method == "POST" and request.url.endswith(
            f"/providers/Microsoft.ResourceGraph/resources?api-version={API_VERSION}"
        ), request.url
        assert request.headers["Authorization"] == "Bearer fake-token"
        body = json.loads(request.content)
        self.queries.append(body)
        rows = self._table(body["query"])
        start = int(body["options"].get("$skipToken") or 0)
        page = rows[start : start + 1]
        answer: dict[str, Any] = {
            "totalRecords": len(rows),
            "count": len(page),
            "resultTruncated": "false",
            "data": page,
        }
        if start + 1 < len(rows):
            answer["$skipToken"] = str(start + 1)
        response = self._respond(request, 200, answer)
        response.read()  # as azure-core's requests transport does for a non-stream call
        return response


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "id": WS,
            "type": "microsoft.machinelearningservices/workspaces",
            "name": "mlw-tenant-contoso-loc",
            "location": "westeurope",
            "tags": {"tenant-id": "contoso"},
            "sku": None,
            "identity": None,
            "kind": "Default",
            "properties": {"publicNetworkAccess": "Disabled"},
        },
        {
            "id": f"{WS}/onlineEndpoints/ep",
            "type": "microsoft.machinelearningservices/workspaces/onlineendpoints",
            "name": "ep",
            "location": "westeurope",
            "tags": {"tenant-id": "contoso"},
            "properties": {"traffic": {"blue": 100}, "mirrorTraffic": {"blue": 60}},
        },
    ]


def test_every_page_of_the_installations_resources_is_read() -> None:
    graph = PagedGraph(rows=_rows())
    found = ResourceGraph(FakeCredential(), SUB, transport=graph).inventory("tmlops", "local")  # type: ignore[arg-type]
    assert [r.name for r in found] == ["mlw-tenant-contoso-loc", "ep"]
    assert found[1] == LiveResource(
        f"{WS}/onlineEndpoints/ep",
        "microsoft.machinelearningservices/workspaces/onlineendpoints",
        "ep",
        {
            "location": "westeurope",
            "tags": {"tenant-id": "contoso"},
            "sku": None,
            "identity": None,
            "kind": None,
            "properties": {"traffic": {"blue": 100}, "mirrorTraffic": {"blue": 60}},
        },
    )
    first, second, assignments = graph.queries
    assert first["subscriptions"] == [SUB] and "$skipToken" not in first["options"]
    assert second["options"]["$skipToken"] == "1"
    assert first["query"] == inventory_query("tmlops", "local")
    assert "resourceGroup startswith 'rg-tmlops-local-'" in first["query"]
    assert "resourcecontainers" in first["query"]
    # Role assignments are read from their own table, by the scope they grant on.
    assert assignments["query"] == role_assignments_query(SUB, "tmlops", "local")
    assert (
        f"startswith '/subscriptions/{SUB}/resourceGroups/rg-tmlops-local-'"
        in (assignments["query"])
    )


def test_the_azure_adapter_hands_the_audit_its_inventory(specs: dict[str, PlatformSpec]) -> None:
    graph = PagedGraph(rows=_rows())
    platform = AzurePlatform(
        specs["local"],
        FakeCredential(),
        SUB,
        client_options={"transport": graph},  # type: ignore[arg-type]
    )
    assert [r.type_token for r in platform.live_resources()] == [
        "azure-native:machinelearningservices:Workspace",
        "azure-native:machinelearningservices:OnlineEndpoint",
    ]
