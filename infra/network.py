"""Private networking: VNet, private endpoints, privatelink DNS zones, VNet links, zone groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import network, privatedns

from infra.naming import Kind, Namer

# Public-cloud zone names that Azure documents for each private link sub-resource.
PRIVATE_DNS_ZONES = {
    "api": "privatelink.api.azureml.ms",
    "notebooks": "privatelink.notebooks.azure.net",
    "blob": "privatelink.blob.core.windows.net",
    "file": "privatelink.file.core.windows.net",
    "vault": "privatelink.vaultcore.azure.net",
    "registry": "privatelink.azurecr.io",
    # Azure Monitor private link scope: the monitor endpoints, Log Analytics' query and
    # ingestion endpoints, the agent service; its blob records go to the blob zone.
    "monitor": "privatelink.monitor.azure.com",
    "oms": "privatelink.oms.opinsights.azure.com",
    "ods": "privatelink.ods.opinsights.azure.com",
    "agentsvc": "privatelink.agentsvc.azure-automation.net",
}


@dataclass(frozen=True)
class PrivateLinkTarget:
    """A resource reached through a private endpoint, and the DNS zones its records go to."""

    name: str
    resource_id: pulumi.Input[str]
    group_id: str
    zones: tuple[str, ...]
    """Keys of `PRIVATE_DNS_ZONES`."""


def platform_targets(
    *,
    names: Sequence[str],
    workspace_id: pulumi.Input[str],
    storage_account_id: pulumi.Input[str],
    key_vault_id: pulumi.Input[str],
    registry_id: pulumi.Input[str],
    monitor_private_link_scope_id: pulumi.Input[str] | None = None,
) -> list[PrivateLinkTarget]:
    """The private endpoints an Azure ML workspace and its dependencies need, of `names`."""
    targets = [
        # One workspace endpoint serves the API and the notebooks; both zones get its records.
        PrivateLinkTarget("workspace", workspace_id, "amlworkspace", ("api", "notebooks")),
        PrivateLinkTarget("blob", storage_account_id, "blob", ("blob",)),
        PrivateLinkTarget("file", storage_account_id, "file", ("file",)),
        PrivateLinkTarget("vault", key_vault_id, "vault", ("vault",)),
        PrivateLinkTarget("registry", registry_id, "registry", ("registry",)),
    ]
    if monitor_private_link_scope_id is not None:
        targets.append(
            PrivateLinkTarget(
                "monitor",
                monitor_private_link_scope_id,
                "azuremonitor",
                ("monitor", "oms", "ods", "agentsvc", "blob"),
            )
        )
    return [t for t in targets if t.name in names]


@dataclass(frozen=True)
class NetworkArgs:
    """Inputs of the network component."""

    namer: Namer
    location: str
    resource_group_name: pulumi.Input[str]
    tags: Mapping[str, str]
    address_space: str
    private_endpoint_subnet: str
    targets: Sequence[PrivateLinkTarget]


class Network(pulumi.ComponentResource):
    """A VNet whose subnet holds a private endpoint, with DNS, for every target."""

    vnet_id: pulumi.Output[str]
    """ARM id of the virtual network."""
    vnet_name: pulumi.Output[str]
    """Name of the virtual network (other components add their subnets to it)."""
    private_endpoint_subnet_id: pulumi.Output[str]
    """ARM id of the subnet that holds the private endpoints."""
    dns_zone_ids: dict[str, pulumi.Output[str]]
    """ARM ids of the private DNS zones, by zone name."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("byom:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        n = args.namer
        rg = args.resource_group_name
        tags = dict(args.tags)

        # No custom rules: the defaults allow traffic from inside the VNet and deny the internet.
        nsg = network.NetworkSecurityGroup(
            f"{name}-nsg",
            network_security_group_name=n.name(Kind.NETWORK_SECURITY_GROUP, "pe"),
            resource_group_name=rg,
            location=args.location,
            tags=tags,
            opts=child,
        )
        vnet = network.VirtualNetwork(
            f"{name}-vnet",
            virtual_network_name=n.name(Kind.VIRTUAL_NETWORK),
            resource_group_name=rg,
            location=args.location,
            address_space=network.AddressSpaceArgs(address_prefixes=[args.address_space]),
            tags=tags,
            # Subnets are separate resources; azure-native keeps them when the VNet is updated.
            opts=child,
        )
        subnet = network.Subnet(
            f"{name}-pe-subnet",
            subnet_name=n.name(Kind.SUBNET, "pe"),
            resource_group_name=rg,
            virtual_network_name=vnet.name,
            address_prefix=args.private_endpoint_subnet,
            network_security_group=network.NetworkSecurityGroupArgs(id=nsg.id),
            # Let the NSG apply to private endpoint traffic too (Azure's default ignores it).
            private_endpoint_network_policies="NetworkSecurityGroupEnabled",
            # No implicit outbound internet for anything placed in this subnet.
            default_outbound_access=False,
            opts=child,
        )

        needed = sorted({zone for target in args.targets for zone in target.zones})
        zones: dict[str, privatedns.PrivateZone] = {}
        for key in needed:
            zone = privatedns.PrivateZone(
                f"{name}-zone-{key}",
                private_zone_name=PRIVATE_DNS_ZONES[key],
                resource_group_name=rg,
                location="global",
                tags=tags,
                opts=child,
            )
            privatedns.VirtualNetworkLink(
                f"{name}-zone-{key}-link",
                virtual_network_link_name=vnet.name,
                private_zone_name=zone.name,
                resource_group_name=rg,
                location="global",
                virtual_network=privatedns.SubResourceArgs(id=vnet.id),
                # Resolution only: VMs must not register their own records in privatelink zones.
                registration_enabled=False,
                tags=tags,
                opts=child,
            )
            zones[key] = zone

        for target in args.targets:
            pep_name = n.name(Kind.PRIVATE_ENDPOINT, target.name)
            pep = network.PrivateEndpoint(
                f"{name}-pep-{target.name}",
                private_endpoint_name=pep_name,
                custom_network_interface_name=f"{pep_name}-nic",
                resource_group_name=rg,
                location=args.location,
                subnet=network.SubnetArgs(id=subnet.id),
                private_link_service_connections=[
                    network.PrivateLinkServiceConnectionArgs(
                        name=target.name,
                        private_link_service_id=target.resource_id,
                        group_ids=[target.group_id],
                    )
                ],
                tags=tags,
                opts=child,
            )
            network.PrivateDnsZoneGroup(
                f"{name}-pep-{target.name}-dns",
                private_dns_zone_group_name="default",
                private_endpoint_name=pep.name,
                resource_group_name=rg,
                private_dns_zone_configs=[
                    network.PrivateDnsZoneConfigArgs(name=key, private_dns_zone_id=zones[key].id)
                    for key in target.zones
                ],
                opts=child,
            )

        self.vnet_id = vnet.id
        self.vnet_name = vnet.name
        self.private_endpoint_subnet_id = subnet.id
        self.dns_zone_ids = {PRIVATE_DNS_ZONES[key]: zone.id for key, zone in zones.items()}
        self.register_outputs(
            {
                "vnet_id": self.vnet_id,
                "vnet_name": self.vnet_name,
                "private_endpoint_subnet_id": self.private_endpoint_subnet_id,
                "dns_zone_ids": self.dns_zone_ids,
            }
        )
