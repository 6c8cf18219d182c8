"""The Function App package: the app, exactly the project modules it imports, and its locked
dependencies; the zip `make package` wrote indexes every function on its own."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra.package import (
    DIST_PACKAGE,
    FORBIDDEN_PACKAGES,
    LOCK,
    SITE_PACKAGES,
    archive_bytes,
    build_function_package,
    lock_lines,
)
from local.functions_host import index, load_app
from tenancy.errors import InvalidInputError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _project(root: Path) -> Path:
    (root / "functions").mkdir()
    (root / "functions" / "function_app.py").write_text(
        "import azure.functions\nfrom blueprints import x\n"
    )
    (root / "functions" / "blueprints.py").write_text("from tenancy.spec import PlatformSpec\n")
    (root / "functions" / "host.json").write_text("{}")
    (root / "functions" / "__pycache__").mkdir()
    (root / "functions" / "__pycache__" / "x.pyc").write_text("")
    for package, body in {
        "tenancy": "from helpers import util\n",
        "helpers": "",
        "unrelated": "",
        "infra": "",
    }.items():
        (root / package).mkdir()
        (root / package / "__init__.py").write_text(body)
    return root


def test_follows_imports_transitively_and_leaves_the_rest_out(tmp_path: Path) -> None:
    package = build_function_package(_project(tmp_path))
    assert set(package.files) == {
        "function_app.py",
        "blueprints.py",
        "host.json",
        "tenancy/__init__.py",
        "helpers/__init__.py",
    }


def test_digest_changes_with_any_packaged_file(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = build_function_package(root).digest
    assert build_function_package(root).digest == before
    (root / "helpers" / "__init__.py").write_text("VALUE = 1\n")
    assert build_function_package(root).digest != before


def test_no_app_means_an_empty_package(tmp_path: Path) -> None:
    assert build_function_package(tmp_path).is_empty


def test_reaching_the_embedded_platform_is_refused_by_name(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "local").mkdir()
    (root / "local" / "__init__.py").write_text("")
    (root / "tenancy" / "__init__.py").write_text("from local import gateway\n")
    with pytest.raises(InvalidInputError, match=r"tenancy/__init__.py imports local"):
        build_function_package(root)


def test_modules_are_packaged_one_by_one_with_their_data(tmp_path: Path) -> None:
    """Only the modules the app reaches: a sibling module nobody imports stays out."""
    root = _project(tmp_path)
    (root / "helpers" / "util.py").write_text("from helpers.deep import thing\n")
    (root / "helpers" / "deep.py").write_text("thing = 1\n")
    (root / "helpers" / "unused.py").write_text("import numpy\n")
    (root / "helpers" / "table.json").write_text("{}")
    assert set(build_function_package(root).files) >= {
        "helpers/util.py",
        "helpers/deep.py",
        "helpers/table.json",
    }
    assert "helpers/unused.py" not in build_function_package(root).files


def test_the_lock_pins_every_resolved_package_with_its_hash() -> None:
    report = {
        "install": [
            {
                "metadata": {"name": "numpy", "version": "2.4.6"},
                "download_info": {"archive_info": {"hashes": {"sha256": "ab" * 32}}},
            },
            {
                "metadata": {"name": "Azure-Core", "version": "1.41.0"},
                "download_info": {"archive_info": {"hashes": {"sha256": "cd" * 32}}},
            },
        ]
    }
    assert lock_lines(report) == [
        f"Azure-Core==1.41.0 --hash=sha256:{'cd' * 32}",
        f"numpy==2.4.6 --hash=sha256:{'ab' * 32}",
    ]


def test_the_zip_is_the_same_bytes_for_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "b.txt").write_text("b")
    files = {"a.py": tmp_path / "a.py", "pkg/b.txt": tmp_path / "b.txt"}
    assert archive_bytes(files) == archive_bytes(dict(reversed(list(files.items()))))
    with zipfile.ZipFile(io.BytesIO(archive_bytes(files))) as archive:
        assert archive.namelist() == ["a.py", "pkg/b.txt"]


def _built_package() -> Path:
    package = PROJECT_ROOT / DIST_PACKAGE
    assert package.is_file(), f"{package} is missing: `make package` writes it (make test does)"
    return package


def test_the_built_package_holds_todays_code_and_the_locked_wheels() -> None:
    """The zip `make package` wrote is the tree's code (a stale zip fails here) plus the
    locked dependencies, and nothing of the embedded platform or the benchmarks."""
    with zipfile.ZipFile(_built_package()) as archive:
        names = set(archive.namelist())
        code = build_function_package(PROJECT_ROOT)
        for arcname, path in code.files.items():
            assert archive.read(arcname) == path.read_bytes(), f"{arcname}: run make package"
        wheel_tags = [
            line.removeprefix("Tag: ")
            for name in names
            if name.endswith(".dist-info/WHEEL")
            for line in archive.read(name).decode().splitlines()
            if line.startswith("Tag: ")
        ]
    assert {n for n in names if not n.startswith(SITE_PACKAGES)} == set(code.files)
    assert not {n.split("/")[0] for n in names} & FORBIDDEN_PACKAGES
    locked = {
        _normalized(line.split("==")[0]): line.split("==")[1].split()[0]
        for line in (PROJECT_ROOT / "functions" / LOCK).read_text().splitlines()
        if line and not line.startswith("#")
    }
    installed = {}
    for name in names:
        folder = name.removeprefix(f"{SITE_PACKAGES}/").split("/")[0]
        if name.startswith(SITE_PACKAGES) and folder.endswith(".dist-info"):
            package, version = folder.removesuffix(".dist-info").rsplit("-", 1)
            installed[_normalized(package)] = version
    assert installed == locked
    # Linux x86-64 CPython 3.11 wheels only: every native wheel's tags say so.
    native = [tag.split("-") for tag in wheel_tags if not tag.endswith("-any")]
    assert native, "numpy, pydantic-core and others ship native code"
    for python, abi, platform in native:
        assert platform.endswith("x86_64") and "linux" in platform, platform
        assert abi in ("cp311", "abi3") and python.startswith("cp3"), (python, abi)


def _normalized(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


_INDEX = """
import json, sys
sys.path[:0] = [{root!r}, {site!r}]
import function_app
names = sorted(f.get_function_name() for f in function_app.app.get_functions())
import adapters.azure, adapters.table_store  # what services() imports on Azure
outside = sorted(
    m.__name__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and not m.__file__.startswith(({root!r}, sys.base_prefix))
)
print(json.dumps({{"functions": names, "outside": outside, "path": sys.path}}))
"""


def test_the_package_indexes_every_function_in_an_interpreter_of_its_own(
    tmp_path: Path,
) -> None:
    """D7, W1: unzipped, the app imports with nothing but the standard library and the
    package on its path (-I: no environment or user site; -S: not this venv's packages),
    registers every function the app defines, and can import its Azure adapter."""
    with zipfile.ZipFile(_built_package()) as archive:
        archive.extractall(tmp_path)
    script = _INDEX.format(root=str(tmp_path), site=str(tmp_path / SITE_PACKAGES))
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    indexed = json.loads(done.stdout.splitlines()[-1])
    expected = sorted(name for name, _, _ in index(load_app()))
    assert indexed["functions"] == expected and len(expected) == 11
    assert indexed["outside"] == [], "imported from outside the package"
    assert not any(".venv" in entry for entry in indexed["path"])
