"""A plan as Azure holds it once deployed: each planned resource the rules govern as ARM
returns it (``id``, ``type``, the envelope, ``properties``), and the expected state that
plan's `pulumi up` writes."""

from __future__ import annotations

import json
from typing import Any

from infra.offline import OfflineRun
from policies.live import ARM_TYPE_OF, LiveResource, as_live
from tenancy import contracts


def inventory_of(run: OfflineRun) -> list[LiveResource]:
    return [
        as_live(record.type, record.inputs, record.id)
        for record in run.custom_resources()
        if record.type in ARM_TYPE_OF and record.id
    ]


def expected_of(run: OfflineRun) -> dict[str, Any]:
    """The expected state the plan's `pulumi up` writes (infra.expected_state)."""
    [upload] = [r for r in run.records if r.inputs.get("kind") == contracts.KIND_EXPECTED_STATE]
    document: dict[str, Any] = json.loads(upload.inputs["document"])
    return document
