"""`mlops`: the platform's command line.

Exit codes: 0 success, 1 a mandatory policy violation, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tenancy.errors import ConfigError, MlopsError
from tenancy.load import load_stack, project_root

EXIT_OK, EXIT_VIOLATION, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="show what `pulumi up` would provision, offline")
    plan.add_argument("--stack", required=True, help="stack name: Pulumi.<stack>.yaml")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--root", type=Path, default=None, help="project folder (default: found)")
    return parser


def _plan(args: argparse.Namespace) -> int:
    # Imported here: Pulumi and the provider SDK load in seconds and only `plan` needs them.
    from mlops.plan import build_plan, render_text  # noqa: PLC0415

    root = args.root or project_root()
    spec = load_stack(args.stack, root)
    plan = build_plan(spec, args.stack)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, sort_keys=False))
    else:
        print(render_text(plan, spec))
    return EXIT_VIOLATION if plan.has_mandatory_violation else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "plan":
            return _plan(args)
    except ConfigError as error:
        print(f"mlops: {error.message}", file=sys.stderr)
        return EXIT_CONFIG
    except MlopsError as error:
        print(f"mlops: [{error.code}] {error.message}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
