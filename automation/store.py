"""Where the automation keeps its state: rollouts, processed events, budget state, audit.

A small Protocol with optimistic concurrency (every record carries an ETag; a write with a
stale ETag is a ``ConflictError``), and two implementations: Azure Table storage through
azure-data-tables (Azurite locally), and memory for tests of the domain.

Entities are JSON documents under one property, so that nested state never meets Table
storage's flat property model (64 KiB per string property is far above what a rollout needs).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

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
            record = Record(table, partition, row, _copy(data), uuid.uuid4().hex)
            self._rows[(table, partition, row)] = record
            return record

    def replace(self, record: Record, data: dict[str, Any]) -> Record:
        key = (record.table, record.partition, record.row)
        with self._lock:
            current = self._rows.get(key)
            if current is None or current.etag != record.etag:
                raise ConflictError(f"{'/'.join(key)} changed since it was read")
            updated = Record(*key, _copy(data), uuid.uuid4().hex)
            self._rows[key] = updated
            return updated

    def query(self, table: str, partition: str | None = None) -> list[Record]:
        return [
            r
            for (t, p, _), r in sorted(self._rows.items())
            if t == table and (partition is None or p == partition)
        ]


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


class TableStore:
    """Azure Table storage (or Azurite) through azure-data-tables."""

    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._created: set[str] = set()

    @classmethod
    def from_connection_string(cls, connection_string: str) -> TableStore:
        return cls(TableServiceClient.from_connection_string(connection_string))

    def _table(self, name: str) -> Any:
        if name not in self._created:
            self._service.create_table_if_not_exists(name)
            self._created.add(name)
        return self._service.get_table_client(name)

    @staticmethod
    def _record(table: str, entity: Any) -> Record:
        return Record(
            table,
            entity["PartitionKey"],
            entity["RowKey"],
            json.loads(entity[DOCUMENT]),
            entity.metadata["etag"],
        )

    def get(self, table: str, partition: str, row: str) -> Record | None:
        try:
            return self._record(table, self._table(table).get_entity(partition, row))
        except ResourceNotFoundError:
            return None

    def insert(self, table: str, partition: str, row: str, data: dict[str, Any]) -> Record:
        entity = {"PartitionKey": partition, "RowKey": row, DOCUMENT: json.dumps(data)}
        try:
            metadata = self._table(table).create_entity(entity)
        except ResourceExistsError:
            raise ConflictError(f"{table}/{partition}/{row} exists") from None
        return Record(table, partition, row, _copy(data), metadata["etag"])

    def replace(self, record: Record, data: dict[str, Any]) -> Record:
        entity = {
            "PartitionKey": record.partition,
            "RowKey": record.row,
            DOCUMENT: json.dumps(data),
        }
        try:
            metadata = self._table(record.table).update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=record.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConflictError(
                f"{record.table}/{record.partition}/{record.row} changed since it was read"
            ) from None
        return Record(record.table, record.partition, record.row, _copy(data), metadata["etag"])

    def query(self, table: str, partition: str | None = None) -> list[Record]:
        client = self._table(table)
        if partition is None:
            entities = client.list_entities()
        else:
            entities = client.query_entities(
                "PartitionKey eq @partition", parameters={"partition": partition}
            )
        return sorted(
            (self._record(table, e) for e in entities), key=lambda r: (r.partition, r.row)
        )
