"""The Azure adapter at the HTTP level: the ARM requests MLClient sends for the rollout's
operations, through a fake transport."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.azure import AzurePlatform
from tenancy import PlatformSpec, naming, parse_platform_spec
from tenancy.errors import DependencyError, NotFoundError
from tenancy.placement import Record, resolve
from tests.adapters.fake_arm import FakeArm, FakeCredential
from tests.tenancy.conftest import stack_document

SUB = "00000000-0000-4000-8000-00000000c0de"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-tmlops-local-tenant-contoso"
    "/providers/Microsoft.MachineLearningServices/workspaces/mlw-tenant-contoso-loc"
)
ENDPOINT = f"{WS}/onlineEndpoints/tmlops-contoso-loc-ex4m"


def _deployment(name: str, state: str = "Succeeded") -> dict[str, object]:
    return {
        "id": f"{ENDPOINT}/deployments/{name}",
        "name": name,
        "location": "westeurope",
        "sku": {"name": "Default", "capacity": 2},
        "properties": {
            "endpointComputeType": "Managed",
            "provisioningState": state,
            "model": f"{WS}/models/contoso-classical/versions/1",
            "environmentId": f"{WS}/environments/scoring/versions/1",
            "codeConfiguration": {
                "codeId": f"{WS}/codes/score/versions/1",
                "scoringScript": "score.py",
            },
            "instanceType": "Standard_DS3_v2",
            "scaleSettings": {"scaleType": "Default"},
            "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 4},
            "appInsightsEnabled": True,
        },
    }


@pytest.fixture
def arm() -> FakeArm:
    return seeded_arm()


def seed_datastore_and_model(arm: FakeArm, baseline_path: str) -> None:
    """The workspace's default datastore (container "blobstore" of Azurite's account) and
    contoso-classical/1, whose baseline is at ``baseline_path`` there."""
    arm.resources[f"{WS}/datastores/workspaceblobstore".lower()] = {
        "id": f"{WS}/datastores/workspaceblobstore",
        "name": "workspaceblobstore",
        "properties": {
            "datastoreType": "AzureBlob",
            "accountName": "devstoreaccount1",
            "containerName": "blobstore",
            "endpoint": "core.windows.net",
            "protocol": "https",
            "isDefault": True,
            "credentials": {"credentialsType": "None"},
        },
    }
    arm.resources[f"{WS}/models/contoso-classical/versions/1".lower()] = {
        "id": f"{WS}/models/contoso-classical/versions/1",
        "name": "1",
        "properties": {
            "modelUri": "azureml://x",
            "flavors": {},
            "tags": {"baseline_dataset": f"azureml://datastores/workspaceblobstore/paths/{baseline_path}"},
        },
    }


def seeded_arm() -> FakeArm:
    """ARM with contoso's endpoint, its blue deployment and its workspace."""
    fake = FakeArm()
    fake.resources[ENDPOINT.lower()] = {
        "id": ENDPOINT,
        "name": "tmlops-contoso-loc-ex4m",
        "location": "westeurope",
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "authMode": "AADToken",
            "traffic": {"blue": 100},
            "mirrorTraffic": {},
            "provisioningState": "Succeeded",
        },
    }
    fake.resources[f"{ENDPOINT}/deployments/blue".lower()] = _deployment("blue")
    fake.resources[WS.lower()] = {
        "id": WS,
        "name": "mlw-tenant-contoso-loc",
        "location": "westeurope",
        "properties": {"discoveryUrl": "https://westeurope.api.azureml.ms/discovery"},
    }
    return fake


@pytest.fixture
def platform(specs: dict[str, PlatformSpec], arm: FakeArm) -> AzurePlatform:
    return AzurePlatform(specs["local"], FakeCredential(), SUB, client_options={"transport": arm})  # type: ignore[arg-type]


def test_the_endpoint_is_read_from_the_tenants_workspace(
    platform: AzurePlatform, arm: FakeArm
) -> None:
    endpoint = platform.endpoint("contoso")
    assert (endpoint.name, endpoint.traffic, endpoint.live) == (
        "tmlops-contoso-loc-ex4m",
        {"blue": 100},
        "blue",
    )
    assert any(c.method == "GET" and c.path.lower() == ENDPOINT.lower() for c in arm.calls)


