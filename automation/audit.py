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

Findings live in the events table (partition ``finding``); two audits racing on one finding
settle on the store's optimistic concurrency, and the loser counts it as already known.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from automation.store import Record, StateStore, append_audit
from policies.catalogue import LIVE_RULES
from policies.config import PackConfig
from policies.core import Rule, Stack
from policies.evaluation import Violation, evaluate_resources
from policies.live import LiveResource, as_resources
from tenancy import contracts
from tenancy.errors import ConflictError
from tenancy.spec import PlatformSpec

FINDINGS = "finding"
ACTOR = "policy-audit"
SEVERITY = {"mandatory": "error", "advisory": "warning"}

Notify = Callable[[str, str, str], None]  # (tenant, severity, message)


class LiveInventory(Protocol):
    """What is deployed (the adapters: Azure Resource Graph, the embedded platform), and
    which rules can judge it (None: every live rule)."""

    judged_rules: frozenset[str] | None

    def live_resources(self) -> list[LiveResource]: ...


@dataclass(frozen=True)
class Finding:
    policy: str
    level: str
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
        now = self.clock().isoformat()
        outcome = AuditOutcome()
        current: dict[str, Violation] = {}
        for violation in violations:  # one finding per rule and resource
            current.setdefault(finding_key(violation.policy, violation.urn), violation)
        for key, violation in current.items():
            resource = stack.by_urn.get(violation.urn)
            tenant = (stack.owner(resource) if resource else None) or contracts.PLATFORM_TENANT_TAG
            self._seen(key, violation, tenant, now, outcome)
        names = {rule.name for rule in rules}
        for record in self.store.query(contracts.TABLE_EVENTS, FINDINGS):
            data = record.data
            judged_now = data.get("policy") in names
            if record.row not in current and data.get("status") == "open" and judged_now:
                self._cleared(record, now, outcome)
        return outcome

    def open_findings(self) -> list[Finding]:
        records = self.store.query(contracts.TABLE_EVENTS, FINDINGS)
        found = [Finding.of(r.data) for r in records if r.data.get("status") == "open"]
        return sorted(found, key=lambda f: (f.tenant, f.policy, f.resource))

    def _seen(
        self, key: str, violation: Violation, tenant: str, now: str, outcome: AuditOutcome
    ) -> None:
        existing = self.store.get(contracts.TABLE_EVENTS, FINDINGS, key)
        if existing is not None and existing.data.get("status") == "open":
            data = {**existing.data, "last_seen": now, "message": violation.message}
            # Another audit seeing it at the same moment changes nothing: it is known.
            with contextlib.suppress(ConflictError):
                self.store.replace(existing, data)
            outcome.persisting.append(Finding.of(data))
            return
        data = {
            "policy": violation.policy,
            "level": violation.level,
            "resource": violation.urn,
            "tenant": tenant,
            "message": violation.message,
            "first_seen": now,
            "last_seen": now,
            "status": "open",
        }
        try:
            if existing is None:
                self.store.insert(contracts.TABLE_EVENTS, FINDINGS, key, data)
            else:  # it had cleared and is back: a new finding
                self.store.replace(existing, data)
        except ConflictError:
            return  # another audit recorded it first, and told
        finding = Finding.of(data)
        outcome.opened.append(finding)
        self.notify(tenant, SEVERITY.get(violation.level, "warning"), _opened(finding))
        if violation.level == "mandatory" and tenant != contracts.PLATFORM_TENANT_TAG:
            self._audit(tenant, finding)

    def _cleared(self, record: Record, now: str, outcome: AuditOutcome) -> None:
        data = {**record.data, "status": "cleared", "last_seen": now}
        try:
            self.store.replace(record, data)
        except ConflictError:
            return
        finding = Finding.of(data)
        outcome.cleared.append(finding)
        self.notify(
            finding.tenant,
            "info",
            f"policy {finding.policy} holds again for {_name(finding.resource)} "
            f"(open since {finding.first_seen})",
        )

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
    return (
        f"policy {finding.policy} ({finding.level}) is violated by {_name(finding.resource)}: "
        f"{finding.message}"
    )
