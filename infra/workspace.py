"""The Azure ML workspace and what it depends on: storage, key vault, registry, monitoring."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import (
    applicationinsights,
    authorization,
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
    protect: bool = True
    """Pulumi `protect` on stateful resources and a CanNotDelete lock on the resource group."""
    blob_soft_delete_days: int = 7
    blob_versioning: bool = True
    key_vault_purge_protection: bool = True
    registry_zone_redundancy: bool = False
    registry_export: bool = True
    model_registries: Sequence[str] = field(default_factory=tuple)
    """Azure ML registries the managed network reaches through private endpoint rules."""
    private_monitoring: bool = False
    """Log Analytics and App Insights behind an Azure Monitor private link scope: ingestion and
    query closed to the internet."""


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
    workspace_principal_id: pulumi.Output[str]
    """Object id of the ML workspace's system-assigned identity."""
    default_container_id: pulumi.Output[str]
    """ARM id of the blob container behind the workspace's default datastore."""
    monitor_private_link_scope_id: pulumi.Output[str] | None
    """ARM id of the Azure Monitor private link scope (private monitoring only)."""

    def __init__(self, name: str, args: WorkspaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("byom:workspace:Workspace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Stateful resources: `pulumi destroy` or an unintended replace must not delete them.
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect)
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
                opts=keep,
            )
            rg_name = rg.name
        if args.protect:
            # Also against deletes outside Pulumi (portal, CLI). Inherited by every resource in
            # the group: deleting anything in it needs the lock lifted first.
            authorization.ManagementLockAtResourceGroupLevel(
                f"{name}-lock",
                lock_name=n.name(Kind.MANAGEMENT_LOCK),
                level="CanNotDelete",
                resource_group_name=rg_name,
                notes="Stateful ML platform (models, captured data); managed by Pulumi.",
                opts=child,
            )
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
            opts=keep,
            **common,
        )
        retention = (
            storage.DeleteRetentionPolicyArgs(enabled=True, days=args.blob_soft_delete_days)
            if args.blob_soft_delete_days
            else storage.DeleteRetentionPolicyArgs(enabled=False)
        )
        storage.BlobServiceProperties(
            f"{name}-blob-service",
            account_name=st.name,
            resource_group_name=rg_name,
            blob_services_name="default",
            # Registered models, code and captured data can be restored after a delete or an
            # overwrite.
            delete_retention_policy=retention,
            container_delete_retention_policy=retention,
            is_versioning_enabled=args.blob_versioning,
            opts=child,
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
                # Azure refuses an explicit false: off means not sent.
                enable_purge_protection=True if args.key_vault_purge_protection else None,
                enabled_for_deployment=False,
                enabled_for_disk_encryption=False,
                enabled_for_template_deployment=False,
                public_network_access=args.public_network_access,
                network_acls=keyvault.NetworkRuleSetArgs(
                    default_action="Deny" if private else "Allow", bypass="AzureServices"
                ),
            ),
            opts=keep,
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
            # Create-only: decided at the first deploy.
            zone_redundancy="Enabled" if args.registry_zone_redundancy else "Disabled",
            # Export is one more way out for images; Azure allows it off only when private.
            policies=containerregistry.PoliciesArgs(
                export_policy=containerregistry.ExportPolicyArgs(status="disabled")
            )
            if not args.registry_export
            else None,
            opts=keep,
            **common,
        )

        monitor_access = "Disabled" if args.private_monitoring else "Enabled"
        law = operationalinsights.Workspace(
            f"{name}-logs",
            workspace_name=n.name(Kind.LOG_ANALYTICS),
            sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=args.log_retention_days,
            # With a private link scope, logs go in and come out only through it.
            public_network_access_for_ingestion=monitor_access,
            public_network_access_for_query=monitor_access,
            opts=keep,
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
            public_network_access_for_ingestion=monitor_access,
            public_network_access_for_query=monitor_access,
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
            managed_network=_managed_network(args),
            # Build the managed network now, not at the first compute: endpoints and image
            # builds would otherwise race its provisioning (up to 30 minutes).
            provision_network_now=True if args.isolation_mode != "Disabled" else None,
            # Datastores use the caller's Entra identity, so storage needs no shared keys.
            system_datastores_auth_mode="Identity",
            # Managed online endpoints in a managed VNet require v1 legacy mode off.
            v1_legacy_mode=False,
            hbi_workspace=args.high_business_impact,
            image_build_compute=args.image_build_compute,
            friendly_name=f"{n.workload} {n.environment}",
            description="Bring-your-own LLM platform, managed by Pulumi (azureml-byom).",
            opts=keep,
            **common,
        )

        # Data access on the confidential blobs, registry logins and pushes, vault and
        # workspace operations: all to Log Analytics.
        for target, uri, metric in (
            ("aml", ws.id, "AllMetrics"),
            ("vault", kv.id, "AllMetrics"),
            ("registry", acr.id, "AllMetrics"),
            ("blob", pulumi.Output.concat(st.id, "/blobServices/default"), "Transaction"),
        ):
            diagnostics(f"{name}-{target}-diagnostics", uri, law.id, metric, child)

        self.monitor_private_link_scope_id = None
        if args.private_monitoring:
            scope = monitor.PrivateLinkScope(
                f"{name}-monitor-scope",
                scope_name=n.name(Kind.MONITOR_PRIVATE_LINK_SCOPE),
                resource_group_name=rg_name,
                location="global",
                # Only resources in the scope, only through its private endpoint.
                access_mode_settings=monitor.AccessModeSettingsArgs(
                    ingestion_access_mode="PrivateOnly", query_access_mode="PrivateOnly"
                ),
                tags=tags,
                opts=child,
            )
            for target, resource in (("logs", law), ("insights", appi)):
                monitor.PrivateLinkScopedResource(
                    f"{name}-monitor-scope-{target}",
                    name=target,
                    scope_name=scope.name,
                    resource_group_name=rg_name,
                    linked_resource_id=resource.id,
                    opts=child,
                )
            self.monitor_private_link_scope_id = scope.id

        self.resource_group_name = rg_name
        self.workspace_name = ws.name
        self.workspace_id = ws.id
        self.storage_account_id = st.id
        self.storage_account_name = st.name
        self.key_vault_id = kv.id
        self.registry_id = acr.id
        self.registry_name = acr.name
        self.log_analytics_id = law.id
        self.workspace_principal_id = ws.identity.apply(lambda i: i.principal_id if i else "")
        # Azure ML names the default datastore's container after the workspace's GUID.
        self.default_container_id = pulumi.Output.concat(
            st.id, "/blobServices/default/containers/azureml-blobstore-", ws.workspace_id
        )
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
    if args.isolation_mode == "Disabled":
        return machinelearningservices.ManagedNetworkSettingsArgs(
            isolation_mode=args.isolation_mode
        )
    registries = {
        f"registry-{registry.rsplit('/', 1)[-1].lower()}": (
            machinelearningservices.PrivateEndpointOutboundRuleArgs(
                type="PrivateEndpoint",
                category="UserDefined",
                destination=machinelearningservices.PrivateEndpointDestinationArgs(
                    service_resource_id=registry, subresource_target="amlregistry"
                ),
            )
        )
        for registry in args.model_registries
    }
    if args.isolation_mode != "AllowOnlyApprovedOutbound":
        return machinelearningservices.ManagedNetworkSettingsArgs(
            isolation_mode=args.isolation_mode, outbound_rules=registries or None
        )
    # Each FQDN rule goes through an Azure Firewall that the workspace creates (and bills).
    fqdns = {
        re.sub(r"[^a-z0-9]+", "-", fqdn.lower()).strip("-"): (
            machinelearningservices.FqdnOutboundRuleArgs(
                type="FQDN", category="UserDefined", destination=fqdn
            )
        )
        for fqdn in args.outbound_fqdns
    }
    return machinelearningservices.ManagedNetworkSettingsArgs(
        isolation_mode=args.isolation_mode,
        firewall_sku=args.firewall_sku if fqdns else None,
        outbound_rules={**fqdns, **registries} or None,
    )


def diagnostics(
    resource_name: str,
    resource_uri: pulumi.Input[str],
    log_analytics_id: pulumi.Input[str],
    metric_category: str | None,
    opts: pulumi.ResourceOptions,
    log_categories: Sequence[str] = (),
) -> monitor.DiagnosticSetting:
    """Send a resource's logs (the named categories, else all) and metrics to Log Analytics."""
    logs = [
        monitor.DiagnosticsLogSettingsArgs(category=category, enabled=True)
        for category in log_categories
    ] or [monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)]
    return monitor.DiagnosticSetting(
        resource_name,
        name="to-log-analytics",
        resource_uri=resource_uri,
        workspace_id=log_analytics_id,
        log_analytics_destination_type="Dedicated",
        logs=logs,
        metrics=[monitor.DiagnosticsMetricSettingsArgs(category=metric_category, enabled=True)]
        if metric_category
        else None,
        opts=opts,
    )
