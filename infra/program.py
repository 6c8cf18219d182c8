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
from infra.front_door import FrontDoor, FrontDoorArgs, gateway_regions
from infra.gateway import (
    Route,
    ScoringRoutes,
    TenantGateway,
    TenantGatewayArgs,
    TenantRoute,
    timeout_seconds,
)
from infra.genai import GenAIGateway, GenAIGatewayArgs, GenAIRoutes
from infra.package import DIST_PACKAGE
from infra.platform_refs import OUTPUT, PlatformRefs
from infra.shared import SharedServices, SharedServicesArgs
from infra.stamp import Stamp, stamp_args_for_pool, stamp_args_for_tenant
from tenancy import naming
from tenancy.errors import ConfigError, ConfigIssue
from tenancy.load import PROJECT, load_stack, parse_platform_spec, resolved_spec, shard_of
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
    refs: PlatformRefs
    stamps: dict[str, Stamp] = field(default_factory=dict)


@dataclass
class Shard:
    """What a shard stack built: its target's stamps, over the shared stack's refs."""

    target: str
    refs: PlatformRefs
    stamps: dict[str, Stamp] = field(default_factory=dict)


def main() -> Platform | Shard:
    """Entry point under `pulumi up`: read and validate the stack's spec, then deploy.
    A shard stack's config names its environment and target (``tenant-mlops:shard``)
    and reads the environment's spec file."""
    config = pulumi.Config(PROJECT)
    shard = shard_of(pulumi.get_stack(), PROJECT_ROOT)  # the stack file's tenant-mlops:shard
    if shard is not None:
        environment, target = shard
        spec = load_stack(environment, PROJECT_ROOT)
        return deploy_shard(spec, environment=environment, target=target)
    raw = config.require_object("platform")
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
    its stamps placed: tenancy.placement.resolve; a resolved spec comes through as it is).

    With ``placement.shard_stacks`` this is the environment's shared stack: the platform,
    with its refs as the ``platform`` output, and no stamp (each target's are a shard
    stack's: :func:`deploy_shard`)."""
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
    front_door = _front_door(spec, shared)
    if front_door is not None:
        front_door.guard(gateway.service.name, gateway)
    chat = _chat_api(spec, shared, gateway)
    refs = _refs(shared, automation, alerting, gateway, chat)
    platform = Platform(shared, automation, alerting, gateway, refs)
    if spec.placement.shard_stacks:
        pulumi.export(OUTPUT, refs.exported())
    else:
        stamps = _Stamps(spec, refs, entra_tenant, today, subscription_id)
        scoring = gateway.routes(refs.gateway)
        chats = chat.routes(refs.gateway) if chat else None
        placed = placement or resolved.placement
        platform.stamps = stamps.deploy(list(placed.assignments), placed, scoring, chats)
    if spec.delivery.github_repository:
        Delivery(
            "delivery",
            DeliveryArgs(spec, shared, subscription_id, spec.delivery.github_repository),
        )
    # Last: the document holds every governed resource the program made.
    _leave_expected_state(spec, capture, client, refs, storage_id=shared.storage.id)
    pulumi.export("gatewayUrl", gateway.service.gateway_url)
    if front_door is not None:  # stamps in several regions: the tenants' one entry
        pulumi.export("frontDoorHost", front_door.host_name)
    pulumi.export("functionAppHostName", automation.default_host_name)
    _export_stamps(platform.stamps)
    return platform


def deploy_shard(
    spec: PlatformSpec,
    *,
    environment: str,
    target: str,
    project_root: Path = PROJECT_ROOT,
    today: date | None = None,
) -> Shard:
    """One shard stack (``<environment>.<target>``) of an environment with
    ``placement.shard_stacks``: the stamps placed on ``target``, their tenants' routes on
    the shared gateway, and their expected state, over what the environment's shared stack
    exported (a ``StackReference``). Nothing of another shard is read or planned."""
    resolved = resolve(spec, read_record(project_root, environment))
    spec = resolved.spec
    if not spec.placement.shard_stacks:
        raise ConfigError.single(
            f"stack '{environment}'", "placement.shard_stacks", "is off: there are no shards"
        )
    if target not in resolved.placement.targets:
        known = ", ".join(resolved.placement.targets)
        raise ConfigError.single(
            f"stack '{environment}'", "placement.targets", f"no target '{target}' ({known})"
        )
    keys = [k for k, t in resolved.placement.assignments.items() if t == target]
    # The environment as this shard holds it: its tenants and pools only (everything else
    # it reads of the spec is the environment's), so a shard's work follows its own size.
    spec = spec.restricted_to(keys)
    capture = PlanCapture()
    capture.install()
    client = authorization.get_client_config_output()
    reference = pulumi.StackReference(shared_stack_name(environment))
    refs = PlatformRefs.from_output(spec, reference.get_output(OUTPUT))
    holder = ShardRoutes("gateway", target)
    stamps = _Stamps(spec, refs, client.tenant_id, today, client.subscription_id)
    scoring = ScoringRoutes("gateway", refs.gateway, holder)
    chats = GenAIRoutes("genai-gateway", refs.gateway, holder)
    shard = Shard(target, refs)
    shard.stamps = stamps.deploy(keys, resolved.placement, scoring, chats)
    _leave_expected_state(spec, capture, client, refs, storage_id=None, shard=target)
    _export_stamps(shard.stamps)
    return shard


def _leave_expected_state(
    spec: PlatformSpec,
    capture: PlanCapture,
    client: Any,
    refs: PlatformRefs,
    *,
    storage_id: pulumi.Input[str] | None,
    shard: str | None = None,
) -> ExpectedState:
    """The stack's expected-state document in the platform account (a shard's its own;
    ``storage_id``: where the deployer is granted writing, by the shared stack only)."""
    return ExpectedState(
        "expected-state",
        ExpectedStateArgs(
            spec,
            capture,
            client.object_id,
            client.subscription_id,
            refs.storage_account_name,
            refs.storage_blob_endpoint,
            storage_id,
            shard=shard,
        ),
    )


def shared_stack_name(environment: str) -> str:
    """The fully qualified name a shard's ``StackReference`` gives its shared stack
    (``<organization>/<project>/<stack>``; a self-managed backend's organization is
    ``organization``)."""
    return f"{pulumi.get_organization() or 'organization'}/{PROJECT}/{environment}"


class ShardRoutes(pulumi.ComponentResource):
    """Holds a shard's routes on the shared gateway (the gateway's own children in a
    one-stack environment)."""

    def __init__(self, name: str, target: str) -> None:
        super().__init__("tenant-mlops:gateway:ShardRoutes", name, {"stamp": "platform"}, None)
        self.register_outputs({"target": target})


def _front_door(spec: PlatformSpec, shared: SharedServices) -> FrontDoor | None:
    """Front Door over the regional gateways, when stamps are in more than one region."""
    regions = gateway_regions(spec)
    if len(regions) < 2:
        return None
    service = naming.api_management(spec.prefix, spec.environment, spec.installation)
    return FrontDoor(
        "front-door",
        FrontDoorArgs(spec, shared.resource_group.name, service, regions, shared.tags),
    )


def _chat_api(
    spec: PlatformSpec, shared: SharedServices, gateway: TenantGateway
) -> GenAIGateway | None:
    """The chat API and its token metrics, when a tenant uses generative AI."""
    if not any(t.genai is not None for t in spec.tenants):
        return None
    return GenAIGateway(
        "genai-gateway",
        GenAIGatewayArgs(spec, shared, gateway.service.name, gateway.principal_id),
        pulumi.ResourceOptions(parent=gateway),
    )


def _refs(
    shared: SharedServices,
    automation: Automation,
    alerting: Alerting,
    gateway: TenantGateway,
    chat: GenAIGateway | None,
) -> PlatformRefs:
    return PlatformRefs(
        subscription_id=shared.subscription_id,
        resource_group_name=shared.resource_group.name,
        log_analytics_id=shared.log_analytics.id,
        app_insights_id=shared.app_insights.id,
        ml_registry_id=shared.ml_registry.id,
        ml_registry_name=shared.ml_registry.name,
        automation_principal_id=shared.automation_identity.principal_id,
        scorer_role_name=shared.scorer_role.name,
        operations_group_id=alerting.operations.id,
        automation_group_id=alerting.automation.id,
        storage_account_name=shared.storage.name,
        storage_blob_endpoint=shared.storage.primary_endpoints.blob,
        storage_id=shared.storage.id,
        function_app_id=automation.function_app.id,
        gateway=gateway.reference(chat.api.id if chat else None),
        serving_environment_id=shared.serving_environment_id,
        network=shared.network.reference() if shared.network else None,
        serving_ready=(shared.serving_environment,) if shared.serving_environment else (),
        code_ready=(automation.package_upload,) if automation.package_upload else (),
    )


class _Stamps:
    """Stamps and their tenants' routes, for the stamp keys a stack holds."""

    def __init__(
        self,
        spec: PlatformSpec,
        refs: PlatformRefs,
        entra_tenant: pulumi.Input[str],
        today: date | None,
        own_subscription: pulumi.Output[str],
    ) -> None:
        self.spec = spec
        self.common: dict[str, Any] = {
            "spec": spec,
            "platform": refs,
            "entra_tenant_id": entra_tenant,
            "today": today or datetime.now(UTC).date(),
        }
        self.own_subscription = own_subscription

    def deploy(
        self,
        keys: list[str],
        placement: Placement,
        scoring: ScoringRoutes,
        chats: GenAIRoutes | None,
    ) -> dict[str, Stamp]:
        where = _Targets(placement, self.own_subscription)
        spec, wanted = self.spec, set(keys)
        stamps: dict[str, Stamp] = {}
        for tenant in spec.dedicated_tenants:
            key = naming.stamp_key("tenant", tenant.id)
            if key in wanted:
                args = stamp_args_for_tenant(tenant, **self.common, **where.args(key))
                stamps[key] = Stamp(key, args, where.options(key))
        for pool in spec.pools:
            key = naming.stamp_key("pool", pool.id)
            if key in wanted:
                args = stamp_args_for_pool(pool, **self.common, **where.args(key))
                stamps[key] = Stamp(key, args, where.options(key))
        routes = _route_tenants(spec, stamps, scoring)
        if chats is not None:  # None: no tenant chats
            _route_genai_tenants(spec, stamps, chats, routes)
        return stamps


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


def _route_tenants(
    spec: PlatformSpec, stamps: dict[str, Stamp], scoring: ScoringRoutes
) -> dict[str, TenantRoute]:
    """Each tenant of these stamps with an online endpoint routed; returns the routes."""
    backends: dict[str, str] = {}
    routes: dict[str, TenantRoute] = {}
    for tenant in spec.tenants:
        stamp = stamps.get(tenant.stamp_key)
        if stamp is None or stamp.scoring_uri is None:
            continue  # another stack's stamp, or no online endpoint (batch only)
        if tenant.stamp_key not in backends:
            backends[tenant.stamp_key] = scoring.add_backend(tenant.stamp_key, stamp.scoring_uri)
        serving = tenant if tenant.tier == "dedicated" else spec.pool(tenant.pool or "")
        online = serving.endpoints.online
        routes[tenant.id] = scoring.add_tenant(
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
    stamps: dict[str, Stamp],
    chats: GenAIRoutes,
    routes: dict[str, TenantRoute],
) -> None:
    """A backend per stamp account and a product per genai tenant of these stamps."""
    backends: dict[str, str] = {}
    for tenant in spec.tenants:
        stamp = stamps.get(tenant.stamp_key)
        if tenant.genai is None or stamp is None:
            continue
        if stamp.genai is None:  # unreachable: a stamp has an account for its genai tenants
            raise ValueError(f"stamp {tenant.stamp_key} has no AI Services account")
        if tenant.stamp_key not in backends:
            backends[tenant.stamp_key] = chats.add_account(
                tenant.stamp_key, stamp.genai, stamp.scope_key, stamp.subscription_id
            )
        route = routes.get(tenant.id)
        chats.add_tenant(tenant, backends[tenant.stamp_key], route.budget_stop if route else None)


def _export_stamps(stamps: dict[str, Stamp]) -> None:
    pulumi.export(
        "stamps",
        {
            key: {"workspace": stamp.workspace.name, "scoringUri": stamp.scoring_uri}
            for key, stamp in stamps.items()
        },
    )
