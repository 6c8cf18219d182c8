"""The automation's state in Azure Table storage (or Azurite) through azure-data-tables:
the ``StateStore`` of automation/store.py, each record one entity whose JSON document sits
under one property, written with the record's ETag (a stale write is a ConflictError)."""

from __future__ import annotations

import json
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from automation.store import DOCUMENT, Record, copy_document
from tenancy.errors import ConflictError, InvalidInputError


class TableStore:
    """Azure Table storage (or Azurite) through azure-data-tables.

    A store opened ``read_only`` (the reports' and `mlops audit`'s, signed in as an identity
    with Storage Table Data Reader) never creates a table: that role cannot
    (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage#storage-table-data-reader
    grants reads of tables and entities only), and a table nobody has written yet reads as
    empty.
    """

    def __init__(self, service: TableServiceClient, *, read_only: bool = False) -> None:
        self._service = service
        self._created: set[str] = set()
        self.read_only = read_only

    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, read_only: bool = False
    ) -> TableStore:
        return cls(
            TableServiceClient.from_connection_string(connection_string), read_only=read_only
        )

    @classmethod
    def for_account(cls, account: str, *, read_only: bool = False) -> TableStore:
        """The platform account's tables, with Entra (shared keys are off there)."""
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only on Azure

        endpoint = f"https://{account}.table.core.windows.net"
        service = TableServiceClient(endpoint=endpoint, credential=DefaultAzureCredential())
        return cls(service, read_only=read_only)

    def _table(self, name: str) -> Any:
        if name not in self._created and not self.read_only:
            self._service.create_table_if_not_exists(name)
            self._created.add(name)
        return self._service.get_table_client(name)

    def _writable(self, table: str) -> Any:
        if self.read_only:
            raise InvalidInputError(f"the state store is open read-only: {table} is not written")
        return self._table(table)

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
            metadata = self._writable(table).create_entity(entity)
        except ResourceExistsError:
            raise ConflictError(f"{table}/{partition}/{row} exists") from None
        return Record(table, partition, row, copy_document(data), metadata["etag"])

    def replace(self, record: Record, data: dict[str, Any]) -> Record:
        entity = {
            "PartitionKey": record.partition,
            "RowKey": record.row,
            DOCUMENT: json.dumps(data),
        }
        try:
            metadata = self._writable(record.table).update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=record.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConflictError(
                f"{record.table}/{record.partition}/{record.row} changed since it was read"
            ) from None
        copied = copy_document(data)
        return Record(record.table, record.partition, record.row, copied, metadata["etag"])

    def query(self, table: str, partition: str | None = None) -> list[Record]:
        client = self._table(table)
        if partition is None:
            entities = client.list_entities()
        else:
            entities = client.query_entities(
                "PartitionKey eq @partition", parameters={"partition": partition}
            )
        try:
            found = [self._record(table, e) for e in entities]
        except ResourceNotFoundError:  # read-only: a table nobody has written yet
            return []
        return sorted(found, key=lambda r: (r.partition, r.row))
