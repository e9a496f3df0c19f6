"""Run a declared release: the rollout of one deployment spec, with its Azure clients.

`pulumi up` declares releases (`infra.rollout.Rollout`; the stack exports them as `releases`);
this runs one of them, from the same plain values, in `pulumi up` itself (`release: inline`) or
in the release job (`python -m delivery release`, `release: stage`). Nothing here imports Pulumi.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from delivery.alerts import AlertSource, AzureMonitorAlerts
from delivery.autoscale import AutoscaleClient, AutoscaleSpec, AzureAutoscale
from delivery.rollout import DeploymentSpec, RolloutPolicy, RolloutResult, rollout
from delivery.workspace import AzureMLWorkspace, WorkspaceClient, WorkspaceRef

WorkspaceFactory = Callable[[WorkspaceRef], WorkspaceClient]
AlertsFactory = Callable[[WorkspaceRef], AlertSource]
AutoscaleFactory = Callable[[WorkspaceRef], AutoscaleClient]


def connect(ref: WorkspaceRef) -> WorkspaceClient:
    """The real workspace (`delivery.credential`)."""
    return AzureMLWorkspace.connect(ref)


def connect_alerts(ref: WorkspaceRef) -> AlertSource:
    """Azure Monitor alerts (`delivery.credential`)."""
    return AzureMonitorAlerts.connect(ref)


def connect_autoscale(ref: WorkspaceRef) -> AutoscaleClient:
    """ARM autoscale settings (`delivery.credential`)."""
    return AzureAutoscale.connect(ref)


def workspace_ref(declared: Mapping[str, Any]) -> WorkspaceRef:
    """The workspace a declared release targets."""
    return WorkspaceRef(
        declared["subscription_id"], declared["resource_group_name"], declared["workspace_name"]
    )


def release_from_outputs(
    declared: Mapping[str, Any],
    workspace_factory: WorkspaceFactory = connect,
    alerts_factory: AlertsFactory = connect_alerts,
    autoscale_factory: AutoscaleFactory = connect_autoscale,
    base_dir: Path | None = None,
) -> RolloutResult:
    """Run one declared release (a Rollout's outputs, as the stack exports them)."""
    policy = RolloutPolicy.from_props(declared["policy"])
    ref = workspace_ref(declared)
    scale = declared.get("autoscale")
    return rollout(
        workspace_factory(ref),
        declared["endpoint_name"],
        DeploymentSpec.from_props(declared["deployment"]),
        policy,
        base_dir=base_dir,
        # Only a policy that watches alerts needs a monitor client.
        alerts=alerts_factory(ref) if policy.watch_alerts else None,
        autoscale=autoscale_factory(ref) if scale else None,
        scale=AutoscaleSpec.from_props(scale) if scale else None,
    )
