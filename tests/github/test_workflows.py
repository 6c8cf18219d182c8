"""The delivery pipelines (``.github/workflows``), read as GitHub reads them: what runs on a
pull request and on main, in which order and environment, with which rights, and that no
secret is used (Azure sign-in is OIDC; `make lint` runs actionlint and zizmor on them)."""

from __future__ import annotations

import re
import subprocess
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenancy.load import load_stack
from tests.conftest import ROOT, STACKS

WORKFLOWS = ROOT / ".github" / "workflows"
AZURE_STACKS = [s for s in STACKS if s != "local"]
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _load(name: str) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads `on:` as true
    return loaded


def _runs(job: dict[str, Any]) -> list[str]:
    return [str(step["run"]) for step in job["steps"] if "run" in step]


def test_a_pull_request_runs_the_suite_plans_every_stack_then_previews_each() -> None:
    flow = _load("pull-request.yml")
    assert flow["on"]["pull_request"]["branches"] == ["main"]
    jobs = flow["jobs"]
    assert "make test" in _runs(jobs["test"])
    assert jobs["plan"]["strategy"]["matrix"]["stack"] == AZURE_STACKS
    assert any("make plan" in run for run in _runs(jobs["plan"]))
    preview = jobs["preview"]
    assert set(preview["needs"]) == {"test", "plan"}
    assert preview["strategy"]["matrix"]["stack"] == AZURE_STACKS
    # Signed in as the stack's preview identity (Reader), through its own environment.
    assert preview["environment"] == "${{ matrix.stack }}-preview"
    [command] = [r for r in _runs(preview) if r.startswith("pulumi preview")]
    assert "--policy-pack policies" in command


def test_main_deploys_dev_then_staging_then_prod_each_in_its_environment() -> None:
    flow = _load("deploy.yml")
    assert flow["on"]["push"]["branches"] == ["main"]
    jobs = flow["jobs"]
    assert list(jobs) == AZURE_STACKS
    assert "needs" not in jobs["dev"]
    for earlier, later in pairwise(AZURE_STACKS):
        assert jobs[later]["needs"] == earlier
    for stack, job in jobs.items():
        assert job["environment"] == stack  # staging and prod: required reviewers
        assert job["env"]["STACK"] == stack
        assert '.github/scripts/pulumi-up.sh "$STACK"' in _runs(job)
    assert flow["concurrency"]["cancel-in-progress"] is False  # never half an update