def test_traffic_is_one_put_of_the_endpoint_with_both_maps(
    platform: AzurePlatform, arm: FakeArm
) -> None:
    platform.set_traffic("contoso", {"blue": 90, "green": 10}, {})
    [put] = arm.writes(r"/onlineEndpoints/[^/]+$")
    assert put.method == "PUT" and put.api_version
    assert put.body["properties"]["traffic"] == {"blue": 90, "green": 10}
    platform.set_traffic("contoso", {"blue": 100, "green": 0}, {"green": 20})
    last = arm.writes(r"/onlineEndpoints/[^/]+$")[-1]
    # A deployment left out of the map has no live traffic (the SDK drops zero shares).
    assert {k: v for k, v in last.body["properties"]["traffic"].items() if v} == {"blue": 100}
    assert last.body["properties"]["mirrorTraffic"] == {"green": 20}


def test_green_is_created_as_blues_twin_with_the_new_model(
    platform: AzurePlatform, arm: FakeArm
) -> None:
    platform.create_deployment("contoso", "green", "contoso-classical/2")
    [put] = arm.writes(r"/deployments/green$")
    properties = put.body["properties"]
    assert (
        properties["model"].endswith("contoso-classical/versions/2")
        or properties["model"] == "azureml:contoso-classical:2"
    )
    assert properties["instanceType"] == "Standard_DS3_v2"
    assert properties["requestSettings"]["requestTimeout"] == "PT5S"
    assert put.body["sku"]["capacity"] == 2


def test_deployment_status_follows_provisioning(platform: AzurePlatform, arm: FakeArm) -> None:
    assert platform.deployment_status("contoso", "blue") == ("ready", "")
    arm.resources[f"{ENDPOINT}/deployments/green".lower()] = _deployment("green", "Creating")
    assert platform.deployment_status("contoso", "green") == ("creating", "")
    arm.resources[f"{ENDPOINT}/deployments/green".lower()] = _deployment("green", "Failed")
    assert platform.deployment_status("contoso", "green")[0] == "failed"
    assert platform.deployment_status("contoso", "red") == ("missing", "")


def test_a_deployment_is_deleted_by_name(platform: AzurePlatform, arm: FakeArm) -> None:
    platform.delete_deployment("contoso", "blue")
    assert [c.method for c in arm.writes(r"/deployments/blue$")] == ["DELETE"]


def test_pooled_tenants_use_their_pools_workspace(platform: AzurePlatform) -> None:
    assert (
        platform.endpoint_name("fabrikam")
        == platform.endpoint_name("northwind")
        == "tmlops-shared-loc-ex4m"
    )


def test_baseline_and_collected_rows_come_from_the_workspace_datastore(
    specs: dict[str, PlatformSpec], arm: FakeArm, tmp_path: Path
) -> None:
    import json  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    from local.azurite import start_azurite  # noqa: PLC0415
    from ml.baseline import Baseline  # noqa: PLC0415

    azurite = start_azurite(tmp_path / "azurite")
    try:
        container = BlobServiceClient.from_connection_string(
            azurite.connection_string
        ).create_container("blobstore")
        baseline = Baseline(["x1", "x2"], np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]))
        buffer = tmp_path / "b.npz"
        baseline.save(buffer)
        container.upload_blob("baselines/contoso/1.npz", buffer.read_bytes())
        record = {"correlationid": "c", "data": [{"x1": 5.0, "x2": 6.0}]}
        container.upload_blob(
            "modelDataCollector/tmlops-contoso-loc-ex4m/blue/model_inputs/2026/11/22/10/a.jsonl",
            json.dumps(record),
        )
        container.upload_blob(
            "modelDataCollector/tmlops-contoso-loc-ex4m/blue/model_outputs/2026/11/22/10/a.jsonl",
            json.dumps({"correlationid": "c", "data": [1]}),
        )
        seed_datastore_and_model(arm, "baselines/contoso/1.npz")
        platform = AzurePlatform(
            specs["local"], FakeCredential(), SUB, client_options={"transport": arm},  # type: ignore[arg-type]
            container_factory=lambda account, name, endpoint: container,
        )  # fmt: skip
        model, columns, reference = platform.baseline("contoso", "blue")
        assert (model, columns, reference.tolist()) == (
            "contoso-classical/1",
            ["x1", "x2"],
            [[1.0, 2.0, 0.0], [3.0, 4.0, 1.0]],
        )
        chunks = list(
            platform.inference_data(
                "contoso",
                "blue",
                columns,
                since=datetime(2026, 11, 22, 10, tzinfo=UTC),
                until=datetime(2026, 11, 22, 11, tzinfo=UTC),
            )
        )
        assert [c.tolist() for c in chunks] == [[[5.0, 6.0, 1.0]]]
    finally:
        azurite.stop()


