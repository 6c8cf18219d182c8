"""The app's settings, typed and read once from the environment (app settings in Azure,
local.settings.json locally); every missing or bad setting is named in one error."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tenancy import contracts
from tenancy.errors import ConfigError, ConfigIssue
from tenancy.load import parse_platform_spec
from tenancy.spec import PlatformSpec

STATE_CONNECTION = contracts.SETTING_STATE_CONNECTION
ADAPTER = contracts.SETTING_ADAPTER
WEBHOOK_SECRET = contracts.SETTING_WEBHOOK_SECRET
ADAPTERS = ("azure", "local")
# The proof that identity headers came from the platform (blueprints/identity.py).
AUTH_ENABLED = contracts.SETTING_AUTH_ENABLED


@dataclass(frozen=True)
class Settings:
    stack: str
    spec: PlatformSpec
    adapter: Literal["azure", "local"]
    state_connection: str | None  # a connection string (Azurite), or None: the identity
    storage_account: str | None
    webhook_secret: str | None
    auth_enabled: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        issues: list[ConfigIssue] = []
        stack = env.get(contracts.SETTING_STACK, "")
        if not stack:
            issues.append(ConfigIssue(contracts.SETTING_STACK, "missing"))
        adapter = env.get(ADAPTER, "azure")
        if adapter not in ADAPTERS:
            issues.append(
                ConfigIssue(ADAPTER, f"must be one of {', '.join(ADAPTERS)}, got {adapter!r}")
            )
        connection = env.get(STATE_CONNECTION) or None
        account = env.get(contracts.SETTING_STORAGE_ACCOUNT) or None
        if not connection and not account:
            issues.append(
                ConfigIssue(STATE_CONNECTION, f"set it, or {contracts.SETTING_STORAGE_ACCOUNT}")
            )
        spec = None
        raw = env.get(contracts.SETTING_PLATFORM_SPEC, "")
        try:
            spec = parse_platform_spec(json.loads(raw), source=contracts.SETTING_PLATFORM_SPEC)
        except json.JSONDecodeError:
            issues.append(ConfigIssue(contracts.SETTING_PLATFORM_SPEC, "missing or not JSON"))
        except ConfigError as error:
            issues.extend(
                ConfigIssue(f"{contracts.SETTING_PLATFORM_SPEC}: {i.path}", i.message)
                for i in error.issues
            )
        if issues or spec is None:
            raise ConfigError("app settings", issues)
        return cls(
            stack,
            spec,
            adapter,  # type: ignore[arg-type]
            connection,
            account,
            env.get(WEBHOOK_SECRET) or None,
            auth_enabled=env.get(AUTH_ENABLED, "").lower() == "true",
        )
