"""The catalogue as Pulumi CrossGuard policies: each rule wrapped in a
``ResourceValidationPolicy`` or ``StackValidationPolicy``.

``policies/__main__.py`` hands these to a ``PolicyPack`` (whose constructor starts the
analyzer server, so nothing else imports that file). The wrappers only translate: the
engine's proxied properties become plain data, findings become reported violations, and
a value unknown during preview becomes the engine's own advisory "can't run during
preview" diagnostic, naming the property, instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from policies.catalogue import RULES
from policies.config import resolve, setting_schema
from policies.core import Finding, Props, Resource, Rule, Stack, run_resource_rule, run_stack_rule

PACK_NAME = "tenant-mlops"

_LEVELS = {
    "mandatory": EnforcementLevel.MANDATORY,
    "advisory": EnforcementLevel.ADVISORY,
    "disabled": EnforcementLevel.DISABLED,
}


def plain(value: Any) -> Any:
    """The engine's unknown-checking proxies as plain dicts and lists, keeping unknown
    sentinels in place (the rules' own ``Props`` decides what an unknown means)."""
    proxied = type(value).__name__ in ("_DictProxy", "_ListProxy")
    if isinstance(value, Mapping):
        target = value["__target"] if proxied else value
        return {key: plain(item) for key, item in target.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        target = value["__target"] if proxied else value  # type: ignore[call-overload]
        return [plain(item) for item in target]
    return value


def _ignored(opts: Any) -> frozenset[str]:
    """Inputs under ignore_changes (the engine sends the state's values for them)."""
    return frozenset(getattr(opts, "ignore_changes", None) or ())


def _report(findings: list[Finding], report_violation: ReportViolation) -> None:
    unknown = None
    for finding in findings:
        if finding.unknown_path is not None:
            unknown = finding.unknown_path
        else:
            report_violation(finding.message, finding.urn or None)
    if unknown is not None:
        raise UnknownValueError(UNKNOWN_STRING_VALUE, unknown.split("."))


def _schema(rule: Rule) -> PolicyConfigSchema | None:
    if not rule.settings:
        return None
    return PolicyConfigSchema(properties={s.name: setting_schema(s) for s in rule.settings})


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = Resource(
            args.resource_type,
            args.urn,
            args.name,
            Props(plain(args.props)),
            ignored=_ignored(args.opts),
        )
        settings = resolve(rule, args.get_config())
        _report(run_resource_rule(rule, resource, settings), report_violation)

    return ResourceValidationPolicy(validate=validate, **_described(rule))


def _described(rule: Rule) -> dict[str, Any]:
    """What the engine shows of a rule: name, description, default level, config schema.
    Without a config file a rule runs at its strictest (its prod) level."""
    return {
        "name": rule.name,
        "description": rule.description,
        "enforcement_level": _LEVELS[rule.level.prod],
        "config_schema": _schema(rule),
    }


def stack_resource(resource: PolicyResource) -> Resource:
    return Resource(
        type=resource.resource_type,
        urn=resource.urn,
        name=resource.name,
        props=Props(plain(resource.props)),
        parent=resource.parent.urn if resource.parent else None,
        property_dependencies={
            prop: frozenset(d.urn for d in deps)
            for prop, deps in resource.property_dependencies.items()
        },
        dependencies=frozenset(d.urn for d in resource.dependencies),
        ignored=_ignored(resource.opts),
    )


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        stack = Stack([stack_resource(r) for r in args.resources])
        settings = resolve(rule, args.get_config())
        _report(run_stack_rule(rule, stack, settings), report_violation)

    return StackValidationPolicy(validate=validate, **_described(rule))


def build_policies() -> list[Policy]:
    """Every rule, at its strictest level unless the config file says otherwise."""
    return [_stack_policy(r) if r.is_stack_rule else _resource_policy(r) for r in RULES]
