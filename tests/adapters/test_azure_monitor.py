"""A large tenant's Azure ML model monitor, at the HTTP level (FakeArm) over real blob
storage (Azurite): its tables registered once, its schedule written only when it changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from adapters.azure import AzurePlatform
from adapters.azure_monitor import DATA_API_VERSION, SCHEDULE_API_VERSION, monitor_name
from local.azurite import start_azurite
from ml.baseline import Baseline
from tenancy import PlatformSpec
from tenancy.errors import InvalidInputError
from tests.adapters.fake_arm import FakeArm, FakeCredential
from tests.adapters.test_azure import (
    ENDPOINT,
    SUB,
    WS,
    _deployment,
    seed_datastore_and_model,
    seeded_arm,
)

SCHEDULE = f"{WS}/schedules/{monitor_name('contoso')}"


@pytest.fixture
def arm() -> FakeArm:
    return seeded_arm()


@pytest.fixture(scope="module")
def blob_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    """One Azurite for the module (it takes seconds to start); each test its own container."""
    azurite = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield BlobServiceClient.from_connection_string(azurite.connection_string)
    finally:
        azurite.stop()


@pytest.fixture
def container(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    created = blob_service.create_container("blobstore")
    try:
        yield created
    finally:
        created.delete_container()


@pytest.fixture
def platform(
    specs: dict[str, PlatformSpec], arm: FakeArm, container: ContainerClient, tmp_path: Path
) -> AzurePlatform:
    baseline = Baseline(["x1", "x2"], np.array([[1.0, 2.0], [3.0, 4.5]]), np.array([0, 1]))
    saved = baseline.save(tmp_path / "b.npz")
    container.upload_blob("baselines/contoso/1.npz", saved.read_bytes())
    seed_datastore_and_model(arm, "baselines/contoso/1.npz")
    return AzurePlatform(
        specs["local"], FakeCredential(), SUB, client_options={"transport": arm},  # type: ignore[arg-type]
        container_factory=lambda account, name, endpoint: container,
    )  # fmt: skip


def _puts(arm: FakeArm, pattern: str) -> list[Any]:
    return [c for c in arm.writes(pattern) if c.method == "PUT"]


def test_the_monitor_watches_the_live_deployment_with_the_stacks_signals(
    platform: AzurePlatform, arm: FakeArm, container: ContainerClient
) -> None:
    assert platform.ensure_model_monitor("contoso", "blue") == "created"
    [put] = _puts(arm, r"/schedules/")
    assert put.path.lower() == SCHEDULE.lower() and put.api_version == SCHEDULE_API_VERSION
    properties = put.body["properties"]
    assert properties["tags"]["tenant"] == "contoso"
    action = properties["action"]
    assert action["actionType"] == "CreateMonitor"
    definition = action["monitorDefinition"]
    assert definition["computeConfiguration"] == {
        "computeType": "ServerlessSpark",
        "instanceType": "standard_e4s_v3",
        "runtimeVersion": "3.4",
        "computeIdentity": {"computeIdentityType": "AmlToken"},
    }
    assert definition["monitoringTarget"]["deploymentId"] == f"{ENDPOINT}/deployments/blue"
    signals = definition["signals"]
    assert set(signals) == {"data_drift", "prediction_drift", "model_performance"}
    thresholds = {
        (t["dataType"], t["metric"], t["threshold"]["value"])
        for t in signals["data_drift"]["metricThresholds"]
    }
    assert thresholds == {
        ("Numerical", "normalizedWassersteinDistance", 0.1),
        ("Categorical", "jensenShannonDistance", 0.1),
    }
    reference = signals["data_drift"]["referenceData"]
    assert (reference["uri"], reference["jobInputType"]) == (
        "azureml:contoso-reference:contoso-classical-1",
        "mltable",
    )
    performance = signals["model_performance"]
    assert performance["referenceData"]["uri"].startswith("azureml:contoso-ground-truth:")
    assert performance["referenceData"]["columns"]["correlation_id"] == "correlationid"
    assert performance["productionData"][0]["uri"] == (
        "azureml:tmlops-contoso-loc-ex4m-blue-model_outputs:1"
    )
    # The tables Spark reads: the baseline as CSV beside its MLTable, the labels' MLTable.
    folder = "monitoring/contoso/contoso-classical/1/reference"
    csv = container.download_blob(f"{folder}/reference.csv").readall().decode()
    assert csv.splitlines() == ["x1,x2,prediction", "1,2,0", "3,4.5,1"]
    assert b"read_delimited" in container.download_blob(f"{folder}/MLTable").readall()
    assets = _puts(arm, r"/data/")
    assert {c.api_version for c in assets} == {DATA_API_VERSION}
    assert {c.body["properties"]["dataType"] for c in assets} == {"mltable"}
    truth = next(c for c in assets if "ground-truth" in c.path)
    table = container.download_blob(
        truth.body["properties"]["dataUri"].split("/paths/", 1)[1] + "MLTable"
    ).readall()
    assert b"modelDataCollector/tmlops-contoso-loc-ex4m/ground_truth/**/*.jsonl" in table


def test_the_same_monitor_is_not_written_again_and_a_new_live_deployment_updates_it(
    platform: AzurePlatform, arm: FakeArm
) -> None:
    assert platform.ensure_model_monitor("contoso", "blue") == "created"
    writes = len(arm.writes(r"."))
    assert platform.ensure_model_monitor("contoso", "blue") == "unchanged"
    assert len(arm.writes(r".")) == writes  # nothing written: tables and schedule kept
    arm.resources[f"{ENDPOINT}/deployments/green".lower()] = _deployment("green")
    assert platform.ensure_model_monitor("contoso", "green") == "updated"
    last = _puts(arm, r"/schedules/")[-1]
    target = last.body["properties"]["action"]["monitorDefinition"]["monitoringTarget"]
    assert target["deploymentId"] == f"{ENDPOINT}/deployments/green"
    # The baseline is the same model's: its table is not registered twice.
    assert len([c for c in _puts(arm, r"/data/") if "reference" in c.path]) == 1


def test_a_model_without_a_baseline_is_named(platform: AzurePlatform, arm: FakeArm) -> None:
    model = arm.resources[f"{WS}/models/contoso-classical/versions/1".lower()]
    model["properties"]["tags"] = {}
    with pytest.raises(InvalidInputError, match="has no datastore baseline"):
        platform.ensure_model_monitor("contoso", "blue")
    assert not _puts(arm, r"/schedules/")
