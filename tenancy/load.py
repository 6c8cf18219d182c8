"""Reading the platform spec from a stack file, once, with every problem named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tenancy.errors import ConfigError, ConfigIssue
from tenancy.placement import read_record, resolve
from tenancy.relations import relational_issues
from tenancy.spec import PlatformSpec

PROJECT = "tenant-mlops"
PLATFORM_KEY = f"{PROJECT}:platform"
#: A shard stack's config: its environment's stack and its target (infra.program).
SHARD_KEY = f"{PROJECT}:shard"


def stack_file(stack: str, root: Path) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``Pulumi.yaml``, searched upwards from ``start`` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    raise ConfigError.single(str(here), "Pulumi.yaml", "no Pulumi project found here or above")


def load_stack(stack: str, root: Path | None = None) -> PlatformSpec:
    """Parse ``Pulumi.<stack>.yaml`` and return its validated platform spec, resolved
    against the stack's placement record (tenancy.placement.resolve: pools split, every
    stamp's subscription and region settled): the spec everything reads."""
    root = root or project_root()
    shard = shard_of(stack, root)
    if shard is not None:  # a shard stack: its environment's spec, as the shard holds it
        environment, target = shard
        resolved = resolve(read_stack(environment, root), read_record(root, environment))
        if target not in resolved.placement.targets:
            known = ", ".join(resolved.placement.targets)
            raise ConfigError.single(
                str(stack_file(stack, root)), SHARD_KEY, f"no target '{target}' ({known})"
            )
        keys = [k for k, t in resolved.placement.assignments.items() if t == target]
        return resolved.spec.restricted_to(keys)
    return resolved_spec(read_stack(stack, root), root, stack)


def shard_of(stack: str, root: Path) -> tuple[str, str] | None:
    """(environment, target) when ``stack`` is a shard stack (its file holds
    ``tenant-mlops:shard``), else None."""
    path = stack_file(stack, root)
    if not path.is_file():
        return None
    document = read_yaml(path)
    config = document.get("config") if isinstance(document, Mapping) else None
    shard = config.get(SHARD_KEY) if isinstance(config, Mapping) else None
    if shard is None:
        return None
    issues = [
        ConfigIssue(f"config.{SHARD_KEY}.{key}", "required: a string")
        for key in ("environment", "target")
        if not isinstance(shard, Mapping) or not isinstance(shard.get(key), str)
    ]
    if issues:
        raise ConfigError(str(path), issues)
    return str(shard["environment"]), str(shard["target"])


def resolved_spec(spec: PlatformSpec, root: Path, stack: str) -> PlatformSpec:
    """``spec`` with its pools split and its stamps placed as the stack's record keeps
    them (new tenants and stamps first fit)."""
    return resolve(spec, read_record(root, stack)).spec


def read_stack(stack: str, root: Path) -> PlatformSpec:
    """The stack file's platform spec as written (pools not split)."""
    path = stack_file(stack, root)
    source = str(path)
    if not path.is_file():
        known = sorted(p.name for p in path.parent.glob("Pulumi.*.yaml"))
        raise ConfigError.single(
            source, "stack", f"stack '{stack}' has no file {path.name} (found: {', '.join(known)})"
        )
    document = read_yaml(path)
    config = document.get("config") if isinstance(document, Mapping) else None
    if not isinstance(config, Mapping) or PLATFORM_KEY not in config:
        raise ConfigError.single(source, f"config.{PLATFORM_KEY}", "key is missing")
    return parse_platform_spec(config[PLATFORM_KEY], source=f"{source} ({PLATFORM_KEY})")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "document"
        raise ConfigError.single(str(path), where, f"not valid YAML: {exc}") from None


def parse_platform_spec(raw: Any, *, source: str = PLATFORM_KEY) -> PlatformSpec:
    """Validate a platform document. Raises one ConfigError naming every bad key."""
    if not isinstance(raw, Mapping):
        raise ConfigError.single(source, "(root)", "the platform spec must be a mapping")
    issues: list[ConfigIssue] = []
    spec: PlatformSpec | None = None
    try:
        spec = PlatformSpec.model_validate(raw)
    except ValidationError as exc:
        issues.extend(_field_issue(error, raw) for error in exc.errors())
    issues.extend(relational_issues(raw))
    if issues or spec is None:
        raise ConfigError(source, issues)
    return spec


def _field_issue(error: ErrorDetails, raw: Mapping[str, Any]) -> ConfigIssue:
    return ConfigIssue(_path(error["loc"], raw), _message(error))


def _path(loc: Sequence[int | str], raw: Mapping[str, Any]) -> str:
    """``('tenants', 2, 'budget')`` -> ``tenants[2].budget``; pydantic's own validator
    labels (``function-after[...]``) are dropped."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part and "]" in part:
            continue
        else:
            path += f".{part}" if path else part
    return path or "(root)"


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    message = error["msg"]
    # "Value error, <ours>" -> "<ours>": our validators already say what is expected.
    message = message.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{message} (got {error['input']!r})"
    return message
