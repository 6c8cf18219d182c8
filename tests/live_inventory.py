"""A fake Azure Resource Graph answer built from a plan: each planned resource the rules
govern as ARM returns it (``id``, ``type``, the envelope, ``properties``): the inverse of
``policies.live.inputs_of``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.offline import OfflineRun
from policies.live import ARM_TYPES, ENVELOPE, NESTED_PROPERTIES, LiveResource

TYPE_TOKENS = {token: arm for arm, token in ARM_TYPES.items()}


def inventory_of(run: OfflineRun) -> list[LiveResource]:
    return [
        LiveResource(record.id, TYPE_TOKENS[record.type], record.id.rsplit("/", 1)[-1],
                     arm_body(record.type, record.inputs, record.id))
        for record in run.custom_resources()
        if record.type in TYPE_TOKENS and record.id
    ]  # fmt: skip


def arm_body(type_token: str, inputs: Mapping[str, Any], resource_id: str) -> dict[str, Any]:
    """The inputs of ``type_token`` as ARM's JSON (what a GET of it returns): path
    parameters (the id's segments) dropped, the rest under ``properties`` unless the type
    keeps them there itself."""
    segments = {s.lower() for s in resource_id.split("/")}
    body: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for key, value in inputs.items():
        if key == "identity" and isinstance(value.get("userAssignedIdentities"), list):
            principals: dict[str, Any] = {uai: {} for uai in value["userAssignedIdentities"]}
            body[key] = {**value, "userAssignedIdentities": principals}
        elif key in ENVELOPE:
            body[key] = value
        elif _is_path_parameter(key, value, segments):
            continue
        elif key == "properties" and type_token in NESTED_PROPERTIES:
            properties.update(value)
        else:
            properties[key] = value
    body["properties"] = properties
    return body


def _is_path_parameter(key: str, value: Any, segments: set[str]) -> bool:
    return key in ("resourceGroupName", "scope") or (
        key.endswith("Name") and isinstance(value, str) and value.lower() in segments
    )
