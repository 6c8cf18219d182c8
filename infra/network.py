"""Private networking (stacks with ``networking.private: true``): one virtual network per
environment, private DNS zones, and private endpoints for every PaaS resource."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import network, privatedns

from tenancy.spec import PlatformSpec

#: Private DNS zone per private-link sub-resource (Azure's documented zone names).
ZONES_BY_GROUP: dict[str, tuple[str, ...]] = {
    "amlworkspace": ("privatelink.api.azureml.ms", "privatelink.notebooks.azure.net"),
    "amlregistry": ("privatelink.api.azureml.ms",),
    "blob": ("privatelink.blob.core.windows.net",),
    "file": ("privatelink.file.core.windows.net",),
    "table": ("privatelink.table.core.windows.net",),
    "queue": ("privatelink.queue.core.windows.net",),
    "vault": ("privatelink.vaultcore.azure.net",),
    "registry": ("privatelink.azurecr.io",),
    # AI Services (Azure OpenAI) accounts: their three endpoints' zones
    # (https://learn.microsoft.com/azure/private-link/private-endpoint-dns#ai--machine-learning).
    "account": (
        "privatelink.cognitiveservices.azure.com",
        "privatelink.openai.azure.com",
        "privatelink.services.ai.azure.com",
    ),
}
ALL_ZONES: tuple[str, ...] = tuple(sorted({z for zones in ZONES_BY_GROUP.values() for z in zones}))

#: API Management in a virtual network (External mode) needs a network security group on
#: its subnet: "A network security group (NSG) is required to explicitly allow inbound
#: connectivity, because the load balancer used internally by API Management is secure by
#: default and rejects all inbound traffic." The rules are the documented required ports
#: (https://learn.microsoft.com/azure/api-management/virtual-network-injection-resources,
#: https://learn.microsoft.com/azure/api-management/virtual-network-reference).
#: (name, direction, ports, source, destination)
GATEWAY_NSG_RULES: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("client-https", "Inbound", ("443",), "Internet", "VirtualNetwork"),
    ("management", "Inbound", ("3443",), "ApiManagement", "VirtualNetwork"),
    ("load-balancer", "Inbound", ("6390",), "AzureLoadBalancer", "VirtualNetwork"),
    ("storage", "Outbound", ("443",), "VirtualNetwork", "Storage"),
    ("sql", "Outbound", ("1433",), "VirtualNetwork", "Sql"),
    ("key-vault", "Outbound", ("443",), "VirtualNetwork", "AzureKeyVault"),
    ("monitor", "Outbound", ("1886", "443"), "VirtualNetwork", "AzureMonitor"),
)


def _subnets(address_space: str) -> dict[str, str]:
    """Carve the environment's range into the subnets the platform needs (/24 each)."""
    space = ipaddress.ip_network(address_space)
    blocks = list(space.subnets(new_prefix=max(space.prefixlen, 24)))
    return {
        "private-endpoints": str(blocks[0]),
        "functions": str(blocks[1]),
        "gateway": str(blocks[2]),
    }


@dataclass
class PrivateNetworkArgs:
    spec: PlatformSpec
    resource_group_name: pulumi.Input[str]
    tags: dict[str, str]


