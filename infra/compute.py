"""Workspace compute: a personal notebook instance and an optional cluster that scales to zero."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import machinelearningservices as ml

from infra.config_platform import ClusterSettings, ComputeInstanceSettings
from infra.naming import Kind, Namer


@dataclass(frozen=True)
class ComputeArgs:
    """Inputs of the compute component."""

    namer: Namer
    location: str
    tenant_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    workspace_name: pulumi.Input[str]
    identity_id: pulumi.Input[str]
    """User-assigned identity the compute runs as."""
    tags: Mapping[str, str]
    node_public_ip: bool
    """False needs the workspace's managed network (or a subnet) for outbound traffic."""
    instance: ComputeInstanceSettings | None = None
    cluster: ClusterSettings | None = None
    cluster_name: str | None = None
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Grants the compute needs first (the managed network's approval: without it the compute
    cannot reach storage, key vault and registry)."""


class Compute(pulumi.ComponentResource):
    """A compute instance with idle shutdown and an optional scale-to-zero cluster."""

    instance_name: pulumi.Output[str] | None
    """Name of the compute instance, if one is declared."""
    cluster_name: pulumi.Output[str] | None
    """Name of the compute cluster, if one is declared."""

    def __init__(self, name: str, args: ComputeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("byom:compute:Compute", name, None, opts)
        n = args.namer
        identity = ml.ManagedServiceIdentityArgs(
            type="UserAssigned", user_assigned_identities=[args.identity_id]
        )
        common = {
            "resource_group_name": args.resource_group_name,
            "workspace_name": args.workspace_name,
            "location": args.location,
            "identity": identity,
            "tags": dict(args.tags),
        }
        # Azure accepts a PUT that changes idle shutdown, schedules or scale settings but ignores
        # it (they are create-time only), so any property change replaces the compute. The
        # names are fixed, so the old one must go first.
        replace = pulumi.ResourceOptions(
            parent=self,
            replace_on_changes=["properties"],
            delete_before_replace=True,
            depends_on=list(args.depends_on),
        )

        self.instance_name = None
        if args.instance is not None:
            ci = args.instance
            schedules = None
            if ci.nightly_stop_cron:
                schedules = ml.ComputeSchedulesArgs(
                    compute_start_stop=[
                        ml.ComputeStartStopScheduleArgs(
                            action="Stop",
                            trigger_type="Cron",
                            status="Enabled",
                            cron=ml.CronArgs(
                                expression=ci.nightly_stop_cron, time_zone=ci.time_zone
                            ),
                        )
                    ]
                )
            instance = ml.Compute(
                f"{name}-instance",
                compute_name=n.name(Kind.COMPUTE_INSTANCE),
                properties=ml.ComputeInstanceArgs(
                    compute_type="ComputeInstance",
                    description="Personal notebook VM.",
                    disable_local_auth=True,
                    properties=ml.ComputeInstancePropertiesArgs(
                        vm_size=ci.vm_size,
                        idle_time_before_shutdown=f"PT{ci.idle_shutdown_minutes}M",
                        schedules=schedules,
                        # The SDK would fill in "Shared"; a personal VM serves its user only.
                        application_sharing_policy="Personal",
                        compute_instance_authorization_type="personal",
                        personal_compute_instance_settings=ml.PersonalComputeInstanceSettingsArgs(
                            assigned_user=ml.AssignedUserArgs(
                                object_id=ci.assigned_user_object_id, tenant_id=args.tenant_id
                            )
                        ),
                        ssh_settings=ml.ComputeInstanceSshSettingsArgs(
                            ssh_public_access="Disabled"
                        ),
                        enable_node_public_ip=args.node_public_ip,
                        enable_sso=True,
                    ),
                ),
                opts=replace,
                **common,
            )
            self.instance_name = instance.name

        self.cluster_name = None
        if args.cluster is not None:
            cc = args.cluster
            cluster = ml.Compute(
                f"{name}-cluster",
                compute_name=args.cluster_name or n.name(Kind.COMPUTE_CLUSTER),
                properties=ml.AmlComputeArgs(
                    compute_type="AmlCompute",
                    description="Jobs and image builds; scales to zero when idle.",
                    disable_local_auth=True,
                    properties=ml.AmlComputePropertiesArgs(
                        vm_size=cc.vm_size,
                        vm_priority=cc.vm_priority,
                        os_type="Linux",
                        scale_settings=ml.ScaleSettingsArgs(
                            min_node_count=0,
                            max_node_count=cc.max_nodes,
                            node_idle_time_before_scale_down=(
                                f"PT{cc.idle_seconds_before_scale_down}S"
                            ),
                        ),
                        enable_node_public_ip=args.node_public_ip,
                        # The SDK default "NotSpecified" opens SSH when credentials are set.
                        remote_login_port_public_access="Disabled",
                    ),
                ),
                opts=replace,
                **common,
            )
            self.cluster_name = cluster.name

        self.register_outputs(
            {"instance_name": self.instance_name, "cluster_name": self.cluster_name}
        )
