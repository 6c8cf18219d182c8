"""What every infrastructure rule shares: levels, findings, property access that refuses to
guess at values unknown at plan time, and the view of a whole stack the stack rules read.

Rules are plain functions over plain data. The same functions run inside the Pulumi policy
pack (``policies/__main__.py`` through :mod:`policies.pack`), in ``mlops plan`` (through
:mod:`policies.offline`), and in the tests, which call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

Level = Literal["mandatory", "advisory", "disabled"]
LEVELS: tuple[Level, ...] = ("mandatory", "advisory", "disabled")

#: Pulumi's markers for values not known until apply (``pulumi.runtime.rpc.UNKNOWN`` and the
#: typed sentinels the policy SDK deserializes), as they arrive in a preview's inputs.
UNKNOWN_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string (and the SDK's generic unknown)
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)

ML = "azure-native:machinelearningservices"
TAGS_KEY = "tags"


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_SENTINELS


class UnknownValue(Exception):  # noqa: N818 - a signal, not an error condition
    """A rule needed a value that is not known until apply. The rule cannot decide, so the
    finding is reported (advisory) instead of passing: `pulumi up` checks again with the
    value known."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    @property
    def message(self) -> str:
        return f"cannot check yet: .{self.path} is not known until the resource is applied"


_MISSING = object()


class Props:
    """A resource's properties (wire names, e.g. ``properties.authMode``) read by dotted path.

    ``get`` raises :class:`UnknownValue` when the value, or a container on the way to it, is
    unknown at plan time; a missing value is ``default``.
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    def get(self, path: str, default: Any = None) -> Any:
        current: Any = self.raw
        walked: list[str] = []
        for part in path.split("."):
            walked.append(part)
            if is_unknown(current):
                raise UnknownValue(".".join(walked[:-1]))
            if not isinstance(current, Mapping):
                return default
            current = current.get(part, _MISSING)
            if current is _MISSING or current is None:
                return default
        if is_unknown(current):
            raise UnknownValue(path)
        return current

    def get_known(self, path: str, default: Any = None) -> Any:
        """``get`` for a whole map or list: unknown anywhere inside raises too."""
        value = self.get(path, default)
        for where, item in _walk(value, path):
            if is_unknown(item):
                raise UnknownValue(where)
        return value


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def number(value: Any) -> float | None:
    """Inputs arrive as floats (the wire has one number type); booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- resources and findings -----------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One resource as a rule sees it. ``props`` are inputs in a resource rule; in a stack
    rule they are what the engine has (outputs after apply), so stack rules read only
    properties present in both, and follow references through ``property_dependencies``."""

    type: str
    urn: str
    name: str
    props: Props
    parent: str | None = None
    property_dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Every resource this one waits for: its property dependencies, `depends_on` and its
    # parent's (what the engine creates first).
    dependencies: frozenset[str] = frozenset()
    # Inputs under `ignore_changes`. In a preview of an update the engine hands a pack the
    # state's values for them, not the program's; `mlops plan` always plans from scratch.
    ignored: frozenset[str] = frozenset()

    @property
    def tags(self) -> Mapping[str, Any]:
        tags = self.props.get(TAGS_KEY, {})
        return tags if isinstance(tags, Mapping) else {}

    def references(self) -> Iterator[tuple[str, str]]:
        """(property, URN) for every resource this one's inputs were computed from."""
        for prop, urns in sorted(self.property_dependencies.items()):
            for urn in sorted(urns):
                yield prop, urn


@dataclass(frozen=True)
class Finding:
    message: str
    urn: str
    # Set when the rule could not decide because this property is unknown at plan time.
    unknown_path: str | None = None

    @property
    def unknown(self) -> bool:
        return self.unknown_path is not None


Settings = Mapping[str, Any]
ResourceCheck = Callable[[Resource, Settings], Iterable[str]]
StackCheck = Callable[["Stack", Settings], Iterable[Finding]]


