"""The embedded platform's stand-in for App Service authentication in front of the Functions
host.

On Azure, App Service authentication validates the caller's Entra token, drops every
identity header the caller sent, and writes ``x-ms-client-principal`` from the token's
claims. It also sets ``WEBSITE_AUTH_ENABLED`` so that the app knows the header came from the
platform (functions/blueprints/identity.py). This module does the same on one machine.
The identity provider is the machine's owner: tokens are JWTs signed with a key kept in the
platform's data directory, which only the owner can read (``mlops approve`` mints them). Each
token is checked for its signature, its expiry and its audience, as App Service checks an
Entra token's.

The route names no provider, so a request without a token passes through with no principal.
That is App Service's ``AllowAnonymous``. The functions that need a caller refuse it (401), and
the MLflow webhook authenticates with its own HMAC signature.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from tenancy.errors import AuthenticationError

ALGORITHM = "HS256"
PRINCIPAL_HEADER = "x-ms-client-principal"
# Every header the module writes: a caller may never send one of these itself.
_MODULE_HEADER_PREFIXES = ("x-ms-client-principal", "x-ms-token-")
ROLE_TYPE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
LOCAL_CLIENT_APP = "tenant-mlops-cli"


def mint(key: str, claims: Mapping[str, Any], lifetime_s: int = 300) -> str:
    """A token from the local identity provider (the data directory's key)."""
    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + lifetime_s}, key, ALGORITHM)


class SignInModule:
    """Validates bearer tokens and writes the principal header, as App Service does."""

    def __init__(self, key: str, audiences: Iterable[str]) -> None:
        self._key = key
        self.audiences = list(audiences)

    def headers_for(self, incoming: Mapping[str, str]) -> dict[str, str]:
        """The headers the app sees. Identity headers the caller sent are dropped, and a valid
        bearer token becomes ``x-ms-client-principal``. Raises AuthenticationError for a token
        that fails validation (the host answers 401 and never calls the function)."""
        headers = {
            name: value
            for name, value in incoming.items()
            if not name.lower().startswith(_MODULE_HEADER_PREFIXES)
        }
        authorization = headers.get("authorization", "")
        if not authorization.lower().startswith("bearer "):
            return headers
        headers[PRINCIPAL_HEADER] = self._principal(authorization[7:].strip())
        return headers

    def _principal(self, token: str) -> str:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audiences,
                options={"require": ["exp", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise AuthenticationError(f"the bearer token was refused: {error}") from None
        return _encode_principal(claims)


def _encode_principal(claims: Mapping[str, Any]) -> str:
    """Claims in App Service's shape: one entry per value, roles under the role claim type."""
    entries = []
    for kind, value in claims.items():
        typ = ROLE_TYPE if kind == "roles" else kind
        for one in value if isinstance(value, list) else [value]:
            entries.append({"typ": typ, "val": str(one)})
    document = {"auth_typ": "aad", "claims": entries, "name_typ": "name", "role_typ": ROLE_TYPE}
    return base64.b64encode(json.dumps(document).encode()).decode()