class PrivateNetwork(pulumi.ComponentResource):
    """VNet, subnets and private DNS zones; stamps add their private endpoints to it."""

    def __init__(
        self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:network:PrivateNetwork", name, {}, opts)
        self._name = name
        self._args = args
        ranges = _subnets(args.spec.networking.address_space)
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet",
            resource_group_name=args.resource_group_name,
            location=args.spec.location,
            address_space={"address_prefixes": [args.spec.networking.address_space]},
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.endpoints_subnet = self._create_subnet("private-endpoints", ranges, None)
        # Flex Consumption integrates with a subnet delegated to Microsoft.App/environments.
        self.functions_subnet = self._create_subnet(
            "functions", ranges, "Microsoft.App/environments", depends_on=[self.endpoints_subnet]
        )
        self.gateway_nsg = self._create_gateway_nsg()
        self.gateway_subnet = self._create_subnet(
            "gateway",
            ranges,
            None,
            depends_on=[self.functions_subnet],
            security_group=self.gateway_nsg,
        )
        self.zone_ids = {zone: self._create_zone(zone) for zone in ALL_ZONES}
        self.register_outputs(
            {
                "vnetId": self.vnet.id,
                "privateEndpointSubnetId": self.endpoints_subnet.id,
                "functionsSubnetId": self.functions_subnet.id,
                "gatewaySubnetId": self.gateway_subnet.id,
            }
        )

    def _create_subnet(
        self,
        purpose: str,
        ranges: dict[str, str],
        delegation: str | None,
        depends_on: list[pulumi.Resource] | None = None,
        security_group: network.NetworkSecurityGroup | None = None,
    ) -> network.Subnet:
        # Subnets of one VNet are created one after another: Azure rejects parallel updates.
        return network.Subnet(
            f"{self._name}-snet-{purpose}",
            resource_group_name=self._args.resource_group_name,
            virtual_network_name=self.vnet.name,
            subnet_name=f"snet-{purpose}",
            address_prefix=ranges[purpose],
            private_endpoint_network_policies=(
                "Disabled" if purpose == "private-endpoints" else None
            ),
            delegations=(
                [{"name": "delegation", "service_name": delegation}] if delegation else None
            ),
            network_security_group={"id": security_group.id} if security_group else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on or []),
        )

    def _create_gateway_nsg(self) -> network.NetworkSecurityGroup:
        rules = []
        for index, (name, direction, ports, source, destination) in enumerate(GATEWAY_NSG_RULES):
            rules.append(
                network.SecurityRuleArgs(
                    name=f"allow-{name}",
                    priority=100 + index * 10,
                    direction=direction,
                    access="Allow",
                    protocol="Tcp",
                    source_address_prefix=source,
                    source_port_range="*",
                    destination_address_prefix=destination,
                    destination_port_ranges=list(ports),
                )
            )
        return network.NetworkSecurityGroup(
            f"{self._name}-nsg-gateway",
            resource_group_name=self._args.resource_group_name,
            network_security_group_name="nsg-gateway",
            location=self._args.spec.location,
            security_rules=rules,
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_zone(self, zone: str) -> pulumi.Output[str]:
        slug = zone.replace("privatelink.", "").replace(".", "-")
        private_zone = privatedns.PrivateZone(
            f"{self._name}-dns-{slug}",
            resource_group_name=self._args.resource_group_name,
            private_zone_name=zone,
            location="global",
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        privatedns.VirtualNetworkLink(
            f"{self._name}-dns-{slug}-link",
            resource_group_name=self._args.resource_group_name,
            private_zone_name=private_zone.name,
            virtual_network={"id": self.vnet.id},
            registration_enabled=False,
            location="global",
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=private_zone),
        )
        return private_zone.id

    def reference(self) -> NetworkRef:
        """What another stack needs to put private endpoints in this network."""
        return NetworkRef(self._args.spec.location, self.endpoints_subnet.id, self.zone_ids)


@dataclass(frozen=True)
class NetworkRef:
    """The platform network as a stamp uses it: the private endpoints' subnet and the DNS
    zones, from this stack's network or, in a shard stack, from the shared stack's outputs."""

    location: str
    endpoints_subnet_id: pulumi.Input[str]
    zone_ids: Mapping[str, pulumi.Input[str]]

    def protect(
        self,
        name: str,
        targets: list[tuple[str, pulumi.Input[str], str]],
        *,
        resource_group_name: pulumi.Input[str],
        tags: dict[str, str],
        parent: pulumi.Resource,
    ) -> None:
        """A private endpoint for each (suffix, resource id, sub-resource group) target."""
        for suffix, target, group in targets:
            self.add_private_endpoint(
                f"{name}-pe-{suffix}",
                target_id=target,
                group=group,
                resource_group_name=resource_group_name,
                tags=tags,
                parent=parent,
            )

    def add_private_endpoint(
        self,
        name: str,
        *,
        target_id: pulumi.Input[str],
        group: str,
        resource_group_name: pulumi.Input[str],
        tags: dict[str, str],
        parent: pulumi.Resource,
    ) -> network.PrivateEndpoint:
        """A private endpoint for ``group`` of ``target_id``, registered in its DNS zones."""
        endpoint = network.PrivateEndpoint(
            name,
            resource_group_name=resource_group_name,
            location=self.location,
            subnet={"id": self.endpoints_subnet_id},
            private_link_service_connections=[
                {"name": f"{name}-conn", "private_link_service_id": target_id, "group_ids": [group]}
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        network.PrivateDnsZoneGroup(
            f"{name}-dns",
            resource_group_name=resource_group_name,
            private_endpoint_name=endpoint.name,
            private_dns_zone_group_name="default",
            private_dns_zone_configs=[
                {"name": zone.replace(".", "-"), "private_dns_zone_id": self.zone_ids[zone]}
                for zone in ZONES_BY_GROUP[group]
            ],
            opts=pulumi.ResourceOptions(parent=endpoint),
        )
        return endpoint