class Stack:
    """Every resource of a stack, with what stack rules ask of it: by type, by URN, and who
    owns a resource (the ``tenant-id`` tag of the resource or of what it belongs to)."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        self.resources = list(resources)

    @cached_property
    def by_urn(self) -> dict[str, Resource]:
        return {r.urn: r for r in self.resources}

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def deps(self, resource: Resource, prop: str, *types: str) -> list[Resource]:
        """The resources ``resource``'s input ``prop`` was computed from (of ``types``,
        whatever API version they pin, when given)."""
        found = []
        for urn in sorted(resource.property_dependencies.get(prop, ())):
            target = self.by_urn.get(urn)
            if target is not None and (not types or rule_type(target.type) in types):
                found.append(target)
        return found

    def waits_for(self, resource: Resource, urn: str) -> bool:
        """Whether the engine creates ``urn`` before ``resource``: it is among its
        dependencies (`depends_on` or an input computed from it), at any depth."""
        seen: set[str] = set()
        pending = [resource.urn]
        while pending:
            current = self.by_urn.get(pending.pop())
            if current is None:
                continue
            linked = set(current.dependencies)
            linked.update(u for urns in current.property_dependencies.values() for u in urns)
            if urn in linked:
                return True
            pending.extend(linked - seen)
            seen |= linked
        return False

    #: Properties through which an untagged resource belongs to another (its group, the
    #: resource it extends, the workspace or vault it lives in), in the order tried.
    _OWNER_LINKS = (
        "scope",
        "resourceUri",
        "resourceGroupName",
        "workspaceName",
        "vaultName",
        "accountName",
        "serviceName",
    )

    def owner(self, resource: Resource) -> str | None:
        """The ``tenant-id`` that owns a resource: its own tag, else the owner of the
        resource it belongs to, else its parent's; ``None`` when nothing says."""
        return self._owner(resource, depth=0)

    def _owner(self, resource: Resource, depth: int) -> str | None:
        if depth > 8:  # references never nest deeper; a cycle must not hang a policy run
            return None
        tag = resource.tags.get("tenant-id")
        if isinstance(tag, str) and tag and not is_unknown(tag):
            return tag
        for link in self._OWNER_LINKS:
            for urn in sorted(resource.property_dependencies.get(link, ())):
                target = self.by_urn.get(urn)
                owner = self._owner(target, depth + 1) if target else None
                if owner:
                    return owner
        parent = self.by_urn.get(resource.parent) if resource.parent else None
        return self._owner(parent, depth + 1) if parent else None


def rule_type(type_token: str) -> str:
    """``azure-native:machinelearningservices/v20240101preview:Workspace`` ->
    ``azure-native:machinelearningservices:Workspace``: a rule applies whatever API version
    a resource pins (and ``ml-no-preview-api`` judges the pin)."""
    parts = type_token.split(":")
    if len(parts) != 3:
        return type_token
    provider, module, kind = parts
    return f"{provider}:{module.split('/')[0]}:{kind}"


# --- rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DefaultLevel:
    """A rule's level when the stack does not set one: in the prod environment, elsewhere."""

    prod: Level
    other: Level

    def for_environment(self, environment: str) -> Level:
        return self.prod if environment == "prod" else self.other


MANDATORY = DefaultLevel("mandatory", "mandatory")
PROD_ONLY = DefaultLevel("mandatory", "disabled")
PROD_MANDATORY = DefaultLevel("mandatory", "advisory")
ADVISORY = DefaultLevel("advisory", "advisory")


@dataclass(frozen=True)
class Setting:
    """A limit a stack can set. ``type`` is validated (pydantic) and published as the
    pack's JSON schema. ``default`` applies when the pack runs without a config file;
    ``from_spec`` derives the stack's value from its platform spec (default when None)."""

    name: str
    type: Any
    description: str
    default: Any
    from_spec: Callable[[Any], Any] | None = None

    def value_for(self, spec: Any) -> Any:
        return self.from_spec(spec) if self.from_spec else self.default


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    why: str
    level: DefaultLevel
    settings: tuple[Setting, ...] = ()
    resource_types: tuple[str, ...] = ()
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None

    @property
    def is_stack_rule(self) -> bool:
        return self.stack_check is not None

    def applies_to(self, type_token: str) -> bool:
        return not self.resource_types or rule_type(type_token) in self.resource_types


def run_resource_rule(rule: Rule, resource: Resource, settings: Settings) -> list[Finding]:
    """Run one resource rule: at most one finding per resource, naming every problem; an
    unknown value becomes one explicit finding."""
    if rule.check is None or not rule.applies_to(resource.type):
        return []
    try:
        problems = list(rule.check(resource, settings))
    except UnknownValue as unknown:
        return [Finding(unknown.message, resource.urn, unknown.path)]
    return [Finding("; ".join(problems), resource.urn)] if problems else []


def run_stack_rule(rule: Rule, stack: Stack, settings: Settings) -> list[Finding]:
    if rule.stack_check is None:
        return []
    try:
        return list(rule.stack_check(stack, settings))
    except UnknownValue as unknown:
        return [Finding(unknown.message, "", unknown.path)]