def test_an_environment_is_updated_before_its_shard_stacks_each_with_the_policy_pack(
    tmp_path: Path,
) -> None:
    """The deploy script, run with a stand-in `pulumi` that records its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "pulumi"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    for name in ("prod", "prod.weu-a", "prod.neu-b", "production"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    (tmp_path / "Pulumi.prod.placement.json").write_text("{}")
    script = WORKFLOWS.parent / "scripts" / "pulumi-up.sh"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PROJECT_ROOT": str(tmp_path)}
    subprocess.run(["/bin/bash", str(script), "prod"], check=True, env=env, capture_output=True)
    ups = [c for c in calls.read_text().splitlines() if c.startswith("up ")]
    assert [c.split()[2] for c in ups] == ["prod", "prod.neu-b", "prod.weu-a"]
    assert all("--policy-pack policies" in c and "--yes" in c for c in ups)
    selects = [c for c in calls.read_text().splitlines() if c.startswith("stack select")]
    assert len(selects) == 3 and all("--create" in c for c in selects)


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_no_secret_and_least_rights(path: Path) -> None:
    text = path.read_text()
    assert "secrets." not in text  # identities sign in with OIDC; ids are variables
    flow = _load(path.name)
    assert flow["permissions"] == {}  # nothing by default; each job asks for its own
    for name, job in flow["jobs"].items():
        rights = job["permissions"]
        assert rights.get("contents") == "read", name
        assert set(rights) <= {"contents", "id-token"}, name
        signs_in = any("azure-sign-in" in r for r in _runs(job))
        assert (rights.get("id-token") == "write") == signs_in, name
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), step["uses"]  # a commit, not a tag
                if step["uses"].startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


def test_the_sign_in_exchanges_the_jobs_oidc_token_and_stores_nothing() -> None:
    script = (ROOT / ".github" / "scripts" / "azure-sign-in.sh").read_text()
    assert "audience=api://AzureADTokenExchange" in script
    assert "--federated-token" in script and "::add-mask::" in script
    assert "client-secret" not in script and "--password" not in script


def test_every_morning_each_installation_reports_drift_and_quality_as_its_report_identity() -> (
    None
):
    flow = _load("watch-report.yml")
    assert [s["cron"] for s in flow["on"]["schedule"]] == ["17 6 * * *"]
    assert "workflow_dispatch" in flow["on"]
    job = flow["jobs"]["report"]
    assert job["strategy"]["matrix"]["stack"] == AZURE_STACKS
    # The report identity's environment: Storage Table Data Reader on the state account.
    assert job["environment"] == "${{ matrix.stack }}-report"
    [command] = [r for r in _runs(job) if "mlops watch report" in r]
    for option in ('--stack "$STACK"', '--state-account "$STATE_ACCOUNT"',
                   '--markdown "$GITHUB_STEP_SUMMARY"'):  # fmt: skip
        assert option in command
    assert _runs(job).index(".github/scripts/azure-sign-in.sh") < _runs(job).index(command)


def test_a_training_code_change_retrains_dev_with_it() -> None:
    flow = _load("model-pipeline.yml")
    assert flow["on"]["push"]["branches"] == ["main"]
    assert "ml/**" in flow["on"]["push"]["paths"]
    job = flow["jobs"]["train-dev"]
    assert job["environment"] == "dev"  # dev's pipeline identity
    [command] = [r for r in _runs(job) if "mlops retrain" in r]
    assert "--stack dev" in command
    # The dispatch input reaches the shell as a variable, never as template text.
    assert "inputs.tenants" not in command and job["env"]["TENANTS"] == "${{ inputs.tenants }}"


def test_the_training_code_moves_on_to_staging_then_prod_for_deploy_code_tenants() -> None:
    jobs = _load("model-pipeline.yml")["jobs"]
    assert jobs["promote-code-staging"]["needs"] == "train-dev"
    assert jobs["promote-code-prod"]["needs"] == "promote-code-staging"
    for source, stack in (("dev", "staging"), ("staging", "prod")):
        job = jobs[f"promote-code-{stack}"]
        assert job["environment"] == stack  # its required reviewers, its pipeline identity
        [command] = [r for r in _runs(job) if "mlops retrain" in r]
        assert f"--stack {stack}" in command and "--promotion deploy_code" in command
        assert f"--from {source}" in command


def test_a_champion_is_promoted_in_the_targets_environment_as_its_pipeline() -> None:
    flow = _load("promote-model.yml")
    inputs = flow["on"]["workflow_dispatch"]["inputs"]
    assert {"tenant", "model", "version", "to"} <= set(inputs)
    assert inputs["to"]["options"] == AZURE_STACKS[1:]  # dev is a source only
    job = flow["jobs"]["promote"]
    assert job["environment"] == "${{ inputs.to }}"
    [command] = [r for r in _runs(job) if "mlops promote" in r]
    for option in ('--tenant "$TENANT"', '--version "$VERSION"', '--to "$TARGET"'):
        assert option in command
    assert "inputs." not in command  # the inputs reach the shell as variables
    # Each target's source is the stack that promotes to it.
    specs = {stack: load_stack(stack, ROOT) for stack in AZURE_STACKS}
    for source, target in (("dev", "staging"), ("staging", "prod")):
        assert specs[source].delivery.promotes_to == target
        assert f"{target}) source={source} ;;" in command
