"""Managed online endpoints, one per scoring pattern, with blue/green rollouts and autoscale.

The endpoint/deployment traffic cycle (an endpoint's traffic may only name deployments that
exist) is broken by ownership: Pulumi declares the endpoint without traffic and ignores the
traffic the service reports; `infra.rollout.Rollout` creates the deployment slot,
smoke-tests it, compares it with the live slot on probe texts (the shadow gate), and moves
traffic to it in baked steps while watching the pattern's alert rules (`infra.monitoring`). Each
slot gets its own autoscale setting from the rollout (`delivery.autoscale`), created before the
slot takes traffic (Azure cannot re-point one: its target is create-only), with an off-hours
profile when configured. Traffic, console and event logs go to Log Analytics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pulumi
from pulumi_azure_native import machinelearningservices as ml
from pulumiverse_time import Sleep

from delivery.stages import TAG_RELEASE
from infra import roles
from infra.config_endpoints import DeploymentSettings, EndpointsSettings
from infra.config_operations import MonitoringSettings
from infra.config_platform import PrincipalSettings
from infra.monitoring import ROLLOUT_SIGNALS, alert_rule_name
from infra.naming import Kind, Namer
from infra.workspace import diagnostics
from scoring.settings import ScoringSettings

# Entra role assignments take up to a few minutes to reach the data planes (mlops-v2 waits 120 s).
RBAC_PROPAGATION = "120s"
ENDPOINT_LOGS = (
    "AmlOnlineEndpointTrafficLog",
    "AmlOnlineEndpointConsoleLog",
    "AmlOnlineEndpointEventLog",
)


@dataclass(frozen=True)
class EndpointsArgs:
    """Inputs of the endpoints component."""

    namer: Namer
    location: str
    tags: Mapping[str, str]
    subscription_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    workspace_name: pulumi.Input[str]
    identity_id: pulumi.Input[str]
    """User-assigned identity the endpoints run as."""
    identity_grants: Sequence[pulumi.Resource]
    """Role assignments (and the managed network's approval grant) an endpoint needs first."""
    deployer_grants: Sequence[pulumi.Resource]
    """Role assignments the release's principal needs before it uploads and deploys."""
    log_analytics_id: pulumi.Input[str]
    """Where the endpoints' traffic, console and event logs go."""
    invoker_role_definition_id: pulumi.Input[str]
    invokers: Sequence[PrincipalSettings]
    settings: EndpointsSettings
    monitoring: MonitoringSettings | None = None
    """Data collection for the deployments and the alert rules rollouts watch."""


class Endpoints(pulumi.ComponentResource):
    """One endpoint per pattern and a rollout per deployment (which autoscales each slot)."""

    endpoints: dict[str, dict[str, pulumi.Output[Any]]]
    """Per pattern: endpoint `name`, `id`, `scoringUri`, and `liveDeployment` once rolled out."""
    live_deployment_ids: dict[str, pulumi.Output[str]]
    """Per pattern with a rollout: ARM id of the live slot (instance alerts)."""
    releases: dict[str, pulumi.Output[Any]]
    """Per pattern with a rollout: what `python -m delivery release` rolls out (stage mode)."""

    def __init__(self, name: str, args: EndpointsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("byom:endpoints:Endpoints", name, None, opts)
        n = args.namer
        s = args.settings
        tags = dict(args.tags)
        self.endpoints = {}
        self.live_deployment_ids = {}
        self.releases = {}
        settled: list[pulumi.Resource] = []
        if s.assets is not None and args.deployer_grants:
            # New grants reach the storage and workspace data planes only after a while; the
            # release's first upload must not race them.
            settled = [
                Sleep(
                    f"{name}-rbac-propagation",
                    create_duration=RBAC_PROPAGATION,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.deployer_grants)),
                )
            ]

        for deployment in s.deployments:
            pattern = deployment.pattern
            endpoint = ml.OnlineEndpoint(
                f"{name}-{pattern}",
                endpoint_name=n.name(Kind.ONLINE_ENDPOINT, pattern),
                resource_group_name=args.resource_group_name,
                workspace_name=args.workspace_name,
                location=args.location,
                kind="Managed",
                identity=ml.ManagedServiceIdentityArgs(
                    type="UserAssigned", user_assigned_identities=[args.identity_id]
                ),
                properties=ml.OnlineEndpointPropertiesArgs(
                    auth_mode=s.auth_mode,
                    # The SDK would fill in "Enabled".
                    public_network_access=s.public_network_access,
                    description=f"Scoring pattern '{pattern}' (azureml-byom).",
                ),
                tags=tags,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # A user-assigned identity gets no automatic grants; without these the
                    # first deployment fails to pull its image.
                    depends_on=list(args.identity_grants),
                    # Traffic belongs to the rollout; Pulumi must not reset it.
                    # The release record tag is written with each traffic change (delivery).
                    ignore_changes=[
                        "properties.traffic",
                        "properties.mirrorTraffic",
                        f'tags["{TAG_RELEASE}"]',
                    ],
                    # Auth mode and name are create-only; the name is fixed, so delete first.
                    delete_before_replace=True,
                ),
            )
            outputs: dict[str, pulumi.Output[Any]] = {
                "name": endpoint.name,
                "id": endpoint.id,
                "scoringUri": endpoint.properties.scoring_uri,
            }

            diagnostics(
                f"{name}-{pattern}-diagnostics",
                endpoint.id,
                args.log_analytics_id,
                "AllMetrics",
                pulumi.ResourceOptions(parent=self),
                log_categories=ENDPOINT_LOGS,
            )

            for invoker in args.invokers:
                roles.assign(
                    f"{name}-{pattern}-invoker-{invoker.object_id[:8]}",
                    scope=endpoint.id,
                    role_definition_id=args.invoker_role_definition_id,
                    principal_id=invoker.object_id,
                    principal_type=invoker.principal_type,
                    description=f"May score the '{pattern}' endpoint.",
                    opts=pulumi.ResourceOptions(parent=self),
                )

            if s.assets is not None:
                rollout = self._rollout(name, args, deployment, endpoint, settled)
                outputs["liveDeployment"] = rollout.live_deployment
                self.live_deployment_ids[pattern] = rollout.live_deployment_id
                self.releases[pattern] = _declared_release(rollout)
            self.endpoints[pattern] = outputs

        self.register_outputs({"endpoints": self.endpoints})

    def _rollout(
        self,
        name: str,
        args: EndpointsArgs,
        deployment: DeploymentSettings,
        endpoint: ml.OnlineEndpoint,
        settled: Sequence[pulumi.Resource],
    ) -> pulumi.Resource:
        # Imported here: stacks without registered assets (the very first `pulumi up`) do not
        # need the provider.
        from delivery.spec import DataCollectionSpec, DeploymentSpec
        from infra.rollout import Rollout, RolloutArgs

        s = args.settings
        if s.assets is None:
            raise ValueError("a rollout needs registered model and environment assets")
        patterns = deployment.pattern
        if s.rollout.gate.enabled and deployment.pattern != "analyze":
            # The gate compares slots with token analysis; the same model copy answers it.
            patterns = f"{deployment.pattern},analyze"
        env = {**deployment.environment_variables, **ScoringSettings.environment(patterns=patterns)}
        capture = DataCollectionSpec()
        watch: tuple[str, ...] = ()
        if args.monitoring is not None:
            m = args.monitoring
            if m.data_collection.enabled:
                dc = m.data_collection
                capture = DataCollectionSpec(True, dc.sampling_rate, dc.rolling_rate)
                env |= ScoringSettings.environment(
                    capture=True,
                    capture_sample_rate=dc.sampling_rate,
                    redact_fields=dc.redact_fields or None,  # None: none beyond the patterns
                )
            if m.alerts.enabled:
                watch = tuple(
                    alert_rule_name(args.namer, deployment.pattern, signal)
                    for signal in ROLLOUT_SIGNALS
                )
        spec = DeploymentSpec(
            pattern=deployment.pattern,
            model=s.assets.model_asset_id,
            environment=s.assets.environment_for(deployment.server),
            instance_type=deployment.instance_type,
            instance_count=deployment.instance_count,
            code_dir=s.code_dir,
            scoring_script=s.scoring_script,
            max_concurrent_requests_per_instance=deployment.max_concurrent_requests_per_instance,
            request_timeout_ms=deployment.request_timeout_ms,
            liveness_probe=deployment.liveness_probe,
            readiness_probe=deployment.readiness_probe,
            environment_variables=env,
            # Create-only in Azure; a change makes the rollout build a new slot. None (not sent)
            # with a managed network, where the flag no longer applies.
            egress_public_network_access=s.egress_public_network_access,
            app_insights_enabled=True,
            data_collection=capture,
            server=deployment.server,
        )
        # With autoscale on, the rollout never sets a live deployment's instance count.
        policy = replace(s.rollout, autoscale=deployment.autoscale is not None, watch_alerts=watch)
        return Rollout(
            f"{name}-{deployment.pattern}-rollout",
            RolloutArgs(
                subscription_id=args.subscription_id,
                resource_group_name=args.resource_group_name,
                workspace_name=args.workspace_name,
                endpoint_name=endpoint.name,
                deployment=spec,
                policy=policy,
                # Per-slot autoscale settings (`delivery.autoscale`), not a Pulumi
                # `AutoscaleSetting`: its target is create-only in Azure, so one setting
                # re-pointed at each new live slot fails (TargetResourceIdIsImmutable).
                autoscale=(
                    deployment.autoscale.for_deployment(
                        args.location, deployment.instance_count, args.tags
                    )
                    if deployment.autoscale is not None
                    else None
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(settled)),
        )


def _declared_release(rollout: Any) -> pulumi.Output[Any]:
    from infra.rollout import INPUT_KEYS

    return pulumi.Output.all(**{key: getattr(rollout, key) for key in INPUT_KEYS})
