"""The domain objects the triggers use, built once per worker from the settings."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TypeVar

from settings import ADAPTER, Settings

from adapters.table_store import TableStore
from automation.audit import LiveInventory, PolicyAudit
from automation.costs import PooledBudgets
from automation.drift_watch import DriftSource, DriftWatcher
from automation.port import CostSource, PlatformPort, QualitySource, UsageSource
from automation.quality_watch import QualityWatcher
from automation.registry_events import RegistrationHandler
from automation.runner import RolloutRunner
from automation.store import StateStore
from tenancy.errors import ConfigError, ConfigIssue
from tenancy.spec import PlatformSpec

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    store: StateStore
    port: PlatformPort
    runner: RolloutRunner
    registration: RegistrationHandler
    drift: DriftWatcher
    audit: PolicyAudit
    inventory: LiveInventory
    quality: QualityWatcher
    pooled_budgets: PooledBudgets
    clock: Callable[[], datetime] = utc_now


def compose(
    settings: Settings,
    store: StateStore,
    port: PlatformPort,
    clock: Callable[[], datetime] = utc_now,
    *,
    drift_source: DriftSource | None = None,
    inventory: LiveInventory | None = None,
    quality_source: QualitySource | None = None,
    usage_source: UsageSource | None = None,
    cost_source: CostSource | None = None,
) -> Services:
    """The domain objects over one store and one platform (adapters implement the drift
    source and the live inventory beside the port; tests may give their own)."""
    labelled: QualitySource = quality_source or port  # type: ignore[assignment]
    runner = RolloutRunner(settings.spec, store, port, clock, quality=labelled)
    registration = RegistrationHandler(settings.spec, store, port, runner, clock)
    source: DriftSource = drift_source or port  # type: ignore[assignment]
    # The Azure adapter keeps large tenants' Azure ML model monitors; the embedded platform
    # has none (its stacks keep drift in the Function).
    ensure_monitor = getattr(port, "ensure_model_monitor", None)
    drift = DriftWatcher(
        settings.spec, store, port, source, clock, ensure_monitor=ensure_monitor
    )
    audit = PolicyAudit(settings.spec, store, port.notify, clock)
    live: LiveInventory = inventory or port  # type: ignore[assignment]
    quality = QualityWatcher(settings.spec, store, port, labelled, clock, drift=drift)
    usage: UsageSource = usage_source or port  # type: ignore[assignment]
    costs: CostSource = cost_source or port  # type: ignore[assignment]
    budgets = PooledBudgets(settings.spec, store, port, clock, usage=usage, costs=costs)
    return Services(
        settings, store, port, runner, registration, drift, audit, live, quality, budgets, clock
    )


def each_online_tenant(
    spec: PlatformSpec, check: Callable[[str], T], what: str, logger: logging.Logger
) -> Iterator[tuple[str, T]]:
    """``check`` of every tenant with an online endpoint; one tenant's failure is logged and
    never stops the others' checks."""
    for tenant in spec.tenants:
        if not tenant.endpoints.online.enabled:
            continue
        try:
            yield tenant.id, check(tenant.id)
        except Exception:
            logger.exception("%s of %s failed", what, tenant.id)


def _store(settings: Settings) -> StateStore:
    if settings.state_connection:
        return TableStore.from_connection_string(settings.state_connection)
    return TableStore.for_account(str(settings.storage_account))


#: The embedded platform's adapter, found by name where it runs: the Function App package
#: for Azure follows the app's imports, and it must not carry the embedded platform.
LOCAL_ADAPTER = "adapters.local"


def _port(settings: Settings) -> PlatformPort:
    if settings.adapter == "azure":
        from adapters.azure import AzurePlatform  # noqa: PLC0415 - azure-ai-ml loads slowly

        return AzurePlatform.from_settings(settings)
    try:
        local = importlib.import_module(LOCAL_ADAPTER)
    except ModuleNotFoundError as error:
        raise ConfigError(
            "app settings",
            [ConfigIssue(ADAPTER, f"'local' runs only on the embedded platform ({error})")],
        ) from None
    port: PlatformPort = local.LocalPlatform.from_settings(settings)
    return port


@cache
def services() -> Services:
    """Built on first use in a worker, then shared by every invocation of that worker."""
    settings = Settings.from_env(os.environ)
    return compose(settings, _store(settings), _port(settings))
