"""Composition root: read the stack settings, build the components in order, export outputs."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_azure_native import authorization

from infra.compute import Compute, ComputeArgs
from infra.config import load_settings
from infra.endpoints import Endpoints, EndpointsArgs
from infra.identity import Identity, IdentityArgs
from infra.monitoring import AlertTarget, Monitoring, MonitoringArgs
from infra.naming import Kind
from infra.network import Network, NetworkArgs, platform_targets
from infra.release_runner import ReleaseRunner, ReleaseRunnerArgs
from infra.workspace import Workspace, WorkspaceArgs


def main() -> dict[str, Any]:
    """Declare the platform for the current stack; returns the exported outputs."""
    # Plain value at the edge: the subscription is part of every globally unique name.
    subscription_id = authorization.get_client_config().subscription_id
    settings = load_settings(subscription_id)
    client = authorization.get_client_config_output()
    n = settings.namer
    tags = settings.tags.as_dict()
    ws_settings = settings.workspace
    cluster_name = n.name(Kind.COMPUTE_CLUSTER) if settings.compute.cluster else None
    private_endpoints = settings.network.private_endpoints
    # A private registry cannot build images itself; the cluster does it instead.
    image_build_compute = cluster_name if settings.network.private else None

    workspace = Workspace(
        "workspace",
        WorkspaceArgs(
            namer=n,
            location=settings.location,
            tenant_id=client.tenant_id,
            tags=tags,
            public_network_access=settings.public_network_access,
            isolation_mode=ws_settings.isolation_mode,
            firewall_sku=ws_settings.firewall_sku,
            storage_sku=ws_settings.storage_sku,
            storage_shared_key_access=ws_settings.storage_shared_key_access,
            registry_sku=ws_settings.registry_sku,
            log_retention_days=ws_settings.log_retention_days,
            high_business_impact=ws_settings.high_business_impact,
            outbound_fqdns=ws_settings.outbound_fqdns,
            existing_resource_group=ws_settings.existing_resource_group,
            image_build_compute=image_build_compute,
            protect=ws_settings.protect,
            blob_soft_delete_days=ws_settings.blob_soft_delete_days,
            blob_versioning=ws_settings.blob_versioning,
            key_vault_purge_protection=ws_settings.key_vault_purge_protection,
            registry_zone_redundancy=ws_settings.registry_zone_redundancy,
            registry_export=ws_settings.registry_export,
            model_registries=ws_settings.model_registries,
            private_monitoring="monitor" in private_endpoints,
        ),
    )

    # The scope of the stack's resource-group-wide grants and custom roles.
    resource_group_id = pulumi.Output.concat(
        "/subscriptions/", client.subscription_id, "/resourceGroups/", workspace.resource_group_name
    )

    network = None
    if private_endpoints:
        network = Network(
            "network",
            NetworkArgs(
                namer=n,
                location=settings.location,
                resource_group_name=workspace.resource_group_name,
                tags=tags,
                address_space=settings.network.address_space,
                private_endpoint_subnet=settings.network.private_endpoint_subnet,
                targets=platform_targets(
                    names=private_endpoints,
                    monitor_private_link_scope_id=workspace.monitor_private_link_scope_id,
                    workspace_id=workspace.workspace_id,
                    storage_account_id=workspace.storage_account_id,
                    key_vault_id=workspace.key_vault_id,
                    registry_id=workspace.registry_id,
                ),
            ),
        )

    runner = None
    runner_settings = settings.release_runner
    if runner_settings is not None and (network is None or not settings.network.private):
        # A public stack releases from GitHub's own runners; nothing to build.
        pulumi.log.warn("releaseRunner is set but network.private is false: no runner is built")
    elif runner_settings is not None and network is not None:
        runner = ReleaseRunner(
            "release",
            ReleaseRunnerArgs(
                namer=n,
                stack=settings.stack,
                location=settings.location,
                tags=tags,
                resource_group_name=workspace.resource_group_name,
                resource_group_id=resource_group_id,
                subscription_id=client.subscription_id,
                vnet_name=network.vnet_name,
                workspace_id=workspace.workspace_id,
                storage_account_id=workspace.storage_account_id,
                registry_id=workspace.registry_id,
                settings=runner_settings,
            ),
        )

    identity = Identity(
        "identity",
        IdentityArgs(
            namer=n,
            location=settings.location,
            subscription_id=client.subscription_id,
            resource_group_name=workspace.resource_group_name,
            resource_group_id=resource_group_id,
            tags=tags,
            workspace_id=workspace.workspace_id,
            storage_account_id=workspace.storage_account_id,
            registry_id=workspace.registry_id,
            data_scientists=settings.identity.data_scientists,
            deployer=settings.identity.deployer,
            promoters=settings.identity.promoters,
            invoker_role_id=settings.identity.invoker_role_id,
            workspace_principal_id=(
                workspace.workspace_principal_id if ws_settings.managed_network else None
            ),
            image_builder=image_build_compute is not None,
            capture_container_id=(
                workspace.default_container_id if settings.request_capture else None
            ),
        ),
    )

    compute = None
    if settings.compute.instance or settings.compute.cluster:
        compute = Compute(
            "compute",
            ComputeArgs(
                namer=n,
                location=settings.location,
                tenant_id=client.tenant_id,
                resource_group_name=workspace.resource_group_name,
                workspace_name=workspace.workspace_name,
                identity_id=identity.compute_identity_id,
                tags=tags,
                # Without the managed network there is no other way out to the internet.
                node_public_ip=not ws_settings.managed_network,
                instance=settings.compute.instance,
                cluster=settings.compute.cluster,
                cluster_name=cluster_name,
                depends_on=identity.network_role_assignments,
            ),
        )

    endpoints = None
    if settings.endpoints is not None:
        endpoints = Endpoints(
            "endpoints",
            EndpointsArgs(
                namer=n,
                location=settings.location,
                tags=tags,
                subscription_id=client.subscription_id,
                resource_group_name=workspace.resource_group_name,
                workspace_name=workspace.workspace_name,
                identity_id=identity.endpoint_identity_id,
                identity_grants=[
                    *identity.endpoint_role_assignments,
                    *identity.network_role_assignments,
                ],
                deployer_grants=identity.deployer_role_assignments,
                log_analytics_id=workspace.log_analytics_id,
                invoker_role_definition_id=identity.invoker_role_definition_id,
                invokers=settings.identity.invokers,
                settings=settings.endpoints,
                monitoring=settings.monitoring,
            ),
        )

    monitoring = None
    if endpoints is not None and settings.endpoints and settings.monitoring:
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                namer=n,
                resource_group_name=workspace.resource_group_name,
                tags=tags,
                settings=settings.monitoring,
                targets={
                    d.pattern: AlertTarget(
                        endpoint_id=endpoints.endpoints[d.pattern]["id"],
                        live_deployment_id=endpoints.live_deployment_ids.get(d.pattern),
                        request_timeout_ms=d.request_timeout_ms,
                        min_instances=d.min_instances,
                    )
                    for d in settings.endpoints.deployments
                },
            ),
        )

    outputs: dict[str, Any] = {
        "location": settings.location,
        "subscriptionId": client.subscription_id,
        "tenantId": client.tenant_id,
        "resourceGroupName": workspace.resource_group_name,
        "workspaceName": workspace.workspace_name,
        "workspaceId": workspace.workspace_id,
        "storageAccountName": workspace.storage_account_name,
        "registryName": workspace.registry_name,
        "endpointIdentityId": identity.endpoint_identity_id,
        "endpointIdentityClientId": identity.endpoint_identity_client_id,
        "computeIdentityId": identity.compute_identity_id,
        "invokerRoleDefinitionId": identity.invoker_role_definition_id,
        "privateDnsZoneIds": network.dns_zone_ids if network else {},
        "computeInstanceName": compute.instance_name if compute else None,
        "computeClusterName": compute.cluster_name if compute else None,
        "endpoints": endpoints.endpoints if endpoints else {},
        # Read by `python -m delivery release` (no stack lock): the declared releases.
        "releases": endpoints.releases if endpoints else {},
        "actionGroupId": monitoring.action_group_id if monitoring else None,
        "alertRules": monitoring.alert_rules if monitoring else {},
        # Release jobs of a private stack: `runs-on: [self-hosted, <label>]`, as this identity.
        "releaseRunnerLabel": runner.label if runner else None,
        "releaseIdentityClientId": runner.identity_client_id if runner else None,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
