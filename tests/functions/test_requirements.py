"""The Function App installs what its code imports on Azure (the review's W1): every
third-party module reachable from the app and the Azure adapter is in
functions/requirements.txt. The embedded platform's adapter (adapters/local.py) is left out:
it never runs in the Function App."""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

from tests.conftest import ROOT

ROOTS = ("functions/function_app.py", "functions/services.py", "adapters/azure.py")
#: Modules the Azure path never loads: the embedded platform's adapter.
NOT_ON_AZURE = {"adapters.local"}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+")


def _module_file(module: str) -> Path | None:
    for base in (ROOT, ROOT / "functions"):  # the app's root-relative imports
        path = base.joinpath(*module.split("."))
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _third_party_imports() -> set[str]:
    pending, seen, external = [ROOT / r for r in ROOTS], set(), set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            if name in NOT_ON_AZURE or name.split(".")[0] in sys.stdlib_module_names:
                continue
            local = _module_file(name)
            if local is not None:
                pending.append(local)
            elif _module_file(name.rsplit(".", 1)[0]) is None:
                external.add(name)
    return external


@cache
def _owners(top: str) -> dict[tuple[str, ...], str]:
    """Package folder (as path parts) -> the distribution installing it, among those that
    install something under ``top`` (``azure`` is a namespace many distributions share)."""
    owners: dict[tuple[str, ...], str] = {}
    for dist_name in metadata.packages_distributions().get(top, []):
        for file in metadata.files(dist_name) or ():
            if file.suffix == ".py" and file.parts[0] == top:
                owners.setdefault(tuple(file.parts[:-1]), dist_name)
    return owners


def _distribution(module: str) -> str | None:
    parts = tuple(module.split("."))
    owners = _owners(parts[0])
    for length in range(len(parts), 0, -1):
        if parts[:length] in owners:
            return owners[parts[:length]]
    return None


def _installed_with(distributions: set[str]) -> set[str]:
    """The distributions and what they require (what the Functions build installs)."""
    found = set(distributions)
    for name in distributions:
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement and (m := _NAME.match(requirement)):
                found.add(_normal(m[0]))
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_module_of_the_azure_path_is_a_requirement() -> None:
    lines = (ROOT / "functions" / "requirements.txt").read_text().splitlines()
    required = {_normal(m[0]) for line in lines if (m := _NAME.match(line.strip()))}
    needed = {}
    for module in sorted(_third_party_imports()):
        dist = _distribution(module)
        assert dist is not None, f"no installed distribution provides {module}"
        needed.setdefault(_normal(dist), module)
    installed = _installed_with(required)
    missing = {dist: module for dist, module in needed.items() if dist not in installed}
    assert missing == {}, f"imported on Azure, not in functions/requirements.txt: {missing}"
    assert {"azure-ai-ml", "azure-monitor-query"} <= set(needed)
