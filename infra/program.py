"""The Pulumi program: the platform spec in, the whole environment out.

``pulumi up`` runs :func:`main` (through ``infra/__main__.py``); ``mlops plan`` and the tests
run :func:`deploy` under ``pulumi.runtime.set_mocks`` with the same spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import authorization

from infra.alerting import Alerting, AlertingArgs
from infra.automation import Automation, AutomationArgs
from infra.delivery import Delivery, DeliveryArgs
from infra.expected_state import ExpectedState, ExpectedStateArgs, PlanCapture
from infra.gateway import (
    Route,
    TenantGateway,
    TenantGatewayArgs,
    TenantRoute,
    timeout_seconds,
)
from infra.genai import GenAIGateway, GenAIGatewayArgs
from infra.package import DIST_PACKAGE
from infra.shared import SharedServices, SharedServicesArgs
from infra.stamp import Stamp, stamp_args_for_pool, stamp_args_for_tenant
from tenancy import naming
from tenancy.errors import ConfigError, ConfigIssue
from tenancy.load import PROJECT, parse_platform_spec, resolved_spec
from tenancy.placement import Placement, read_record, resolve
from tenancy.spec import PlatformSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Platform:
    """What the program built, for exports and for tests."""

    shared: SharedServices
    automation: Automation
    alerting: Alerting
    gateway: TenantGateway
    stamps: dict[str, Stamp] = field(default_factory=dict)


def main() -> Platform:
    """Entry point under `pulumi up`: read and validate the stack's spec, then deploy."""
    raw = pulumi.Config(PROJECT).require_object("platform")
    spec = parse_platform_spec(raw, source=f"stack '{pulumi.get_stack()}'")
    spec = resolved_spec(spec, PROJECT_ROOT, pulumi.get_stack())
    package = _built_package(PROJECT_ROOT)
    if package is None:
        # `pulumi up` without code would create a Function App whose Event Grid
        # subscriptions cannot find their functions: refuse before anything is created.
        raise ConfigError(
            "function package",
            [ConfigIssue(str(DIST_PACKAGE), "missing: run `make package` before `pulumi up`")],
        )
    return deploy(spec, stack=pulumi.get_stack(), package=package)


def _built_package(project_root: Path) -> Path | None:
    path = project_root / DIST_PACKAGE
    return path if path.is_file() else None


def deploy(
    spec: PlatformSpec,
    *,
    stack: str,
    project_root: Path = PROJECT_ROOT,
    today: date | None = None,
    package: Path | None = None,
    placement: Placement | None = None,
) -> Platform:
    """The environment ``spec`` describes. ``today`` (default: the UTC date now) is when
    this `pulumi up` runs: time-bound inputs such as budget start dates derive from it.
    ``package`` is the Function App's zip (default: the one `make package` wrote, if any).
    ``placement``: where each stamp goes (default: tenancy.placement over the stack's
    record, ``Pulumi.<stack>.placement.json``). ``spec`` is resolved first (its pools split,
    its stamps placed: tenancy.placement.resolve; a resolved spec comes through as it is)."""
    resolved = resolve(spec, read_record(project_root, stack))
    spec = resolved.spec
    # Caught from here on: every governed resource the program makes (infra.expected_state).
    capture = PlanCapture()
    capture.install()
    client = authorization.get_client_config_output()
    subscription_id = client.subscription_id
    entra_tenant = client.tenant_id
    shared = SharedServices("platform", SharedServicesArgs(spec, subscription_id, entra_tenant))
    automation = Automation(
        "automation",
        AutomationArgs(
            spec,
            stack,
            shared,
            subscription_id,
            client.object_id,
            entra_tenant,
            package if package is not None else _built_package(project_root),
        ),
    )
    alerting = Alerting(
        "alerting", AlertingArgs(spec, shared, automation.default_host_name, entra_tenant)
    )
    gateway = TenantGateway("gateway", TenantGatewayArgs(spec, shared))
    common: dict[str, Any] = {
        "spec": spec,
        "shared": shared,
        "automation": automation,
        "alerting": alerting,
        "gateway_principal_id": gateway.principal_id,
        "entra_tenant_id": entra_tenant,
        "today": today or datetime.now(UTC).date(),
    }
    platform = Platform(shared, automation, alerting, gateway)
    placed = placement or resolved.placement
    where = _Targets(placed, subscription_id)
    for tenant in spec.dedicated_tenants:
        key = naming.stamp_key("tenant", tenant.id)
        args = stamp_args_for_tenant(tenant, **common, **where.args(key))
        platform.stamps[key] = Stamp(key, args, where.options(key))
    for pool in spec.pools:
        key = naming.stamp_key("pool", pool.id)
        args = stamp_args_for_pool(pool, **common, **where.args(key))
        platform.stamps[key] = Stamp(key, args, where.options(key))
    routes = _route_tenants(spec, platform)
    _route_genai_tenants(spec, platform, shared, routes)
    if spec.delivery.github_repository:
        Delivery(
            "delivery",
            DeliveryArgs(spec, shared, subscription_id, spec.delivery.github_repository),
        )
    # Last: the document holds every governed resource the program made.
    ExpectedState(
        "expected-state",
        ExpectedStateArgs(spec, shared, capture, client.object_id, subscription_id),
    )
    _export(platform)
    return platform


