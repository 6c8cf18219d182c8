"""Names shared across the layers: the data collector's layout that the gateway and score.py's
collector write and drift reads."""

from __future__ import annotations

from datetime import UTC, datetime

from tenancy.contracts import collector_prefix, collector_prefixes


def test_the_collector_layout_has_one_folder_per_hour() -> None:
    start = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert collector_prefix("ep", "blue", "model_outputs", start) == (
        "modelDataCollector/ep/blue/model_outputs/2026/11/22/10/"
    )
    assert collector_prefixes(
        "ep", "blue", "model_inputs", start, datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    ) == [
        "modelDataCollector/ep/blue/model_inputs/2026/11/22/10/",
        "modelDataCollector/ep/blue/model_inputs/2026/11/22/11/",
    ]
    assert collector_prefixes("ep", "blue", "model_inputs", start, start) == []
