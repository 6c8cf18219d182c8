"""Runs rollouts: reads the state, observes the platform, advances the machine, persists,
applies the actions, audits.

Crash safety: a transition is persisted *with its actions marked pending* before any action
touches the platform (optimistic concurrency: if another worker advanced the rollout first,
this one stops), then the actions are applied and the pending list cleared. A crash between
the two leaves pending actions that :meth:`RolloutRunner.resume` re-applies; the machine is
never advanced twice for one step, and the actions are absolute (traffic *is* 90/10), so
re-applying them changes nothing that was already done.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from automation.port import PlatformPort, QualitySource
from automation.rollout import (
    Action,
    Alert,
    Command,
    CreateDeployment,
    Crown,
    DeleteDeployment,
    Observation,
    Phase,
    QualityStats,
    RolloutState,
    SetTraffic,
    SmokeTest,
    Transition,
    advance,
    promotes,
    queued,
    refuse_promotion,
    start,
    supersede,
)
from automation.store import Record, StateStore, append_audit
from ml.quality import measure
from policies.model_rules import Approval, evaluate_model
from tenancy import contracts
from tenancy.errors import ConflictError, NotFoundError
from tenancy.spec import PlatformSpec

Clock = Callable[[], datetime]


#: Reads a command gets when the timer keeps writing the rollout between its read and write.
COMMAND_ATTEMPTS = 5


def rollout_key(model: str) -> str:
    """Row key of a model version's rollout: one per version, whatever the deliveries."""
    return model.replace("/", "-v")


def _name_and_version(model: str) -> tuple[str, int]:
    name, _, version = model.rpartition("/")
    return name, int(version) if version.isdigit() else -1


# --- (de)serialization ------------------------------------------------------------------------


def encode(state: RolloutState, pending: list[Action] | None = None) -> dict[str, Any]:
    document = asdict(state)
    document["phase"] = state.phase.value
    for key in ("next_check_at", "delete_blue_at"):
        value = getattr(state, key)
        document[key] = value.isoformat() if value else None
    document["traffic"] = dict(state.traffic)
    document["mirror"] = dict(state.mirror)
    document["pending"] = [_encode_action(a) for a in pending or []]
    return document


def decode(document: dict[str, Any]) -> tuple[RolloutState, list[Action]]:
    values = {k: v for k, v in document.items() if k not in ("pending", "kind")}
    values["phase"] = Phase(values["phase"])
    for key in ("next_check_at", "delete_blue_at"):
        values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
    return RolloutState(**values), [_decode_action(a) for a in document.get("pending", [])]


_ACTIONS: dict[str, type[Any]] = {
    "create": CreateDeployment,
    "traffic": SetTraffic,
    "smoke": SmokeTest,
    "delete": DeleteDeployment,
    "alert": Alert,
    "crown": Crown,
}


def _encode_action(action: Action) -> dict[str, Any]:
    kind = next(k for k, cls in _ACTIONS.items() if isinstance(action, cls))
    return {
        "kind": kind,
        **{k: dict(v) if isinstance(v, dict) else v for k, v in asdict(action).items()},
    }


def _decode_action(document: dict[str, Any]) -> Action:
    values = dict(document)
    action: Action = _ACTIONS[values.pop("kind")](**values)
    return action


# --- the runner -----------------------------------------------------------------------------


