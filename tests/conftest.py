"""Fixtures every test folder shares: the example stacks, parsed and planned once."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.offline import OfflineRun, run_offline
from infra.program import deploy
from tenancy import PlatformSpec, load_stack

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("local", "dev", "staging", "prod")


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
