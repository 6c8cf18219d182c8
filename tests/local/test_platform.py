"""The embedded platform end to end, as a user drives it: `mlops up --detach` on free ports
with the local stack, `mlops status --json --show-keys`, scores as every tenant, a key that
reaches nothing of another tenant, `mlops demo` (drift -> alert -> retraining -> canary ->
promotion; a broken model rolled back by the automation; a shared model retrained without a
tenant who withdrew consent), the other commands, and `mlops down` leaving no process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from adapters.local import COLLECTED_CONTAINER
from local.azurite import start_azurite
from local.demo import Load
from local.operations import PlatformClient
from mlops.cli import EXIT_CONFIG, EXIT_OK, main
from tenancy import PlatformSpec, load_stack
from tenancy.contracts import COLLECTOR_ROOT
from tests.conftest import ROOT
from tests.local.upstream import upstreams


def _mlops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        check=False,
    )


def _descendants(pid: int) -> set[int]:
    """Every process started under ``pid`` (from /proc), however deep."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _command(pid: int) -> str:
    """A process's command line, to name a survivor."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(exited)"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("platform") / "data"
    options = ["--stack", "local", "--data-dir", str(data_dir), "--root", str(ROOT)]
    started = _mlops("up", "--detach", *options)
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((data_dir / "platform.json").read_text())
    world = {"options": options, "data_dir": data_dir, "pid": state["pid"], "up": started}
    yield world
    running = data_dir / "platform.json"  # a failed test must not leave it running
    if running.exists():
        os.kill(json.loads(running.read_text())["pid"], signal.SIGTERM)


@pytest.fixture(scope="module")
def status(platform: dict[str, Any]) -> dict[str, Any]:
    shown = _mlops("status", "--json", "--show-keys", *platform["options"])
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


@pytest.fixture(scope="module")
def client(specs: dict[str, PlatformSpec], platform: dict[str, Any]) -> PlatformClient:
    return PlatformClient.of(specs["local"], platform["data_dir"])


def _post(tenant: dict[str, Any], key: str, **kwargs: Any) -> requests.Response:
    return requests.post(
        kwargs.pop("uri", tenant["scoring_uri"]),
        json=tenant["sample_request"],
        headers={"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})},
        timeout=30,
    )


def test_every_tenant_is_served_by_a_champion_the_automation_rolled_out(
    specs: dict[str, PlatformSpec], status: dict[str, Any], client: PlatformClient
) -> None:
    assert {t["id"] for t in status["tenants"]} == {t.id for t in specs["local"].tenants}
    for tenant in status["tenants"]:
        champion = tenant["champion"]
        assert tenant["traffic"][champion["deployment"]] == 100, tenant["id"]
        assert champion["model"], tenant["id"]
        answer = _post(tenant, tenant["keys"]["primary"])
        assert answer.status_code == 200, (tenant["id"], answer.text)
        assert len(answer.json()["predictions"]) == 1
        first = client.rollout(tenant["id"], champion["model"])
        assert first["phase"] in ("promoted", "draining")
        actors = {record["actor"] for record in first["audit"]}
        assert actors == {"automation"}  # gated and rolled out, not placed by hand
        assert tenant["input_schema"]["type"] in ("tabular", "text")
    assert set(status["services"]["tracking"]) == {
        "platform",
        "pool-shared",
        "tenant-adatum",
        "tenant-contoso",
    }


def test_a_key_reaches_nothing_of_another_tenant(status: dict[str, Any]) -> None:
    by_id = {t["id"]: t for t in status["tenants"]}
    contoso, adatum, fabrikam = by_id["contoso"], by_id["adatum"], by_id["fabrikam"]
    stolen = contoso["keys"]["primary"]
    for other in (adatum, fabrikam):
        answer = _post(other, stolen)
        assert answer.status_code == 401, answer.text
        named = _post(other, stolen, headers={"azureml-model-deployment": "blue"})
        assert named.status_code == 401, named.text
    # Its own endpoint, naming a deployment it does not have: nothing is routed there.
    own = _post(contoso, stolen, headers={"azureml-model-deployment": "nope"})
    assert own.status_code == 404
    shown = _mlops("status", "--json", *_options_of(status))
    assert "keys" not in json.loads(shown.stdout)["tenants"][0]  # keys only when asked


def _options_of(status: dict[str, Any]) -> list[str]:
    return ["--stack", "local", "--data-dir", status["data_dir"], "--root", str(ROOT)]


def test_the_demo_tells_the_whole_story(status: dict[str, Any]) -> None:
    played = _mlops("demo", *_options_of(status))
    timeline = played.stdout
    assert played.returncode == 0, timeline + played.stderr
    for step in (
        "contoso scores through",
        "contoso's clients score 100 requests and send their labels",
        "quality check: accuracy 0.",  # measured on the labels, healthy first
        "healthy",
        "decision: quality of contoso-classical/1 fell: accuracy",
        "alert to contoso",
        "retraining of contoso requested",
        "contoso-classical/2: shifting",
        "contoso: contoso-classical/2 promoted",
        "the registry's champion alias of contoso now names contoso-classical/2",
        "adatum-cv/2 registered, exported for ONNX opset 99",
        "adatum: adatum-cv/2 rolled back",
        "adatum still scores: HTTP 200",
        "(contoso not among them)",
        "fabrikam: shared-classical/2 promoted",
        "policy audit: deployment-probes (mandatory) on adatum's hand-wired",
        "'hand-wired' removed: the finding cleared",
        "contoso's prompt capitals/1 passed the gate (contains 1.00, judge 0.50): rollout promoted",
        "contoso's prompt capitals/2 rejected by the gate (contains 0.00, judge 0.00)",
        "contoso's prompt capitals/3 passed the gate (contains 1.00, judge 1.00)",
        "judge 1.00 vs 0.50",
        "contoso: prompt capitals/3 promoted; champion 3",
        "fabrikam hits its token budget at request",
        "demo complete",
    ):
        # The whole timeline on failure: which step went wrong is in the lines before.
        assert step in timeline, f"{step!r} missing from the timeline:\n{timeline}"
    shown = _mlops("status", *_options_of(status)).stdout
    assert "prompt  capitals: champion 3; rollout of 3 promoted" in shown, shown
    assert "genai   1800 of 2000 tokens this month (90.0%)" in shown, shown


def test_rollout_commands_need_an_approver_and_name_what_is_missing(
    status: dict[str, Any],
) -> None:
    listed = _mlops("rollout", "list", "--json", *_options_of(status))
    rollouts = json.loads(listed.stdout)
    assert {"contoso-classical/2", "adatum-cv/2"} <= {r["model"] for r in rollouts}
    missing = _mlops(
        "rollout", "abort", "--tenant", "contoso", "--model", "contoso-classical/9",
        *_options_of(status),
    )  # fmt: skip
    assert missing.returncode == 1 and "does not exist" in missing.stdout
    wrong = _mlops(
        "rollout", "approve", "--tenant", "contoso", "--model", "x", *_options_of(status)
    )
    assert wrong.returncode == EXIT_CONFIG and "<name>/<version>" in wrong.stderr


def test_keys_rotate_one_slot_at_a_time(status: dict[str, Any], client: PlatformClient) -> None:
    contoso = next(t for t in status["tenants"] if t["id"] == "contoso")
    old = contoso["keys"]["secondary"]
    rotated = _mlops("keys", "rotate", "--tenant", "contoso", "--slot", "secondary",
                     *_options_of(status))  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    new = client.keys()["contoso"]["secondary"]
    assert new != old and new not in rotated.stdout  # the key is not printed
    assert _post(contoso, old).status_code == 401
    assert _post(contoso, new).status_code == 200
    assert _post(contoso, contoso["keys"]["primary"]).status_code == 200
    audit = [a for a in client.audit("contoso") if a["subject"] == "key secondary"]
    assert audit and old not in json.dumps(audit) and new not in json.dumps(audit)


def test_drift_report_plots_every_feature(status: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "contoso.html"
    made = _mlops("drift", "report", "--tenant", "contoso", "--out", str(out),
                  *_options_of(status))  # fmt: skip
    assert made.returncode == 0, made.stderr
    page = out.read_text()
    contoso = next(t for t in status["tenants"] if t["id"] == "contoso")
    columns = contoso["input_schema"]["columns"]
    assert page.count("<svg") == len(columns) + 1  # every feature and the prediction
    assert all(column in page for column in columns)


def test_score_command_answers_as_the_gateway_does(status: dict[str, Any]) -> None:
    scored = _mlops("score", "--tenant", "litware", *_options_of(status))
    assert scored.returncode == 0 and json.loads(scored.stdout)["status"] == 200
    bad = _mlops("score", "--tenant", "litware", "--data", '{"data": 3}', *_options_of(status))
    assert bad.returncode == 1 and json.loads(bad.stdout)["status"] == 400


def test_the_audit_judges_the_serving_plane_and_finds_an_unprobed_deployment(
    status: dict[str, Any], client: PlatformClient
) -> None:
    """`mlops audit` runs the platform's policy_audit now: what the platform runs passes; a
    deployment registered by URL (nothing here probes it) is found, and clears once gone."""
    options = _options_of(status)
    clean = _mlops("audit", "--json", *options)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout) == []
    endpoint = next(t for t in status["tenants"] if t["id"] == "adatum")["endpoint"]
    with upstreams("outside") as servers:
        client.admin.put_deployment(endpoint, "outside", servers["outside"].url)
        try:
            found = _mlops("audit", "--json", *options)
        finally:
            client.admin.delete_deployment(endpoint, "outside")
    assert found.returncode == 1, found.stdout + found.stderr
    [finding] = json.loads(found.stdout)
    assert (finding["policy"], finding["tenant"]) == ("deployment-probes", "adatum")
    assert finding["resource"].endswith(f"/onlineEndpoints/{endpoint}/deployments/outside")
    again = _mlops("audit", *options)
    assert again.returncode == 0 and "no open finding" in again.stdout


def test_labels_sent_for_scored_requests_are_measured_by_the_quality_timer(
    specs: dict[str, PlatformSpec], client: PlatformClient, status: dict[str, Any], tmp_path: Path
) -> None:
    """northwind's client (a pooled tenant: its rows sit beside its neighbours') scores
    requests of ten rows, then sends their true labels, a list per request: the gateway
    stores them, and the platform's quality_check measures northwind's model on northwind's
    rows alone, with the estimate from confidence beside it."""
    from ml.data import tenant_datasets  # noqa: PLC0415

    tenant, requests_sent, per_request = "northwind", 6, 10
    # The demo's last rollout (the shared model) may still be shifting northwind's traffic:
    # the rows must all reach one deployment, which the check then measures.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len([d for d, share in client.adapter.endpoint(tenant).traffic.items() if share]) == 1:
            break
        time.sleep(0.5)  # waiting for the rollout to end, not timing anything
    train, _ = tenant_datasets(specs["local"])["northwind"].split()
    batches = [range(r * per_request, (r + 1) * per_request) for r in range(requests_sent)]
    scored = [client.score(tenant, {"data": [train.X[i].tolist() for i in b]}) for b in batches]
    assert all(s.status == 200 and s.request_id for s in scored), [s.status for s in scored]
    labels = [
        (s.request_id, [int(train.y[i]) for i in b])
        for s, b in zip(scored, batches, strict=True)
    ]
    answer = client.feedback(tenant, [*labels, ("guessed-id", 1)])
    assert answer == {"accepted": requests_sent, "unknown": ["guessed-id"]}
    rows = requests_sent * per_request
    # The collector writes the scored rows within seconds: check until they are all joined.
    deadline = time.monotonic() + 60
    while True:
        client.run_function("quality_check")
        check = client.quality()[tenant]
        if check["labelled"] >= rows or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # waiting for the collector's flush, not timing anything
    assert check["labelled"] == rows, check
    measured = check["measured"]
    truth = np.array([label for _, batch in labels for label in batch])
    predicted = np.array([p for s in scored for p in s.body["predictions"]])
    assert measured["accuracy"] == pytest.approx(float((truth == predicted).mean()))
    assert check["estimated"]["rows"] >= rows and check["action"] == "none"
    # `mlops status` shows it, and the usage metered per pooled tenant; the report draws it.
    shown = _mlops("status", *_options_of(status))
    assert f"accuracy {measured['accuracy']:.3f} measured on {rows} labelled" in shown.stdout
    as_json = _mlops("status", "--json", *_options_of(status))
    usage = {t["id"]: t["usage"] for t in json.loads(as_json.stdout)["tenants"]}
    assert usage[tenant]["rows"] >= rows and usage[tenant]["requests"] >= requests_sent
    pooled = [t.id for t in specs["local"].tenants_in_pool("shared")]
    shares = [usage[t]["share"] for t in pooled if usage.get(t)]
    assert 0 < usage[tenant]["share"] < 1 and sum(shares) == pytest.approx(1, abs=1e-3)
    out = tmp_path / "quality.html"
    made = _mlops("quality", "report", "--tenant", tenant, "--out", str(out),
                  *_options_of(status))  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    page = out.read_text()
    assert f"<td>accuracy</td><td>{measured['accuracy']:.3f}</td>" in page
    assert page.count("<svg") == 2 and "calibration" in page


def test_the_cost_report_charges_each_stamp_and_splits_each_pool_by_metered_usage(
    specs: dict[str, PlatformSpec], status: dict[str, Any], client: PlatformClient
) -> None:
    """The embedded platform's bill: each stamp's endpoint at the stack's price per
    instance-hour since the period began; a pool's spend split by its tenants' metered
    scoring time (the settled hours: what was scored in this hour counts from the next)."""
    spec = specs["local"]
    client.run_function("pooled_budgets")  # the hourly timer, in the Functions host: it meters
    made = _mlops("cost", "report", "--json", *_options_of(status))
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    at = datetime.fromisoformat(report["at"])
    began = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    price = spec.budget_policy.instance_hour_prices["Standard_DS3_v2"]
    charged = price * (at - began).total_seconds() / 3600  # one instance per stamp here
    by_tenant = {c["tenant"]: c for c in report["tenants"]}
    assert set(by_tenant) == {t.id for t in spec.tenants} and report["errors"] == {}
    for tenant in ("contoso", "adatum"):
        assert by_tenant[tenant]["share"] == 1.0
        assert by_tenant[tenant]["stamp_spend"] == pytest.approx(charged, abs=0.01)
    pooled = [c for c in by_tenant.values() if c["pooled"]]
    settled = (at - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    assert {c["metered_until"] for c in pooled} == {settled.isoformat()}
    split = sum(c["cost"] for c in pooled) + report["unattributed"].get("pool-shared", 0)
    assert split == pytest.approx(charged, abs=0.05)  # the pool's spend, all of it accounted
    nobody = bool(report["unattributed"])  # no tenant of the pool scored before this hour
    assert sum(c["share"] for c in pooled) == pytest.approx(0 if nobody else 1)
    # Nobody is over budget: nobody is refused.
    assert all(c["refused_until"] is None for c in _costs_shown(status).values())
    text = _mlops("cost", "report", *_options_of(status)).stdout
    assert f"contoso    tenant-contoso   {began.date()}.." in text
    shown = _mlops("status", *_options_of(status)).stdout
    assert f"of its {spec.tenant('fabrikam').budget.amount:g} budget" in shown
    assert "% of pool-shared's" in shown


def _costs_shown(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    shown = _mlops("status", "--json", *_options_of(status))
    return {t["id"]: t["cost"] for t in json.loads(shown.stdout)["tenants"]}


def _served(options: list[str]) -> dict[str, dict[str, Any]]:
    """Per tenant, what ``mlops status`` says serves it."""
    shown = _mlops("status", "--json", "--show-keys", *options)
    assert shown.returncode == 0, shown.stderr
    return {
        tenant["id"]: {
            "champion": tenant["champion"]["model"],
            "traffic": {d: share for d, share in tenant["traffic"].items() if share},
            "tenant": tenant,
        }
        for tenant in json.loads(shown.stdout)["tenants"]
    }


def _split_as_a_canary_would(tenant: dict[str, Any], client: PlatformClient) -> dict[str, int]:
    """The tenant's endpoint 90 / 10 between its champion and a second deployment of the
    same model, ready: the platform then stops in the middle of a traffic shift."""
    endpoint, live = tenant["endpoint"], tenant["champion"]["deployment"]
    client.admin.create_deployment(endpoint, "canary", {"*": tenant["champion"]["model"]}, None)
    while (state := client.admin.deployment(endpoint, "canary"))["status"] == "creating":
        time.sleep(0.2)  # waiting for the process to be ready, not timing anything
    assert state["status"] == "ready", state
    split = {live: 90, "canary": 10}
    client.admin.set_traffic(endpoint, split, {})
    return split


def _rollout_reaching(
    client: PlatformClient, tenant: str, model: str, phases: set[str]
) -> dict[str, Any]:
    """The tenant's rollout of ``model`` once its automation has taken it to one of
    ``phases`` (rollouts advance on the target's timer: this only waits for them)."""
    deadline, found = time.monotonic() + 300, None
    while time.monotonic() < deadline:
        found = next((r for r in reversed(client.rollouts(tenant)) if r["model"] == model), None)
        if found is not None and found["phase"] in phases:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{tenant}'s rollout of {model} never reached {phases}: {found}")


def _approved_and_promoted(client: PlatformClient, rollouts: dict[str, str]) -> None:
    """local-prod asks for an approver at the last step, as production does: each canary
    ({tenant: model}) walks its steps on its tenant's traffic, waits, and is promoted once
    approved."""
    with Load(client, list(rollouts), per_second=20):
        for tenant, model in rollouts.items():
            _rollout_reaching(client, tenant, model, {"awaiting_approval"})
            code, answer = client.command(tenant, model, "approve")
            assert code == 200, answer
        for tenant, model in rollouts.items():
            _rollout_reaching(client, tenant, model, {"promoted", "draining"})


def test_local_promotes_to_local_prod_through_both_patterns(
    platform: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two environments on this machine: local (as staging) promotes to local-prod, a
    second running embedded platform with its own data, ports and approval rule.
    contoso's artifact moves (deploy models); litware's code moves and is retrained on
    local-prod's data (deploy code). Each time local-prod's own automation gates the
    version, canaries it and promotes it once approved, and its audit names the source."""
    data_dir = tmp_path_factory.mktemp("local-prod") / "data"
    options = ["--stack", "local-prod", "--data-dir", str(data_dir), "--root", str(ROOT)]
    started = _mlops("up", "--detach", *options)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        prod = PlatformClient.of(load_stack("local-prod", ROOT), data_dir)
        # Its first rollouts wait for an approver: `mlops up` returned all the same, and
        # `mlops status` says what to run.
        shown, firsts = _mlops("status", *options).stdout, {}
        for tenant in ("contoso", "litware"):
            [first] = prod.rollouts(tenant)
            assert first["phase"] == "awaiting_approval", first
            assert (
                f"rollout of {first['model']} awaits approval: mlops rollout approve "
                f"--stack local-prod --tenant {tenant} --model {first['model']}"
            ) in shown
            firsts[tenant] = first["model"]
        _approved_and_promoted(prod, firsts)
        local = _served(platform["options"])
        promoted = {}
        for tenant in ("contoso", "litware"):
            name, version = local[tenant]["champion"].split("/")
            made = _mlops(
                "promote", "--tenant", tenant, "--model", name, "--version", version,
                "--from", "local", "--to", "local-prod", "--json",
                "--from-data-dir", str(platform["data_dir"]), "--to-data-dir", str(data_dir),
            )  # fmt: skip
            assert made.returncode == 0, made.stdout + made.stderr
            promoted[tenant] = json.loads(made.stdout)
            assert promoted[tenant]["gate"] == "passed", promoted[tenant]
            assert promoted[tenant]["source"] == f"local:{local[tenant]['champion']}"
        models = {t: p["target"].removeprefix("local-prod:") for t, p in promoted.items()}
        _approved_and_promoted(prod, models)
        serving = _served(options)
        for tenant, model in models.items():
            assert serving[tenant]["champion"] == model
            [record] = [a for a in prod.audit(tenant) if a.get("event") == "promoted_in"]
            assert record["from"] == promoted[tenant]["source"]
        assert promoted["contoso"]["pattern"] == "deploy_models"
        assert promoted["litware"]["pattern"] == "deploy_code"
        assert set(promoted["litware"]["compared"]) >= {"accuracy"}
        # adatum is not in local-prod: refused, naming why.
        refused = _mlops(
            "promote", "--tenant", "adatum", "--model", "adatum-cv", "--version", "1",
            "--from", "local", "--to", "local-prod",
            "--from-data-dir", str(platform["data_dir"]), "--to-data-dir", str(data_dir),
        )  # fmt: skip
        assert refused.returncode == EXIT_CONFIG
        assert "tenant adatum is not in local-prod" in refused.stderr
    finally:
        assert main(["down", *options]) == EXIT_OK


def test_down_stops_every_process_it_started(
    platform: dict[str, Any], client: PlatformClient
) -> None:
    pid = platform["pid"]
    # adatum: no shifted rows reach it, so no drift check retrains it behind the test's back.
    adatum = _served(platform["options"])["adatum"]["tenant"]  # as the demo left it
    split = _split_as_a_canary_would(adatum, client)
    platform["served_at_down"] = _served(platform["options"])
    assert platform["served_at_down"]["adatum"]["traffic"] == split
    started = _descendants(pid)
    assert len(started) >= 8  # Azurite, 4 MLflow servers (+ workers), deployments
    assert main(["down", *platform["options"]]) == EXIT_OK
    assert not _alive(pid)
    assert {p: _command(p) for p in started if _alive(p)} == {}
    assert main(["status", *platform["options"]]) == EXIT_CONFIG


def test_up_again_restores_every_endpoint_and_trains_nothing(platform: dict[str, Any]) -> None:
    # After the demo (retrained and rolled-back models), adatum halfway through a shift.
    before = platform["served_at_down"]
    again = _mlops("up", "--detach", *platform["options"])
    assert again.returncode == 0, again.stdout + again.stderr
    state = json.loads((platform["data_dir"] / "platform.json").read_text())
    assert state["trained_in_seconds"] == 0  # restored: no first model trained again
    after = _served(platform["options"])
    adatum = (after["adatum"]["champion"], after["adatum"]["traffic"])
    assert adatum == (before["adatum"]["champion"], before["adatum"]["traffic"])
    # Every tenant is served again, with the key it had (the drift timer may have started
    # a retraining of a drifting tenant meanwhile: that is the automation, not the restart).
    for tenant, was in before.items():
        answer = _post(after[tenant]["tenant"], was["tenant"]["keys"]["primary"])
        assert answer.status_code == 200, (tenant, answer.text)
    # It keeps running: the next test stops it as a terminal's Ctrl-C does.


def _wait_gone(pid: int, timeout_seconds: float) -> float:
    """Seconds until ``pid`` is gone (the timeout if it is not)."""
    started = time.monotonic()
    while _alive(pid) and time.monotonic() - started < timeout_seconds:
        time.sleep(0.1)  # waiting for an exit, measured, not assumed
    return time.monotonic() - started


def test_ctrl_c_stops_everything_in_order_and_loses_no_collected_data(
    platform: dict[str, Any],
) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group (a detached
    platform leads its own). Services are out of that group: the collected request still
    reaches storage, which stops after it."""
    pid = json.loads((platform["data_dir"] / "platform.json").read_text())["pid"]  # up again
    contoso = _served(platform["options"])["contoso"]["tenant"]
    answer = _post(contoso, contoso["keys"]["primary"])
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]
    started = _descendants(pid)
    os.killpg(pid, signal.SIGINT)
    took = _wait_gone(pid, 60)
    assert took < 30, f"Ctrl-C took {took:.1f} s"
    assert {p: _command(p) for p in started if _alive(p)} == {}
    azurite = start_azurite(platform["data_dir"] / "azurite")  # the platform's own storage
    try:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        container = service.get_container_client(COLLECTED_CONTAINER)
        prefix = f"{COLLECTOR_ROOT}/{contoso['endpoint']}/"
        stored = [
            container.download_blob(blob.name).readall()
            for blob in container.list_blobs(name_starts_with=prefix)
        ]
    finally:
        azurite.stop()
    assert sum(blob.count(request_id.encode()) for blob in stored) == 2  # inputs and outputs


def test_a_killed_platform_comes_back_as_it_was_without_training(
    platform: dict[str, Any],
) -> None:
    up = _mlops("up", "--detach", *platform["options"])
    assert up.returncode == 0, up.stdout + up.stderr
    pid = json.loads((platform["data_dir"] / "platform.json").read_text())["pid"]
    client = PlatformClient.of(load_stack("local", ROOT), platform["data_dir"])
    adatum = _served(platform["options"])["adatum"]["tenant"]
    client.admin.set_traffic(adatum["endpoint"], {adatum["champion"]["deployment"]: 100}, {})
    split = _split_as_a_canary_would(_served(platform["options"])["adatum"]["tenant"], client)
    key = adatum["keys"]["primary"]  # in Azurite's tables, as the rollouts are
    started = _descendants(pid)
    os.kill(pid, signal.SIGKILL)  # nothing of the platform runs after this: no stop, no save
    assert _wait_gone(pid, 10) < 10
    leftover = {p for p in started if _wait_gone(p, 60) >= 60}
    assert {p: _command(p) for p in leftover} == {}  # every service died with it
    status = _mlops("status", *platform["options"])
    assert status.returncode != 0 and "died" in status.stderr
    again = _mlops("up", "--detach", *platform["options"])
    assert again.returncode == 0, again.stdout + again.stderr
    state = json.loads((platform["data_dir"] / "platform.json").read_text())
    assert state["trained_in_seconds"] == 0  # restored, nothing trained again
    back = _served(platform["options"])["adatum"]
    assert back["traffic"] == split
    assert _post(back["tenant"], key).status_code == 200
    assert main(["down", *platform["options"]]) == EXIT_OK
