"""Where the automation keeps its state: rollouts, processed events, budget state, audit.

A small Protocol with optimistic concurrency (every record carries an ETag; a write with a
stale ETag is a ``ConflictError``), and two implementations: memory here, for tests of the
domain, and Azure Table storage through azure-data-tables (Azurite locally) in
``adapters/table_store.py``.

Entities are JSON documents under one property, so that nested state never meets Table
storage's flat property model (64 KiB per string property is far above what a rollout needs).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tenancy import contracts
from tenancy.errors import ConflictError

DOCUMENT = "document"


@dataclass(frozen=True)
class Record:
    table: str
    partition: str
    row: str
    data: dict[str, Any]
    etag: str


class StateStore(Protocol):
    def get(self, table: str, partition: str, row: str) -> Record | None: ...

    def insert(self, table: str, partition: str, row: str, data: dict[str, Any]) -> Record:
        """Create; ``ConflictError`` when the key exists (the idempotency check)."""
        ...

    def replace(self, record: Record, data: dict[str, Any]) -> Record:
        """Overwrite if unchanged since read; ``ConflictError`` otherwise."""
        ...

    def query(self, table: str, partition: str | None = None) -> list[Record]: ...


def ordered_row(now: datetime) -> str:
    """A row key that sorts in write order: an audit reads as it happened, even when an
    injected clock stands still (tests) or two records share a microsecond."""
    return f"{now.strftime('%Y%m%dT%H%M%S%f')}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def append_audit(store: StateStore, tenant: str, now: datetime, record: dict[str, Any]) -> None:
    """One audit record of ``tenant`` at ``now``, after the ones before it."""
    store.insert(contracts.TABLE_AUDIT, tenant, ordered_row(now), {"at": now.isoformat(), **record})


class MemoryStore:
    """The same contract in memory (thread-safe), for domain tests."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], Record] = {}
        self._lock = threading.Lock()

    def get(self, table: str, partition: str, row: str) -> Record | None:
        return self._rows.get((table, partition, row))

    def insert(self, table: str, partition: str, row: str, data: dict[str, Any]) -> Record:
        with self._lock:
            if (table, partition, row) in self._rows:
                raise ConflictError(f"{table}/{partition}/{row} exists")
            record = Record(table, partition, row, copy_document(data), uuid.uuid4().hex)
            self._rows[(table, partition, row)] = record
            return record

    def replace(self, record: Record, data: dict[str, Any]) -> Record:
        key = (record.table, record.partition, record.row)
        with self._lock:
            current = self._rows.get(key)
            if current is None or current.etag != record.etag:
                raise ConflictError(f"{'/'.join(key)} changed since it was read")
            updated = Record(*key, copy_document(data), uuid.uuid4().hex)
            self._rows[key] = updated
            return updated

    def query(self, table: str, partition: str | None = None) -> list[Record]:
        return [
            r
            for (t, p, _), r in sorted(self._rows.items())
            if t == table and (partition is None or p == partition)
        ]


def copy_document(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded
