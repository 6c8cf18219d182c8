"""`mlops`: the platform's command line.

Exit codes: 0 success; 1 a mandatory policy violation (plan) or a model rule violated
(gate); 2 invalid configuration or usage, or a model version that does not exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenancy.errors import ConfigError, MlopsError
from tenancy.load import load_stack, project_root, read_stack

EXIT_OK, EXIT_VIOLATION, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="show what `pulumi up` would provision, offline")
    plan.add_argument("--stack", required=True, help="stack name: Pulumi.<stack>.yaml")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--root", type=Path, default=None, help="project folder (default: found)")
    plan.add_argument(
        "--write-placement",
        action="store_true",
        help="keep this plan's placement with the stack (Pulumi.<stack>.placement.json) "
        "and, with placement.shard_stacks, write each shard's stack file",
    )
    plan.add_argument(
        "--summary",
        action="store_true",
        help="leave every resource's inputs out (counts, violations, capacity, placement)",
    )
    plan.add_argument(
        "--workers",
        type=int,
        default=2,
        help="shard stacks planned at once, each in a process of its own (default: 2)",
    )
    config = commands.add_parser(
        "policy-config",
        help="the policy pack's config for a stack (pulumi preview --policy-pack-config)",
    )
    config.add_argument("--stack", required=True, help="stack name: Pulumi.<stack>.yaml")
    config.add_argument("--root", type=Path, default=None, help="project folder (default: found)")
    config.add_argument(
        "--write", action="store_true", help="write policies/config/<stack>.json, not stdout"
    )
    gate = commands.add_parser(
        "gate", help="check a registered model version against the model rules"
    )
    gate.add_argument("--tenant", required=True, help="the tenant the model would serve")
    gate.add_argument("--model", required=True, help="registered model name")
    gate.add_argument("--version", required=True, help="model version")
    gate.add_argument("--stack", default="local", help="stack whose spec sets the rules")
    gate.add_argument(
        "--registry-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI)",
    )
    gate.add_argument(
        "--stage",
        choices=("registration", "promotion"),
        default="registration",
        help="promotion also requires a recorded approval where the stack asks for one",
    )
    gate.add_argument("--json", action="store_true", help="print the verdict as JSON")
    gate.add_argument("--root", type=Path, default=None, help="project folder (default: found)")
    _promote_command(commands)
    _retrain_command(commands)
    _platform_commands(commands)
    return parser


def _promote_command(commands: Any) -> None:
    promote = commands.add_parser(
        "promote", help="a tenant's model from one environment to the next (dev -> staging -> prod)"
    )
    promote.add_argument("--tenant", required=True)
    promote.add_argument("--model", required=True, help="registered model name")
    promote.add_argument("--version", required=True, help="the source's champion version")
    promote.add_argument("--from", dest="source", required=True, help="source stack")
    promote.add_argument("--to", dest="target", required=True, help="target stack")
    promote.add_argument("--from-data-dir", type=Path, default=None, help="default: .mlops/<stack>")
    promote.add_argument("--to-data-dir", type=Path, default=None, help="default: .mlops/<stack>")
    promote.add_argument(
        "--from-subscription",
        default=None,
        help="Azure: the source's subscription (default: ARM_SUBSCRIPTION_ID)",
    )
    promote.add_argument(
        "--to-subscription",
        default=None,
        help="Azure: the target's subscription (default: ARM_SUBSCRIPTION_ID)",
    )
    promote.add_argument("--json", action="store_true")
    promote.add_argument("--root", type=Path, default=None, help="project folder (default: found)")


def _retrain_command(commands: Any) -> None:
    retrain = commands.add_parser(
        "retrain",
        help="submit training jobs (train, evaluate, register) to an Azure environment with "
        "this checkout's training code",
    )
    retrain.add_argument("--stack", required=True, help="an Azure stack: Pulumi.<stack>.yaml")
    retrain.add_argument(
        "--tenant", action="append", default=[], help="repeatable; default: every tenant"
    )
    retrain.add_argument("--reason", default="model pipeline", help="tagged on each job")
    retrain.add_argument(
        "--promotion",
        choices=["deploy_code", "deploy_models"],
        default=None,
        help="only the tenants the stack promotes so (the model pipeline's promotion jobs)",
    )
    retrain.add_argument(
        "--from",
        dest="source",
        default=None,
        help="deploy_code: the stack the code is promoted from (its champions' metrics are "
        "what the new versions are held to)",
    )
    retrain.add_argument(
        "--from-subscription", default=None, help="the source's subscription, if another"
    )
    retrain.add_argument("--root", type=Path, default=None, help="project folder (default: found)")


def _retrain(args: argparse.Namespace) -> int:
    from mlops.retrain import retrain_on_azure  # noqa: PLC0415 - the Azure SDK loads slowly

    root = args.root or project_root()
    spec = load_stack(args.stack, root)
    source = None
    if args.source is not None:
        source = (args.source, load_stack(args.source, root), args.from_subscription)
    submitted = retrain_on_azure(
        root, spec, args.stack, args.tenant, args.reason, args.promotion, source
    )
    for tenant in submitted:
        print(f"{tenant}: training job submitted to {args.stack}")
    if not submitted:
        print(f"no tenant of {args.stack} is promoted by {args.promotion}: nothing to train")
    return EXIT_OK


def _platform_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--stack", default="local", help="stack name (default: local)")
    command.add_argument("--data-dir", type=Path, default=None, help="default: .mlops/<stack>")
    command.add_argument("--root", type=Path, default=None, help="project folder (default: found)")


def _platform_commands(commands: Any) -> None:
    """The embedded platform's commands: they act on the platform running from --data-dir."""
    up = commands.add_parser("up", help="start the embedded platform and serve until interrupted")
    up.add_argument(
        "--detach", action="store_true", help="start in the background and return once serving"
    )
    status = commands.add_parser("status", help="services, tenants, endpoints, rollouts")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--show-keys", action="store_true", help="include tenant keys")
    down = commands.add_parser("down", help="stop the running embedded platform")
    score = commands.add_parser("score", help="score through the gateway as a tenant")
    score.add_argument("--tenant", required=True)
    score.add_argument("--data", default=None, help="request body (JSON); default: the sample")
    score.add_argument("--key", choices=("primary", "secondary"), default="primary")
    score.add_argument("--deployment", default=None, help="azureml-model-deployment header")
    rollout = commands.add_parser("rollout", help="list, show, approve or abort rollouts")
    rollout_actions = rollout.add_subparsers(dest="action", required=True)
    listing = rollout_actions.add_parser("list", help="every rollout, oldest first")
    listing.add_argument("--tenant", default=None)
    listing.add_argument("--json", action="store_true")
    rollout_parsers = [listing]
    for action in ("show", "approve", "abort"):
        parser = rollout_actions.add_parser(action, help=f"{action} one rollout")
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--model", required=True, help="<name>/<version>")
        if action != "show":
            parser.add_argument("--persona", default="", help="default: the first approver")
            parser.add_argument("--reason", default="")
        rollout_parsers.append(parser)
    publish, chat = _genai_commands(commands)
    keys = commands.add_parser("keys", help="tenant keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    rotate = key_actions.add_parser("rotate", help="a new key for one slot")
    rotate.add_argument("--tenant", required=True)
    rotate.add_argument("--slot", choices=("primary", "secondary"), required=True)
    reports = _report_commands(commands)
    demo = commands.add_parser("demo", help="play the platform's story on the running platform")
    audit = commands.add_parser(
        "audit", help="judge what is deployed with the policy pack now; the open findings"
    )
    audit.add_argument("--json", action="store_true")
    _state_options(audit, "list the open findings its Function App recorded")
    platform_parsers = (
        up, status, down, score, *rollout_parsers, publish, chat, rotate, *reports, demo, audit
    )  # fmt: skip
    for parser in platform_parsers:
        _platform_options(parser)


def _genai_commands(commands: Any) -> tuple[Any, Any]:
    """`prompt publish` and `chat`: their parsers."""
    prompt = commands.add_parser("prompt", help="a tenant's prompts (generative AI)")
    prompt_actions = prompt.add_subparsers(dest="action", required=True)
    publish = prompt_actions.add_parser(
        "publish", help="register a version, gate it on its evaluation set, roll it out"
    )
    publish.add_argument("--tenant", required=True)
    publish.add_argument("--name", required=True, help="the prompt's name")
    publish.add_argument("--template", required=True, help="with {{variable}} placeholders")
    publish.add_argument("--deployment", required=True, help="the deployment it is written for")
    publish.add_argument("--evaluation-data", required=True, help="e.g. capitals-v1")
    publish.add_argument(
        "--param", action="append", default=[], help="a model parameter, name=value"
    )
    chat = commands.add_parser("chat", help="a chat completion through the gateway as a tenant")
    chat.add_argument("--tenant", required=True)
    chat.add_argument("--deployment", required=True)
    chat.add_argument("--message", default=None, help="a user message")
    chat.add_argument("--prompt", default=None, help="a prompt of the tenant's registry")
    chat.add_argument("--var", action="append", default=[], help="a variable, name=value")
    chat.add_argument("--user", default="", help="the caller (a prompt rollout is sticky on it)")
    chat.add_argument("--max-tokens", type=int, default=None)
    return publish, chat


def _report_commands(commands: Any) -> tuple[Any, ...]:
    """`drift report`, `quality report`, `cost report`: their parsers."""
    drift = commands.add_parser("drift", help="drift of a tenant's live deployment")
    drift_actions = drift.add_subparsers(dest="action", required=True)
    report = drift_actions.add_parser("report", help="an HTML report with a plot per feature")
    report.add_argument("--tenant", required=True)
    report.add_argument("--out", type=Path, default=None, help="default: <data-dir>/reports/")
    report.add_argument("--hours", type=float, default=None, help="default: the stack's window")
    quality = commands.add_parser("quality", help="quality of a tenant's live model, from labels")
    quality_actions = quality.add_subparsers(dest="action", required=True)
    quality_report = quality_actions.add_parser(
        "report", help="an HTML report: metrics measured and estimated, their course, calibration"
    )
    quality_report.add_argument("--tenant", required=True)
    quality_report.add_argument(
        "--out", type=Path, default=None, help="default: <data-dir>/reports/"
    )
    quality_report.add_argument(
        "--hours", type=float, default=None, help="default: the stack's quality window"
    )
    cost = commands.add_parser("cost", help="what each tenant costs in its budget period")
    cost_actions = cost.add_subparsers(dest="action", required=True)
    cost_report = cost_actions.add_parser(
        "report", help="each tenant's cost: its stamp's spend, or its metered share of its pool's"
    )
    cost_report.add_argument("--json", action="store_true")
    watch = commands.add_parser("watch", help="drift and quality as the automation recorded them")
    watch_actions = watch.add_subparsers(dest="action", required=True)
    watch_report = watch_actions.add_parser(
        "report",
        help="per tenant: drift acted on, reviews open, the latest quality check (the "
        "scheduled workflow's report)",
    )
    watch_report.add_argument("--days", type=int, default=7, help="drift of the last N days")
    watch_report.add_argument("--json", action="store_true")
    watch_report.add_argument(
        "--markdown", type=Path, default=None, help="also append it as Markdown to this file"
    )
    _state_options(watch_report, "read what its Function App's timers recorded")
    return report, quality_report, cost_report, watch_report


def _state_options(command: argparse.ArgumentParser, what: str) -> None:
    """An installation on Azure, by its platform storage account's state tables."""
    deployed = command.add_mutually_exclusive_group()
    deployed.add_argument(
        "--state-account",
        default=None,
        help=f"an installation on Azure: {what} in this platform storage account "
        "(read with your Entra sign-in)",
    )
    deployed.add_argument(
        "--state-connection",
        default=None,
        help="the same from a storage connection string (Azurite, say)",
    )


def _plan(args: argparse.Namespace) -> int:
    # Imported here: Pulumi and the provider SDK load in seconds and only `plan` needs them.
    from mlops.plan import build_plan, project_program, render_text  # noqa: PLC0415
    from tenancy.placement import write_record, write_shard_stacks  # noqa: PLC0415

    root = args.root or project_root()
    spec = read_stack(args.stack, root)  # as written: the plan splits its pools and says so
    plan = build_plan(
        spec,
        args.stack,
        program=project_program(root, args.stack),
        root=root,
        workers=args.workers,
        keep_resources=not args.summary,
    )
    if args.summary:
        plan.compact()
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, sort_keys=False))
    else:
        print(render_text(plan, spec))
    if args.write_placement and plan.placement is not None:
        written = write_record(root, args.stack, plan.placement)
        print(f"placement kept in {written}", file=sys.stderr)
        if spec.placement.shard_stacks:
            for path in write_shard_stacks(root, args.stack, plan.placement):
                print(f"shard stack {path.name}", file=sys.stderr)
    return EXIT_VIOLATION if plan.has_mandatory_violation else EXIT_OK


