"""The pack's configuration: a level and settings per rule, derived from the platform spec.

One function turns a stack's spec into the file ``pulumi preview --policy-pack policies
--policy-pack-config policies/config/<stack>.json`` reads (``mlops policy-config`` writes
it), and ``mlops plan`` uses the very same object, so the pack and the offline plan judge a
stack alike. A stack sets levels and limits in its spec under ``policies``; every unknown
rule, unknown setting and ill-typed value is named at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from policies.catalogue import BY_NAME, RULES
from policies.core import Level, Rule, Setting
from tenancy.errors import ConfigError, ConfigIssue
from tenancy.spec import PlatformSpec


def config_path(root: Path, stack: str) -> Path:
    """Where a stack's pack config is kept, beside the pack."""
    return root / "policies" / "config" / f"{stack}.json"


@dataclass(frozen=True)
class RuleConfig:
    level: Level
    settings: dict[str, Any]


@cache
def _adapter(setting_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(setting_type)


def setting_schema(setting: Setting) -> dict[str, Any]:
    """JSON schema of one setting, as the pack publishes it to the engine."""
    schema = _adapter(setting.type).json_schema()
    return {**schema, "description": setting.description}


def _setting_issue(setting: Setting, value: Any, where: str) -> ConfigIssue | None:
    try:
        _adapter(setting.type).validate_python(value, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        return ConfigIssue(where, f"{first['msg']} (got {value!r})")
    return None


def defaults(rule: Rule) -> dict[str, Any]:
    """Settings a rule uses when the pack runs without a config file."""
    return {s.name: s.default for s in rule.settings}


def resolve(rule: Rule, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """A rule's settings: what the config gives, the defaults for the rest."""
    return {**defaults(rule), **{k: v for k, v in (given or {}).items() if k != "enforcementLevel"}}


class PackConfig:
    """Level and settings of every rule for one stack."""

    def __init__(self, rules: Mapping[str, RuleConfig]) -> None:
        self.rules = dict(rules)

    def __getitem__(self, name: str) -> RuleConfig:
        return self.rules[name]

    @classmethod
    def from_spec(cls, spec: PlatformSpec, source: str = "platform spec") -> PackConfig:
        issues = _override_issues(spec)
        if issues:
            raise ConfigError(source, issues)
        environment = spec.environment.value
        rules = {}
        for rule in RULES:
            override = spec.policies.get(rule.name)
            settings = {s.name: s.value_for(spec) for s in rule.settings}
            if override is not None:
                settings.update(override.settings)
            level = (override.level if override else None) or rule.level.for_environment(
                environment
            )
            rules[rule.name] = RuleConfig(level, settings)
        return cls(rules)

    def to_pulumi(self) -> dict[str, Any]:
        """The ``--policy-pack-config`` document: ``{rule: {enforcementLevel, ...}}``."""
        return {
            name: {"enforcementLevel": config.level, **config.settings}
            for name, config in self.rules.items()
        }


def _override_issues(spec: PlatformSpec) -> list[ConfigIssue]:
    issues = []
    known = ", ".join(sorted(BY_NAME))
    for name, override in spec.policies.items():
        where = f"policies.{name}"
        rule = BY_NAME.get(name)
        if rule is None:
            issues.append(ConfigIssue(where, f"no such policy (known: {known})"))
            continue
        by_setting = {s.name: s for s in rule.settings}
        for key, value in override.settings.items():
            setting = by_setting.get(key)
            if setting is None:
                names = ", ".join(sorted(by_setting)) or "none"
                issues.append(
                    ConfigIssue(f"{where}.settings.{key}", f"no such setting (known: {names})")
                )
                continue
            issue = _setting_issue(setting, value, f"{where}.settings.{key}")
            if issue:
                issues.append(issue)
    return issues
