"""`pulumi up` runs the rollout: a dynamic provider whose create/update call `delivery.rollout`.

The infrastructure stack declares the endpoint (with its traffic left to this resource) and one
`Rollout` per deployment pattern. Preview only diffs inputs, so offline plans never call Azure;
`diff` compares inputs, so an unchanged re-run is a no-op before any Azure call, and `rollout`
itself is idempotent for the runs that do reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)

from delivery.alerts import AlertSource, AzureMonitorAlerts
from delivery.packaging import list_files, tree_hash
from delivery.rollout import DeploymentSpec, RolloutPolicy, RolloutResult, retire, rollout
from delivery.workspace import AzureMLWorkspace, WorkspaceClient, WorkspaceRef

# Moving to another workspace or endpoint is a new resource: create there, retire here.
REPLACE_KEYS = ("subscription_id", "resource_group_name", "workspace_name", "endpoint_name")
INPUT_KEYS = (*REPLACE_KEYS, "deployment", "policy")

WorkspaceFactory = Callable[[WorkspaceRef], WorkspaceClient]
AlertsFactory = Callable[[WorkspaceRef], AlertSource]


def connect(ref: WorkspaceRef) -> WorkspaceClient:
    """The provider's default: the real workspace over DefaultAzureCredential."""
    return AzureMLWorkspace.connect(ref)


def connect_alerts(ref: WorkspaceRef) -> AlertSource:
    """The provider's default alert source: Azure Monitor over DefaultAzureCredential."""
    return AzureMonitorAlerts.connect(ref)


def code_hash(code_dir: str | Path) -> str:
    """Content hash of the scoring code as uploaded (bytecode caches left out)."""

    def skip(relative: Path) -> bool:
        return any(part == "__pycache__" or part.startswith(".") for part in relative.parts) or (
            relative.suffix == ".pyc"
        )

    return tree_hash(Path(code_dir), list_files(Path(code_dir), skip=skip))


class RolloutProvider(ResourceProvider):
    """CRUD for a blue/green rollout; serialized into the stack state by value (plain fields)."""

    def __init__(
        self,
        workspace_factory: WorkspaceFactory = connect,
        alerts_factory: AlertsFactory = connect_alerts,
    ) -> None:
        super().__init__()
        self._workspace_factory = workspace_factory
        self._alerts_factory = alerts_factory

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        for key, build in (
            ("deployment", DeploymentSpec.from_props),
            ("policy", RolloutPolicy.from_props),
        ):
            try:
                build(news[key])
            except (KeyError, TypeError, ValueError) as exc:
                failures.append(CheckFailure(key, f"invalid {key}: {exc}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUT_KEYS if _plain(olds.get(k)) != _plain(news.get(k))]
        return DiffResult(
            changes=bool(changed),
            replaces=[k for k in changed if k in REPLACE_KEYS],
            stables=[k for k in REPLACE_KEYS if k not in changed],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        result = self._rollout(props)
        return CreateResult(
            f"{_ref(props).arm_id}/onlineEndpoints/{result.endpoint}", _outs(props, result)
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(_outs(news, self._rollout(news)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        retire(self._workspace_factory(_ref(props)), props["endpoint_name"])

    def _rollout(self, props: Mapping[str, Any]) -> RolloutResult:
        policy = RolloutPolicy.from_props(props["policy"])
        ref = _ref(props)
        return rollout(
            self._workspace_factory(ref),
            props["endpoint_name"],
            DeploymentSpec.from_props(props["deployment"]),
            policy,
            # Only a policy that watches alerts needs a monitor client.
            alerts=self._alerts_factory(ref) if policy.watch_alerts else None,
        )


@dataclass(frozen=True)
class RolloutArgs:
    """Plain inputs the infrastructure stack gives a rollout."""

    subscription_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    workspace_name: pulumi.Input[str]
    endpoint_name: pulumi.Input[str]
    deployment: DeploymentSpec
    policy: RolloutPolicy = field(default_factory=RolloutPolicy)


class Rollout(pulumi.dynamic.Resource, module="byom", name="Rollout"):
    """One pattern's deployment behind an endpoint, rolled out blue/green on every change."""

    live_deployment: pulumi.Output[str]
    """The slot (`blue` or `green`) holding all traffic."""
    live_deployment_id: pulumi.Output[str]
    """ARM id of the live deployment: the autoscale setting's target."""
    previous_deployment: pulumi.Output[str | None]
    """The standby slot kept at 0% for rollback, if any."""
    traffic: pulumi.Output[dict]
    """The endpoint's traffic after the rollout."""
    gate_report: pulumi.Output[str | None]
    """The shadow gate's summary from the last rollout that ran one."""

    def __init__(
        self,
        name: str,
        args: RolloutArgs,
        opts: pulumi.ResourceOptions | None = None,
        provider: ResourceProvider | None = None,
    ) -> None:
        props = rollout_props(args)
        super().__init__(provider or RolloutProvider(), name, props, opts)


def rollout_props(args: RolloutArgs) -> dict[str, Any]:
    """The dynamic resource's inputs (and declared outputs) for `args`."""
    deployment = args.deployment
    if not deployment.code_hash:
        # Hash at program time: a code edit is then an input change Pulumi can see.
        deployment = DeploymentSpec.from_props(
            {**deployment.to_props(), "code_hash": code_hash(deployment.code_dir)}
        )
    return {
        "subscription_id": args.subscription_id,
        "resource_group_name": args.resource_group_name,
        "workspace_name": args.workspace_name,
        "endpoint_name": args.endpoint_name,
        "deployment": deployment.to_props(),
        "policy": args.policy.to_props(),
        "live_deployment": None,
        "live_deployment_id": None,
        "previous_deployment": None,
        "traffic": None,
        "gate_report": None,
    }


def _ref(props: Mapping[str, Any]) -> WorkspaceRef:
    return WorkspaceRef(
        props["subscription_id"], props["resource_group_name"], props["workspace_name"]
    )


def _outs(props: Mapping[str, Any], result: RolloutResult) -> dict[str, Any]:
    return {
        **{k: props[k] for k in INPUT_KEYS},
        "live_deployment": result.live,
        "live_deployment_id": result.deployment_id,
        "previous_deployment": result.previous,
        "traffic": dict(result.traffic),
        "gate_report": result.gate_report,
    }


def _plain(value: Any) -> Any:
    # Pulumi hands back numbers as floats; compare 10 and 10.0 as equal.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
