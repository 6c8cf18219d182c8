"""Every infrastructure rule of the pack, in the order they are documented and reported."""

from __future__ import annotations

from policies import permission_rules, preflight_rules, resource_rules, stack_rules
from policies.core import Rule

RULES: tuple[Rule, ...] = (
    resource_rules.RULES + stack_rules.RULES + preflight_rules.RULES + permission_rules.RULES
)
BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}

if len(BY_NAME) != len(RULES):  # a duplicate name would silently shadow a rule
    raise RuntimeError("policy names must be unique")
