from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime.mocks import MockResourceArgs

from infra.genai import genai_product_id
from infra.offline import AzureMocks, OfflineRun, RecordedResource, install_mocks, without_aliases


class Mocks(AzureMocks):
    """The plan's Azure mocks, remembering every resource created in a test."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[MockResourceArgs] = []

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.created.append(args)
        return super().new_resource(args)


@pytest.fixture
def mocks() -> Iterator[Mocks]:
    """Pulumi runtime under mocks for one `@pulumi.runtime.test` test."""
    instance = Mocks()
    install_mocks(instance, stack="local")
    # As in `mlops plan`: no state to match aliases against, and each costs a URN Output.
    pulumi.runtime.register_stack_transformation(without_aliases)
    yield instance


def of_type(run: OfflineRun, type_name: str) -> list[RecordedResource]:
    return [r for r in run.custom_resources() if r.type == f"azure-native:{type_name}"]


def tenant_of(run: OfflineRun, record: RecordedResource) -> str | None:
    return run.attribution(record, "tenantId")


def scoring_policies(run: OfflineRun) -> list[RecordedResource]:
    """The product policies of the scoring API (each tenant's; its chat product aside)."""
    return [
        policy
        for policy in of_type(run, "apimanagement:ProductPolicy")
        if policy.inputs["productId"] != genai_product_id(str(tenant_of(run, policy)))
    ]


def stamp_of(run: OfflineRun, record: RecordedResource) -> str | None:
    return run.attribution(record, "stamp")
