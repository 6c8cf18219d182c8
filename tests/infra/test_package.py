"""The Function App package holds the app and exactly the project packages it imports."""

from __future__ import annotations

from pathlib import Path

from infra.package import build_function_package


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