class RolloutRunner:
    def __init__(
        self,
        spec: PlatformSpec,
        store: StateStore,
        port: PlatformPort,
        clock: Clock,
        *,
        quality: QualitySource | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.port = port
        self.clock = clock
        # Labelled rows per deployment, for policies that judge green's quality too.
        self.quality = quality

    def policy_for(self, tenant: str) -> Any:
        return self.spec.rollout_for(self.spec.tenant(tenant))

    # --- starting and reading ------------------------------------------------------------

    def begin(self, tenant: str, model: str, actor: str, correlation: str) -> RolloutState | None:
        """Start the rollout of ``model`` for ``tenant`` unless one exists for that version
        (duplicate deliveries start nothing), or queue it behind the endpoint's running
        rollout. Returns the new state, or None."""
        endpoint = self.port.endpoint(tenant)
        busy = self._busy(endpoint.name)
        actions: tuple[Action, ...]
        if busy:
            state, actions = queued(tenant, endpoint.name, model, busy, self.clock()), ()
        else:
            state, actions = self._fresh(tenant, model)
        try:
            record = self.store.insert(
                contracts.TABLE_ROLLOUTS, tenant, rollout_key(model), encode(state, list(actions))
            )
        except ConflictError:
            return None
        self._audit(
            actor,
            tenant=tenant,
            before=None,
            after=state,
            reason=state.reason,
            correlation=correlation,
        )
        self._apply(record, state, list(actions))
        if state.phase == Phase.QUEUED:
            self._supersede_older(state, correlation)
        return state

    def _queued_versions(self, state: RolloutState) -> Iterator[tuple[Record, RolloutState, int]]:
        """Queued rollouts of ``state``'s model for the same tenant, with their versions
        relative to ``state``'s (negative: older)."""
        name, version = _name_and_version(state.model)
        for record, other, _ in self._rollouts():
            other_name, other_version = _name_and_version(other.model)
            if other.phase == Phase.QUEUED and other.tenant == state.tenant and other_name == name:
                yield record, other, other_version - version

    def _supersede_older(self, newest: RolloutState, correlation: str) -> None:
        """Queued versions of the same model for the same tenant, older than ``newest``,
        will never be rolled out: a burst of registrations rolls out its newest version."""
        for record, state, relative in self._queued_versions(newest):
            if relative < 0:
                self._commit(record, supersede(state, newest.model), "automation", correlation)

    def _newer_queued(self, state: RolloutState) -> str:
        """A queued newer version of ``state``'s model for the same tenant, or ""."""
        return next(
            (o.model for _, o, relative in self._queued_versions(state) if relative > 0), ""
        )

    def _fresh(
        self, tenant: str, model: str, revision: int = 0
    ) -> tuple[RolloutState, tuple[Action, ...]]:
        endpoint = self.port.endpoint(tenant)
        live = endpoint.live if endpoint.serving else None
        first = live is None or not self.port.serves_tenant(tenant, live)
        return start(
            tenant, endpoint.name, model, live, self.clock(), first=first, revision=revision
        )

    def _busy(self, endpoint: str, besides: str = "") -> str:
        """The rollout (tenant/model) that holds ``endpoint``, or ""."""
        for _, state, pending in self._rollouts():
            holder = f"{state.tenant}/{state.model}"
            if state.endpoint != endpoint or holder == besides or state.phase == Phase.QUEUED:
                continue
            if pending or not state.done:
                return holder
        return ""

    def _dequeue(self, record: Record, state: RolloutState, correlation: str) -> Transition | None:
        """Start a queued rollout once its endpoint is free (the oldest waits least)."""
        newer = self._newer_queued(state)
        if newer:  # an event raced the queueing of a newer version: never roll this one out
            return self._commit(record, supersede(state, newer), "automation", correlation)
        busy = self._busy(state.endpoint, besides=f"{state.tenant}/{state.model}")
        if busy or self._older_queued(state):
            return Transition(state, state, (), f"queued behind {busy or 'an older rollout'}")
        after, actions = self._fresh(state.tenant, state.model, state.revision + 1)
        transition = Transition(state, after, actions, after.reason)
        return self._commit(record, transition, "automation", correlation)

    def _older_queued(self, state: RolloutState) -> bool:
        """Whether another rollout has waited longer for the same endpoint."""
        mine = (state.next_check_at, state.tenant, state.model)
        for _, other, _ in self._rollouts():
            if other.phase != Phase.QUEUED or other.endpoint != state.endpoint:
                continue
            theirs = (other.next_check_at, other.tenant, other.model)
            if theirs != mine and theirs < mine:
                return True
        return False

    def get(self, tenant: str, model: str) -> RolloutState:
        record = self._record(tenant, model)
        return decode(record.data)[0]

    def _record(self, tenant: str, model: str) -> Record:
        record = self.store.get(contracts.TABLE_ROLLOUTS, tenant, rollout_key(model))
        if record is None or "phase" not in record.data:
            raise NotFoundError.for_item("rollout", f"{tenant}/{model}")
        return record

    def _rollouts(self) -> Iterator[tuple[Record, RolloutState, list[Action]]]:
        """Every rollout with its pending actions (recorded gate rejections are not ones)."""
        for record in self.store.query(contracts.TABLE_ROLLOUTS):
            if "phase" in record.data:
                state, pending = decode(record.data)
                yield record, state, pending

    def active(self) -> list[tuple[str, str]]:
        """(tenant, model) of every rollout that still has work to do."""
        found = []
        for _, state, pending in self._rollouts():
            if pending or not state.done:
                found.append((state.tenant, state.model))
        return found

    # --- advancing -----------------------------------------------------------------------

    def tick(self, tenant: str, model: str, correlation: str = "") -> Transition | None:
        """Advance one rollout with what the platform shows now."""
        record = self._record(tenant, model)
        state, pending = decode(record.data)
        if pending:
            self._apply(record, state, pending)  # finish what a crashed worker started
            return None
        if state.phase == Phase.QUEUED:
            return self._dequeue(record, state, correlation)
        observation = self._observe(state)
        return self._commit(
            record,
            advance(state, self.policy_for(tenant), self.clock(), observation),
            "automation",
            correlation,
        )

    def command(
        self, tenant: str, model: str, command: Command, correlation: str = ""
    ) -> Transition | None:
        """A person's approval or abort. A tick that wrote the rollout between our read and
        our write must not swallow it: the command is judged again on what the tick left,
        so the caller is never told it was taken when it was not."""
        for _ in range(COMMAND_ATTEMPTS):
            record = self._record(tenant, model)
            state, pending = decode(record.data)
            if pending:
                record = self._apply(record, state, pending)
            transition = advance(state, self.policy_for(tenant), self.clock(), command=command)
            committed = self._commit(record, transition, command.actor, correlation)
            if committed is not None:
                return committed
        raise ConflictError(
            f"the rollout of {model} kept changing while the {command.kind} was being "
            "recorded; send it again"
        )

    def resume(self) -> int:
        """Re-apply the pending actions of every rollout a crash interrupted."""
        resumed = 0
        for record, state, pending in self._rollouts():
            if pending:
                self._apply(record, state, pending)
                resumed += 1
        return resumed

    def _commit(
        self, record: Record, transition: Transition, actor: str, correlation: str
    ) -> Transition | None:
        if not transition.changed:
            return transition
        if promotes(transition):
            refused = self._promotion_gate(transition.after)
            if refused:
                transition = refuse_promotion(transition.before, refused)
        actions = list(transition.actions)
        try:
            record = self.store.replace(record, encode(transition.after, actions))
        except ConflictError:
            return None  # another worker advanced this rollout first: nothing to do twice
        self._audit(
            actor,
            tenant=transition.after.tenant,
            before=transition.before,
            after=transition.after,
            reason=transition.reason,
            correlation=correlation,
        )
        self._apply(record, transition.after, actions)
        return transition

    def _apply(self, record: Record, state: RolloutState, actions: list[Action]) -> Record:
        for action in actions:
            self._perform(state, action)
        try:
            return self.store.replace(record, encode(state, []))
        except ConflictError:
            return record  # someone else cleared it after applying the same actions

    def _perform(self, state: RolloutState, action: Action) -> None:
        port, tenant = self.port, state.tenant
        if isinstance(action, CreateDeployment):
            port.create_deployment(tenant, action.name, action.model)
        elif isinstance(action, SetTraffic):
            port.set_traffic(tenant, action.traffic, action.mirror)
        elif isinstance(action, DeleteDeployment):
            port.delete_deployment(tenant, action.name)
        elif isinstance(action, Alert):
            port.notify(tenant, action.severity, action.message)
        elif isinstance(action, Crown):
            name, _, version = action.model.rpartition("/")
            port.crown(tenant, name, version)
        # SmokeTest is performed while observing (its result is the next observation).

    def _promotion_gate(self, state: RolloutState) -> list[str]:
        """The model gate again, at the promotion stage, with the registry's facts now and
        the approval given to this rollout (checked against the approver personas)."""
        name, _, version = state.model.rpartition("/")
        facts = self.port.model_facts(state.tenant, name, version)
        if state.approved_by and state.approved_as:
            given = Approval(state.approved_by, state.approved_as)
            facts = dataclasses.replace(facts, approvals=(*facts.approvals, given))
        violations = evaluate_model(facts, state.tenant, self.spec, stage="promotion")
        return [f"[{v.code}] {v.message}" for v in violations]

    # --- observing -----------------------------------------------------------------------

    def _observe(self, state: RolloutState) -> Observation:
        tenant = state.tenant
        if state.phase == Phase.CREATING:
            status, message = self.port.deployment_status(tenant, state.green)
            return Observation(
                green_ready=status == "ready", green_failed=message if status == "failed" else None
            )
        if state.phase == Phase.SMOKE_TESTING:
            return self._smoke(state)
        if state.phase.terminal:
            return Observation()
        now = self.clock()
        since = now - timedelta(seconds=self.policy_for(tenant).analysis.interval_seconds)
        blue = self.port.deployment_stats(tenant, state.blue, since, now) if state.blue else None
        green_quality, blue_quality = self._quality(state, now)
        return Observation(
            green=self.port.deployment_stats(tenant, state.green, since, now),
            blue=blue,
            green_quality=green_quality,
            blue_quality=blue_quality,
        )

    def _quality(
        self, state: RolloutState, now: datetime
    ) -> tuple[QualityStats | None, QualityStats | None]:
        """Green's and blue's quality on the tenant's labels over the same recent window,
        where the policy asks for it."""
        criterion = self.policy_for(state.tenant).analysis.quality
        if criterion is None or self.quality is None or not state.blue:
            return None, None
        since = now - timedelta(seconds=criterion.window_seconds)
        measured = []
        for deployment in (state.green, state.blue):
            window = self.quality.labelled(state.tenant, deployment, since=since, until=now)
            if not window.labels or not window.classes:
                measured.append(QualityStats(None, len(window.labels)))
                continue
            quality = measure(
                window.labels, window.predictions, np.array(window.probabilities), window.classes
            )
            measured.append(QualityStats(quality.metric(criterion.metric), quality.rows))
        return measured[0], measured[1]

    def _smoke(self, state: RolloutState) -> Observation:
        requests = self.policy_for(state.tenant).smoke_test_requests
        body = self.port.sample_request(state.tenant, state.green)
        statuses = [self.port.invoke(state.tenant, state.green, body) for _ in range(requests)]
        failed = sum(1 for status in statuses if status != 200)
        return Observation(smoke_passed=requests - failed, smoke_failed=failed)

    # --- audit ---------------------------------------------------------------------------

    def _audit(
        self,
        actor: str,
        *,
        tenant: str,
        before: RolloutState | None,
        after: RolloutState,
        reason: str,
        correlation: str,
    ) -> None:
        append_audit(
            self.store,
            tenant,
            self.clock(),
            {
                "actor": actor,
                "tenant": tenant,
                "subject": f"rollout {after.model}",
                "before": _summary(before),
                "after": _summary(after),
                "reason": reason,
                "correlation_id": correlation or uuid.uuid4().hex,
            },
        )


def _summary(state: RolloutState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "phase": state.phase.value,
        "traffic": dict(state.traffic),
        "mirror": dict(state.mirror),
    }
