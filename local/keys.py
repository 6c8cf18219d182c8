"""Tenant keys for the scoring gateway: a primary and a secondary per tenant, rotatable one
at a time (clients move to the other key first), stored only as SHA-256 digests, and
matched in constant time against every stored digest (no early exit that could time a
guess). The tenant is whoever owns the key; nothing in the request can say otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from automation.store import StateStore
from tenancy import contracts
from tenancy.errors import ConflictError, NotFoundError

TABLE = "keys"
Slot = Literal["primary", "secondary"]
SLOTS: tuple[Slot, ...] = ("primary", "secondary")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


class KeyRing:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._digests: dict[str, dict[str, str]] = {}
        self.reload()

    def reload(self) -> None:
        self._digests = {r.row: dict(r.data) for r in self.store.query(TABLE, "tenants")}

    def issue(self, tenant: str) -> dict[Slot, str]:
        """Both keys of a new tenant, returned once; only their digests are kept."""
        keys: dict[Slot, str] = {slot: new_key() for slot in SLOTS}
        try:
            self.store.insert(
                TABLE, "tenants", tenant, {slot: digest(k) for slot, k in keys.items()}
            )
        except ConflictError:
            raise ConflictError(f"tenant {tenant} has keys already: rotate them instead") from None
        self.reload()
        return keys

    def rotate(self, tenant: str, slot: Slot, actor: str = "platform") -> str:
        """A new key for ``slot``; the old one stops working now. Audited (never the key)."""
        record = self.store.get(TABLE, "tenants", tenant)
        if record is None:
            raise NotFoundError.for_item("tenant keys", tenant)
        key = new_key()
        self.store.replace(record, {**record.data, slot: digest(key)})
        self.reload()
        now = datetime.now(UTC)
        self.store.insert(
            contracts.TABLE_AUDIT,
            tenant,
            f"{now:%Y%m%dT%H%M%S%f}-{time.time_ns():020d}-key",
            {
                "at": now.isoformat(),
                "actor": actor,
                "tenant": tenant,
                "subject": f"key {slot}",
                "before": None,
                "after": None,
                "reason": f"{slot} key rotated",
                "correlation_id": secrets.token_hex(8),
            },
        )
        return key

    def tenant_of(self, presented: str) -> str | None:
        """The tenant owning ``presented``: every digest is compared, match or not."""
        if not presented:
            return None
        wanted = digest(presented)
        owner = None
        for tenant, slots in self._digests.items():
            for stored in slots.values():
                if hmac.compare_digest(stored, wanted):
                    owner = tenant
        return owner

    @property
    def tenants(self) -> Mapping[str, Mapping[str, str]]:
        return self._digests
