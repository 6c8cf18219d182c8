"""Azure's published limits (tenancy.limits) against what a stack's plan makes: endpoints,
deployments, storage accounts and workspaces counted per region and resource group, and
each online endpoint's load, from its tenants' declared quotas, against what one endpoint
takes. ``mlops plan`` reports every count (``capacity``); the rule refuses a plan over any.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from policies.core import MANDATORY, ML, Finding, Rule, Setting, Settings, Stack
from tenancy import contracts
from tenancy.limits import LIMITS, LOAD_KEYS, tenant_load
from tenancy.placement import Placement, place
from tenancy.spec import PlatformSpec

ONLINE_ENDPOINT = f"{ML}:OnlineEndpoint"
BATCH_ENDPOINT = f"{ML}:BatchEndpoint"
ONLINE_DEPLOYMENT = f"{ML}:OnlineDeployment"
BATCH_DEPLOYMENT = f"{ML}:BatchDeployment"
WORKSPACE = f"{ML}:Workspace"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
#: Deployments an online endpoint holds at its peak: blue, and green during a rollout.
DEPLOYMENTS_AT_PEAK = 2


@dataclass(frozen=True)
class Usage:
    key: str  # the limit's (tenancy.limits)
    resource: str
    region: str
    where: str  # the region, resource group, endpoint or deployment counted
    used: float
    limit: float
    doc: str
    subscription: str = ""
    urn: str = ""  # the endpoint or deployment counted, when one is

    @property
    def over(self) -> bool:
        return self.used > self.limit

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        del found["doc"], found["urn"]
        return found


def limits_of(spec: PlatformSpec) -> dict[str, float]:
    return {key: spec.capacity.limit(key) for key in LIMITS}


def endpoint_load(spec: PlatformSpec) -> dict[str, dict[str, float]]:
    """Per online endpoint, what its tenants may send at most by their quotas: requests a
    second, connections (concurrent requests) and MB a second (each request at the
    tenant's largest payload)."""
    load: dict[str, dict[str, float]] = {}
    for tenant in spec.tenants:
        name = spec.online_endpoint_name(tenant.id)
        found = load.setdefault(name, dict.fromkeys(LOAD_KEYS, 0.0))
        for key, value in tenant_load(tenant.quota).items():
            found[key] += value
    return {name: {k: round(v, 3) for k, v in values.items()} for name, values in load.items()}


def placement_of(spec: PlatformSpec) -> dict[str, str]:
    """Each owner tag (a dedicated tenant's id, ``pool:<id>``) to its stamp's target, as
    ``<subscription>|<region>`` (an empty subscription: the stack's own)."""
    return placement_tags(place(spec))


def placement_tags(placed: Placement) -> dict[str, str]:
    """:func:`placement_of` for a placement already made (one kept with the stack)."""
    found = {}
    for stamp, target_id in placed.assignments.items():
        target = placed.targets[target_id]
        kind, _, stamp_id = stamp.partition("-")
        tag = stamp_id if kind == "tenant" else contracts.pool_tenant_tag(stamp_id)
        found[tag] = f"{target.subscription_id or ''}|{target.region}"
    return found


def usage(
    stack: Stack,
    limits: Mapping[str, float],
    load: Mapping[str, Mapping[str, float]],
    default_region: str = "",
    placement: Mapping[str, str] | None = None,
) -> list[Usage]:
    """Every count the limits hold, one row each, per subscription and region: a resource
    counts where its owner's stamp is placed (``placement``: owner tag to
    ``<subscription>|<region>``), else in its own location, in the stack's subscription."""
    placed = dict(placement or {})

    def _region(resource: Any, default: str) -> str:
        owner = stack.owner(resource)
        if owner in placed:
            return placed[owner]
        location = resource.props.get("location")
        return f"|{location}" if isinstance(location, str) and location else f"|{default}"

    def row(key: str, where_key: str, where: str, used: float, urn: str = "") -> Usage:
        limit = LIMITS[key]
        subscription, _, region = where_key.partition("|")
        return Usage(
            key, limit.resource, region, where, used, limits[key], limit.doc, subscription, urn
        )

    rows: list[Usage] = []
    online = stack.of_type(ONLINE_ENDPOINT)
    endpoints = Counter(
        _region(e, default_region) for e in [*online, *stack.of_type(BATCH_ENDPOINT)]
    )
    deployments = Counter(
        _region(e, default_region) for e in online for _ in range(DEPLOYMENTS_AT_PEAK)
    )
    deployments.update(_region(d, default_region) for d in stack.of_type(BATCH_DEPLOYMENT))
    storage = Counter(_region(s, default_region) for s in stack.of_type(STORAGE_ACCOUNT))
    for region in sorted(set(endpoints) | set(storage)):
        shown = region.replace("|", " ").strip()
        rows.append(row("endpoints", region, shown, endpoints[region]))
        rows.append(row("deployments", region, shown, deployments[region]))
        rows.append(row("storage_accounts", region, shown, storage[region]))
    groups: Counter[str] = Counter()
    for workspace in stack.of_type(WORKSPACE):
        group = workspace.props.get("resourceGroupName")
        groups[str(group) if isinstance(group, str) else workspace.name] += 1
    rows += [
        row("workspaces_per_resource_group", f"|{default_region}", group, count)
        for group, count in sorted(groups.items())
    ]
    for endpoint in online:
        name = str(endpoint.props.get("endpointName") or endpoint.name)
        region = _region(endpoint, default_region)
        rows.append(
            row("deployments_per_endpoint", region, name, DEPLOYMENTS_AT_PEAK, endpoint.urn)
        )
        rows += [
            row(key, region, name, value, endpoint.urn)
            for key, value in sorted(load.get(name, {}).items())
            if key in LOAD_KEYS
        ]
    for deployment in stack.of_type(ONLINE_DEPLOYMENT):
        instances = deployment.props.get("sku.capacity")
        if isinstance(instances, int | float) and not isinstance(instances, bool):
            name = str(deployment.props.get("deploymentName") or deployment.name)
            where = f"{deployment.props.get('endpointName')}/{name}"
            region = _region(deployment, default_region)
            rows.append(row("instances_per_deployment", region, where, instances, deployment.urn))
    return rows


def azure_limits(stack: Stack, settings: Settings) -> Iterator[Finding]:
    found_rows = usage(
        stack, settings["limits"], settings["endpointLoad"], placement=settings["placement"]
    )
    for found in found_rows:
        if found.over:
            yield Finding(
                f"{found.resource} in {found.where}: {found.used:g} over Azure's limit of "
                f"{found.limit:g} ({found.doc}); place tenants elsewhere, or raise it in "
                f"capacity.granted.{found.key} once Azure has granted more",
                found.urn,
            )


RULES: tuple[Rule, ...] = (
    Rule(
        "azure-limits",
        "The plan stays within Azure's published limits per subscription, region, resource "
        "group and endpoint (tenancy.limits), raised only where the stack says a grant does.",
        "Azure refuses the resource that crosses a limit mid-deployment, and a pooled "
        "endpoint asked for more than it takes throttles every tenant it serves.",
        MANDATORY,
        settings=(
            Setting(
                "limits",
                dict[str, float],
                "each limit, raised where the stack has a grant",
                {key: limit.default for key, limit in LIMITS.items()},
                limits_of,
            ),
            Setting(
                "placement",
                dict[str, str],
                "each owner tag's stamp target, <subscription>|<region>",
                {},
                placement_of,
            ),
            Setting(
                "endpointLoad",
                dict[str, dict[str, float]],
                "what each online endpoint's tenants may send it at most",
                {},
                endpoint_load,
            ),
        ),
        stack_check=azure_limits,
    ),
)
