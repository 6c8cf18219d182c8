"""Collected inference data in blob storage (Azure ML's data collector layout), read hour by
hour: each hour's inputs joined to its outputs by correlation id, yielded as one chunk of
rows (features, then the prediction), so a window of any length is read in bounded memory.
Works on any azure-storage-blob ContainerClient: the workspace datastore, or Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tenancy.contracts import COLLECTION_INPUTS, COLLECTION_OUTPUTS, collector_prefixes


def _records(container: Any, prefix: str) -> Iterator[dict[str, Any]]:
    for blob in container.list_blobs(name_starts_with=prefix):
        text = container.download_blob(blob.name).readall().decode("utf-8", errors="replace")
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line must not stop a drift check
            if isinstance(record, dict):
                yield record


def _within(record: dict[str, Any], since: datetime, until: datetime) -> bool:
    """Whether the record was collected in [since, until). Blobs are partitioned by hour, so
    the window's first and last hours hold records on either side of it; a record whose time
    cannot be read is judged by its hour alone."""
    try:
        at = datetime.fromisoformat(str(record.get("time")))
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # the collector writes UTC
    return since <= at < until


def _prediction(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("prediction", next(iter(value.values()), None))
    return float(value) if type(value) in (int, float) else None


def collected_rows(
    container: Any,
    endpoint: str,
    deployment: str,
    features: Sequence[str],
    *,
    since: datetime,
    until: datetime,
) -> Iterator[np.ndarray]:
    inputs_prefixes = collector_prefixes(endpoint, deployment, COLLECTION_INPUTS, since, until)
    outputs_prefixes = collector_prefixes(endpoint, deployment, COLLECTION_OUTPUTS, since, until)
    for inputs_prefix, outputs_prefix in zip(inputs_prefixes, outputs_prefixes, strict=True):
        predictions: dict[str, list[float | None]] = {}
        for record in _records(container, outputs_prefix):
            data = record.get("data")
            if isinstance(data, list):
                predictions[str(record.get("correlationid"))] = [_prediction(v) for v in data]
        rows: list[list[float]] = []
        for record in _records(container, inputs_prefix):
            if not _within(record, since, until):
                continue
            data = record.get("data")
            answers = predictions.get(str(record.get("correlationid")), [])
            if not isinstance(data, list) or len(answers) != len(data):
                continue  # inputs whose outputs were not collected cannot be judged
            for row, answer in zip(data, answers, strict=True):
                values = [row.get(c) for c in features] if isinstance(row, dict) else row
                if (
                    answer is not None
                    and isinstance(values, list)
                    and len(values) == len(features)
                    and all(type(v) in (int, float) for v in values)
                ):
                    rows.append([*map(float, values), answer])
        if rows:
            yield np.array(rows, dtype=np.float64)
