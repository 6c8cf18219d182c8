"""The pack's rules over a plan recorded under mocks (``mlops plan``): the same functions,
the same levels and settings as ``pulumi preview --policy-pack policies``."""

from __future__ import annotations

from dataclasses import dataclass

from infra.offline import OfflineRun, RecordedResource
from policies.catalogue import RULES
from policies.config import PackConfig, resolve
from policies.core import Finding, Level, Props, Resource, Stack, run_resource_rule, run_stack_rule
from tenancy import contracts

#: A rule that cannot decide because a value is unknown says so at this level: `pulumi up`
#: runs the pack again with the value known, and judges it at the rule's own level then.
UNKNOWN_LEVEL: Level = "advisory"


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str  # "mandatory" | "advisory"
    urn: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "policy": self.policy,
            "level": self.level,
            "urn": self.urn,
            "message": self.message,
        }


def as_resource(record: RecordedResource) -> Resource:
    return Resource(
        type=record.type,
        urn=record.urn,
        name=record.name,
        props=Props(record.inputs),
        parent=record.parent,
        property_dependencies=record.property_dependencies,
        # A plan from scratch: every input is what creation sends, so nothing is "ignored".
        dependencies=record.dependencies,
    )


def _judged(type_token: str) -> bool:
    """Azure resources, and the program's dynamic ones (the package upload, a batch
    default), which some rules follow."""
    return type_token.startswith("azure-native:") or type_token == contracts.DYNAMIC_RESOURCE_TYPE


def evaluate(run: OfflineRun, config: PackConfig) -> list[Violation]:
    """Every violation of every enabled rule, resource rules first, in plan order."""
    resources = [as_resource(r) for r in run.records if _judged(r.type)]
    stack = Stack(resources)
    violations: list[Violation] = []
    for rule in RULES:
        rule_config = config[rule.name]
        if rule_config.level == "disabled":
            continue
        settings = resolve(rule, rule_config.settings)
        if rule.is_stack_rule:
            findings = run_stack_rule(rule, stack, settings)
        else:
            findings = [f for r in resources for f in run_resource_rule(rule, r, settings)]
        violations.extend(_violation(rule.name, rule_config.level, f) for f in findings)
    return violations


def _violation(policy: str, level: Level, finding: Finding) -> Violation:
    return Violation(
        policy, UNKNOWN_LEVEL if finding.unknown else level, finding.urn, finding.message
    )
