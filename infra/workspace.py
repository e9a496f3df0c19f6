"""The Azure ML workspace and what it depends on: storage, key vault, registry, monitoring."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import (
    applicationinsights,
    containerregistry,
    keyvault,
    machinelearningservices,
    monitor,
    operationalinsights,
    resources,
    storage,
)

from infra.naming import Kind, Namer


@dataclass(frozen=True)
class WorkspaceArgs:
    """Inputs of the workspace component."""

    namer: Namer
    location: str
    tenant_id: pulumi.Input[str]
    tags: Mapping[str, str]
    public_network_access: str
    """`Enabled` or `Disabled`, applied to the workspace, storage, key vault and registry."""
    isolation_mode: str
    firewall_sku: str
    storage_sku: str
    storage_shared_key_access: bool
    registry_sku: str
    log_retention_days: int
    high_business_impact: bool = False
    outbound_fqdns: Sequence[str] = field(default_factory=tuple)
    existing_resource_group: str | None = None
    image_build_compute: str | None = None
    """Compute cluster that builds images when the registry is private."""


class Workspace(pulumi.ComponentResource):
    """Resource group, storage, key vault, registry, Log Analytics, App Insights, ML workspace."""

    resource_group_name: pulumi.Output[str]
    """Name of the resource group holding the platform."""
    workspace_name: pulumi.Output[str]
    """Name of the Azure ML workspace."""
    workspace_id: pulumi.Output[str]
    """ARM id of the Azure ML workspace."""
    storage_account_id: pulumi.Output[str]
    """ARM id of the workspace's default storage account."""
    storage_account_name: pulumi.Output[str]
    """Name of the workspace's default storage account."""
    key_vault_id: pulumi.Output[str]
    """ARM id of the workspace's key vault."""
    registry_id: pulumi.Output[str]
    """ARM id of the workspace's container registry."""
    registry_name: pulumi.Output[str]
    """Name of the workspace's container registry."""
    log_analytics_id: pulumi.Output[str]
    """ARM id of the Log Analytics workspace that receives diagnostics."""

    def __init__(self, name: str, args: WorkspaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("byom:workspace:Workspace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        n = args.namer
        private = args.public_network_access == "Disabled"
        tags = dict(args.tags)

        if args.existing_resource_group:
            rg_name: pulumi.Output[str] = pulumi.Output.from_input(args.existing_resource_group)
        else:
            rg = resources.ResourceGroup(
                f"{name}-rg",
                resource_group_name=n.name(Kind.RESOURCE_GROUP),
                location=args.location,
                tags=tags,
                opts=child,
            )
            rg_name = rg.name
        common = {"resource_group_name": rg_name, "location": args.location, "tags": tags}

        st = storage.StorageAccount(
            f"{name}-storage",
            account_name=n.name(Kind.STORAGE_ACCOUNT),
            kind="StorageV2",
            sku=storage.SkuArgs(name=args.storage_sku),
            access_tier="Hot",
            # Azure ML's default datastore does not support a hierarchical namespace.
            is_hns_enabled=False,
            allow_blob_public_access=False,
            allow_cross_tenant_replication=False,
            allow_shared_key_access=args.storage_shared_key_access,
            default_to_o_auth_authentication=True,
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            public_network_access=args.public_network_access,
            network_rule_set=storage.NetworkRuleSetArgs(
                default_action="Deny" if private else "Allow",
                # Azure ML's trusted-service access to its own storage.
                bypass="AzureServices",
            ),
            opts=child,
            **common,
        )

        kv = keyvault.Vault(
            f"{name}-vault",
            vault_name=n.name(Kind.KEY_VAULT),
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=args.tenant_id,
                sku=keyvault.SkuArgs(family="A", name="standard"),
                enable_rbac_authorization=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=90,
                # Purge protection cannot be turned off again and blocks name reuse for 90 days.
                enable_purge_protection=True,
                enabled_for_deployment=False,
                enabled_for_disk_encryption=False,
                enabled_for_template_deployment=False,
                public_network_access=args.public_network_access,
                network_acls=keyvault.NetworkRuleSetArgs(
                    default_action="Deny" if private else "Allow", bypass="AzureServices"
                ),
            ),
            opts=child,
            **common,
        )

        premium = args.registry_sku == "Premium"
        acr = containerregistry.Registry(
            f"{name}-registry",
            registry_name=n.name(Kind.CONTAINER_REGISTRY),
            sku=containerregistry.SkuArgs(name=args.registry_sku),
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            public_network_access=args.public_network_access,
            network_rule_bypass_options="AzureServices",
            # Network rules and private endpoints exist only on the Premium tier.
            network_rule_set=containerregistry.NetworkRuleSetArgs(
                default_action="Deny" if private else "Allow"
            )
            if premium
            else None,
            opts=child,
            **common,
        )

        law = operationalinsights.Workspace(
            f"{name}-logs",
            workspace_name=n.name(Kind.LOG_ANALYTICS),
            sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=args.log_retention_days,
            # Ingestion stays public until an Azure Monitor Private Link Scope is added.
            public_network_access_for_ingestion="Enabled",
            public_network_access_for_query="Enabled",
            opts=child,
            **common,
        )

        appi = applicationinsights.Component(
            f"{name}-insights",
            resource_name_=n.name(Kind.APP_INSIGHTS),
            kind="web",
            application_type="web",
            workspace_resource_id=law.id,
            ingestion_mode="LogAnalytics",
            # Online deployments with app_insights_enabled send telemetry with the connection
            # string; Entra-only ingestion would silently drop it.
            disable_local_auth=False,
            public_network_access_for_ingestion="Enabled",
            public_network_access_for_query="Enabled",
            opts=child,
            **common,
        )

        ws = machinelearningservices.Workspace(
            f"{name}-aml",
            workspace_name=n.name(Kind.ML_WORKSPACE),
            kind="Default",
            sku=machinelearningservices.SkuArgs(name="Basic", tier="Basic"),
            identity=machinelearningservices.ManagedServiceIdentityArgs(type="SystemAssigned"),
            storage_account=st.id,
            key_vault=kv.id,
            container_registry=acr.id,
            application_insights=appi.id,
            public_network_access=args.public_network_access,
            allow_public_access_when_behind_vnet=False,
            managed_network=_managed_network(args),
            # Datastores use the caller's Entra identity, so storage needs no shared keys.
            system_datastores_auth_mode="Identity",
            # Managed online endpoints in a managed VNet require v1 legacy mode off.
            v1_legacy_mode=False,
            hbi_workspace=args.high_business_impact,
            image_build_compute=args.image_build_compute,
            friendly_name=f"{n.workload} {n.environment}",
            description="Bring-your-own LLM platform, managed by Pulumi (azureml-byom).",
            opts=child,
            **common,
        )

        for target, resource in (("aml", ws), ("vault", kv)):
            monitor.DiagnosticSetting(
                f"{name}-{target}-diagnostics",
                name="to-log-analytics",
                resource_uri=resource.id,
                workspace_id=law.id,
                log_analytics_destination_type="Dedicated",
                logs=[monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)],
                metrics=[
                    monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)
                ],
                opts=child,
            )

        self.resource_group_name = rg_name
        self.workspace_name = ws.name
        self.workspace_id = ws.id
        self.storage_account_id = st.id
        self.storage_account_name = st.name
        self.key_vault_id = kv.id
        self.registry_id = acr.id
        self.registry_name = acr.name
        self.log_analytics_id = law.id
        self.register_outputs(
            {
                "resource_group_name": self.resource_group_name,
                "workspace_name": self.workspace_name,
                "workspace_id": self.workspace_id,
                "storage_account_id": self.storage_account_id,
                "key_vault_id": self.key_vault_id,
                "registry_id": self.registry_id,
            }
        )


def _managed_network(
    args: WorkspaceArgs,
) -> machinelearningservices.ManagedNetworkSettingsArgs:
    if args.isolation_mode != "AllowOnlyApprovedOutbound":
        return machinelearningservices.ManagedNetworkSettingsArgs(
            isolation_mode=args.isolation_mode
        )
    # Each FQDN rule goes through an Azure Firewall that the workspace creates (and bills).
    rules = {
        re.sub(r"[^a-z0-9]+", "-", fqdn.lower()).strip("-"): (
            machinelearningservices.FqdnOutboundRuleArgs(
                type="FQDN", category="UserDefined", destination=fqdn
            )
        )
        for fqdn in args.outbound_fqdns
    }
    return machinelearningservices.ManagedNetworkSettingsArgs(
        isolation_mode=args.isolation_mode,
        firewall_sku=args.firewall_sku if rules else None,
        outbound_rules=rules or None,
    )
