"""Azure Monitor for the endpoints: one action group and metric alerts per deployment pattern.

Per pattern, three rules are scoped to the endpoint and split by its `deployment` dimension, so
each blue/green slot gets its own alert instance and a rollout can tell which slot fired:
server errors (5xx), throttling (429) and p95 latency. A fourth watches instance health on the
live deployment (`DeploymentCapacity` below the floor), following the slot like autoscale does.
Metric names and dimensions: Azure Monitor's supported-metrics reference for
`Microsoft.MachineLearningServices/workspaces/onlineEndpoints` (and `/deployments`).

The rule names come from `alert_rule_name`, a pure function, so the rollout can watch them by
name without waiting for these resources (a rule that does not exist yet cannot fire).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import monitor

from infra.config_operations import AlertSettings, MonitoringSettings
from infra.naming import Kind, Namer

ENDPOINT_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
DEPLOYMENT_NAMESPACE = f"{ENDPOINT_NAMESPACE}/deployments"
# Signals watched during rollouts (endpoint-scoped, split by slot) and after them.
ROLLOUT_SIGNALS = ("5xx", "429", "p95")
SIGNALS = (*ROLLOUT_SIGNALS, "instances")


def alert_rule_name(namer: Namer, pattern: str, signal: str) -> str:
    """The metric alert rule name for one pattern and signal (`alert-byom-generate-5xx-dev-…`)."""
    return namer.name(Kind.METRIC_ALERT, f"{pattern}-{signal}")


@dataclass(frozen=True)
class AlertTarget:
    """One pattern's endpoint and what its alerts compare against."""

    endpoint_id: pulumi.Input[str]
    live_deployment_id: pulumi.Input[str] | None
    """ARM id of the live slot (instance health); None before any rollout."""
    request_timeout_ms: int
    min_instances: int


@dataclass(frozen=True)
class MonitoringArgs:
    """Inputs of the monitoring component."""

    namer: Namer
    resource_group_name: pulumi.Input[str]
    tags: Mapping[str, str]
    settings: MonitoringSettings
    targets: Mapping[str, AlertTarget]
    """Per pattern."""


class Monitoring(pulumi.ComponentResource):
    """The action group and, when alerts are enabled, the metric alert rules per pattern."""

    action_group_id: pulumi.Output[str]
    """ARM id of the action group every rule notifies."""
    alert_rules: dict[str, list[str]]
    """Per pattern: the names of its metric alert rules."""

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("byom:monitoring:Monitoring", name, None, opts)
        s = args.settings
        group = monitor.ActionGroup(
            f"{name}-action-group",
            action_group_name=args.namer.name(Kind.ACTION_GROUP),
            resource_group_name=args.resource_group_name,
            # Action groups are global resources.
            location="Global",
            group_short_name=s.action_group_short_name,
            enabled=True,
            email_receivers=[
                monitor.MicrosoftCommonEmailReceiverArgs(
                    name=f"email-{i}", email_address=email, use_common_alert_schema=True
                )
                for i, email in enumerate(s.emails)
            ],
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.action_group_id = group.id
        self.alert_rules = {}
        if s.alerts.enabled:
            for pattern, target in args.targets.items():
                self.alert_rules[pattern] = self._rules(name, args, pattern, target, group)
        self.register_outputs({"actionGroupId": group.id, "alertRules": self.alert_rules})

    def _rules(
        self,
        name: str,
        args: MonitoringArgs,
        pattern: str,
        target: AlertTarget,
        group: monitor.ActionGroup,
    ) -> list[str]:
        a = args.settings.alerts
        latency = a.latency_p95_ms or int(target.request_timeout_ms * 0.8)
        per_slot = monitor.MetricDimensionArgs(name="deployment", operator="Include", values=["*"])
        endpoint_rules = {
            "5xx": (
                "RequestsPerMinute",
                a.server_errors_per_minute,
                [per_slot, _dimension("statusCodeClass", "5xx")],
                f"more than {a.server_errors_per_minute} server errors (5xx) a minute",
            ),
            "429": (
                "RequestsPerMinute",
                a.throttled_per_minute,
                [per_slot, _dimension("statusCode", "429")],
                f"more than {a.throttled_per_minute} throttled requests (429) a minute",
            ),
            "p95": (
                "RequestLatency_P95",
                latency,
                [per_slot],
                f"p95 latency above {latency} ms",
            ),
        }
        names = []
        for signal, (metric, threshold, dimensions, what) in endpoint_rules.items():
            names.append(
                self._alert(
                    f"{name}-{pattern}-{signal}",
                    args,
                    alert_rule_name(args.namer, pattern, signal),
                    f"'{pattern}' endpoint, per deployment: {what} over {a.window_minutes} min.",
                    target.endpoint_id,
                    ENDPOINT_NAMESPACE,
                    _criterion(signal, metric, "GreaterThan", threshold, "Average", dimensions),
                    a,
                    group,
                )
            )
        if target.live_deployment_id is not None:
            names.append(
                self._alert(
                    f"{name}-{pattern}-instances",
                    args,
                    alert_rule_name(args.namer, pattern, "instances"),
                    f"'{pattern}' live deployment: fewer than {target.min_instances} instances "
                    "(lost or recreated).",
                    target.live_deployment_id,
                    DEPLOYMENT_NAMESPACE,
                    _criterion(
                        "instances",
                        "DeploymentCapacity",
                        "LessThan",
                        target.min_instances,
                        "Minimum",
                        [],
                    ),
                    a,
                    group,
                )
            )
        return names

    def _alert(
        self,
        resource_name: str,
        args: MonitoringArgs,
        rule_name: str,
        description: str,
        scope: pulumi.Input[str],
        namespace: str,
        criterion: monitor.MetricCriteriaArgs,
        a: AlertSettings,
        group: monitor.ActionGroup,
    ) -> str:
        monitor.MetricAlert(
            resource_name,
            rule_name=rule_name,
            resource_group_name=args.resource_group_name,
            location="global",
            description=description,
            severity=a.severity,
            enabled=True,
            scopes=[scope],
            target_resource_type=namespace,
            evaluation_frequency="PT1M",
            window_size=f"PT{a.window_minutes}M",
            criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[criterion],
            ),
            # Resolve by itself when the metric recovers, so a later rollout is not blocked.
            auto_mitigate=True,
            actions=[monitor.MetricAlertActionArgs(action_group_id=group.id)],
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return rule_name


def _dimension(name: str, value: str) -> monitor.MetricDimensionArgs:
    return monitor.MetricDimensionArgs(name=name, operator="Include", values=[value])


def _criterion(
    name: str,
    metric: str,
    operator: str,
    threshold: float,
    aggregation: str,
    dimensions: list[monitor.MetricDimensionArgs],
) -> monitor.MetricCriteriaArgs:
    return monitor.MetricCriteriaArgs(
        criterion_type="StaticThresholdCriterion",
        name=name,
        metric_name=metric,
        operator=operator,
        threshold=threshold,
        time_aggregation=aggregation,
        dimensions=dimensions or None,
    )
