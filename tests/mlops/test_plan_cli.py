"""`mlops plan`: the inventory, its JSON shape and its exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.offline import SUBSCRIPTION_ID
from mlops.cli import EXIT_CONFIG, EXIT_OK, main
from tenancy import load_stack
from tenancy.limits import LIMITS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_plan_json() -> dict[str, object]:
    """One in-process run of `mlops plan --stack local --json`."""
    captured = subprocess.run(
        [sys.executable, "-m", "mlops", "plan", "--stack", "local", "--json", "--root", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert captured.returncode == EXIT_OK, captured.stderr
    return json.loads(captured.stdout)  # type: ignore[no-any-return]


def test_json_has_the_documented_shape(local_plan_json: dict[str, object]) -> None:
    assert set(local_plan_json) == {
        "stack",
        "resources",
        "violations",
        "capacity",
        "placement",
        "summary",
        "seconds",
        "peak_rss_mb",
    }
    assert local_plan_json["stack"] == "local"
    # Every example stack plans clean; the violations' shape is read on the broken stack's
    # plan (tests/policies/test_stacks_against_pack.py).
    assert local_plan_json["violations"] == []
    resources = local_plan_json["resources"]
    assert isinstance(resources, list) and len(resources) > 100
    for resource in resources:
        assert {"urn", "type", "name", "tenant", "inputs"} <= set(resource)
        assert resource["urn"].startswith("urn:pulumi:local::tenant-mlops::")


def test_capacity_reports_every_limit_within_it(local_plan_json: dict[str, Any]) -> None:
    """Each of Azure's limits, counted where it applies, with the subscription and region
    the plan signed in to; the local stack is within all of them."""
    capacity = local_plan_json["capacity"]
    assert {row["key"] for row in capacity} == set(LIMITS)
    for row in capacity:
        assert {"subscription", "region", "resource", "used", "limit", "key", "where"} == set(row)
        assert row["subscription"] == SUBSCRIPTION_ID and row["region"] == "westeurope"
        assert 0 < row["used"] <= row["limit"], row
    spec = load_stack("local", ROOT)
    endpoints = {spec.online_endpoint_name(t.id) for t in spec.tenants}
    per_endpoint = [r for r in capacity if r["key"] == "requests_per_second"]
    assert {r["where"] for r in per_endpoint} == endpoints


def test_every_tenant_is_attributed_and_shared_resources_are_not(
    local_plan_json: dict[str, object],
) -> None:
    spec = load_stack("local", ROOT)
    resources = local_plan_json["resources"]
    assert isinstance(resources, list)
    tenants = {r["tenant"] for r in resources}
    assert tenants == {None} | {t.id for t in spec.tenants}
    by_name = {r["name"]: r for r in resources}
    assert by_name["platform-logs"]["tenant"] is None
    assert by_name["tenant-contoso-ws"]["tenant"] == "contoso"
    assert by_name["pool-shared-ws"]["tenant"] is None  # a pool is shared by its tenants
    assert by_name["pool-shared-budget"]["tenant"] is None  # the pool's budget covers its tenants
    assert by_name["gateway-northwind-subscription"]["tenant"] == "northwind"
    summary = local_plan_json["summary"]
    assert isinstance(summary, dict)
    assert summary["resources"] == len(resources)
    assert sum(summary["by_tenant"].values()) == len(resources)


def test_text_output_lists_every_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "local", "--root", str(ROOT)]) == EXIT_OK
    out = capsys.readouterr().out
    for tenant in load_stack("local", ROOT).tenants:
        assert f"tenant {tenant.id} (" in out
    assert "pool shared (shared by fabrikam, northwind, litware)" in out
    assert "violations: 0 mandatory, 0 advisory" in out


def _broken_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    document = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())
    platform = document["config"]["tenant-mlops:platform"]
    platform["tenants"][0]["tier"] = "shared"
    platform["tenants"][2]["pool"] = "missing"
    platform["rollout"]["mirror_percent"] = 70
    (tmp_path / "Pulumi.broken.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def test_broken_stack_exits_2_naming_each_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _broken_project(tmp_path)
    assert main(["plan", "--stack", "broken", "--root", str(root)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    for key in ("tenants[0].tier", "tenants[2].pool", "rollout.mirror_percent"):
        assert key in err
    assert "3 configuration problems" in err


def test_the_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mlops")
    assert script.is_file(), "the Makefile installs the project, and with it `mlops`"
    result = subprocess.run(
        [str(script), "plan", "--stack", "nope", "--root", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == EXIT_CONFIG
    assert "stack 'nope' has no file Pulumi.nope.yaml" in result.stderr
