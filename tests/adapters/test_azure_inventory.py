"""The policy audit's inventory at the HTTP level: the Resource Graph queries sent as the
REST API takes them, read page by page (``$skipToken``); each workspace's computes,
endpoints and deployments from the Azure ML API and each group's budgets from the
Consumption API, list by list (``nextLink``); all as ARM-shaped resources."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from azure.storage.blob import ContainerClient

from adapters.azure import AzurePlatform
from adapters.azure_inventory import (
    ARM,
    BUDGET,
    CONSUMPTION_API_VERSION,
    GRAPH_API_VERSION,
    ML_API_VERSION,
    NOT_IN_RESOURCES_TABLE,
    ROLE_ASSIGNMENT,
    WORKSPACE,
    AzureInventory,
    inventory_query,
    role_assignments_query,
)
from policies.live import LiveResource
from tenancy import PlatformSpec, parse_platform_spec
from tenancy.errors import DependencyError
from tenancy.placement import Record, resolve
from tests.adapters.fake_arm import FakeArm, FakeCredential
from tests.adapters.test_deploy_time import Scripted
from tests.tenancy.conftest import stack_document

SUB = "00000000-0000-4000-8000-00000000beef"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-tmlops-local-tenant-contoso/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-tenant-contoso-loc"
)


#: A list GET's last segments -> the type of what it lists.
_LISTS = {
    "computes": f"{WORKSPACE}/computes",
    "onlineendpoints": f"{WORKSPACE}/onlineendpoints",
    "batchendpoints": f"{WORKSPACE}/batchendpoints",
    "providers/microsoft.consumption/budgets": BUDGET,
}


@dataclass
class PagedGraph(FakeArm):
    """Azure as the audit reads it, over ``rows`` (ARM-shaped resources):
    - Resource Graph answers its queries in pages of one row, as the service pages with
      ``$skipToken`` (the response shape of the REST reference's "Basic query" example);
    - the Azure ML and Consumption APIs answer list GETs in pages of one item, each with the
      ``nextLink`` to the next (ARM's list shape)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)

    def _table(self, query: str) -> list[dict[str, Any]]:
        """The rows of the table the query reads (role assignments live apart; the API
        answers for what Resource Graph is not asked)."""
        if query.startswith("authorizationresources"):
            return [r for r in self.rows if r["type"].lower() == ROLE_ASSIGNMENT]
        return [r for r in self.rows if r["type"].lower() not in NOT_IN_RESOURCES_TABLE]

    def send(self, request: Any, **kwargs: Any) -> Any:
        assert request.headers["Authorization"] == "Bearer fake-token"
        if request.method == "GET":
            return self._list(request)
        assert request.method == "POST" and request.url.endswith(
            f"/providers/Microsoft.ResourceGraph/resources?api-version={GRAPH_API_VERSION}"
        ), request.url
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
        return self._answer(request, 200, answer)

    def _list(self, request: Any) -> Any:
        url = urlparse(request.url)
        query = parse_qs(url.query)
        path = url.path.lower()
        self.lists.append(path)
        parent, kind = self._listed(path)
        expected = CONSUMPTION_API_VERSION if kind == BUDGET else ML_API_VERSION
        assert query["api-version"] == [expected], request.url
        items = [
            r for r in self.rows
            if r["type"].lower() == kind and r["id"].lower().startswith(parent + "/")
        ]  # fmt: skip
        start = int(query.get("skip", ["0"])[0])
        answer: dict[str, Any] = {"value": items[start : start + 1]}
        if start + 1 < len(items):
            answer["nextLink"] = f"{ARM}{url.path}?api-version={expected}&skip={start + 1}"
        return self._answer(request, 200, answer)

    @staticmethod
    def _listed(path: str) -> tuple[str, str]:
        """(parent id, type) of what a list GET asks for."""
        if path.endswith("/deployments"):
            parent = path.rsplit("/", 1)[0]
            endpoints = parent.rsplit("/", 2)[1]
            return parent, f"{WORKSPACE}/{endpoints}/deployments"
        for suffix, kind in _LISTS.items():
            if path.endswith("/" + suffix):
                return path[: -len(suffix) - 1], kind
        raise AssertionError(f"the audit lists nothing at {path}")

    def _answer(self, request: Any, status: int, body: Any) -> Any:
        response = self._respond(request, status, body)
        response.read()  # as azure-core's requests transport does for a non-stream call
        return response


RG = f"/subscriptions/{SUB}/resourceGroups/rg-tmlops-local-tenant-contoso"
ENDPOINT = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"  # as ARM spells it
DEPLOYMENT = f"{WORKSPACE}/onlineendpoints/deployments"


def _row(resource_id: str, arm_type: str, **body: Any) -> dict[str, Any]:
    return {"id": resource_id, "type": arm_type, "name": resource_id.rsplit("/", 1)[-1], **body}


def _rows() -> list[dict[str, Any]]:
    tags = {"tenant-id": "contoso"}
    return [
        _row(RG, "microsoft.resources/subscriptions/resourcegroups", tags=tags, properties={}),
        _row(WS, WORKSPACE, tags=tags, properties={"publicNetworkAccess": "Disabled"}),
        _row(f"{WS}/computes/gpu", f"{WORKSPACE}/computes", tags=tags,
             properties={"computeType": "AmlCompute",
                         "properties": {"scaleSettings": {"minNodeCount": 0}}}),
        _row(f"{WS}/onlineEndpoints/ep", ENDPOINT,
             tags=tags, properties={"traffic": {"blue": 100}, "mirrorTraffic": {"blue": 60}}),
        _row(f"{WS}/onlineEndpoints/ep/deployments/blue", DEPLOYMENT,
             tags=tags, sku={"capacity": 1}, properties={"instanceType": "Standard_DS3_v2"}),
        _row(f"{WS}/onlineEndpoints/ep/deployments/green", DEPLOYMENT,
             tags=tags, sku={"capacity": 1}, properties={"instanceType": "Standard_DS3_v2"}),
        _row(f"{RG}/providers/Microsoft.Consumption/budgets/budget-contoso", BUDGET,
             properties={"amount": 100, "notifications": {}}),
        _row(f"{RG}/providers/Microsoft.Authorization/roleAssignments/ra", ROLE_ASSIGNMENT,
             properties={"scope": RG, "principalId": "p", "roleDefinitionId": "r"}),
    ]  # fmt: skip


def test_every_page_of_every_source_is_read() -> None:
    azure = PagedGraph(rows=_rows())
    inventory = AzureInventory(FakeCredential(), [SUB], transport=azure)  # type: ignore[arg-type]
    found = inventory.inventory("tmlops", "local")
    assert sorted(r.id for r in found) == sorted(r["id"] for r in _rows())
    endpoint = next(r for r in found if r.name == "ep")
    assert endpoint == LiveResource(
        f"{WS}/onlineEndpoints/ep",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "ep",
        {
            "location": None,
            "tags": {"tenant-id": "contoso"},
            "sku": None,
            "identity": None,
            "kind": None,
            "properties": {"traffic": {"blue": 100}, "mirrorTraffic": {"blue": 60}},
        },
    )
    first, second, assignments = azure.queries
    assert first["subscriptions"] == [SUB] and "$skipToken" not in first["options"]
    assert second["options"]["$skipToken"] == "1"
    assert first["query"] == inventory_query("tmlops", "local")
    assert "resourceGroup startswith 'rg-tmlops-local-'" in first["query"]
    assert "resourcecontainers" in first["query"]
    # Endpoints and deployments are not asked of Resource Graph: its copy lags.
    assert "onlineendpoints" not in first["query"] and "budgets" not in first["query"]
    # Role assignments are read from their own table, by the scope they grant on.
    assert assignments["query"] == role_assignments_query("tmlops", "local")
    assert "contains '/resourceGroups/rg-tmlops-local-'" in assignments["query"]
    assert assignments["subscriptions"] == [SUB]
    # The deployments' list has two pages; both were read.
    deployments = f"{WS}/onlineEndpoints/ep/deployments".lower()
    assert azure.lists.count(deployments) == 2
    assert f"{RG}/providers/Microsoft.Consumption/budgets".lower() in azure.lists


def test_a_workspace_deleted_while_it_is_read_is_left_out_and_a_failure_is_named() -> None:
    gone = [r for r in _rows() if not r["id"].startswith(f"{WS}/")]

    class Gone(PagedGraph):
        def _list(self, request: Any) -> Any:
            if "/workspaces/" in request.url:
                return self._answer(request, 404, {"error": {"code": "ResourceNotFound"}})
            return super()._list(request)

    found = AzureInventory(FakeCredential(), [SUB], transport=Gone(rows=gone)).inventory(  # type: ignore[arg-type]
        "tmlops", "local"
    )
    assert WS in {r.id for r in found}

    class Refused(PagedGraph):
        def _list(self, request: Any) -> Any:
            return self._answer(request, 403, {"error": {"code": "AuthorizationFailed"}})

    with pytest.raises(DependencyError, match=r"answered 403.*AuthorizationFailed"):
        AzureInventory(FakeCredential(), [SUB], transport=Refused(rows=gone)).inventory(  # type: ignore[arg-type]
            "tmlops", "local"
        )


def test_the_azure_adapter_hands_the_audit_its_inventory(specs: dict[str, PlatformSpec]) -> None:
    azure = PagedGraph(rows=_rows())
    platform = AzurePlatform(
        specs["local"],
        FakeCredential(),
        SUB,
        client_options={"transport": azure},  # type: ignore[arg-type]
    )
    assert platform.judged_rules is None and platform.inventoried_types is None
    assert {r.type_token for r in platform.live_resources()} == {
        "azure-native:resources:ResourceGroup",
        "azure-native:machinelearningservices:Workspace",
        "azure-native:machinelearningservices:Compute",
        "azure-native:machinelearningservices:OnlineEndpoint",
        "azure-native:machinelearningservices:OnlineDeployment",
        "azure-native:consumption:Budget",
        "azure-native:authorization:RoleAssignment",
    }


def _reading_state(specs: dict[str, PlatformSpec], replies: list[Any]) -> tuple[Any, Scripted]:
    transport = Scripted(replies)

    def container(account: str, name: str, endpoint: str) -> ContainerClient:
        url = f"https://{account}.blob.{endpoint or 'core.windows.net'}"
        return ContainerClient(url, name, credential=FakeCredential(), transport=transport)  # type: ignore[arg-type]

    platform = AzurePlatform(
        specs["dev"], FakeCredential(), SUB, container_factory=container, platform_account="stp"
    )
    return platform, transport


def test_the_expected_state_is_read_from_the_platform_account(
    specs: dict[str, PlatformSpec],
) -> None:
    document = json.dumps({"version": 1, "resources": []}).encode()
    size = len(document)
    headers = {
        "Content-Length": str(size),
        "Content-Range": f"bytes 0-{size - 1}/{size}",  # the SDK asks for a range
        "Content-Type": "application/json",
        "x-ms-blob-type": "BlockBlob",
    }
    platform, transport = _reading_state(specs, [(200, headers, document)])
    assert platform.expected_state() == {"version": 1, "resources": []}
    [request] = transport.sent
    assert request.url == "https://stp.blob.core.windows.net/platform-state/expected-state.json"
    assert request.headers["Authorization"] == "Bearer fake-token"


def test_before_pulumi_up_wrote_it_there_is_no_expected_state(
    specs: dict[str, PlatformSpec],
) -> None:
    missing = (404, {"x-ms-error-code": "BlobNotFound"}, b"")
    platform, _ = _reading_state(specs, [missing])
    assert platform.expected_state() is None
    assert AzurePlatform(specs["dev"], FakeCredential(), SUB).expected_state() is None  # type: ignore[arg-type]


def test_the_audit_reads_every_subscription_the_stack_places_stamps_in() -> None:
    azure = PagedGraph(rows=_rows())
    other = "11111111-2222-4333-8444-555555555555"
    AzureInventory(FakeCredential(), [SUB, other], transport=azure).inventory("tmlops", "local")  # type: ignore[arg-type]
    assert all(query["subscriptions"] == [SUB, other] for query in azure.queries)


def test_with_shard_stacks_each_shards_expected_state_joins_the_shared_one() -> None:
    document = stack_document("dev")
    document["placement"] = {
        "targets": [
            {"id": "weu-a", "region": "westeurope"},
            {"id": "weu-b", "subscription_id": "11111111-2222-4333-8444-555555555555",
             "region": "westeurope"},
        ],
        "shard_stacks": True,
    }  # fmt: skip
    spec = resolve(parse_platform_spec(document), Record({"tenant-contoso": "weu-b"})).spec

    def blob(resources: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"version": 1, "resources": resources}).encode()
        return 200, {
            "Content-Length": str(len(body)),
            "Content-Range": f"bytes 0-{len(body) - 1}/{len(body)}",
            "x-ms-blob-type": "BlockBlob",
        }, body

    transport = Scripted([blob([{"id": "shared"}]), blob([{"id": "a"}]), blob([{"id": "b"}])])

    def container(account: str, name: str, endpoint: str) -> ContainerClient:
        url = f"https://{account}.blob.core.windows.net"
        return ContainerClient(url, name, credential=FakeCredential(), transport=transport)  # type: ignore[arg-type]

    platform = AzurePlatform(spec, FakeCredential(), SUB, container_factory=container,  # type: ignore[arg-type]
                             platform_account="stp")  # fmt: skip
    state = platform.expected_state()
    assert state is not None and [r["id"] for r in state["resources"]] == ["shared", "a", "b"]
    assert [r.url.rsplit("/", 1)[1] for r in transport.sent] == [
        "expected-state.json",
        "expected-state.weu-a.json",
        "expected-state.weu-b.json",
    ]
