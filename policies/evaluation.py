"""The pack's rules over a set of resources, as plain data: the same functions, levels and
settings whether the resources come from a plan (``policies.offline``, ``mlops plan``) or
from what is deployed (``policies.live``, the automation's audit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policies.catalogue import RULES
from policies.config import PackConfig, resolve
from policies.core import (
    Finding,
    Level,
    Resource,
    Rule,
    Stack,
    run_resource_rule,
    run_stack_rule,
)

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


def evaluate_resources(
    resources: Sequence[Resource], config: PackConfig, rules: Sequence[Rule] = RULES
) -> list[Violation]:
    """Every violation of ``rules`` (enabled in ``config``) over ``resources``: a plan's, or
    the live ones (``policies.live``)."""
    stack = Stack(resources)
    violations: list[Violation] = []
    for rule in rules:
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
