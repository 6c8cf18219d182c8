"""The scoring container's environment, published at `pulumi up` into the environment's
Azure ML registry by azure-ai-ml's own calls (over the stateful fake of Azure): the build
context is uploaded to the registry's storage, the environment version created with the
custom container's inference config, and an unchanged context is never published again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from azure.ai.ml._artifacts import _blob_storage_helper
from azure.storage.blob import BlobServiceClient, ContainerClient

from adapters.deploy_time import publish_serving_environment
from serving.image import CONTEXT, ENVIRONMENT_NAME, INFERENCE_CONFIG, environment_version
from tests.adapters.fake_arm import FakeCredential
from tests.conftest import ROOT
from tests.contract.fake_azure import FakeAzure

SUBSCRIPTION = "00000000-0000-4000-8000-0000000c0417"
REGISTRY = "mlr-tmlops-dev-ex4d"


@pytest.fixture
def azure(tmp_path: Path) -> Iterator[FakeAzure]:
    fake = FakeAzure(SUBSCRIPTION, lambda: datetime.now(UTC), tmp_path)
    fake.add_registry("rg-tmlops-dev-platform", REGISTRY)

    class SdkContainerClient(ContainerClient):
        @classmethod
        def from_container_url(cls, container_url: str, **kwargs: Any) -> Any:
            return ContainerClient.from_container_url(container_url, transport=fake, **kwargs)

    # azure-ai-ml uploads with storage clients of its own, built from the SAS it was given.
    patches = [
        mock.patch.object(
            _blob_storage_helper, "BlobServiceClient", partial(BlobServiceClient, transport=fake)
        ),
        mock.patch.object(_blob_storage_helper, "ContainerClient", SdkContainerClient),
    ]
    for patch in patches:
        patch.start()
    yield fake
    for patch in patches:
        patch.stop()


def _publish(fake: FakeAzure, root: Path = ROOT) -> str:
    return publish_serving_environment(
        subscription_id=SUBSCRIPTION,
        registry=REGISTRY,
        context_root=root,
        credential=FakeCredential(),
        transport=fake,
    )


def test_the_environment_is_built_from_the_uploaded_context_with_the_routes(
    azure: FakeAzure,
) -> None:
    version = environment_version(ROOT)
    asset = _publish(azure)
    assert (
        asset
        == f"azureml://registries/{REGISTRY}/environments/{ENVIRONMENT_NAME}/versions/{version}"
    )
    stored = azure.registry_environments[(REGISTRY, ENVIRONMENT_NAME, version)]["properties"]
    assert stored["build"]["dockerfilePath"] == "Dockerfile"
    assert stored["osType"] == "Linux"
    routes = stored["inferenceConfig"]
    for route, expected in INFERENCE_CONFIG.items():
        camel = {"liveness_route": "livenessRoute", "readiness_route": "readinessRoute",
                 "scoring_route": "scoringRoute"}[route]  # fmt: skip
        assert routes[camel] == expected, route
    # Every file of the context, as the checkout holds it, where the build reads it.
    context = stored["build"]["contextUri"]
    _, account, container = azure.registries[REGISTRY.lower()]
    prefix = context.split(f"/{container}/", 1)[1].rstrip("/")
    uploaded = {n.rsplit("/", 1)[-1]: data for (a, c, n), data in azure.blobs.items()
                if (a, c) == (account, container) and n.startswith(prefix)}  # fmt: skip
    assert uploaded == {name: (ROOT / source).read_bytes() for name, source in CONTEXT.items()}


def test_an_unchanged_context_is_not_published_again(azure: FakeAzure) -> None:
    first = _publish(azure)
    writes = len(azure.writes(r"/environments/"))
    assert _publish(azure) == first
    assert len(azure.writes(r"/environments/")) == writes  # a GET, and nothing written