def test_retraining_without_its_code_is_refused_before_anything_reaches_azure(
    specs: dict[str, PlatformSpec], arm: FakeArm, tmp_path: Path
) -> None:
    """The job's code comes with the Function App package (retraining/); an app built
    without it names the fix, and no job is submitted. The job itself, its code upload
    and its spec are the contract suite's (tests/contract: the budget scenario)."""
    platform = AzurePlatform(
        specs["local"],
        FakeCredential(),  # type: ignore[arg-type]
        SUB,
        client_options={"transport": arm},
        training_code=tmp_path / "retraining",
    )
    with pytest.raises(DependencyError, match="make package"):
        platform.request_retraining("contoso", "drift in mean_radius")
    assert arm.writes(r"/jobs/") == []


WINDOW = (
    datetime(2026, 11, 22, 12, tzinfo=UTC),
    datetime(2026, 11, 22, 12, 1, tzinfo=UTC),
)


def _with_logs(spec: PlatformSpec, arm: FakeArm, logs: object) -> AzurePlatform:
    """The adapter over the fake ARM with a Log Analytics client of the test's own."""
    return AzurePlatform(
        spec,
        FakeCredential(),
        SUB,
        logs=logs,
        logs_workspace_id="guid-1",
        client_options={"transport": arm},
    )  # type: ignore[arg-type]


def test_deployment_stats_come_from_the_endpoint_traffic_log(
    specs: dict[str, PlatformSpec], arm: FakeArm
) -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    queries: list[tuple[str, str, object]] = []

    class Logs:
        def query_workspace(self, workspace: str, query: str, timespan: object) -> object:
            queries.append((workspace, query, timespan))
            return SimpleNamespace(tables=[SimpleNamespace(rows=[[120, 3, 87.5]])])

    platform = _with_logs(specs["local"], arm, Logs())
    since, until = WINDOW
    stats = platform.deployment_stats("contoso", "green", since, until)
    assert (stats.requests, stats.errors, stats.p99_ms) == (120, 3, 87.5)
    [(workspace, query, timespan)] = queries
    assert workspace == "guid-1" and timespan == (since, until)
    assert "EndpointName == 'tmlops-contoso-loc-ex4m' and DeploymentName == 'green'" in query
    no_logs = AzurePlatform(
        specs["local"], FakeCredential(), SUB, client_options={"transport": arm}
    )  # type: ignore[arg-type]
    assert no_logs.deployment_stats("contoso", "green", since, until).requests == 0  # inconclusive


@pytest.mark.parametrize("mode", ["Enabled", "enabled"])
def test_green_collects_as_the_spec_says_without_blues_data_assets(
    platform: AzurePlatform, arm: FakeArm, mode: str
) -> None:
    """W4: a GET returns each collection's data as an ARM id string; copied as it is,
    azure-ai-ml 1.35 reads it as an asset (``value.data.name``) and raises AttributeError.
    And the SDK reads a mode spelt ``enabled`` (its own spelling, echoed back) as off: green
    collects because the spec says so, whatever the spelling of blue's mode."""
    blue = arm.resources[f"{ENDPOINT}/deployments/blue".lower()]
    blue["properties"]["dataCollector"] = {
        "collections": {
            name: {
                "dataCollectionMode": mode,
                "dataId": f"{WS}/data/tmlops-contoso-loc-ex4m-blue-{name}/versions/1",
                "samplingRate": 0.5,
            }
            for name in ("model_inputs", "model_outputs")
        }
    }
    platform.create_deployment("contoso", "green", "contoso-classical/2")
    [put] = arm.writes(r"/deployments/green$")
    collections = put.body["properties"]["dataCollector"]["collections"]
    assert set(collections) == {"model_inputs", "model_outputs"}
    for name, collection in collections.items():
        # The SDK writes the mode in lower case (DeploymentCollection._to_rest_object).
        assert collection["dataCollectionMode"].lower() == "enabled", name
        assert collection["samplingRate"] == 0.5, name  # blue's sampling is kept
        # Green's own data asset, never blue's.
        assert "-green-" in collection["dataId"] and "-blue-" not in collection["dataId"], name