class _Targets:
    """Per placement target: the stamps' subscription, region and provider (an explicit
    azure-native provider for each subscription other than the stack's own)."""

    def __init__(self, placement: Placement, own_subscription: pulumi.Output[str]) -> None:
        self.placement = placement
        self.own_subscription = own_subscription
        self.providers: dict[str, azure_native.Provider] = {}

    def args(self, stamp: str) -> dict[str, Any]:
        target = self.placement.target_of(stamp)
        return {
            "subscription_id": target.subscription_id or self.own_subscription,
            "location": target.region,
        }

    def options(self, stamp: str) -> pulumi.ResourceOptions | None:
        target = self.placement.target_of(stamp)
        if target.subscription_id is None:
            return None
        if target.id not in self.providers:
            self.providers[target.id] = azure_native.Provider(
                f"provider-{target.id}",
                subscription_id=target.subscription_id,
                location=target.region,
            )
        return pulumi.ResourceOptions(providers={"azure-native": self.providers[target.id]})


def _route_tenants(spec: PlatformSpec, platform: Platform) -> dict[str, TenantRoute]:
    """Each tenant with an online endpoint routed; returns the routes by tenant."""
    backends: dict[str, str] = {}
    routes: dict[str, TenantRoute] = {}
    for tenant in spec.tenants:
        stamp = platform.stamps[tenant.stamp_key]
        if stamp.scoring_uri is None:
            continue  # no online endpoint: the tenant scores in batch only
        if tenant.stamp_key not in backends:
            backends[tenant.stamp_key] = platform.gateway.add_backend(
                tenant.stamp_key, stamp.scoring_uri
            )
        serving = tenant if tenant.tier == "dedicated" else spec.pool(tenant.pool or "")
        online = serving.endpoints.online
        routes[tenant.id] = platform.gateway.add_tenant(
            Route(
                tenant=tenant,
                backend_id=backends[tenant.stamp_key],
                pooled=tenant.tier == "pooled",
                timeout_seconds=timeout_seconds(online.request_timeout_ms),
                endpoint=spec.online_endpoint_name(tenant.id),
                labels_container=stamp.labels_container,
                quality=spec.quality,
            )
        )
    return routes


def _route_genai_tenants(
    spec: PlatformSpec,
    platform: Platform,
    shared: SharedServices,
    routes: dict[str, TenantRoute],
) -> None:
    """The chat API, with a backend per stamp account and a product per genai tenant."""
    tenants = [t for t in spec.tenants if t.genai is not None]
    if not tenants:
        return
    gateway = platform.gateway
    genai = GenAIGateway(
        "genai-gateway",
        GenAIGatewayArgs(spec, shared, gateway.service.name, gateway.principal_id),
        pulumi.ResourceOptions(parent=gateway),
    )
    backends: dict[str, str] = {}
    for tenant in tenants:
        stamp = platform.stamps[tenant.stamp_key]
        if stamp.genai is None:  # unreachable: a stamp has an account for its genai tenants
            raise ValueError(f"stamp {tenant.stamp_key} has no AI Services account")
        if tenant.stamp_key not in backends:
            backends[tenant.stamp_key] = genai.add_account(
                tenant.stamp_key, stamp.genai, stamp.scope_key, stamp.subscription_id
            )
        route = routes.get(tenant.id)
        genai.add_tenant(
            tenant, backends[tenant.stamp_key], route.budget_stop if route else None
        )


def _export(platform: Platform) -> None:
    pulumi.export("gatewayUrl", platform.gateway.service.gateway_url)
    pulumi.export("functionAppHostName", platform.automation.default_host_name)
    pulumi.export(
        "stamps",
        {
            key: {"workspace": stamp.workspace.name, "scoringUri": stamp.scoring_uri}
            for key, stamp in platform.stamps.items()
        },
    )
