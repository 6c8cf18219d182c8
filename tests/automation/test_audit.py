"""The policy audit after deployment: each violation of the live resources is a finding
recorded once, notified when it appears and when it clears, never while it persists; a
mandatory one on a tenant's resource is also in that tenant's audit."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from adapters.azure import AzurePlatform
from automation.audit import PolicyAudit
from automation.store import MemoryStore
from infra.offline import OfflineRun, run_offline
from mlops.plan import project_program
from policies.catalogue import LIVE_RULES
from policies.core import ML
from policies.live import LiveResource
from tenancy import PlatformSpec, contracts, load_stack
from tenancy.errors import ConfigError
from tests.adapters.fake_arm import FakeCredential
from tests.adapters.test_azure_inventory import SUB, PagedGraph
from tests.conftest import STACKS
from tests.live_inventory import expected_of, inventory_of
from tests.policies.test_stacks_against_pack import BROKEN


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def broken() -> tuple[PlatformSpec, list[LiveResource]]:
    run = run_offline(project_program(BROKEN, "broken"), stack="broken")
    return load_stack("broken", BROKEN), inventory_of(run)


def _audit(spec: PlatformSpec) -> tuple[PolicyAudit, list[tuple[str, str, str]], Clock]:
    sent: list[tuple[str, str, str]] = []
    clock = Clock()
    audit = PolicyAudit(spec, MemoryStore(), lambda *n: sent.append(n), clock)
    return audit, sent, clock


def _repaired(inventory: list[LiveResource], name: str) -> list[LiveResource]:
    """The inventory with the storage account ``name`` fixed as the rule asks."""
    fixed = []
    for live in inventory:
        body = copy.deepcopy(dict(live.body))
        if live.name == name:
            body["properties"]["allowBlobPublicAccess"] = False
        fixed.append(LiveResource(live.id, live.type, live.name, body))
    return fixed


def test_findings_are_recorded_and_notified_once_across_runs(
    broken: tuple[PlatformSpec, list[LiveResource]],
) -> None:
    spec, inventory = broken
    audit, sent, clock = _audit(spec)
    first = audit.run(inventory)
    assert sorted(f.policy for f in first.opened) == sorted(r.name for r in LIVE_RULES)
    assert len(sent) == len(first.opened)
    clock.now += timedelta(minutes=30)
    again = audit.run(inventory)
    assert again.opened == [] and again.cleared == [] and len(sent) == len(first.opened)
    assert len(again.persisting) == len(first.opened)
    kept = {f.policy: f for f in audit.open_findings()}
    assert len(kept) == len(first.opened)  # one finding per rule and resource, not per run
    storage = kept["storage-no-public-blob"]
    assert storage.first_seen != storage.last_seen == clock.now.isoformat()


def test_a_repaired_resource_clears_its_finding_once(
    broken: tuple[PlatformSpec, list[LiveResource]],
) -> None:
    spec, inventory = broken
    audit, sent, clock = _audit(spec)
    audit.run(inventory)
    account = next(
        f.resource.rsplit("/", 1)[-1]
        for f in audit.open_findings()
        if f.policy == "storage-no-public-blob"
    )
    before = len(sent)
    clock.now += timedelta(hours=1)
    outcome = audit.run(_repaired(inventory, account))
    assert [f.policy for f in outcome.cleared] == ["storage-no-public-blob"]
    assert (
        sent[before:]
        == [
            (outcome.cleared[0].tenant, "info", sent[before][2]),
        ]
        and "holds again" in sent[before][2]
    )
    assert audit.run(_repaired(inventory, account)).cleared == []  # told once
    assert "storage-no-public-blob" not in {f.policy for f in audit.open_findings()}
    # Broken again: a new finding, told again.
    reopened = audit.run(inventory)
    assert [f.policy for f in reopened.opened] == ["storage-no-public-blob"]


def test_a_mandatory_violation_of_a_tenant_is_in_its_audit_and_goes_to_its_contacts(
    broken: tuple[PlatformSpec, list[LiveResource]],
) -> None:
    spec, inventory = broken
    audit, sent, _ = _audit(spec)
    opened = audit.run(inventory).opened
    tenants = {t.id for t in spec.tenants} | {f"pool:{p.id}" for p in spec.pools}
    on_tenants = [f for f in opened if f.level == "mandatory" and f.tenant in tenants]
    assert on_tenants, "the broken stack breaks tenants' resources"
    for finding in on_tenants:
        records = audit.store.query(contracts.TABLE_AUDIT, finding.tenant)
        assert any(
            r.data["policy"] == finding.policy and r.data["resource"] == finding.resource
            for r in records
        ), finding
    # Each finding went to its owner's contacts, at its rule's severity.
    expected = sorted((f.tenant, "error" if f.level == "mandatory" else "warning") for f in opened)
    assert sorted((tenant, severity) for tenant, severity, _ in sent) == expected
    assert {"error", "warning"} <= {severity for _, severity in expected}


@pytest.mark.parametrize("stack", STACKS)
def test_an_example_stack_deployed_as_planned_has_no_finding_and_no_drift(
    specs: dict[str, PlatformSpec], planned: dict[str, OfflineRun], stack: str
) -> None:
    """The plan, as Azure answers for it once deployed (Resource Graph, the Azure ML and
    Consumption APIs), read by the Azure adapter and judged by every live rule."""
    rows = [
        {"id": live.id, "type": live.type, "name": live.name, **live.body}
        for live in inventory_of(planned[stack])
    ]
    azure = PagedGraph(rows=rows)
    platform = AzurePlatform(
        specs[stack],
        FakeCredential(),
        SUB,
        client_options={"transport": azure},  # type: ignore[arg-type]
    )
    audit, sent, _ = _audit(specs[stack])
    live = platform.live_resources()
    assert sorted(r.id for r in live) == sorted(r["id"] for r in rows)  # every source read
    outcome = audit.run(live, platform.judged_rules)
    assert outcome.opened == [] and sent == []
    assert audit.violations(live)[0] == []
    drift = audit.run_drift(expected_of(planned[stack]), live, platform.inventoried_types)
    assert drift.opened == [] and sent == []
    assert any(q["query"].startswith("authorizationresources") for q in azure.queries)


def test_drift_is_recorded_apart_told_once_and_cleared_once(
    specs: dict[str, PlatformSpec], planned: dict[str, OfflineRun]
) -> None:
    expected, inventory = expected_of(planned["dev"]), inventory_of(planned["dev"])
    account = next(r for r in inventory if r.type_token == "azure-native:storage:StorageAccount")
    drifted = _repaired(inventory, account.name)  # allowBlobPublicAccess: False...
    body = copy.deepcopy(dict(account.body))
    body["properties"]["minimumTlsVersion"] = "TLS1_0"  # ...and a property no rule reads
    body["properties"]["allowBlobPublicAccess"] = True
    drifted = [r for r in drifted if r.id != account.id]
    drifted.append(LiveResource(account.id, account.type, account.name, body))
    audit, sent, clock = _audit(specs["dev"])
    first = audit.run_drift(expected, drifted)
    [finding] = first.opened
    assert (finding.policy, finding.level, finding.resource) == ("changed", "drift", account.id)
    assert "allowBlobPublicAccess is True" in finding.message
    assert "minimumTlsVersion" not in finding.message  # not governed: no rule reads it
    assert sent == [(finding.tenant, "warning", sent[0][2])] and sent[0][2].startswith("drift")
    clock.now += timedelta(hours=1)
    assert audit.run_drift(expected, drifted).persisting == [
        dataclasses.replace(finding, last_seen=clock.now.isoformat())
    ]
    assert len(sent) == 1  # persisting drift is not told again
    # Rule violations and drift are kept apart: the audit's rule run clears no drift.
    audit.run(inventory)
    assert [f.level for f in audit.open_findings()] == ["drift"]
    cleared = audit.run_drift(expected, inventory).cleared
    assert [f.resource for f in cleared] == [account.id] and len(sent) == 2
    assert "as the plan set it again" in sent[1][2] and sent[1][1] == "info"
    assert audit.run_drift(expected, inventory).cleared == [] and len(sent) == 2


def test_drift_of_a_type_the_inventory_does_not_read_is_left_as_it_is(
    specs: dict[str, PlatformSpec], planned: dict[str, OfflineRun]
) -> None:
    expected, inventory = expected_of(planned["dev"]), inventory_of(planned["dev"])
    audit, _, _ = _audit(specs["dev"])
    gone = next(r for r in inventory if r.type_token == "azure-native:storage:StorageAccount")
    audit.run_drift(expected, [r for r in inventory if r.id != gone.id])
    serving = frozenset({f"{ML}:OnlineEndpoint", f"{ML}:OnlineDeployment"})
    endpoints = [r for r in inventory if r.type_token in serving]
    outcome = audit.run_drift(expected, endpoints, serving)
    assert outcome.opened == [] and outcome.cleared == []
    assert [(f.policy, f.resource) for f in audit.open_findings()] == [("missing", gone.id)]


def test_an_expected_state_of_another_release_is_a_named_configuration_error(
    specs: dict[str, PlatformSpec],
) -> None:
    audit, sent, _ = _audit(specs["dev"])
    with pytest.raises(ConfigError, match="expected state"):
        audit.run_drift({"version": 99, "resources": []}, [])
    assert sent == []