def _policy_config(args: argparse.Namespace) -> int:
    from policies.config import PackConfig, config_path  # noqa: PLC0415

    root = args.root or project_root()
    spec = load_stack(args.stack, root)
    document = json.dumps(PackConfig.from_spec(spec).to_pulumi(), indent=2) + "\n"
    if args.write:
        path = config_path(root, args.stack)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document, encoding="utf-8")
        print(f"wrote {path}")
    else:
        print(document, end="")
    return EXIT_OK


def _gate(args: argparse.Namespace) -> int:
    from adapters.mlflow_facts import MlflowModelFacts  # noqa: PLC0415 - MLflow loads slowly
    from policies.model_rules import evaluate_model  # noqa: PLC0415

    if not args.registry_uri:
        raise ConfigError.single(
            "mlops gate",
            "--registry-uri",
            "no registry: pass --registry-uri or set MLFLOW_TRACKING_URI",
        )
    spec = load_stack(args.stack, args.root or project_root())
    facts = MlflowModelFacts(args.registry_uri).model_facts(args.model, args.version)
    violations = evaluate_model(facts, args.tenant, spec, args.stage)
    verdict = {
        "tenant": args.tenant,
        "model": args.model,
        "version": facts.version,
        "stage": args.stage,
        "passed": not violations,
        "violations": [v.to_dict() for v in violations],
    }
    if args.json:
        print(json.dumps(verdict, indent=2))
    else:
        status = "passes" if not violations else f"fails {len(violations)} rule(s)"
        print(f"{args.model} version {facts.version} for tenant {args.tenant}: {status}")
        for violation in violations:
            print(f"  [{violation.code}] {violation.message}")
    return EXIT_VIOLATION if violations else EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    from mlops.platform_commands import promote  # noqa: PLC0415 - MLflow loads slowly

    verdict = promote(args.root or project_root(), args)
    print(json.dumps(verdict, indent=2) if args.json else _promotion_text(verdict))
    return EXIT_OK if verdict["gate"] in ("passed", "pending") else EXIT_VIOLATION