def test_green_collects_nothing_where_the_spec_turns_collection_off(arm: FakeArm) -> None:
    blue = arm.resources[f"{ENDPOINT}/deployments/blue".lower()]
    blue["properties"]["dataCollector"] = {
        "collections": {n: {"dataCollectionMode": "Enabled"} for n in ("model_inputs",)}
    }
    document = stack_document("local")
    for tenant in document["tenants"]:
        if tenant["id"] == "contoso":
            tenant.setdefault("endpoints", {}).setdefault("online", {})["data_collection"] = False
    platform = AzurePlatform(
        parse_platform_spec(document), FakeCredential(), SUB, client_options={"transport": arm}
    )  # type: ignore[arg-type]
    platform.create_deployment("contoso", "green", "contoso-classical/2")
    [put] = arm.writes(r"/deployments/green$")
    assert not put.body["properties"].get("dataCollector")


def test_a_partial_traffic_log_answer_is_inconclusive(
    specs: dict[str, PlatformSpec], arm: FakeArm
) -> None:
    """W15: LogsQueryPartialResult has no .tables; and a partial count may miss errors."""

    from azure.monitor.query import LogsQueryPartialResult, LogsTable  # noqa: PLC0415

    partial = LogsQueryPartialResult(
        partial_data=[
            LogsTable(
                name="PrimaryResult",
                columns=["n", "e", "p"],
                columns_types=["long", "long", "real"],
                rows=[[50, 0, 9.0]],
            )
        ],
        partial_error={"code": "PartialError", "message": "query exceeded limits"},
    )

    class Logs:
        def query_workspace(self, workspace: str, query: str, timespan: object) -> object:
            return partial

    platform = _with_logs(specs["local"], arm, Logs())
    since, until = WINDOW
    stats = platform.deployment_stats("contoso", "green", since, until)
    assert (stats.requests, stats.errors, stats.p99_ms) == (0, 0, None)


def _version(number: str, tags: dict[str, str], stage: str | None = None) -> dict[str, object]:
    return {
        "id": f"{WS}/models/contoso-classical/versions/{number}",
        "name": number,
        "properties": {
            "modelUri": f"azureml://subscriptions/{SUB}/resourcegroups/rg/workspaces/ws/datastores"
            f"/workspaceblobstore/paths/models/{number}",
            "modelType": "custom_model",
            "flavors": {},
            "tags": tags,
            "stage": stage,
        },
    }


def test_crowning_tags_the_champion_and_clears_the_former_one_and_the_challenger(
    platform: AzurePlatform, arm: FakeArm
) -> None:
    versions = f"{WS}/models/contoso-classical/versions"
    arm.resources[f"{WS}/models/contoso-classical".lower()] = {
        "id": f"{WS}/models/contoso-classical",
        "name": "contoso-classical",
        "properties": {},
    }
    for number, tags, stage in (
        ("1", {"alias": "champion", "tenant": "contoso"}, "Production"),
        ("2", {"alias": "challenger", "tenant": "contoso"}, "Development"),
        ("3", {"tenant": "contoso"}, "Development"),
    ):
        arm.resources[f"{versions}/{number}".lower()] = _version(number, tags, stage)
    platform.crown("contoso", "contoso-classical", "2")
    written = {c.path.rsplit("/", 1)[-1]: c.body["properties"] for c in arm.writes("/versions/")}
    assert set(written) == {"1", "2"}  # version 3 is left as it was
    assert (written["2"]["tags"], written["2"]["stage"]) == (
        {"alias": "champion", "tenant": "contoso"},
        "Production",
    )
    assert (written["1"]["tags"], written["1"]["stage"]) == ({"tenant": "contoso"}, "Development")
    before = len(arm.writes("/versions/"))
    platform.crown("contoso", "contoso-classical", "2")  # again: nothing to write
    assert len(arm.writes("/versions/")) == before


# --- budgets: the spend Azure tracks, and the stop API Management reads -----------------------

_LOCAL = parse_platform_spec(stack_document("local"))
POOL_BUDGET = (
    f"/subscriptions/{SUB}/resourceGroups/"
    f"{naming.resource_group('tmlops', _LOCAL.environment, 'pool-shared')}/providers/"
    "Microsoft.Consumption/budgets/budget-pool-shared-budget"
)
STOP = (
    f"/subscriptions/{SUB}/resourceGroups/"
    f"{naming.resource_group('tmlops', _LOCAL.environment, naming.PLATFORM_SCOPE)}/providers/"
    f"Microsoft.ApiManagement/service/{naming.api_management('tmlops', _LOCAL.environment, 'ex4m')}"
    "/namedValues/budget-stop-fabrikam"
)


