"""Request ids a tenant can send labels for: the ``x-request-id`` each score answers with.

An id says when it was issued and proves for whom, with no record kept anywhere::

    <issued: unix seconds, hex>-<nonce: 16 hex>-<mac: 32 hex>
    mac = HMAC-SHA256(key, "<tenant>:<issued>:<nonce>"), its first 16 bytes in hex

The gateway (the embedded one, or API Management's policy on Azure, which computes the same
HMAC in a policy expression) issues one per scored request; the collector stores it as the
request's correlation id; a label sent for it is accepted only when the MAC holds *for the
tenant whose key sent the label* and the id is within the label horizon. So a tenant cannot
label another tenant's requests (the MAC is for the other tenant), guess ids, or relabel
requests older than the horizon, and nothing has to be looked up or kept for it: ids survive
restarts, and checking one costs an HMAC. The key is the installation's, never a tenant's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

_ID = re.compile(r"^([0-9a-f]{1,12})-([0-9a-f]{16})-([0-9a-f]{32})$")
#: The signing key's size: HMAC-SHA256's block-size guidance.
KEY_BYTES = 32


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _mac(key: bytes, tenant: str, issued: str, nonce: str) -> str:
    message = f"{tenant}:{issued}:{nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:16].hex()


def issue(key: bytes, tenant: str, at: datetime, nonce: str | None = None) -> str:
    """A new request id for ``tenant`` at ``at``."""
    issued = format(int(at.timestamp()), "x")
    nonce = nonce or secrets.token_hex(8)
    return f"{issued}-{nonce}-{_mac(key, tenant, issued, nonce)}"


def issued_at(key: bytes, tenant: str, request_id: str) -> datetime | None:
    """When the id was issued, if it was issued for ``tenant`` with ``key``; else None."""
    match = _ID.match(request_id) if isinstance(request_id, str) else None
    if match is None:
        return None
    issued, nonce, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(key, tenant, issued, nonce)):
        return None
    return datetime.fromtimestamp(int(issued, 16), UTC)


def labellable(
    key: bytes, tenant: str, request_id: str, now: datetime, horizon: timedelta
) -> bool:
    """Whether ``tenant`` may label ``request_id`` now: theirs, issued, not too old."""
    issued = issued_at(key, tenant, request_id)
    # A little clock skew between gateways must not refuse a label sent right away.
    return issued is not None and issued - timedelta(minutes=5) <= now <= issued + horizon
