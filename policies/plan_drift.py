"""Drift from the plan: what is deployed against what `pulumi up` set, reported apart from
rule violations.

`pulumi up` records the **expected state** (:func:`expected_state`): each resource the rules
govern, by id, with the values of its *governed properties*, the properties the pack's live
rules read at this stack's levels (recorded while the rules judge the plan, so the set
follows the rules and never needs a list of its own). Properties under ``ignore_changes``
are left out: `pulumi up` does not hold them, the automation does (an endpoint's traffic, its
deployments). The document holds no secret: only governed values, and the pack reads none.

The audit then compares the live inventory with it (:func:`drift`):
- ``unplanned``: a governed resource the plan does not know (made in the portal, say);
- ``missing``: one the plan made that is gone;
- ``changed``: one whose governed properties differ, with each difference.

Resources the automation owns (every input ignored: the deployments it rolls out and
deletes) are neither unplanned nor missing, nor are their siblings of the same type.
Values compare as ARM returns them: strings (ids, enums) without regard to case, numbers by
value, ISO 8601 durations by length (``PT120S`` is ``PT2M``), lists item for item in any
order; a map compares the keys the plan set (a GET returns many the program never sends:
a compute's node counts, defaults), so a key removed or changed is drift, one added is not.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.catalogue import LIVE_RULES
from policies.config import PackConfig
from policies.core import Props
from policies.evaluation import evaluate_resources
from policies.live import (
    ARM_TYPE_OF,
    LiveResource,
    as_live,
    as_resources,
    inputs_of,
    is_path_parameter,
)

SCHEMA_VERSION = 1
#: A drift's level beside the rules' (mandatory, advisory): told as a warning.
DRIFT_LEVEL = "drift"
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PlannedResource:
    """One resource as `pulumi up` set it: the program's inputs (wire names), resolved."""

    id: str
    type: str  # azure-native type token
    inputs: Mapping[str, Any]
    ignored: Collection[str] = ()  # inputs under ignore_changes


@dataclass(frozen=True)
class Difference:
    path: str
    planned: Any
    live: Any

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "planned": self.planned, "live": self.live}


@dataclass(frozen=True)
class Drift:
    kind: str  # unplanned | missing | changed
    resource: str  # its id
    type: str
    tags: Mapping[str, Any]
    differences: tuple[Difference, ...] = ()

    @property
    def message(self) -> str:
        if self.kind == "unplanned":
            return "deployed, but not in the plan (`pulumi up` did not make it)"
        if self.kind == "missing":
            return "in the plan, but no longer deployed"
        changed = "; ".join(
            f"{d.path} is {_show(d.live)} (the plan set {_show(d.planned)})"
            for d in self.differences
        )
        return f"differs from the plan: {changed}"


