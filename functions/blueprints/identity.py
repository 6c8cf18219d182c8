"""Who is calling: the principal that App Service authentication (Entra) signed in.

App Service authentication checks the caller's Entra token before the request reaches the
app. It then passes the token's claims on in ``x-ms-client-principal``, base64-encoded JSON.
The header can be trusted only while that module runs. The docs say "External requests
aren't allowed to set these headers" on an app that has the module enabled
(https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities).
Without the module, anyone can send the header with any groups in it. So the app reads the
header only when the platform proves the module is on. App Service sets the read-only
``WEBSITE_AUTH_ENABLED`` in the app's environment when authentication is enabled
(https://learn.microsoft.com/azure/app-service/reference-app-settings#authentication--authorization).
The settings read that variable once, as ``Settings.auth_enabled``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from tenancy import contracts
from tenancy.errors import AuthenticationError, PermissionDeniedError

PRINCIPAL_HEADER = "x-ms-client-principal"
# Azure Monitor's action groups get their secure-webhook tokens as this application (the
# "AZNS AAD Webhook" service principal), holding this app role of the webhook's Entra
# application (https://learn.microsoft.com/azure/azure-monitor/alerts/action-groups#secure-webhook).
ACTION_GROUP_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
ACTION_GROUP_ROLE = "ActionGroupsSecureWebhook"
# Claim types as Entra writes them (v1 and v2 tokens). The principal's role_typ and name_typ
# fields name the role and name claim types App Service used.
_ROLE_TYPES = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_NAME_TYPES = ("name", "preferred_username", "upn")
_APPLICATION_TYPES = ("azp", "appid")


@dataclass(frozen=True)
class Principal:
    """The claims of one signed-in caller, as App Service authentication passed them."""

    claims: tuple[tuple[str, str], ...]
    role_type: str = "roles"
    name_type: str = "name"

    def values(self, *types: str) -> list[str]:
        return [value for kind, value in self.claims if kind in types]

    @property
    def name(self) -> str:
        names = self.values(self.name_type, *_NAME_TYPES)
        return names[0] if names else "unknown"

    @property
    def groups(self) -> set[str]:
        return set(self.values("groups"))

    @property
    def roles(self) -> set[str]:
        return set(self.values(self.role_type, *_ROLE_TYPES))

    @property
    def audiences(self) -> set[str]:
        return set(self.values("aud"))

    @property
    def application(self) -> str:
        """The client application the token was issued to (azp in v2, appid in v1)."""
        found = self.values(*_APPLICATION_TYPES)
        return found[0] if found else ""

    @property
    def has_group_overage(self) -> bool:
        """Entra leaves out the groups claim when a user is in too many groups and points to
        Graph instead (_claim_names): group checks could then miss real membership."""
        return any("groups" in value for value in self.values("_claim_names"))


def signed_in(req: func.HttpRequest, auth_enabled: bool) -> Principal:
    """The caller App Service authentication signed in. Raises AuthenticationError when
    there is no principal, or when the platform gives no proof that it set the header."""
    encoded = req.headers.get(PRINCIPAL_HEADER)
    if not auth_enabled:
        # Refused whether the header is present or not: without the module it is forgeable.
        raise AuthenticationError(
            "App Service authentication is not enabled on this app, so no identity header "
            "can be trusted (WEBSITE_AUTH_ENABLED is not set)"
        )
    if not encoded:
        raise AuthenticationError("sign in: the request carries no authenticated principal")
    try:
        document: dict[str, Any] = json.loads(base64.b64decode(encoded, validate=True))
        claims = tuple(
            (str(c["typ"]), str(c["val"])) for c in document.get("claims") or [] if "typ" in c
        )
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        raise AuthenticationError("the authenticated principal header is malformed") from None
    return Principal(
        claims,
        role_type=str(document.get("role_typ") or "roles"),
        name_type=str(document.get("name_typ") or "name"),
    )


def require_audience(principal: Principal, app_id: str) -> None:
    """The token was issued for the automation's application (App Service checks this too:
    the app does not rely on the allowed audiences being configured right)."""
    allowed = contracts.entra_audiences(app_id)
    if not principal.audiences & set(allowed):
        raise AuthenticationError(
            f"the token is not for this app: audience {sorted(principal.audiences)} is not "
            f"one of {allowed}"
        )


def require_action_group(principal: Principal, app_id: str) -> None:
    """Only Azure Monitor's action group may send budget alerts: its token is for the
    automation's application, issued to the action groups' application, with the role."""
    require_audience(principal, app_id)
    if principal.application != ACTION_GROUP_APP_ID:
        raise PermissionDeniedError(
            f"budget alerts come only from Azure Monitor action groups (application "
            f"{ACTION_GROUP_APP_ID}), not from {principal.application or 'an unnamed client'}"
        )
    if ACTION_GROUP_ROLE not in principal.roles:
        raise PermissionDeniedError(
            f"the action group's token lacks the {ACTION_GROUP_ROLE} role of the app"
        )
