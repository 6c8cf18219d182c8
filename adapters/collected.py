"""Collected inference data in blob storage (Azure ML's data collector layout), read hour by
hour: each hour's inputs joined to its outputs by correlation id, yielded as one chunk of
rows (features, then the prediction), so a window of any length is read in bounded memory.
Works on any azure-storage-blob ContainerClient: the workspace datastore, or Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from automation.port import Usage
from ml.quality import LabelledWindow
from tenancy.contracts import (
    COLLECTION_INPUTS,
    COLLECTION_LABELS,
    COLLECTION_OUTPUTS,
    COLLECTOR_ROOT,
    TENANT_COLUMN,
    collector_prefixes,
    labels_prefix,
)
from tenancy.spec import PlatformSpec


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
    tenant: str | None = None,
    owner: str = "",
) -> Iterator[np.ndarray]:
    """Rows of the window (features, then the prediction), hour by hour; with ``tenant``,
    only that tenant's (a pooled deployment serves several: each row's tenant is its
    ``tenant_id`` column, its record's ``tenant``, else the stamp's ``owner``)."""
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
                if tenant is not None and _row_tenant(row, record, owner) != tenant:
                    continue
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


# --- ground truth ---------------------------------------------------------------------------


def _day_prefixes(endpoint: str, since: datetime, until: datetime) -> list[str]:
    """The labels' folders of every day in [since, until): a day's listing, not 24 hours'."""
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    prefixes = []
    while day < until:
        prefixes.append(labels_prefix(endpoint, day).rsplit("/", 2)[0] + "/")
        day += timedelta(days=1)
    return prefixes


def _labels(
    container: Any, endpoint: str, since: datetime, until: datetime
) -> dict[tuple[str, str], Any]:
    """(tenant, request id) -> the label sent last for it, of labels sent in [since, until)."""
    found: dict[tuple[str, str], tuple[str, Any]] = {}
    for prefix in _day_prefixes(endpoint, since, until):
        for record in _records(container, prefix):
            key = (str(record.get("tenant", "")), str(record.get("correlationid", "")))
            at = str(record.get("time", ""))
            if _within(record, since, until) and (key not in found or found[key][0] <= at):
                found[key] = (at, record.get("label"))
    return {key: label for key, (_, label) in found.items()}


def labelled_window(
    container: Any,
    endpoint: str,
    deployment: str,
    *,
    tenant: str,
    owner: str,
    since: datetime,
    until: datetime,
    horizon: timedelta,
) -> LabelledWindow:
    """``tenant``'s rows scored by ``deployment`` in [since, until), joined to the labels
    sent for them up to ``horizon`` later. A row's tenant is its ``tenant_id`` column (a
    pooled request on Azure), its record's ``tenant`` (the embedded gateway), else the
    stamp's ``owner``; a label joins only a request of the tenant who sent it. A label is
    one value for a one-row request, or a list with one per row."""
    labels = _labels(container, endpoint, since, until + horizon)
    window = LabelledWindow()
    for prefix in collector_prefixes(endpoint, deployment, COLLECTION_OUTPUTS, since, until):
        for record in _records(container, prefix):
            rows = record.get("data")
            if not _within(record, since, until) or not isinstance(rows, list):
                continue
            mine = [
                r for r in rows if isinstance(r, dict) and _row_tenant(r, record, owner) == tenant
            ]
            scored = [r for r in mine if isinstance(r.get("probabilities"), list)]
            if not scored:
                continue
            window.classes = window.classes or list(scored[0].get("classes") or [])
            window.scored += [list(map(float, r["probabilities"])) for r in scored]
            label = labels.get((tenant, str(record.get("correlationid"))))
            truth = label if isinstance(label, list) else [label] * (label is not None)
            if len(truth) != len(scored):
                continue  # unlabelled, or a label per row that does not fit the request
            window.labels += truth
            window.predictions += [r.get("prediction") for r in scored]
            window.probabilities += [list(map(float, r["probabilities"])) for r in scored]
    return window


def owner_of(spec: PlatformSpec, tenant: str) -> str:
    """Whose a row naming no tenant is, on ``tenant``'s endpoint: a dedicated tenant's
    stamp serves it alone; a pool's rows always name theirs (nobody's otherwise)."""
    return "" if spec.tenant(tenant).tier == "pooled" else tenant


def _row_tenant(row: Any, record: dict[str, Any], owner: str) -> str:
    named = row.get(TENANT_COLUMN) if isinstance(row, dict) else None
    return str(named or record.get("tenant") or owner)


def endpoint_usage(
    container: Any, endpoint: str, *, since: datetime, until: datetime, owner: str
) -> dict[str, Usage]:
    """Per tenant, what its requests took of every deployment of ``endpoint`` (those gone
    since included: their collected data stays) in [since, until): requests, rows and the
    scoring time the output rows carry."""
    found: dict[str, Usage] = {}
    root = f"{COLLECTOR_ROOT}/{endpoint}/"
    for folder in container.walk_blobs(name_starts_with=root, delimiter="/"):
        deployment = str(folder.name)[len(root) :].strip("/")
        if not deployment or deployment == COLLECTION_LABELS:
            continue
        for prefix in collector_prefixes(endpoint, deployment, COLLECTION_OUTPUTS, since, until):
            for record in _records(container, prefix):
                rows = record.get("data")
                if not _within(record, since, until) or not isinstance(rows, list):
                    continue
                per_tenant: dict[str, Usage] = {}
                for row in rows:
                    tenant = _row_tenant(row, record, owner)
                    spent = row.get("scoring_ms") if isinstance(row, dict) else None
                    took = _milliseconds(spent)
                    per_tenant[tenant] = per_tenant.get(tenant, Usage()) + Usage(0, 1, took)
                for tenant, used in per_tenant.items():
                    found[tenant] = found.get(tenant, Usage()) + used + Usage(1, 0, 0.0)
    return found


def _milliseconds(value: Any) -> float:
    """A row's scoring time, 0 where it does not say (rows collected before it did)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)