def _promotion_text(verdict: dict[str, Any]) -> str:
    lines = [f"{verdict['source']} -> {verdict['target']} ({verdict['pattern']})"]
    for metric, values in verdict["compared"].items():
        lines.append(f"  {metric}: {values['source']:.4f} there, {values['target']:.4f} here")
    if verdict["gate"] == "passed":
        lines.append("the target's model gate passes: its automation rolls it out")
    elif verdict["gate"] == "pending":
        lines.append(
            "the target's automation gates the version the job registers, held to the "
            "source's metrics"
        )
    else:
        lines += [f"  [{v['code']}] {v['message']}" for v in verdict["gate"]]
    return "\n".join(lines)


def _data_dir(args: argparse.Namespace) -> tuple[Path, Path]:
    from mlops.platform_commands import default_data_dir  # noqa: PLC0415

    root = args.root or project_root()
    return root, (args.data_dir or default_data_dir(root, args.stack)).resolve()


def _up(args: argparse.Namespace) -> int:
    from mlops.platform_commands import up, up_detached  # noqa: PLC0415

    root, data_dir = _data_dir(args)
    if args.detach:
        return up_detached(root, args.stack, data_dir)
    return up(root, args.stack, data_dir)


def _status(args: argparse.Namespace) -> int:
    from mlops.platform_commands import render_status, status  # noqa: PLC0415

    root, data_dir = _data_dir(args)
    state = status(root, args.stack, data_dir, args.show_keys)
    print(json.dumps(state, indent=2) if args.json else render_status(state))
    return EXIT_OK


def _platform(args: argparse.Namespace) -> int:
    """score, rollout, keys, drift, demo, audit: against the running platform."""
    from mlops import platform_commands  # noqa: PLC0415

    root, data_dir = _data_dir(args)
    handler = getattr(platform_commands, args.command.replace("-", "_"))
    code: int = handler(root, args.stack, data_dir, args)
    return code


def _down(args: argparse.Namespace) -> int:
    from mlops.platform_commands import down  # noqa: PLC0415

    return down(_data_dir(args)[1])


COMMANDS = {
    "plan": _plan,
    "policy-config": _policy_config,
    "gate": _gate,
    "promote": _promote,
    "retrain": _retrain,
    "up": _up,
    "status": _status,
    "down": _down,
    "score": _platform,
    "rollout": _platform,
    "prompt": _platform,
    "chat": _platform,
    "keys": _platform,
    "drift": _platform,
    "quality": _platform,
    "cost": _platform,
    "demo": _platform,
    "audit": _platform,
    "watch": _platform,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
    except ConfigError as error:
        print(f"mlops: {error.message}", file=sys.stderr)
        return EXIT_CONFIG
    except MlopsError as error:
        print(f"mlops: [{error.code}] {error.message}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
