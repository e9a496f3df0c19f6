"""Smoke-gated blue/green rollout of one deployment behind one managed online endpoint.

An endpoint has two slots, `blue` and `green`. A new deployment spec goes to the slot that is not
live, at 0% traffic; once it is ready and answers its smoke request, traffic moves to it in steps
(optionally after a mirror phase). The previous slot stays at 0% for `rollback`. A spec that is
already live with all traffic is left alone, so re-running changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from azure.ai.ml.entities import (
    CodeConfiguration,
    ManagedOnlineDeployment,
    OnlineRequestSettings,
    ProbeSettings,
)

from delivery.smoke import SmokeTestError, check_response, smoke_case
from delivery.workspace import (
    SUCCEEDED,
    TERMINAL_FAILURES,
    DeploymentState,
    EndpointState,
    WorkspaceClient,
)

log = logging.getLogger(__name__)

SLOTS = ("blue", "green")
TAG_FINGERPRINT = "byom-fingerprint"
TAG_MODEL = "byom-model"
TAG_ENVIRONMENT = "byom-environment"
TAG_PATTERN = "byom-pattern"


class RolloutError(RuntimeError):
    """A rollout could not complete; traffic is where the message says."""


@dataclass(frozen=True)
class ProbeSpec:
    """Liveness/readiness probe timing, in seconds (LLMs need a long initial delay)."""

    initial_delay_s: int = 600
    period_s: int = 10
    timeout_s: int = 2
    failure_threshold: int = 30
    success_threshold: int = 1

    def to_settings(self) -> ProbeSettings:
        """The azure-ai-ml probe settings."""
        return ProbeSettings(
            initial_delay=self.initial_delay_s,
            period=self.period_s,
            timeout=self.timeout_s,
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
        )


@dataclass(frozen=True)
class DeploymentSpec:
    """What one deployment runs and on what; plain values, so Pulumi can carry it as inputs."""

    pattern: str
    model: str
    environment: str
    instance_type: str
    instance_count: int = 1
    code_dir: str = "scoring"
    scoring_script: str = "score.py"
    code_hash: str = ""
    max_concurrent_requests_per_instance: int = 1
    request_timeout_ms: int = 90_000
    liveness_probe: ProbeSpec = field(default_factory=ProbeSpec)
    readiness_probe: ProbeSpec = field(default_factory=lambda: ProbeSpec(failure_threshold=3))
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    egress_public_network_access: str = "disabled"
    app_insights_enabled: bool = True

    def __post_init__(self) -> None:
        smoke_case(self.pattern)  # an unknown pattern fails here, not after a GPU deployment
        if self.instance_count < 1:
            raise ValueError(f"instance_count must be >= 1, got {self.instance_count}")
        if self.egress_public_network_access not in ("enabled", "disabled"):
            raise ValueError(
                "egress_public_network_access must be 'enabled' or 'disabled', "
                f"got {self.egress_public_network_access!r}"
            )
        if not 1_000 <= self.request_timeout_ms <= 180_000:
            raise ValueError(
                f"request_timeout_ms must be 1000..180000 (the managed endpoint maximum), "
                f"got {self.request_timeout_ms}"
            )

    def fingerprint(self) -> str:
        """A hash of everything that needs a new deployment; instance count is left out because
        capacity changes in place (and autoscale may own it)."""
        props = self.to_props()
        for key in ("instance_count", "code_dir"):
            props.pop(key)
        canonical = json.dumps(props, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_props(self) -> dict[str, Any]:
        """Plain JSON-able values (for Pulumi inputs and the fingerprint)."""
        props = asdict(self)
        props["environment_variables"] = dict(self.environment_variables)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> DeploymentSpec:
        """Rebuild a spec from `to_props` output (Pulumi turns ints into floats; undo that)."""
        values = dict(props)
        for probe in ("liveness_probe", "readiness_probe"):
            if probe in values:
                values[probe] = ProbeSpec(**{k: int(v) for k, v in dict(values[probe]).items()})
        for key in ("instance_count", "max_concurrent_requests_per_instance", "request_timeout_ms"):
            if key in values:
                values[key] = int(values[key])
        values["environment_variables"] = dict(values.get("environment_variables") or {})
        return cls(**values)

    def to_deployment(
        self, endpoint: str, slot: str, base_dir: Path | None = None
    ) -> ManagedOnlineDeployment:
        """The azure-ai-ml deployment entity for a slot, tagged with what it runs."""
        return ManagedOnlineDeployment(
            name=slot,
            endpoint_name=endpoint,
            model=self.model,
            environment=self.environment,
            code_configuration=CodeConfiguration(
                code=str(Path(base_dir or Path.cwd(), self.code_dir)),
                scoring_script=self.scoring_script,
            ),
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            request_settings=OnlineRequestSettings(
                max_concurrent_requests_per_instance=self.max_concurrent_requests_per_instance,
                request_timeout_ms=self.request_timeout_ms,
            ),
            liveness_probe=self.liveness_probe.to_settings(),
            readiness_probe=self.readiness_probe.to_settings(),
            environment_variables=dict(self.environment_variables),
            egress_public_network_access=self.egress_public_network_access,
            app_insights_enabled=self.app_insights_enabled,
            tags={
                TAG_FINGERPRINT: self.fingerprint(),
                TAG_MODEL: self.model,
                TAG_ENVIRONMENT: self.environment,
                TAG_PATTERN: self.pattern,
            },
        )


@dataclass(frozen=True)
class RolloutPolicy:
    """How traffic moves to a new deployment."""

    traffic_steps: tuple[int, ...] = (10, 100)
    # > 0: first copy this share of live traffic to the new deployment (responses discarded)
    mirror_percent: int = 0
    # time at each intermediate step (and the mirror phase) before the re-check and the next step
    step_wait_s: float = 300.0
    ready_timeout_s: float = 3600.0
    poll_interval_s: float = 15.0
    # keep the previous slot at 0% so `rollback` is one traffic update (costs its instances)
    keep_previous: bool = True
    # autoscale owns instance counts: never scale an already-live deployment in place
    autoscale: bool = False

    def __post_init__(self) -> None:
        steps = list(self.traffic_steps)
        if not steps or steps[-1] != 100 or steps != sorted(set(steps)) or steps[0] <= 0:
            raise ValueError(
                f"traffic_steps must rise strictly from above 0 to 100, got {self.traffic_steps}"
            )
        if not 0 <= self.mirror_percent <= 50:
            raise ValueError(
                f"mirror_percent must be 0..50 (service limit), got {self.mirror_percent}"
            )

    def to_props(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        props = asdict(self)
        props["traffic_steps"] = list(self.traffic_steps)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> RolloutPolicy:
        """Rebuild a policy from `to_props` output."""
        values = dict(props)
        values["traffic_steps"] = tuple(int(s) for s in values.get("traffic_steps", (10, 100)))
        if "mirror_percent" in values:
            values["mirror_percent"] = int(values["mirror_percent"])
        return cls(**values)


@dataclass(frozen=True)
class RolloutResult:
    """Where traffic ended up, and every traffic state this rollout applied, in order."""

    endpoint: str
    live: str
    previous: str | None
    changed: bool
    traffic: Mapping[str, int]
    history: tuple[Mapping[str, int], ...] = ()
    deployment_id: str | None = None


def next_slot(live: str | None) -> str:
    """The slot a new deployment takes: the one that is not live (blue when nothing is)."""
    return SLOTS[1] if live == SLOTS[0] else SLOTS[0]


def rollout(
    workspace: WorkspaceClient,
    endpoint: str,
    spec: DeploymentSpec,
    policy: RolloutPolicy | None = None,
    *,
    base_dir: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RolloutResult:
    """Converge the endpoint on `spec` with all traffic; see the module docstring."""
    policy = policy or RolloutPolicy()
    state = _endpoint(workspace, endpoint)
    deployments = {d.name: d for d in workspace.list_deployments(endpoint)}
    fingerprint = spec.fingerprint()

    target, needs_create = _choose_target(state, deployments, fingerprint)
    previous = _previous(state, exclude=target)
    if not needs_create and _serving_all(state, target, deployments[target]):
        live = deployments[target]
        return _keep(workspace, endpoint, state, live, spec, policy, previous, base_dir)

    original = _Traffic(dict(state.traffic), dict(state.mirror_traffic))
    if needs_create:
        if state.traffic.get(target, 0) > 0 or target in state.mirror_traffic:
            # the slot still holds traffic from an interrupted rollout: take it back first
            workspace.set_traffic(endpoint, _all_to(previous), {})
            original = _Traffic(_all_to(previous), {})
        log.info("%s: deploying %s to slot %s at 0%% traffic", endpoint, spec.model, target)
        workspace.begin_create_or_update_deployment(spec.to_deployment(endpoint, target, base_dir))
    ready = _wait_ready(workspace, endpoint, target, fingerprint, policy, sleep, clock)
    try:
        _smoke(workspace, endpoint, target, spec.pattern)
    except SmokeTestError:
        if original.traffic.get(target, 0) > 0 and previous is not None:
            workspace.set_traffic(endpoint, _all_to(previous), {})
        raise

    start = original.traffic.get(target, 0)
    history = _shift(workspace, endpoint, spec.pattern, target, previous, start, policy, sleep)
    if previous is not None and not policy.keep_previous:
        log.info("%s: deleting previous deployment %s", endpoint, previous)
        workspace.delete_deployment(endpoint, previous)
    return RolloutResult(
        endpoint=endpoint,
        live=target,
        previous=previous if policy.keep_previous else None,
        changed=True,
        traffic=history[-1] if history else dict(state.traffic),
        history=tuple(history),
        deployment_id=ready.id,
    )


def rollback(workspace: WorkspaceClient, endpoint: str) -> RolloutResult:
    """Return all traffic to the previous (standby) slot."""
    state = _endpoint(workspace, endpoint)
    live = state.live
    standby = next_slot(live) if live in SLOTS else None
    candidate = workspace.get_deployment(endpoint, standby) if standby else None
    if candidate is None or candidate.provisioning_state != SUCCEEDED:
        raise RolloutError(
            f"{endpoint}: no previous deployment to roll back to (live: {live}, standby "
            f"{standby}: {candidate.provisioning_state if candidate else 'absent'}); traffic "
            f"unchanged at {dict(state.traffic)}"
        )
    traffic = {candidate.name: 100, live: 0}
    workspace.set_traffic(endpoint, traffic, {})
    return RolloutResult(
        endpoint=endpoint,
        live=candidate.name,
        previous=live,
        changed=True,
        traffic=traffic,
        history=(traffic,),
        deployment_id=candidate.id,
    )


def retire(workspace: WorkspaceClient, endpoint: str) -> list[str]:
    """Take all traffic off the endpoint and delete its blue/green deployments."""
    state = workspace.get_endpoint(endpoint)
    if state is None:
        return []
    if any(share > 0 for share in state.traffic.values()) or state.mirror_traffic:
        workspace.set_traffic(endpoint, {}, {})
    deleted = []
    for deployment in workspace.list_deployments(endpoint):
        if deployment.name in SLOTS:
            workspace.delete_deployment(endpoint, deployment.name)
            deleted.append(deployment.name)
    return deleted


@dataclass(frozen=True)
class _Traffic:
    traffic: dict[str, int]
    mirror: dict[str, int]


def _endpoint(workspace: WorkspaceClient, endpoint: str) -> EndpointState:
    state = workspace.get_endpoint(endpoint)
    if state is None:
        raise RolloutError(
            f"endpoint {endpoint!r} does not exist: the infrastructure stack creates endpoints; "
            "deployments are rolled out into them"
        )
    return state


def _choose_target(
    state: EndpointState, deployments: Mapping[str, DeploymentState], fingerprint: str
) -> tuple[str, bool]:
    # A slot that already runs this spec (live, or left behind by an interrupted run) is reused.
    running = [
        d.name
        for d in deployments.values()
        if d.name in SLOTS
        and d.tags.get(TAG_FINGERPRINT) == fingerprint
        and d.provisioning_state not in TERMINAL_FAILURES
    ]
    if running:
        return max(
            running, key=lambda name: (state.traffic.get(name, 0), name == state.live)
        ), False
    return next_slot(state.live), True


def _previous(state: EndpointState, exclude: str) -> str | None:
    others = {n: s for n, s in state.traffic.items() if n != exclude and s > 0}
    if not others:
        return None
    return max(sorted(others), key=lambda name: others[name])


def _serving_all(state: EndpointState, target: str, deployment: DeploymentState) -> bool:
    return (
        state.traffic.get(target, 0) == 100
        and not state.mirror_traffic
        and deployment.provisioning_state == SUCCEEDED
    )


def _keep(
    workspace: WorkspaceClient,
    endpoint: str,
    state: EndpointState,
    live: DeploymentState,
    spec: DeploymentSpec,
    policy: RolloutPolicy,
    previous: str | None,
    base_dir: Path | None,
) -> RolloutResult:
    changed = False
    if not policy.autoscale and live.instance_count != spec.instance_count:
        # Capacity is not part of the fingerprint: scale the live deployment in place.
        log.info("%s: scaling %s to %d instances", endpoint, live.name, spec.instance_count)
        workspace.begin_create_or_update_deployment(
            spec.to_deployment(endpoint, live.name, base_dir)
        )
        changed = True
    standby = next_slot(live.name)
    return RolloutResult(
        endpoint=endpoint,
        live=live.name,
        previous=previous or (standby if workspace.get_deployment(endpoint, standby) else None),
        changed=changed,
        traffic=dict(state.traffic),
        deployment_id=live.id,
    )


def _wait_ready(
    workspace: WorkspaceClient,
    endpoint: str,
    name: str,
    fingerprint: str,
    policy: RolloutPolicy,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> DeploymentState:
    deadline = clock() + policy.ready_timeout_s
    while True:
        deployment = workspace.get_deployment(endpoint, name)
        if deployment is None:
            raise RolloutError(f"{endpoint}/{name} disappeared while provisioning")
        # Succeeded under the old spec means the update has not landed yet: keep waiting.
        current = deployment.tags.get(TAG_FINGERPRINT) == fingerprint
        if deployment.provisioning_state == SUCCEEDED and current:
            return deployment
        if deployment.provisioning_state in TERMINAL_FAILURES:
            raise RolloutError(
                f"{endpoint}/{name} provisioning ended {deployment.provisioning_state}; traffic "
                "unchanged. See `az ml online-deployment get-logs` for the container log"
            )
        if clock() >= deadline:
            raise RolloutError(
                f"{endpoint}/{name} not ready after {policy.ready_timeout_s:.0f}s "
                f"(state {deployment.provisioning_state}); traffic unchanged"
            )
        sleep(policy.poll_interval_s)


def _smoke(workspace: WorkspaceClient, endpoint: str, name: str, pattern: str) -> None:
    request = json.dumps(smoke_case(pattern).request)
    try:
        body = workspace.invoke(endpoint, name, request)
    except Exception as exc:  # any transport or HTTP error is a failed smoke test, with its text
        raise SmokeTestError(endpoint, name, f"invoke raised {type(exc).__name__}: {exc}") from exc
    problems = check_response(pattern, body)
    if problems:
        raise SmokeTestError(endpoint, name, "; ".join(problems))
    log.info("%s/%s: smoke test passed", endpoint, name)


def _shift(
    workspace: WorkspaceClient,
    endpoint: str,
    pattern: str,
    target: str,
    previous: str | None,
    start: int,
    policy: RolloutPolicy,
    sleep: Callable[[float], None],
) -> list[dict[str, int]]:
    # start: the target's live share when shifting begins (non-zero when a run resumes)
    history: list[dict[str, int]] = []
    # With nothing live there is nothing to protect: a first deployment takes all traffic at once.
    steps = [100] if previous is None else [s for s in policy.traffic_steps if s > start]
    try:
        if previous is not None and policy.mirror_percent and start == 0:
            # mirror only to a deployment with no live traffic (service rule)
            workspace.set_traffic(endpoint, _all_to(previous), {target: policy.mirror_percent})
            history.append(_all_to(previous))
            sleep(policy.step_wait_s)
            _smoke(workspace, endpoint, target, pattern)
        for step in steps:
            traffic = {target: step}
            if previous is not None:
                traffic[previous] = 100 - step
            log.info("%s: traffic %s", endpoint, traffic)
            workspace.set_traffic(endpoint, traffic, {})
            history.append(traffic)
            if step < 100:
                sleep(policy.step_wait_s)
                _smoke(workspace, endpoint, target, pattern)
    except Exception:
        if previous is not None:
            workspace.set_traffic(endpoint, _all_to(previous), {})
        raise
    return history


def _all_to(name: str | None) -> dict[str, int]:
    return {name: 100} if name else {}
