"""Policy checks after deployment: the pack's rules over what is deployed, on a timer.

The live resources (``policies.live``: Resource Graph rows and the Azure ML APIs' answers,
in the shape the rules read) are judged by the rules that can judge a live resource
(``policies.catalogue.LIVE_RULES``), at the levels and with the settings the stack gives the
pack, so what ``pulumi preview`` refuses before deployment is what this finds after it.

Each violation is a finding, keyed by rule and resource:
- recorded once, with when it was first and last seen;
- notified when it appears (``error`` for a mandatory rule, ``warning`` for an advisory
  one) and when it clears (``info``), never while it persists;
- when mandatory and the resource is a tenant's, also an audit record of that tenant.

Drift from the plan (``policies.plan_drift``: a resource the plan does not know, one it made
that is gone, governed properties that differ from what `pulumi up` set) is recorded and
told the same way, apart from the violations, at level ``drift``.

Findings live in the events table (partitions ``finding`` and ``drift``); two audits racing
on one finding settle on the store's optimistic concurrency, and the loser counts it as
already known.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from automation.store import Record, StateStore, append_audit
from policies.catalogue import LIVE_RULES
from policies.config import PackConfig
from policies.core import Rule, Stack
from policies.evaluation import Violation, evaluate_resources
from policies.live import LiveResource, as_resources
from policies.plan_drift import DRIFT_LEVEL, drift, judged
from tenancy import contracts
from tenancy.errors import ConfigError, ConflictError
from tenancy.spec import PlatformSpec

FINDINGS = "finding"
DRIFTS = "drift"
ACTOR = "policy-audit"
SEVERITY = {"mandatory": "error", "advisory": "warning", DRIFT_LEVEL: "warning"}

Notify = Callable[[str, str, str], None]  # (tenant, severity, message)


class LiveInventory(Protocol):
    """What is deployed (the adapters: Azure Resource Graph and the Azure ML APIs, the
    embedded platform), which rules can judge it (None: every live rule), and what
    `pulumi up` set (None: no plan to compare with, as on the embedded platform)."""

    judged_rules: frozenset[str] | None
    #: The governed types the inventory reads (None: all of them).
    inventoried_types: frozenset[str] | None

    def live_resources(self) -> list[LiveResource]: ...

    def expected_state(self) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class Finding:
    policy: str  # the rule; for drift, its kind (unplanned | missing | changed)
    level: str  # mandatory | advisory | drift
    resource: str  # the Azure resource id
    tenant: str  # its owner, or the platform's tag
    message: str
    first_seen: str
    last_seen: str
    status: str  # open | cleared

    @classmethod
    def of(cls, data: dict[str, Any]) -> Finding:
        return cls(**{k: str(data.get(k, "")) for k in cls.__dataclass_fields__})


@dataclass
class AuditOutcome:
    opened: list[Finding] = field(default_factory=list)
    persisting: list[Finding] = field(default_factory=list)
    cleared: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class _Observed:
    """One violation or drift seen now, before it is recorded."""

    policy: str
    level: str
    resource: str
    tenant: str
    message: str
    type: str = ""  # the resource's type token (drift is cleared per type read)


def open_findings(store: StateStore) -> list[Finding]:
    """Open rule violations and drift, by tenant (what `mlops audit` lists)."""
    records = [
        *store.query(contracts.TABLE_EVENTS, FINDINGS),
        *store.query(contracts.TABLE_EVENTS, DRIFTS),
    ]
    found = [Finding.of(r.data) for r in records if r.data.get("status") == "open"]
    return sorted(found, key=lambda f: (f.tenant, f.level, f.policy, f.resource))


def finding_key(policy: str, resource: str) -> str:
    """A row key for (rule, resource): ids hold characters table keys may not."""
    return hashlib.sha256(f"{policy}|{resource.lower()}".encode()).hexdigest()[:40]


class PolicyAudit:
    def __init__(
        self,
        spec: PlatformSpec,
        store: StateStore,
        notify: Notify,
        clock: Callable[[], datetime],
    ) -> None:
        self.spec = spec
        self.store = store
        self.notify = notify
        self.clock = clock

    def violations(
        self, inventory: Sequence[LiveResource], rules: Sequence[Rule] = LIVE_RULES
    ) -> tuple[list[Violation], Stack]:
        resources = as_resources(inventory)
        config = PackConfig.from_spec(self.spec)
        return evaluate_resources(resources, config, rules), Stack(resources)

    def run(
        self, inventory: Sequence[LiveResource], judged: Collection[str] | None = None
    ) -> AuditOutcome:
        """Judge ``inventory`` with the live rules (those named in ``judged``, when given:
        a finding of a rule not judged now is left as it is)."""
        rules = [r for r in LIVE_RULES if judged is None or r.name in judged]
        violations, stack = self.violations(inventory, rules)
        observed: dict[str, _Observed] = {}
        for violation in violations:  # one finding per rule and resource
            resource = stack.by_urn.get(violation.urn)
            tenant = (stack.owner(resource) if resource else None) or contracts.PLATFORM_TENANT_TAG
            observed.setdefault(
                finding_key(violation.policy, violation.urn),
                _Observed(
                    violation.policy, violation.level, violation.urn, tenant, violation.message
                ),
            )
        names = {rule.name for rule in rules}
        return self._record(FINDINGS, observed, lambda data: data.get("policy") in names)

    def run_drift(
        self,
        expected: Mapping[str, Any],
        inventory: Sequence[LiveResource],
        types: Collection[str] | None = None,
    ) -> AuditOutcome:
        """Compare ``inventory`` (of ``types``, when given) with what `pulumi up` set."""
        try:
            drifts = drift(judged(expected, types), inventory)
        except ValueError as error:
            raise ConfigError.single("expected state", "version", str(error)) from None
        observed: dict[str, _Observed] = {}
        for found in drifts:
            tag = found.tags.get(contracts.TAG_TENANT) if found.tags else None
            tenant = tag if isinstance(tag, str) and tag else contracts.PLATFORM_TENANT_TAG
            observed[finding_key(f"drift:{found.kind}", found.resource)] = _Observed(
                found.kind, DRIFT_LEVEL, found.resource, tenant, found.message, found.type
            )
        return self._record(
            DRIFTS, observed, lambda data: types is None or data.get("type") in types
        )

    def open_findings(self) -> list[Finding]:
        return open_findings(self.store)

    def _record(
        self,
        partition: str,
        observed: Mapping[str, _Observed],
        judged_now: Callable[[Mapping[str, Any]], bool],
    ) -> AuditOutcome:
        """Open what is new, touch what persists, clear what was judged now and is gone."""
        now = self.clock().isoformat()
        outcome = AuditOutcome()
        for key, seen in observed.items():
            self._seen(partition, key, seen, now, outcome)
        for record in self.store.query(contracts.TABLE_EVENTS, partition):
            data = record.data
            if record.row not in observed and data.get("status") == "open" and judged_now(data):
                self._cleared(record, now, outcome)
        return outcome

    def _seen(
        self, partition: str, key: str, seen: _Observed, now: str, outcome: AuditOutcome
    ) -> None:
        existing = self.store.get(contracts.TABLE_EVENTS, partition, key)
        if existing is not None and existing.data.get("status") == "open":
            data = {**existing.data, "last_seen": now, "message": seen.message}
            # Another audit seeing it at the same moment changes nothing: it is known.
            with contextlib.suppress(ConflictError):
                self.store.replace(existing, data)
            outcome.persisting.append(Finding.of(data))
            return
        data = {
            "policy": seen.policy,
            "level": seen.level,
            "resource": seen.resource,
            "tenant": seen.tenant,
            "message": seen.message,
            "first_seen": now,
            "last_seen": now,
            "status": "open",
            **({"type": seen.type} if seen.type else {}),
        }
        try:
            if existing is None:
                self.store.insert(contracts.TABLE_EVENTS, partition, key, data)
            else:  # it had cleared and is back: a new finding
                self.store.replace(existing, data)
        except ConflictError:
            return  # another audit recorded it first, and told
        finding = Finding.of(data)
        outcome.opened.append(finding)
        self.notify(seen.tenant, SEVERITY.get(seen.level, "warning"), _opened(finding))
        if seen.level == "mandatory" and seen.tenant != contracts.PLATFORM_TENANT_TAG:
            self._audit(seen.tenant, finding)

    def _cleared(self, record: Record, now: str, outcome: AuditOutcome) -> None:
        data = {**record.data, "status": "cleared", "last_seen": now}
        try:
            self.store.replace(record, data)
        except ConflictError:
            return
        finding = Finding.of(data)
        outcome.cleared.append(finding)
        self.notify(finding.tenant, "info", _cleared(finding))

    def _audit(self, tenant: str, finding: Finding) -> None:
        append_audit(
            self.store,
            tenant,
            self.clock(),
            {
                "actor": ACTOR,
                "action": "policy_violation",
                "policy": finding.policy,
                "resource": finding.resource,
                "reason": finding.message,
            },
        )


def _name(resource: str) -> str:
    return resource.rsplit("/", 1)[-1]


def _opened(finding: Finding) -> str:
    if finding.level == DRIFT_LEVEL:
        return f"drift ({finding.policy}): {_name(finding.resource)} {finding.message}"
    return (
        f"policy {finding.policy} ({finding.level}) is violated by {_name(finding.resource)}: "
        f"{finding.message}"
    )


def _cleared(finding: Finding) -> str:
    if finding.level == DRIFT_LEVEL:
        return (
            f"{_name(finding.resource)} is as the plan set it again "
            f"(drifted since {finding.first_seen})"
        )
    return (
        f"policy {finding.policy} holds again for {_name(finding.resource)} "
        f"(open since {finding.first_seen})"
    )
