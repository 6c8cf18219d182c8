"""A fake Azure Resource Graph answer built from a plan: each planned resource the rules
govern as ARM returns it (``id``, ``type``, the envelope, ``properties``)."""

from __future__ import annotations

from infra.offline import OfflineRun
from policies.live import TYPE_TOKENS, LiveResource, arm_body


def inventory_of(run: OfflineRun) -> list[LiveResource]:
    return [
        LiveResource(record.id, TYPE_TOKENS[record.type], record.id.rsplit("/", 1)[-1],
                     arm_body(record.type, record.inputs, record.id))
        for record in run.custom_resources()
        if record.type in TYPE_TOKENS and record.id
    ]  # fmt: skip
