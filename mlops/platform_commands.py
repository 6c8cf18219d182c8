"""The embedded platform from the command line: `mlops up [--detach]`, `status`, `down`,
`score`, `rollout list|show|approve|abort`, `keys rotate`, `drift report`, `quality report`,
`cost report`, `audit`, `demo`.

``up`` runs in the foreground until interrupted (Ctrl-C or SIGTERM, which ``down`` sends)
and then stops every process it started; ``--detach`` runs the same in the background and
returns once it serves. While it runs, ``<data-dir>/platform.json`` says where everything is
and which process to signal. The other commands act on the running platform through
:class:`local.operations.PlatformClient`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from automation.port import Endpoint
from automation.store import StateStore
from genai.prompts import PromptLineage
from local.operations import STATE_FILE, PlatformClient, running_state
from local.processes import is_platform, is_running, stop_lifelines
from tenancy.errors import DependencyError, InvalidInputError
from tenancy.load import load_stack

LOG_FILE = "platform.log"


def default_data_dir(root: Path, stack: str) -> Path:
    return root / ".mlops" / stack


def claim_data_dir(data_dir: Path) -> None:
    """Refuse a data directory a running platform holds. One whose platform died (SIGKILL, a
    crash) is taken over: what it left running is stopped and its record removed; its saved
    state is what the next start restores."""
    path = data_dir / STATE_FILE
    if not path.is_file():
        return
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pid = 0  # a torn record: its platform never finished starting
    if pid and is_platform(pid):
        raise InvalidInputError(f"a platform (pid {pid}) is running with data in {data_dir}")
    left = stop_lifelines(pid) if pid else []
    print(
        f"the platform that ran with data in {data_dir} (pid {pid}) is gone; "
        f"{len(left)} service(s) it left running stopped",
        flush=True,
    )
    path.unlink(missing_ok=True)


def up(root: Path, stack: str, data_dir: Path, *, timers: bool = True) -> int:
    from local.platform import EmbeddedPlatform  # noqa: PLC0415 - heavy

    claim_data_dir(data_dir)
    spec = load_stack(stack, root)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no per-registration chatter
    _log_platform_steps()
    started = time.monotonic()
    platform = EmbeddedPlatform(spec, stack, data_dir).start(timers=timers)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        status = platform.status()
        status["pid"] = os.getpid()
        status["started_in_seconds"] = round(time.monotonic() - started, 1)
        status["trained_in_seconds"] = platform.trained_in_seconds  # 0: restored, not trained
        (data_dir / STATE_FILE).write_text(json.dumps(status, indent=2))
        print(json.dumps(status, indent=2), flush=True)
        print("serving; Ctrl-C (or `mlops down`) stops everything", flush=True)
        stop.wait()
    finally:
        platform.stop()  # before the state file goes: `down` returns when both are done
        (data_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


def _log_platform_steps() -> None:
    """The platform's own steps (how long each part took to stop) to the output."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    steps = logging.getLogger("tenant_mlops.platform")
    steps.addHandler(handler)
    steps.setLevel(logging.INFO)


def up_detached(root: Path, stack: str, data_dir: Path, timeout_seconds: float = 900) -> int:
    """``mlops up`` in the background (its output in ``<data-dir>/platform.log``); returns
    once it serves, or says why it stopped."""
    claim_data_dir(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / LOG_FILE
    command = [sys.executable, "-m", "mlops", "up", "--stack", stack, "--data-dir", str(data_dir)]
    with log.open("ab") as stream:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [*command, "--root", str(root)],
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
            start_new_session=True,  # survives the shell that started it
        )
    deadline = time.monotonic() + timeout_seconds
    while not (data_dir / STATE_FILE).is_file():
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise DependencyError(f"the platform stopped while starting; {log} ends:\n{tail}")
        if time.monotonic() > deadline:
            raise DependencyError(f"the platform did not serve within {timeout_seconds:g} s")
        time.sleep(0.5)  # waiting for the platform to come up
    state = running_state(data_dir)
    print(render_status(state))
    print(f"running in the background (pid {process.pid}, log {log}); `mlops down` stops it")
    return 0


def _client(root: Path, stack: str, data_dir: Path) -> PlatformClient:
    return PlatformClient.of(load_stack(stack, root), data_dir)


