"""Physical Azure names, derived deterministically from the spec.

Names that must be unique across Azure (storage accounts, key vaults, container registries,
the gateway, the function app, Azure ML registries, endpoint host names) carry the spec's
``installation`` id, drawn once per installation: a hash of prefix and environment alone
gave two installations with the default prefix the same names (the review's W14). The
same spec always yields the same names (no random suffix at run time, so `pulumi up` is
repeatable and plans diff cleanly).

Key vaults also carry ``installation``; a destroyed vault keeps its name while it is
soft-deleted (purge protection), which ``key_vaults.create_mode: recover`` handles
(https://learn.microsoft.com/azure/key-vault/general/key-vault-recovery).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec imports these rules; names need only its environment's values
    from tenancy.spec import Environment

_NON_ALNUM = re.compile(r"[^a-z0-9]")


def _digest(*parts: str, length: int = 6) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def bounded(name: str, max_length: int, *, salt: str = "") -> str:
    """``name`` if it fits, else a prefix of it plus a short hash so it stays unique."""
    if len(name) <= max_length:
        return name
    suffix = _digest(name, salt, length=5)
    head = name[: max_length - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


#: The scope of the environment's shared resources (gateway, automation, registry).
PLATFORM_SCOPE = "platform"


def stamp_key(kind: str, stamp_id: str) -> str:
    """Logical name of a stamp: ``tenant-<id>`` or ``pool-<id>``."""
    return f"{kind}-{stamp_id}"


def resource_group(prefix: str, env: Environment, scope: str) -> str:
    return bounded(f"rg-{prefix}-{env.value}-{scope}", 90)


def workspace(env: Environment, scope: str) -> str:
    # Workspace names: 3-33 characters, unique within the resource group.
    return bounded(f"mlw-{scope}-{env.short}", 33)


def _compact(prefix: str, env: Environment, scope: str) -> str:
    return _NON_ALNUM.sub("", f"{prefix}{env.short}{scope}")


def storage_account(prefix: str, env: Environment, scope: str, installation: str) -> str:
    # 3-24 lowercase letters and digits, globally unique.
    digest = _digest(prefix, installation, env.value, scope)
    return f"st{_compact(prefix, env, scope)[: 24 - 2 - len(digest)]}{digest}"


def container_registry(prefix: str, env: Environment, scope: str, installation: str) -> str:
    # 5-50 letters and digits, globally unique.
    digest = _digest(prefix, installation, env.value, scope)
    return f"cr{_compact(prefix, env, scope)[: 50 - 2 - len(digest)]}{digest}"


def key_vault(prefix: str, env: Environment, scope: str, installation: str) -> str:
    # 3-24 letters, digits and single dashes, starting with a letter, globally unique.
    digest = _digest(prefix, installation, env.value, scope, length=5)
    body = re.sub(r"-+", "-", f"kv-{scope}-{env.short}")[: 24 - len(digest) - 1].rstrip("-")
    return f"{body}-{digest}"


def ml_registry(prefix: str, env: Environment, installation: str) -> str:
    # Azure ML registry names: 3-33 characters, letters, digits, dashes and underscores.
    return bounded(f"mlr-{prefix}-{env.value}-{installation}", 33)


def registry_model(tenant: str, model: str) -> str:
    """A tenant's model in the environment's Azure ML registry, which every tenant's models
    share: the tenant is part of the name, so no tenant's version takes another's place."""
    return f"{tenant}--{model}"


def ai_account(prefix: str, env: Environment, scope: str, installation: str) -> str:
    """An AI Services account's name, which is also its custom subdomain
    (<name>.openai.azure.com): globally unique, 2-64 letters, digits and dashes. Entra
    authentication needs the custom subdomain."""
    digest = _digest(prefix, installation, env.value, scope, "ai")
    return f"{bounded(f'ai-{prefix}-{env.short}-{scope}', 64 - len(digest) - 1)}-{digest}"


def ai_deployment(tenant: str, deployment: str) -> str:
    """A tenant's model deployment in its stamp's AI Services account: the tenant is part of
    the name, so pooled tenants' deployments (and their token capacity) never mix."""
    return bounded(f"{tenant}-{deployment}", 64)


def function_app(prefix: str, env: Environment, installation: str) -> str:
    # The function app's host name is globally unique: <name>.azurewebsites.net.
    return f"func-{prefix}-{env.value}-{_digest(prefix, installation, env.value, 'func')}"


def api_management(prefix: str, env: Environment, installation: str) -> str:
    # <name>.azure-api.net is globally unique; 1-50 letters, digits and dashes.
    return f"apim-{prefix}-{env.value}-{_digest(prefix, installation, env.value, 'apim')}"


def online_endpoint(prefix: str, env: Environment, scope_id: str, installation: str) -> str:
    """Default online endpoint name; it becomes <name>.<region>.inference.ml.azure.com, so it
    is unique per region and carries the installation. May break the 32-character rule for
    long ids: the spec's relational check reports that and asks for an explicit name."""
    return f"{prefix}-{scope_id}-{env.short}-{installation}"


def batch_endpoint(prefix: str, env: Environment, scope_id: str, installation: str) -> str:
    # Batch endpoints share the regional host name space of online endpoints.
    return f"{prefix}-{scope_id}-{env.short}-{installation}-batch"
