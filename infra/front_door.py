"""One entry for tenants when stamps are placed in several regions: the tenant gateway gets
a regional gateway in each region that holds stamps (API Management's multi-region
deployment, Premium only), and an Azure Front Door profile sends each caller to the
nearest healthy regional gateway. Every regional gateway holds every tenant's product and
routes it to its own stamp's endpoint, wherever that is.

- Regional gateways: "API Management supports multi-region deployment, which enables API
  publishers to add regional API gateways to an existing API Management instance"; Premium
  only (https://learn.microsoft.com/azure/api-management/api-management-howto-deploy-multi-region).
- Each region's gateway answers at ``https://<service>-<region>-01.regional.azure-api.net``,
  which the page's "custom routing to API Management regional gateways" names as the target
  of a custom routing service; Front Door in front of API Management:
  https://learn.microsoft.com/azure/api-management/front-door-api-management.
- The origin group probes API Management's own health endpoint, ``/status-0123456789abcdef``
  (https://learn.microsoft.com/azure/api-management/api-management-howto-integrate-internal-vnet-appgateway#what-is-required-to-integrate-api-management-and-application-gateway).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import apimanagement, cdn

from tenancy.spec import PlatformSpec

HEALTH_PATH = "/status-0123456789abcdef"
#: The header Front Door stamps with its profile's id; API Management refuses requests
#: without this profile's (Microsoft's "restrict API Management to accept API traffic only
#: from Azure Front Door": https://learn.microsoft.com/azure/api-management/front-door-api-management).
FRONT_DOOR_ID_HEADER = "X-Azure-FDID"


def front_door_only_policy(front_door_id: str) -> str:
    """The gateway's global policy: every API's request comes through this Front Door."""
    return f"""<policies>
  <inbound>
    <check-header name="{FRONT_DOOR_ID_HEADER}" failed-check-httpcode="403"
        failed-check-error-message="Call the platform through its Front Door endpoint"
        ignore-case="true">
      <value>{front_door_id}</value>
    </check-header>
  </inbound>
  <backend>
    <forward-request />
  </backend>
  <outbound />
  <on-error />
</policies>"""


def gateway_regions(spec: PlatformSpec) -> list[str]:
    """The regions whose stamps the gateway serves, its own first (a resolved spec's
    placement: the targets that hold a stamp)."""
    regions = [spec.location]
    for key in spec.stamp_keys():
        region = spec.target_of(key).region
        if region not in regions:
            regions.append(region)
    return regions


def regional_host(service_name: str, region: str) -> str:
    return f"{service_name}-{region}-01.regional.azure-api.net"


@dataclass(frozen=True)
class FrontDoorArgs:
    spec: PlatformSpec
    resource_group_name: pulumi.Input[str]
    service_name: str  # the gateway's (known from the spec: naming.api_management)
    regions: list[str]
    tags: dict[str, str]


class FrontDoor(pulumi.ComponentResource):
    """A Front Door profile whose one route sends every path to an origin group of the
    regional gateways, each at the same priority and weight, health-probed."""

    def __init__(
        self, name: str, args: FrontDoorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:gateway:FrontDoor", name, {"stamp": "platform"}, opts)
        self._name = name
        self._args = args
        spec = args.spec
        common = {"resource_group_name": args.resource_group_name}
        self.profile = cdn.Profile(
            f"{name}-profile",
            profile_name=f"afd-{spec.prefix}-{spec.environment.value}",
            location="global",
            sku={"name": "Standard_AzureFrontDoor"},
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
            **common,
        )
        profile = {"profile_name": self.profile.name, **common}
        self.endpoint = cdn.AFDEndpoint(
            f"{name}-endpoint",
            endpoint_name=f"{spec.prefix}-{spec.environment.value}-{spec.installation}",
            location="global",
            enabled_state="Enabled",
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self.profile),
            **profile,
        )
        group = self._create_origin_group(profile)
        origins = [self._create_origin(group, region, profile) for region in args.regions]
        cdn.Route(
            f"{name}-route",
            route_name="gateway",
            endpoint_name=self.endpoint.name,
            origin_group={"id": group.id},
            supported_protocols=["Https"],
            https_redirect="Disabled",
            forwarding_protocol="HttpsOnly",
            link_to_default_domain="Enabled",
            patterns_to_match=["/*"],
            enabled_state="Enabled",
            # A route's origin group must have its origins before the route uses it.
            opts=pulumi.ResourceOptions(parent=self.endpoint, depends_on=origins),
            **profile,
        )
        self.host_name = self.endpoint.host_name
        self.front_door_id = self.profile.front_door_id
        self.register_outputs({"hostName": self.host_name, "regions": args.regions})

    def guard(self, service_name: pulumi.Input[str], parent: pulumi.Resource) -> None:
        """The gateway's global policy refusing what did not come through this profile."""
        cdn_id = self.front_door_id.apply(lambda found: found or "")
        apimanagement.Policy(
            f"{self._name}-only",
            resource_group_name=self._args.resource_group_name,
            service_name=service_name,
            policy_id="policy",
            format="rawxml",
            value=cdn_id.apply(front_door_only_policy),
            opts=pulumi.ResourceOptions(parent=parent),
        )

    def _create_origin_group(self, profile: dict[str, pulumi.Input[str]]) -> cdn.AFDOriginGroup:
        return cdn.AFDOriginGroup(
            f"{self._name}-origins",
            origin_group_name="regional-gateways",
            health_probe_settings={
                "probe_path": HEALTH_PATH,
                "probe_protocol": "Https",
                "probe_request_type": "GET",
                "probe_interval_in_seconds": 30,
            },
            load_balancing_settings={
                "sample_size": 4,
                "successful_samples_required": 3,
                # Equal priority and weight: the lowest latency band decides.
                "additional_latency_in_milliseconds": 50,
            },
            session_affinity_state="Disabled",
            opts=pulumi.ResourceOptions(parent=self.profile),
            **profile,
        )

    def _create_origin(
        self,
        group: cdn.AFDOriginGroup,
        region: str,
        profile: dict[str, pulumi.Input[str]],
    ) -> cdn.AFDOrigin:
        host = regional_host(self._args.service_name, region)
        return cdn.AFDOrigin(
            f"{self._name}-origin-{region}",
            origin_group_name=group.name,
            origin_name=f"gateway-{region}",
            host_name=host,
            origin_host_header=host,
            https_port=443,
            priority=1,
            weight=1000,
            enabled_state="Enabled",
            enforce_certificate_name_check=True,
            opts=pulumi.ResourceOptions(parent=group),
            **profile,
        )