def status(root: Path, stack: str, data_dir: Path, show_keys: bool) -> dict[str, Any]:
    """The running platform's state, with live traffic, deployments and latest rollouts."""
    client = _client(root, stack, data_dir)
    state = client.state
    keys = client.keys() if show_keys else {}
    rollouts = client.rollouts()
    quality = client.quality()
    usage = _usage(client, [t["id"] for t in state["tenants"]])
    costs = _costs(client, metered_first=False)
    genai = _genai_status(client)
    for tenant in state["tenants"]:
        found = client.admin.endpoint(tenant["endpoint"])
        endpoint = Endpoint(tenant["id"], found["name"], found["traffic"], found["mirror"])
        tenant["traffic"] = dict(endpoint.traffic)
        tenant["deployments"] = {}
        for name in found["deployments"]:
            running = client.admin.deployment(found["name"], name)
            tenant["deployments"][name] = {
                "model": client.adapter.serving_model(tenant["id"], name),
                "status": running["status"],
                "restarts": running.get("restarts", 0),
            }
        live = endpoint.live if endpoint.serving else None
        tenant["champion"] = {"deployment": live, **tenant["deployments"].get(live or "", {})}
        mine = [r for r in rollouts if r["tenant"] == tenant["id"]]
        tenant["rollouts"] = mine[-3:]
        # The quality timer's latest check: measured on labels, estimated from confidence.
        tenant["quality"] = quality.get(tenant["id"])
        # Its requests, rows and share of its endpoint's scoring time in the last day.
        tenant["usage"] = usage.get(tenant["id"])
        # Its cost so far in its budget period (a pooled tenant's: its metered share).
        tenant["cost"] = costs.get(tenant["id"])
        # Its generative AI: tokens and spend this month, prompts and their rollouts.
        tenant["genai"] = genai.get(tenant["id"])
        if show_keys:
            tenant["keys"] = keys.get(tenant["id"], {})
    return state


USAGE_HOURS = 24


def _genai_status(client: PlatformClient) -> dict[str, Any]:
    if not any(t.genai is not None for t in client.spec.tenants):
        return {}
    return client.admin.genai_status()


def _usage(client: PlatformClient, tenants: list[str]) -> dict[str, dict[str, Any]]:
    """Per tenant, its metered usage of its endpoint over the last USAGE_HOURS, with its
    share of the endpoint's scoring time (a pool's tenants share one)."""
    from automation.usage import shares  # noqa: PLC0415

    until = datetime.now(UTC)
    since = until - timedelta(hours=USAGE_HOURS)
    found: dict[str, dict[str, Any]] = {}
    read: set[str] = set()
    for tenant in tenants:
        endpoint = client.spec.online_endpoint_name(tenant)
        if endpoint in read:
            continue
        read.add(endpoint)
        metered = shares(client.adapter.usage(tenant, since=since, until=until))
        found.update({t: used.to_dict() for t, used in metered.items()})
    return found


def _costs(client: PlatformClient, *, metered_first: bool) -> dict[str, dict[str, Any]]:
    """Each tenant's cost in its budget period, with the budget stop in force if any."""
    report = _cost_report(client, metered_first=metered_first)
    found = {c.tenant: c.to_dict() for c in report.tenants}
    for cost in found.values():
        cost["refused_until"] = client.budget_stop(cost["tenant"])
    return found


def _cost_report(client: PlatformClient, *, metered_first: bool) -> Any:
    from automation.costs import Meter, cost_report, meter_pools  # noqa: PLC0415

    now = datetime.now(UTC)
    meter = Meter(client.store, client.adapter)
    if metered_first:
        meter_pools(client.spec, meter, client.adapter, now)
    return cost_report(client.spec, client.adapter, meter, now)


