"""The roles Microsoft documents for the platform's identities are in every example plan,
at a covering scope and before they are needed: one test per finding of the review (each
fails on 72c5684, where the program granted none of them)."""

from __future__ import annotations

import pytest

from infra.offline import OfflineRun
from policies.core import Stack
from policies.offline import as_resource
from policies.permission_rules import PlanView, covering, holders, identity_permissions
from tenancy import PlatformSpec
from tenancy.permissions import NEEDS, Identity, Target
from tests.conftest import STACKS

#: finding -> (identity, target, the need's action starts with, stacks it applies to)
FINDINGS: dict[str, tuple[Identity, Target, str, tuple[str, ...]]] = {
    "D4 customer-managed key": ("workspace", "key_vault", "get, wrap and unwrap", STACKS),
    "D5 workspace Contributor": ("workspace", "resource_group", "manage its workspace", STACKS),
    "D5 datastores": ("workspace", "storage", "read and write its system datastores", STACKS),
    "D5 Key Vault Administrator": ("workspace", "key_vault", "manage the workspace's", STACKS),
    "D5 App Insights": ("workspace", "app_insights", "send telemetry", STACKS),
    "D6 network approver": ("workspace", "ml_registry", "approve its managed", ("prod",)),
    "W3 model download": ("endpoint", "storage", "download the model", STACKS),
    "W3 image pull": ("endpoint", "container_registry", "pull the deployment's image", STACKS),
    "W3 data collection": ("endpoint", "storage", "write collected", STACKS),
    "W7 telemetry": ("automation", "platform_app_insights", "send telemetry", STACKS),
    "W10 identity assignment": ("automation", "stamp_identity", "assign the stamp's", STACKS),
    # X5: a pooled deployment's asset holds every pool tenant's model, which the automation
    # copies into the stamp's datastore: reading alone would be refused with 403.
    "X5 pooled model folders": ("automation", "storage", "read collected inference", STACKS),
}
CASES = [(f, s) for f, (*_, stacks) in FINDINGS.items() for s in stacks]


def _view(run: OfflineRun) -> PlanView:
    return PlanView(Stack([as_resource(r) for r in run.records if r.custom]))


@pytest.mark.parametrize(("finding", "stack"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_the_documented_role_is_granted(
    planned: dict[str, OfflineRun], finding: str, stack: str
) -> None:
    identity, target, action, _ = FINDINGS[finding]
    [need] = [
        n
        for n in NEEDS
        if n.identity == identity and n.target == target and n.action.startswith(action)
    ]
    view = _view(planned[stack])
    checked = 0
    for holder in holders(view):
        if holder.identity != identity or need.when not in holder.conditions:
            continue
        for resource in holder.targets.get(target, ()):
            assert covering(view, holder, need, resource), (holder.serves.name, resource.name)
            checked += 1
    assert checked, f"no {identity} identity with a {target} in {stack}"


def test_the_restricted_tenants_workspace_is_the_one_with_a_customer_managed_key(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    view = _view(planned["prod"])
    encrypted = {
        h.serves.name
        for h in holders(view)
        if h.identity == "workspace" and "customer_managed_key" in h.conditions
    }
    restricted = {
        f"tenant-{t.id}-ws" for t in specs["prod"].tenants if t.data_classification == "restricted"
    }
    assert encrypted == restricted and restricted


@pytest.mark.parametrize("stack", STACKS)
def test_no_identity_lacks_a_permission(planned: dict[str, OfflineRun], stack: str) -> None:
    assert list(identity_permissions(_view(planned[stack]).stack, {})) == []
