"""`pulumi up` runs the rollout: a dynamic provider whose create/update call `delivery.rollout`.

The infrastructure stack declares the endpoint (with its traffic left to this resource) and one
`Rollout` per deployment pattern. Preview only diffs, so offline plans never call Azure; `diff`
compares inputs, and also what the last refresh saw (`read`): after a manual rollback or any change
made outside Pulumi, `pulumi refresh` (or `up --refresh`) shows the real split and live slot, and
the next `up` rolls the declared spec out again. `rollout` itself is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from delivery import codeasset
from delivery.autoscale import AutoscaleSpec
from delivery.release import (
    AlertsFactory,
    AutoscaleFactory,
    WorkspaceFactory,
    connect,
    connect_alerts,
    connect_autoscale,
    release_from_outputs,
)
from delivery.rollout import (
    SLOTS,
    TAG_FINGERPRINT,
    DeploymentSpec,
    RolloutPolicy,
    RolloutResult,
    next_slot,
    retire,
)
from delivery.spec import DEFAULT_SCORING_SCRIPT
from delivery.workspace import WorkspaceRef

# Moving to another workspace or endpoint is a new resource: create there, retire here.
REPLACE_KEYS = ("subscription_id", "resource_group_name", "workspace_name", "endpoint_name")
INPUT_KEYS = (*REPLACE_KEYS, "deployment", "policy", "autoscale")


def code_hash(code_dir: str | Path, entry: str = DEFAULT_SCORING_SCRIPT) -> str:
    """Content hash of the scoring code as uploaded: the entry script and what it imports
    (`delivery.codeasset`), not the client, CLI, report or demo tools beside it."""
    return codeasset.code_hash(code_dir, entry)


class RolloutProvider(ResourceProvider):
    """CRUD for a blue/green rollout; serialized into the stack state by value (plain fields)."""

    def __init__(
        self,
        workspace_factory: WorkspaceFactory = connect,
        alerts_factory: AlertsFactory = connect_alerts,
        autoscale_factory: AutoscaleFactory = connect_autoscale,
    ) -> None:
        super().__init__()
        self._workspace_factory = workspace_factory
        self._alerts_factory = alerts_factory
        self._autoscale_factory = autoscale_factory

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
        if not changed and _drifted(olds, news):
            # What serves is not what is declared (seen by the last refresh): roll it out again.
            changed = ["deployment"]
        return DiffResult(
            changes=bool(changed),
            replaces=[k for k in changed if k in REPLACE_KEYS],
            stables=[k for k in REPLACE_KEYS if k not in changed],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        id_ = f"{_ref(props).arm_id}/onlineEndpoints/{props['endpoint_name']}"
        if _staged(props):
            return CreateResult(id_, self.read(id_, props).outs or _declared(props))
        result = self._rollout(props)
        return CreateResult(id_, _outs(props, result))

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if _staged(news):
            # Declared only: `python -m delivery release` runs it, outside this stack's lock.
            return UpdateResult(self.read(id_, news).outs or _declared(news))
        return UpdateResult(_outs(news, self._rollout(news)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """What serves now: the real split, live slot and its spec fingerprint (for refresh)."""
        workspace = self._workspace_factory(_ref(props))
        state = workspace.get_endpoint(props["endpoint_name"])
        if state is None:
            return ReadResult(None, {})
        deployments = {d.name: d for d in workspace.list_deployments(state.name)}
        live = deployments.get(state.live or "")
        standby = next_slot(live.name) if live is not None and live.name in SLOTS else None
        return ReadResult(
            id_,
            {
                **props,
                "live_deployment": live.name if live else None,
                "live_deployment_id": live.id if live else None,
                "live_fingerprint": live.tags.get(TAG_FINGERPRINT) if live else None,
                "previous_deployment": standby if standby in deployments else None,
                "traffic": dict(state.traffic),
            },
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        retire(self._workspace_factory(_ref(props)), props["endpoint_name"])

    def _rollout(self, props: Mapping[str, Any]) -> RolloutResult:
        return release_from_outputs(
            props, self._workspace_factory, self._alerts_factory, self._autoscale_factory
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
    autoscale: AutoscaleSpec | None = None
    """Each live slot gets its own autoscale setting with these rules (None: fixed count)."""


class Rollout(pulumi.dynamic.Resource, module="byom", name="Rollout"):
    """One pattern's deployment behind an endpoint, rolled out blue/green on every change."""

    live_deployment: pulumi.Output[str]
    """The slot (`blue` or `green`) holding all traffic."""
    live_deployment_id: pulumi.Output[str]
    """ARM id of the live deployment (alert and dashboard scopes)."""
    live_fingerprint: pulumi.Output[str | None]
    """Spec fingerprint of the live deployment, as read from Azure."""
    previous_deployment: pulumi.Output[str | None]
    """The standby slot kept at 0% for rollback, if any."""
    traffic: pulumi.Output[dict]
    """The endpoint's traffic after the rollout."""
    deployment: pulumi.Output[dict]
    """The declared deployment spec (what `delivery release` rolls out in `stage` mode)."""
    policy: pulumi.Output[dict]
    autoscale: pulumi.Output[dict | None]
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
            {
                **deployment.to_props(),
                "code_hash": code_hash(deployment.code_dir, deployment.scoring_script),
            }
        )
    return {
        "subscription_id": args.subscription_id,
        "resource_group_name": args.resource_group_name,
        "workspace_name": args.workspace_name,
        "endpoint_name": args.endpoint_name,
        "deployment": deployment.to_props(),
        "policy": args.policy.to_props(),
        "autoscale": args.autoscale.to_props() if args.autoscale else None,
        "live_deployment": None,
        "live_deployment_id": None,
        "live_fingerprint": None,
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
        **{k: props.get(k) for k in INPUT_KEYS},
        "live_deployment": result.live,
        "live_deployment_id": result.deployment_id,
        "live_fingerprint": DeploymentSpec.from_props(props["deployment"]).fingerprint(),
        "previous_deployment": result.previous,
        "traffic": dict(result.traffic),
        "gate_report": result.gate_report,
    }


def _staged(props: Mapping[str, Any]) -> bool:
    return (props.get("policy") or {}).get("release") == "stage"


def _declared(props: Mapping[str, Any]) -> dict[str, Any]:
    # Nothing serves yet (the endpoint is new): outputs say so until the release job runs.
    return {
        **{k: props.get(k) for k in INPUT_KEYS},
        "live_deployment": None,
        "live_deployment_id": None,
        "live_fingerprint": None,
        "previous_deployment": None,
        "traffic": {},
        "gate_report": None,
    }


def _drifted(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    if "live_fingerprint" not in olds or olds.get("live_deployment") is None:
        return False  # state written before this was recorded, or nothing live yet
    seen = olds.get("live_fingerprint")
    wanted = DeploymentSpec.from_props(news["deployment"]).fingerprint()
    live = olds.get("live_deployment")
    share = _plain((olds.get("traffic") or {}).get(live, 0))
    return seen != wanted or share != 100


def _plain(value: Any) -> Any:
    # Pulumi hands back numbers as floats; compare 10 and 10.0 as equal.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