def cost(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    """Every tenant's cost in its budget's current period: a dedicated tenant its stamp's
    spend, a pooled tenant its metered share of its pool's. The pools' settled hours are
    metered first (idempotent bookkeeping, as the hourly timer does); only the timer
    enforces budgets."""
    client = _client(root, stack, data_dir)
    report = _cost_report(client, metered_first=True)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(render_costs(report.to_dict()))
    return 0


def render_costs(report: dict[str, Any]) -> str:
    lines = [
        f"cost in each tenant's budget period, at {report['at'][:16]} UTC",
        f"  {'tenant':10s} {'stamp':16s} {'period':23s} {'cost':>10s} {'budget':>8s} "
        f"{'used':>7s}  share of the stamp's spend",
    ]
    for cost in report["tenants"]:
        start, end = cost["period"]
        share = f"{cost['share']:.1%} of {cost['stamp_spend']:.2f}"
        if cost["pooled"]:
            share += f" (metered to {(cost['metered_until'] or 'nothing yet')[:16]})"
        lines.append(
            f"  {cost['tenant']:10s} {cost['stamp']:16s} {start}..{end} "
            f"{cost['cost']:>6.2f} {cost['currency']} {cost['budget']:>8g} "
            f"{cost['percent']:>6.1f}%  {share}"
        )
    for stamp, amount in report["unattributed"].items():
        lines.append(f"  {stamp}: {amount:.2f} nobody's (no tenant of the pool scored yet)")
    for stamp, problem in report["errors"].items():
        lines.append(f"  {stamp}: spend unknown: {problem}")
    return "\n".join(lines)


def render_status(state: dict[str, Any]) -> str:
    services = state["services"]
    lines = [
        f"stack {state['stack']} (data {state['data_dir']})",
        f"  gateway    {services['gateway']}",
        f"  functions  {services['functions']}",
        f"  azurite    {services['azurite_blob']} (blob), {services['azurite_table']} (table)",
        *(f"  mlflow     {url} ({key})" for key, url in sorted(services["tracking"].items())),
        "tenants:",
    ]
    for tenant in state["tenants"]:
        champion = tenant.get("champion") or {}
        lines.append(
            f"  {tenant['id']:10s} {tenant['scoring_uri']}  traffic {tenant['traffic']}  "
            f"champion {champion.get('model') or '-'}"
        )
        for model in tenant.get("awaiting_approval", []):
            lines.append(
                f"  {'':10s} rollout of {model} awaits approval: mlops rollout approve "
                f"--stack {state['stack']} --tenant {tenant['id']} --model {model}"
            )
        lines.append(f"  {'':10s} quality {_quality_line(tenant.get('quality'))}")
        lines.append(f"  {'':10s} usage   {_usage_line(tenant.get('usage'))}")
        lines.append(f"  {'':10s} cost    {_cost_line(tenant.get('cost'))}")
        lines += [f"  {'':10s} {line}" for line in _genai_lines(tenant.get("genai"))]
    return "\n".join(lines)


def _genai_lines(genai: dict[str, Any] | None) -> list[str]:
    """Tokens and spend this month, and each prompt's champion and rollout."""
    if not genai:
        return []
    tokens, limits = genai["tokens"], genai["limits"]
    lines = [
        f"genai   {tokens['month']} of {limits['month']} tokens this month "
        f"({tokens['month'] / limits['month']:.1%}), {tokens['minute']} of {limits['minute']} "
        f"this minute, {genai['usd_this_month']:.4f} USD spent"
    ]
    for name, found in sorted(genai["prompts"].items()):
        line = f"prompt  {name}: champion {found['champion'] or '-'}"
        rollout = found.get("rollout")
        if rollout:
            traffic = ", ".join(f"{k} {v}" for k, v in rollout["traffic"].items())
            line += f"; rollout of {rollout['version']} {rollout['phase']}"
            line += f" ({traffic})" if traffic and rollout["phase"] not in _ENDED else ""
        lines.append(line)
    return lines


_ENDED = ("promoted", "rolled_back", "superseded")


def _cost_line(cost: dict[str, Any] | None) -> str:
    if not cost:
        return "unknown"
    line = (
        f"{cost['cost']:.2f} {cost['currency']} of its {cost['budget']:g} budget "
        f"({cost['percent']:.1f} %) since {cost['period'][0]}"
    )
    if cost["pooled"]:
        line += f": {cost['share']:.1%} of {cost['stamp']}'s {cost['stamp_spend']:.2f}"
    if cost.get("refused_until"):
        line += f"; scoring refused until {cost['refused_until']}"
    return line


def _usage_line(usage: dict[str, Any] | None) -> str:
    if not usage:
        return f"nothing scored in the last {USAGE_HOURS} h"
    return (
        f"{usage['requests']} requests, {usage['rows']} rows, {usage['scoring_ms']:.0f} ms "
        f"scoring: {usage['share']:.1%} of its endpoint's compute in the last {USAGE_HOURS} h"
    )


def _quality_line(check: dict[str, Any] | None) -> str:
    """Accuracy measured on labels (and how many) beside the estimate from confidence."""
    if not check:
        return "not measured yet"

    def accuracy(of: dict[str, Any] | None) -> str:
        value = (of or {}).get("accuracy")
        return f"{value:.3f}" if isinstance(value, int | float) else "-"

    return (
        f"accuracy {accuracy(check.get('measured'))} measured on {check['labelled']} labelled "
        f"of {check['scored']} scored rows, {accuracy(check.get('estimated'))} estimated "
        f"from confidence ({check['action']}, {check.get('at', '')})"
    )


def down(data_dir: Path, timeout_seconds: float = 120) -> int:
    state = running_state(data_dir)
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not (data_dir / STATE_FILE).exists() and not is_running(pid):
            return 0
        time.sleep(0.2)  # waiting for the platform to stop, not timing anything
    raise DependencyError(f"the platform (pid {pid}) did not stop within {timeout_seconds:g} s")


# --- acting on the running platform ------------------------------------------------------------


def score(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    client = _client(root, stack, data_dir)
    body = None
    if args.data is not None:
        try:
            body = json.loads(args.data)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"--data is not JSON: {error}") from None
    scored = client.score(args.tenant, body, slot=args.key, deployment=args.deployment)
    print(
        json.dumps(
            {"status": scored.status, "deployment": scored.deployment, "body": scored.body},
            indent=2,
        )
    )
    return 0 if scored.status == 200 else 1


def _pairs(values: list[str], what: str) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise InvalidInputError(f"{what} {value!r} is not name=value")
        found[name] = text
    return found


def prompt(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    """`mlops prompt publish`: register, gate, roll out (exit 1 when the gate rejects)."""
    client = _client(root, stack, data_dir)
    parameters: dict[str, float | int | str] = dict(_pairs(args.param, "--param"))
    lineage = PromptLineage(args.deployment, args.evaluation_data, parameters)
    published = client.publish_prompt(args.tenant, args.name, args.template, lineage)
    print(json.dumps(published, indent=2))
    return 0 if published["verdict"]["passed"] else 1


def chat(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    client = _client(root, stack, data_dir)
    if (args.message is None) == (args.prompt is None):
        raise InvalidInputError("send --message or --prompt (with its --var)")
    body: dict[str, Any] = {"user": args.user}
    if args.message is not None:
        body["messages"] = [{"role": "user", "content": args.message}]
    else:
        body.update(prompt=args.prompt, variables=_pairs(args.var, "--var"))
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    answered = client.chat(args.tenant, args.deployment, body)
    shown = {"status": answered.status, "trace_id": answered.trace_id, "body": answered.body}
    if answered.prompt_version:
        shown["prompt_version"] = answered.prompt_version
    print(json.dumps(shown, indent=2))
    return 0 if answered.status == 200 else 1


def rollout(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    client = _client(root, stack, data_dir)
    if args.action == "list":
        found = client.rollouts(args.tenant)
        if args.json:
            print(json.dumps(found, indent=2))
        for entry in [] if args.json else found:
            print(
                f"{entry['tenant']:10s} {entry['model']:24s} {entry['phase']:17s} "
                f"{json.dumps(entry['traffic']):28s} {entry['reason']}"
            )
        return 0
    if args.action == "show":
        print(json.dumps(client.rollout(args.tenant, args.model), indent=2))
        return 0
    code, answer = client.command(
        args.tenant, args.model, args.action, persona=args.persona, reason=args.reason
    )
    print(json.dumps(answer, indent=2))
    return 0 if code == 200 else 1


def keys(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    client = _client(root, stack, data_dir)
    client.rotate_key(args.tenant, args.slot)
    other = "secondary" if args.slot == "primary" else "primary"
    print(
        f"{args.tenant}'s {args.slot} key rotated: the old one no longer works, the {other} "
        "key is unchanged; `mlops status --show-keys` shows the new key"
    )
    return 0


def drift(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    from local.drift_report import write_report  # noqa: PLC0415

    client = _client(root, stack, data_dir)
    out = args.out or data_dir / "reports" / f"drift-{args.tenant}.html"
    result = write_report(client, args.tenant, out, hours=args.hours)
    print(
        f"{out}: {result.verdict}, {result.current_rows} rows, drifted: "
        f"{', '.join(result.drifted_features) or 'none'}"
    )
    return 0


def quality(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    from local.quality_report import write_report  # noqa: PLC0415

    client = _client(root, stack, data_dir)
    out = args.out or data_dir / "reports" / f"quality-{args.tenant}.html"
    report = write_report(client, args.tenant, out, hours=args.hours)
    measured = report.measured.accuracy if report.measured else None
    estimated = report.estimated.accuracy if report.estimated else None
    print(
        f"{out}: {len(report.window.labels)} labelled of {report.window.rows} scored rows, "
        f"accuracy measured {_shown(measured)}, estimated {_shown(estimated)}"
    )
    return 0


def _shown(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"  # NaN: no rows


def audit(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    """Run the platform's policy audit now (its timer function), then list the open
    findings; with ``--state-account`` / ``--state-connection``, list those an installation
    on Azure recorded (its timer runs there). Exits 1 when one is mandatory."""
    if args.state_account or args.state_connection:
        findings = _deployed_findings(args.state_account, args.state_connection)
    else:
        client = _client(root, stack, data_dir)
        client.run_function("policy_audit")
        findings = client.findings()
    if args.json:
        print(json.dumps(findings, indent=2))
    for finding in [] if args.json else findings:
        print(
            f"{finding['level']:9s} {finding['policy']:28s} {finding['tenant']:12s} "
            f"{finding['resource'].rsplit('/', 1)[-1]:14s} since {finding['first_seen']}: "
            f"{finding['message']}"
        )
    if not findings and not args.json:
        print("no open finding: what is deployed passes every rule that can judge it")
    return 1 if any(f["level"] == "mandatory" for f in findings) else 0


def _deployed_findings(account: str | None, connection: str | None) -> list[dict[str, Any]]:
    """The open findings in an installation's state tables (the Function App's audit)."""
    from automation.audit import open_findings  # noqa: PLC0415

    return [dataclasses.asdict(f) for f in open_findings(_state_store(account, connection))]


def _state_store(account: str | None, connection: str | None) -> StateStore:
    """An installation's state tables, read only: by account (Entra sign-in, Storage Table
    Data Reader is enough) or connection string."""
    from adapters.table_store import TableStore  # noqa: PLC0415

    if connection:
        return TableStore.from_connection_string(connection, read_only=True)
    return TableStore.for_account(str(account), read_only=True)


def watch(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    """`mlops watch report`: drift acted on, reviews open and the latest quality check of
    each tenant of the stack, from what its automation recorded: an installation on Azure
    by its state account, else the embedded platform running from ``data_dir``."""
    from automation.watch_report import to_markdown, watch_report  # noqa: PLC0415

    spec = load_stack(stack, root)
    if args.state_account or args.state_connection:
        store = _state_store(args.state_account, args.state_connection)
    else:
        store = _client(root, stack, data_dir).store
    now = datetime.now(UTC)
    report = watch_report(store, [t.id for t in spec.tenants], now, args.days)
    text = to_markdown(stack, report, now, args.days)
    if args.markdown is not None:
        with args.markdown.open("a", encoding="utf-8") as summary:  # GITHUB_STEP_SUMMARY
            summary.write(text)
    if args.json:
        print(json.dumps([w.to_dict() for w in report], indent=2))
    else:
        print(text, end="")
    return 0


def demo(root: Path, stack: str, data_dir: Path, args: argparse.Namespace) -> int:
    from local.demo import Demo  # noqa: PLC0415

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # the timeline is the output
    return 0 if Demo(_client(root, stack, data_dir), print).run() else 1


def promote(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`mlops promote` between two environments of the embedded platform. The target must
    be running: its audit log takes the record, and its registry's event brings the version
    to its automation (gate, then a rollout under its approval rules). The source may be
    stopped: its registries are read from its data directory."""
    import getpass  # noqa: PLC0415

    from mlops.promote import Promotion, refusals  # noqa: PLC0415
    from mlops.promote import promote as promote_version  # noqa: PLC0415

    on_azure = {
        stack: load_stack(stack, root).environment.value != "local"
        for stack in (args.source, args.target)
    }
    if any(on_azure.values()):
        if not all(on_azure.values()):
            raise InvalidInputError(
                f"promotion refused: {args.source} and {args.target} are not both Azure "
                "environments; a model moves between two embedded or two Azure environments"
            )
        return _promote_on_azure(root, args)
    source, _ = _environment(root, args.source, args.from_data_dir)
    target, target_client = _environment(root, args.target, args.to_data_dir)
    actor = f"mlops promote ({getpass.getuser()})"
    promotion = Promotion(args.tenant, args.model, args.version, source, target, actor)
    problems = refusals(promotion)
    if problems:  # named whether the target runs or not
        raise InvalidInputError(f"promotion refused: {'; '.join(problems)}")
    if target_client is None:
        raise DependencyError(
            f"{args.target} is not running with data in {target.layout.data_dir}: start it "
            f"(mlops up --stack {args.target}); its automation takes what is promoted"
        )
    return promote_version(promotion, target_client.store, datetime.now(UTC)).to_dict()


def _promote_on_azure(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Through the target's Azure ML registry (deploy_models) or the target's training job
    (deploy_code), signed in as the target's deploy pipeline (DefaultAzureCredential: the
    workflow's `az login` through OIDC), which the source environment lets read its
    champions (delivery.promoted_by)."""
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    from adapters.azure import AzurePlatform  # noqa: PLC0415
    from adapters.azure_registry import AzureMlRegistry  # noqa: PLC0415
    from mlops.promote import step_refusals  # noqa: PLC0415
    from mlops.promote_azure import (  # noqa: PLC0415
        AzurePromotion,
        promote_code,
        promote_through_registry,
    )
    from mlops.retrain import signed_in_subscription, write_training_code  # noqa: PLC0415
    from tenancy import naming  # noqa: PLC0415

    source_spec, target_spec = load_stack(args.source, root), load_stack(args.target, root)
    problems = step_refusals((args.source, source_spec), (args.target, target_spec), args.tenant)
    if problems:  # named before any sign-in
        raise InvalidInputError(f"promotion refused: {'; '.join(problems)}")
    default = signed_in_subscription()
    subscriptions = {
        "source": args.from_subscription or default,
        "target": args.to_subscription or default,
    }
    missing = [side for side, value in subscriptions.items() if not value]
    if missing:
        raise InvalidInputError(
            "set ARM_SUBSCRIPTION_ID, or --from-subscription and --to-subscription: no "
            f"subscription for the {' and the '.join(missing)}"
        )
    credential = DefaultAzureCredential()
    source = AzurePlatform(source_spec, credential, str(subscriptions["source"]))
    if target_spec.tenant(args.tenant).promotion == "deploy_code":
        with tempfile.TemporaryDirectory(prefix="mlops-promote-") as scratch:
            code = write_training_code(root, Path(scratch))
            trainer = AzurePlatform(
                target_spec, credential, str(subscriptions["target"]), training_code=code
            )
            done = promote_code(
                args.tenant,
                args.model,
                args.version,
                (args.source, source),
                (args.target, target_spec, trainer),
            )
        return done.to_dict()
    registry = naming.ml_registry(
        target_spec.prefix, target_spec.environment, target_spec.installation
    )
    promotion = AzurePromotion(
        args.tenant,
        args.model,
        args.version,
        args.source,
        args.target,
        source,
        AzurePlatform(target_spec, credential, str(subscriptions["target"])),
        AzureMlRegistry(registry, credential, str(subscriptions["target"])),
    )
    return promote_through_registry(promotion).to_dict()


def _environment(
    root: Path, stack: str, data_dir: Path | None
) -> tuple[Any, PlatformClient | None]:
    """The stack's registries: its running platform's tracking servers (so that what is
    registered reaches its automation), else the stores in its data directory."""
    from ml.registry import RegistryLayout  # noqa: PLC0415
    from mlops.promote import Environment  # noqa: PLC0415
    from tenancy.errors import NotFoundError  # noqa: PLC0415

    spec = load_stack(stack, root)
    folder = (data_dir or default_data_dir(root, stack)).resolve()
    try:
        client = PlatformClient(spec, folder, running_state(folder))
    except (NotFoundError, OSError):  # not running (an Azure stack never runs here)
        return Environment(stack, spec, RegistryLayout(spec, folder)), None
    layout = RegistryLayout(spec, folder, client.state["services"]["tracking"])
    return Environment(stack, spec, layout), client
