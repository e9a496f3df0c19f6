"""Stack config of the platform itself: network, workspace, identities and compute.

Sections of `infra.config.StackConfig` (`azureml-byom:network`, `:workspace`, `:identity`,
`:compute`); rules that span sections live on `StackConfig`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import Field, model_validator

from delivery.fields import Flag, Text, invalid, items, one_of, text, whole
from infra.config_types import GUID, Cidr, ConfigModel, Toggle

PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal")
ISOLATION_MODES = ("Disabled", "AllowInternetOutbound", "AllowOnlyApprovedOutbound")
STORAGE_SKUS = ("Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS")
# Targets the stack may reach through private endpoints (infra.network.platform_targets).
PRIVATE_ENDPOINT_TARGETS = ("workspace", "blob", "file", "vault", "registry", "monitor")
_REGISTRY_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/"
    r"Microsoft\.MachineLearningServices/registries/[A-Za-z0-9][A-Za-z0-9_-]{2,32}$"
)
_FQDN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,}$")


class PrincipalSettings(ConfigModel):
    """An Entra ID principal (object id and type) granted roles by this stack."""

    object_id: text(GUID, "an Entra ID object id (GUID)")
    principal_type: one_of(*PRINCIPAL_TYPES) = Field(alias="type")


class NetworkSettings(ConfigModel):
    """Private networking: one VNet whose subnet hosts the private endpoints."""

    private: Flag = True
    address_space: Cidr = "10.20.0.0/16"
    private_endpoint_subnet: Cidr = "10.20.0.0/24"
    private_endpoints: (
        Annotated[
            tuple[str, ...],
            items(lambda t: t in PRIVATE_ENDPOINT_TARGETS, ", ".join(PRIVATE_ENDPOINT_TARGETS), 1),
        ]
        | None
    ) = None
    """Targets reached through private endpoints. None as parsed: all when private, else none; a
    public stack may still use some (dev keeps the workspace's, so the private path is
    exercised before prod)."""

    @model_validator(mode="after")
    def _subnet_inside(self) -> NetworkSettings:
        space = ipaddress.IPv4Network(self.address_space)
        if not ipaddress.IPv4Network(self.private_endpoint_subnet).subnet_of(space):
            raise invalid(
                f"a subnet inside addressSpace {self.address_space}",
                "privateEndpointSubnet",
                self.private_endpoint_subnet,
            )
        return self


class WorkspaceSettings(ConfigModel):
    """The Azure ML workspace and its dependent resources."""

    sku: one_of("Basic") = "Basic"
    isolation_mode: one_of(*ISOLATION_MODES) = "AllowOnlyApprovedOutbound"
    firewall_sku: one_of("Basic", "Standard") = "Standard"
    outbound_fqdns: Annotated[
        tuple[str, ...],
        items(lambda f: isinstance(f, str) and _FQDN.match(f), "host names such as pypi.org", 1),
    ] = ()
    storage_sku: one_of(*STORAGE_SKUS) = "Standard_ZRS"
    storage_shared_key_access: Flag = False
    registry_sku: one_of("Basic", "Standard", "Premium") = "Premium"
    log_retention_days: whole(30, 730) = 30
    high_business_impact: Flag | None = None
    """Create-only. None as parsed: on where the data is confidential or restricted."""
    existing_resource_group: Text | None = None
    protect: Flag = True
    """Pulumi `protect` on stateful resources and a CanNotDelete lock on the resource group."""
    blob_soft_delete_days: whole(0, 365) = 7
    """Blob and container soft delete retention (0: off)."""
    blob_versioning: Flag = True
    key_vault_purge_protection: Flag = True
    registry_zone_redundancy: Flag | None = None
    """Create-only, Premium only. None as parsed: on for a private Premium registry."""
    registry_export: Flag | None = None
    """Whether images may be exported. None as parsed: off when private (Azure allows off only
    then)."""
    model_registries: Annotated[
        tuple[str, ...],
        items(
            lambda r: isinstance(r, str) and _REGISTRY_ID.match(r),
            "ARM ids of Azure ML registries (/subscriptions/.../registries/<name>)",
            1,
        ),
    ] = ()
    """Azure ML registries models come from: a private endpoint outbound rule each."""

    @property
    def managed_network(self) -> bool:
        """Whether the workspace has a managed network (any isolation mode but Disabled)."""
        return self.isolation_mode != "Disabled"

    @model_validator(mode="after")
    def _fqdns_need_approved_outbound(self) -> WorkspaceSettings:
        if self.outbound_fqdns and self.isolation_mode != "AllowOnlyApprovedOutbound":
            raise invalid(
                "[] unless isolationMode is AllowOnlyApprovedOutbound",
                "outboundFqdns",
                list(self.outbound_fqdns),
            )
        return self


class IdentitySettings(ConfigModel):
    """Humans and applications that get roles on the platform."""

    data_scientists: PrincipalSettings | None = None
    deployer: PrincipalSettings | None = None
    invokers: tuple[PrincipalSettings, ...] = ()
    promoters: tuple[PrincipalSettings, ...] = ()
    """Principals that promote this stack's images into another stack's registry (ACR import
    reads the source with the caller's identity): the other stack's release runner identity."""
    invoker_role_id: (
        text(GUID, "the GUID of the endpoint invoker role created once (docs/infrastructure.md)")
        | None
    ) = None
    """None: this stack declares the role (its deployer then needs roleDefinitions/write)."""


class ComputeInstanceSettings(ConfigModel):
    """A personal notebook VM."""

    enabled: Flag = True
    vm_size: Text = "Standard_DS3_v2"
    assigned_user_object_id: text(GUID, "the notebook user's Entra ID object id")
    # Azure accepts 15 minutes to 3 days.
    idle_shutdown_minutes: whole(15, 3 * 24 * 60) = 30
    nightly_stop_cron: (
        text(r"^(\S+\s+){4}\S+$", "a 5-field cron expression such as '0 20 * * *'") | None
    ) = None
    time_zone: Text = "UTC"


class ClusterSettings(ConfigModel):
    """A training/batch cluster that scales to zero."""

    enabled: Flag = True
    vm_size: Text = "Standard_DS3_v2"
    max_nodes: whole(1, 100) = 2
    vm_priority: one_of("Dedicated", "LowPriority") = "Dedicated"
    idle_seconds_before_scale_down: whole(60, 86400) = 120


class ComputeSettings(ConfigModel):
    """Optional compute instance and cluster."""

    instance: Annotated[ComputeInstanceSettings | None, Toggle] = None
    cluster: Annotated[ClusterSettings | None, Toggle] = None
