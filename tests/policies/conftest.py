"""Helpers for calling the rules directly with a compliant and a violating fixture."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from policies.catalogue import BY_NAME
from policies.config import defaults
from policies.core import Finding, Props, Resource, run_resource_rule

DELETE = object()
SUB = "/subscriptions/00000000-0000-4000-8000-00000000c0de/resourceGroups"
CONTOSO_ID = f"{SUB}/rg-contoso/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-c"
TAGS = {"tenant-id": "contoso", "env": "prod", "cost-center": "cc-1001"}


def changed(base: Mapping[str, Any], **paths: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted paths (``a__b`` for ``a.b``) set, or removed
    with ``DELETE``."""
    result = copy.deepcopy(dict(base))
    for dotted, value in paths.items():
        *parents, leaf = dotted.split("__")
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return result


def resource(type_token: str, props: Mapping[str, Any], name: str = "r") -> Resource:
    urn = f"urn:pulumi:prod::tenant-mlops::{type_token}::{name}"
    return Resource(type_token, urn, name, Props(props))


def settings_for(rule: str, **given: Any) -> dict[str, Any]:
    return {**defaults(BY_NAME[rule]), **given}


def findings(rule: str, type_token: str, props: Mapping[str, Any], **given: Any) -> list[Finding]:
    return run_resource_rule(
        BY_NAME[rule], resource(type_token, props), settings_for(rule, **given)
    )


def messages(rule: str, type_token: str, props: Mapping[str, Any], **given: Any) -> list[str]:
    return [f.message for f in findings(rule, type_token, props, **given)]


def planned_resource(
    type_name: str,
    name: str,
    props: Mapping[str, Any] | None = None,
    deps: Mapping[str, list[str]] | None = None,
    after: list[str] | None = None,
) -> Resource:
    """A resource of a stack for the stack rules: ``urn:<name>``, property dependencies
    (input -> names) and other dependencies (`depends_on`) by name."""
    return Resource(
        f"azure-native:{type_name}",
        f"urn:{name}",
        name,
        Props(dict(props or {})),
        property_dependencies={
            k: frozenset(f"urn:{v}" for v in vs) for k, vs in (deps or {}).items()
        },
        dependencies=frozenset(f"urn:{v}" for v in after or []),
    )
