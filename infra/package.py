"""The Function App's code package: ``functions/`` plus the project packages it imports.

The import graph is followed from ``functions/function_app.py`` through the project's own
top-level packages (``tenancy``, ``ml``, ...), so the package holds exactly the code the app
can reach, and a new import is picked up without editing a list here.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

APP_DIR = "functions"
ENTRY = "function_app.py"
_PACKAGED_SUFFIXES = {".py", ".json", ".txt", ".yaml", ".onnx"}
_SKIP_PARTS = {"__pycache__", ".pytest_cache", "tests", ".venv", "local.settings.json"}


@dataclass(frozen=True)
class FunctionPackage:
    """Files (archive path -> source path) and a digest of their contents."""

    files: dict[str, Path]
    digest: str

    @property
    def is_empty(self) -> bool:
        return not self.files


def _python_files(folder: Path) -> Iterable[Path]:
    for path in sorted(folder.rglob("*")):
        skipped = _SKIP_PARTS.intersection(path.relative_to(folder).parts)
        if path.is_file() and not skipped and path.suffix in _PACKAGED_SUFFIXES:
            yield path


def _top_level_imports(source: Path) -> set[str]:
    stat = source.stat()
    return set(_parsed_imports(str(source), stat.st_mtime_ns, stat.st_size))


@cache
def _parsed_imports(source: str, _mtime_ns: int, _size: int) -> frozenset[str]:
    """The imports of one file version (a process plans many stacks from one tree: the
    parse is the package build's cost, and a changed file is a new key)."""
    tree = ast.parse(Path(source).read_text(encoding="utf-8"), filename=source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return frozenset(names)


def _project_packages(root: Path) -> set[str]:
    return {
        path.parent.name
        for path in root.glob("*/__init__.py")
        if path.parent.name not in {APP_DIR, "tests", "bench", "infra"}
    }


def build_function_package(root: Path) -> FunctionPackage:
    """Collect the app folder and, transitively, every project package it imports."""
    app = root / APP_DIR
    if not (app / ENTRY).is_file():
        return FunctionPackage({}, hashlib.sha256(b"").hexdigest())
    files = {str(p.relative_to(app)): p for p in _python_files(app)}
    local = _project_packages(root)
    pending = [p for p in files.values() if p.suffix == ".py"]
    included: set[str] = set()
    while pending:
        wanted = _top_level_imports(pending.pop()) & local - included
        for package in sorted(wanted):
            included.add(package)
            for path in _python_files(root / package):
                files[str(path.relative_to(root))] = path
                if path.suffix == ".py":
                    pending.append(path)
    digest = hashlib.sha256()
    for arcname in sorted(files):
        digest.update(arcname.encode())
        digest.update(files[arcname].read_bytes())
    return FunctionPackage(dict(sorted(files.items())), digest.hexdigest())