class _RecordingProps(Props):
    """Properties that remember which paths the rules read."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        super().__init__(raw)
        self.read: set[str] = set()

    def get(self, path: str, default: Any = None) -> Any:
        self.read.add(path)
        return super().get(path, default)


def expected_state(planned: Sequence[PlannedResource], config: PackConfig) -> dict[str, Any]:
    """The document `pulumi up` leaves for the audit: each planned resource the rules
    govern with the values of the properties the live rules read."""
    governed = [p for p in planned if p.type in ARM_TYPE_OF]
    lives = [as_live(p.type, _held(p), p.id) for p in governed]
    resources = as_resources(lives, props=_RecordingProps)
    evaluate_resources(resources, config, LIVE_RULES)
    entries = []
    for plan, resource in zip(governed, resources, strict=True):
        assert isinstance(resource.props, _RecordingProps)
        values = {}
        held = Props(_held(plan))
        for path in sorted(resource.props.read):
            value = held.get(path)
            if value is not None:  # not set by the plan: Azure's default, not drift
                values[path] = value
        entries.append(
            {
                "id": plan.id,
                "type": plan.type,
                "governed": values,
                "automationOwned": _automation_owned(plan),
            }
        )
    return {"version": SCHEMA_VERSION, "resources": entries}


def _held(plan: PlannedResource) -> dict[str, Any]:
    """The inputs `pulumi up` holds: those under ``ignore_changes`` (a top-level input or
    a dotted path into one) belong to whoever changes them after it (the automation)."""
    held = copy.deepcopy(dict(plan.inputs))
    for path in plan.ignored:
        *parents, last = path.split(".")
        container: Any = held
        for part in parents:
            container = container.get(part) if isinstance(container, dict) else None
        if isinstance(container, dict):
            container.pop(last, None)
    return held


def _automation_owned(plan: PlannedResource) -> bool:
    """Every input but its name and place is ignored: the automation owns the resource."""
    segments = {s.lower() for s in plan.id.split("/")}
    held = [k for k, v in _held(plan).items() if not is_path_parameter(k, v, segments)]
    return bool(plan.ignored) and not held


def drift(expected: Mapping[str, Any], inventory: Sequence[LiveResource]) -> list[Drift]:
    """What differs between the expected state and the live inventory."""
    if expected.get("version") != SCHEMA_VERSION:
        raise ValueError(
            f"expected state of version {expected.get('version')!r}: this audit reads "
            f"version {SCHEMA_VERSION} (run `pulumi up` with this release)"
        )
    planned = {str(e["id"]).lower(): e for e in expected.get("resources", [])}
    owned = {_collection(e["id"], e["type"]) for e in planned.values() if e.get("automationOwned")}
    found: list[Drift] = []
    live_ids = set()
    for live in inventory:
        token = live.type_token
        if token is None:
            continue
        live_ids.add(live.id.lower())
        entry = planned.get(live.id.lower())
        inputs = inputs_of(live)
        tags = inputs.get("tags") or {}
        if entry is None:
            if _collection(live.id, token) not in owned:
                found.append(Drift("unplanned", live.id, token, tags))
            continue
        if entry.get("automationOwned"):
            continue
        differences = tuple(_differences(entry.get("governed", {}), Props(inputs)))
        if differences:
            found.append(Drift("changed", live.id, token, tags, differences))
    for key, entry in planned.items():
        if key not in live_ids and not entry.get("automationOwned"):
            tags = entry.get("governed", {}).get("tags") or {}
            found.append(Drift("missing", str(entry["id"]), str(entry["type"]), tags))
    return found


def judged(expected: Mapping[str, Any], types: Collection[str] | None) -> dict[str, Any]:
    """The expected state cut to the types an inventory reads (None: all of them)."""
    if types is None:
        return dict(expected)
    kept = [e for e in expected.get("resources", []) if e.get("type") in types]
    return {**expected, "resources": kept}


def _collection(resource_id: str, token: str) -> tuple[str, str]:
    """(parent id, type): where a resource of this type is listed."""
    return resource_id.rsplit("/", 2)[0].lower(), token


def _differences(governed: Mapping[str, Any], live: Props) -> Iterator[Difference]:
    for path, planned in sorted(governed.items()):
        value = live.get(path)
        if not same(planned, value):
            yield Difference(path, planned, value)


def same(planned: Any, live: Any) -> bool:
    """Whether ``live`` is what the plan set, as ARM returns values."""
    if isinstance(planned, Mapping):
        return _same_map(planned, live)
    if isinstance(planned, list):
        return _same_list(planned, live)
    return _same_scalar(planned, live)


def _same_map(planned: Mapping[str, Any], live: Any) -> bool:
    if not isinstance(live, Mapping):
        return not planned and live is None
    return all(same(value, live.get(key)) for key, value in planned.items())


def _same_list(planned: list[Any], live: Any) -> bool:
    if not isinstance(live, list) or len(live) != len(planned):
        return not planned and live is None
    remaining = list(live)
    for item in planned:  # in any order: ARM does not keep the order of every list
        match = next((i for i, other in enumerate(remaining) if same(item, other)), None)
        if match is None:
            return False
        remaining.pop(match)
    return True


def _same_scalar(planned: Any, live: Any) -> bool:
    if isinstance(planned, bool) or isinstance(live, bool):
        return planned is live
    if isinstance(planned, int | float) and isinstance(live, int | float):
        return float(planned) == float(live)
    if isinstance(planned, str) and isinstance(live, str):
        seconds = _seconds(planned)
        return planned.lower() == live.lower() or (
            seconds is not None and seconds == _seconds(live)
        )
    return bool(planned == live)


def _seconds(value: str) -> float | None:
    match = _DURATION.match(value)
    if match is None or not any(match.groupdict().values()):
        return None
    parts = {k: float(v or 0) for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def _show(value: Any) -> str:
    return "absent" if value is None else repr(value)
