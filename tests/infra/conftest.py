from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime.mocks import MockResourceArgs

from infra.offline import AzureMocks, OfflineRun, RecordedResource, run_offline
from infra.program import deploy
from tenancy import PlatformSpec, load_stack

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("local", "dev", "staging", "prod")


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
    pulumi.runtime.set_mocks(instance, project="tenant-mlops", stack="local", preview=False)
    yield instance


@pytest.fixture(scope="session")
def specs() -> dict[str, PlatformSpec]:
    return {stack: load_stack(stack, ROOT) for stack in STACKS}


@pytest.fixture(scope="session")
def planned(specs: dict[str, PlatformSpec]) -> dict[str, OfflineRun]:
    """Every example stack, run once through the program under mocks."""
    runs = {}
    for stack, spec in specs.items():

        def program(spec: PlatformSpec = spec, stack: str = stack) -> None:
            deploy(spec, stack=stack)

        runs[stack] = run_offline(program, stack=stack)
    return runs


def of_type(run: OfflineRun, type_name: str) -> list[RecordedResource]:
    return [r for r in run.custom_resources() if r.type == f"azure-native:{type_name}"]


def tenant_of(run: OfflineRun, record: RecordedResource) -> str | None:
    return run.attribution(record, "tenantId")


def stamp_of(run: OfflineRun, record: RecordedResource) -> str | None:
    return run.attribution(record, "stamp")
