"""Fixtures every test folder shares: the example stacks, parsed and planned once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.offline import OfflineRun, run_offline
from infra.package import write_package
from infra.program import deploy
from ml.data import TenantData, split_kind, tenant_datasets
from ml.export import export
from ml.training import train_tenant_specific
from tenancy import PlatformSpec, load_stack

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("local", "dev", "staging", "prod")

#: The longest modules, started first: `make test` runs the suite on two workers, and a long
#: file picked up last would leave the other worker idle.
LONGEST_FIRST = (
    "tests/local/test_platform.py",
    "tests/infra/test_program.py",
    "tests/local/test_rollout_e2e.py",
    "tests/ml/test_lifecycle.py",
)

#: Modules that share an expensive session fixture (``planned``: every example stack run
#: through the program, about a minute) run on the same worker, so it is made once.
SAME_WORKER = {
    "tests/infra/test_program.py": "planned",
    "tests/policies/test_stacks_against_pack.py": "planned",
    "tests/infra/test_identity_grants.py": "planned",
    "tests/infra/test_network.py": "planned",
    "tests/infra/test_ownership.py": "planned",
    "tests/infra/test_deployer.py": "planned",
    "tests/infra/test_alerting.py": "planned",
    "tests/policies/test_live.py": "planned",
    "tests/automation/test_audit.py": "planned",
    "tests/infra/test_delivery.py": "planned",
    "tests/infra/test_gateway_budget_stops.py": "planned",
    "tests/infra/test_gateway_ground_truth.py": "planned",
    "tests/mlops/test_audit_cli.py": "planned",
    "tests/policies/test_permission_rules.py": "planned",
    "tests/policies/test_plan_drift.py": "planned",
    "tests/infra/test_serving_runtime.py": "planned",
    "tests/infra/test_genai.py": "planned",
}


def _module_of(item: pytest.Item) -> str:
    return Path(str(item.path)).relative_to(ROOT).as_posix()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (the order within a module is kept)."""

    def rank(item: pytest.Item) -> int:
        module = _module_of(item)
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under xdist, a module's tests stay on one worker (its module fixtures are made once)
    and the modules of SAME_WORKER share one."""
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only under xdist

    class ByModule(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SAME_WORKER.get(module, module)

    return ByModule(config, log)


@pytest.fixture(scope="session")
def specs() -> dict[str, PlatformSpec]:
    return {stack: load_stack(stack, ROOT) for stack in STACKS}


@pytest.fixture(scope="session")
def function_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's code as a package zip (no dependencies: the plan needs its path and
    digest, not its wheels; tests/infra/test_package.py checks the real one)."""
    folder = tmp_path_factory.mktemp("package")
    (folder / "site-packages").mkdir()
    out = folder / "function-app.zip"
    write_package(ROOT, out, folder / "site-packages")
    return out


@pytest.fixture(scope="session")
def planned(specs: dict[str, PlatformSpec], function_package: Path) -> dict[str, OfflineRun]:
    """Every example stack, run once through the program under mocks."""
    runs = {}
    for stack, spec in specs.items():

        def program(spec: PlatformSpec = spec, stack: str = stack) -> None:
            deploy(spec, stack=stack, package=function_package)

        runs[stack] = run_offline(program, stack=stack)
    return runs


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small ONNX model folder (score.py's layout), trained here on contoso's data."""
    data = split_kind("classical", ["contoso"])["contoso"]
    train, holdout = data.split()
    return export(train_tenant_specific(train), holdout.X).write(
        tmp_path_factory.mktemp("model") / "model"
    )


@pytest.fixture(scope="session")
def local_data(specs: dict[str, PlatformSpec]) -> dict[str, TenantData]:
    return tenant_datasets(specs["local"])


@pytest.fixture(scope="session")
def local_splits(local_data: dict[str, TenantData]) -> dict[str, tuple[TenantData, TenantData]]:
    return {tenant: data.split() for tenant, data in local_data.items()}


@pytest.fixture(scope="session")
def model_dirs(
    local_splits: dict[str, tuple[TenantData, TenantData]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """``single``: contoso's classical model; ``pool``: contoso, fabrikam and litware (text)."""
    root = tmp_path_factory.mktemp("models")
    for tenant in ("contoso", "fabrikam", "litware"):
        train, holdout = local_splits[tenant]
        export(train_tenant_specific(train), holdout.X).write(root / "pool" / tenant)
    train, holdout = local_splits["contoso"]
    export(train_tenant_specific(train), holdout.X).write(
        root / "single" / "contoso-classical" / "1"
    )
    return {"single": root / "single", "pool": root / "pool"}
