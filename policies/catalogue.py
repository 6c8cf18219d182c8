"""Every infrastructure rule of the pack, in the order they are documented and reported."""

from __future__ import annotations

from policies import (
    capacity_rules,
    genai_rules,
    permission_rules,
    preflight_rules,
    resource_rules,
    stack_rules,
)
from policies.core import Rule

RULES: tuple[Rule, ...] = (
    resource_rules.RULES
    + stack_rules.RULES
    + preflight_rules.RULES
    + permission_rules.RULES
    + genai_rules.RULES
    + capacity_rules.RULES
)
BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}

if len(BY_NAME) != len(RULES):  # a duplicate name would silently shadow a rule
    raise RuntimeError("policy names must be unique")

#: Rules that judge what only a plan holds, so they run before deployment only; every other
#: rule also runs over the live resources (``policies.live``), unchanged.
PLAN_ONLY: dict[str, str] = {
    "ml-no-preview-api": "the API version the program pins; a live resource carries none",
    "time-bound-inputs": "dates valid when sent (a budget's start); later they are history",
    "creation-order": "the order the engine creates resources in",
    "canary-steps": "the Function App's app settings, which a resource's GET leaves out",
    "identity-permissions": "the plan's links from each identity to the grants it relies on",
    "authentication-coherence": "how the program's own uploads authenticate",
    "network-prerequisites": "the plan's subnets and security groups before they exist",
    "workspace-diagnostics": "diagnostic settings, extension resources outside the inventory",
    "ai-deployment-content-filter": "model deployments and content filters, sub-resources of "
    "an account that Resource Graph's resources table does not list",
    "genai-token-limit": "API Management's product policies, outside the inventory",
    "azure-limits": "what a plan would add up to before Azure refuses it; live, Azure's own "
    "quota answers",
}
LIVE_RULES: tuple[Rule, ...] = tuple(rule for rule in RULES if rule.name not in PLAN_ONLY)

if set(PLAN_ONLY) - set(BY_NAME):
    raise RuntimeError(f"unknown plan-only rules: {sorted(set(PLAN_ONLY) - set(BY_NAME))}")