def test_a_stamps_spend_is_its_budgets_current_spend_in_the_current_period(
    platform: AzurePlatform, arm: FakeArm
) -> None:
    arm.resources[POOL_BUDGET.lower()] = {
        "name": "budget-pool-shared-budget",
        "properties": {
            "amount": 500,
            "timeGrain": "Quarterly",
            "timePeriod": {"startDate": "2026-01-01T00:00:00Z"},
            "currentSpend": {"amount": 123.45, "unit": "EUR"},
        },
    }
    spend = platform.stamp_spend("pool-shared", datetime(2026, 12, 5, tzinfo=UTC))
    assert (spend.amount, spend.currency) == (123.45, "EUR")
    assert spend.period_start.isoformat() == "2026-10-01"  # the quarter of December
    [call] = [c for c in arm.calls if c.path.lower() == POOL_BUDGET.lower()]
    assert call.method == "GET" and call.api_version == "2024-08-01"


def test_a_missing_or_malformed_budget_is_named(platform: AzurePlatform, arm: FakeArm) -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    with pytest.raises(NotFoundError, match="budget budget-pool-shared-budget does not exist"):
        platform.stamp_spend("pool-shared", now)
    arm.resources[POOL_BUDGET.lower()] = {"properties": {"currentSpend": {"amount": 1}}}
    with pytest.raises(DependencyError, match="has no start date"):
        platform.stamp_spend("pool-shared", now)
    arm.failures[("GET", POOL_BUDGET.lower())] = 403
    with pytest.raises(DependencyError, match="answered 403"):
        platform.stamp_spend("pool-shared", now)


def test_a_stop_and_its_lifting_are_puts_of_the_tenants_named_value(
    platform: AzurePlatform, arm: FakeArm
) -> None:
    platform.refuse_scoring("fabrikam", datetime(2027, 1, 1, tzinfo=UTC), "spent")
    platform.admit_scoring("fabrikam")
    puts = [c for c in arm.writes("/namedValues/") if c.method == "PUT"]
    assert [c.path for c in puts] == [STOP, STOP]
    assert [c.body["properties"]["value"] for c in puts] == ["2027-01-01", "none"]
    sent = puts[0].body["properties"]
    assert (sent["displayName"], sent["secret"]) == ("budget-stop-fabrikam", False)
    assert {c.api_version for c in puts} == {"2024-05-01"}


SUB_B = "11111111-2222-4333-8444-555555555555"


def test_a_stamp_placed_in_another_subscription_is_addressed_there(arm: FakeArm) -> None:
    """The resolved spec pins every stamp (tenancy.placement.resolve): the automation calls
    contoso's workspace and the pool's budget in the subscription they were placed in, the
    platform's own resources in its own, and audits both subscriptions."""
    document = stack_document("local")
    document["placement"] = {
        "targets": [
            {"id": "home-a", "region": "westeurope"},
            {"id": "other-b", "subscription_id": SUB_B, "region": "westeurope"},
        ]
    }
    record = Record(stamps={"tenant-contoso": "other-b", "pool-shared": "other-b"})
    spec = resolve(parse_platform_spec(document), record).spec
    assert spec.target_of("tenant-contoso").subscription_id == SUB_B
    moved = {k.replace(SUB, SUB_B): v for k, v in arm.resources.items()}
    arm.resources = moved
    platform = AzurePlatform(spec, FakeCredential(), SUB, client_options={"transport": arm})  # type: ignore[arg-type]
    assert platform.endpoint("contoso").live == "blue"
    platform.set_traffic("contoso", {"blue": 90, "green": 10}, {})
    [put] = arm.writes(r"/onlineEndpoints/[^/]+$")
    assert put.path.startswith(f"/subscriptions/{SUB_B}/resourceGroups/rg-tmlops-local-")
    with pytest.raises(NotFoundError):
        platform.stamp_spend("pool-shared", datetime(2026, 12, 5, tzinfo=UTC))
    assert any(c.path.startswith(f"/subscriptions/{SUB_B}/") and "budgets" in c.path
               for c in arm.calls)  # fmt: skip
    platform.refuse_scoring("fabrikam", datetime(2027, 1, 1, tzinfo=UTC), "spent")
    [stop] = arm.writes("/namedValues/")
    assert stop.path == STOP  # the gateway is the platform's, in its own subscription
