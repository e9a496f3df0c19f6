"""Smoke-gated blue/green rollout of one deployment behind one managed online endpoint.

An endpoint has two slots, `blue` and `green`. A new deployment spec goes to the slot that is not
live, at 0% traffic; once it is ready and answers its smoke request, it goes through the shadow
stage (mirror, token-level gate) and the traffic steps with their bake periods
(`delivery.stages`), ending with a final bake at 100%. Then the previous slot is scaled down to
its standby size (kept at 0% for `rollback`) or deleted. A spec that is already live with all
traffic and a finished release record is left alone, so re-running changes nothing; one whose
record says its release stopped half-way is resumed with its safeguards.

With an `AutoscaleSpec`, every slot that takes traffic has its own autoscale setting first
(`delivery.autoscale`); the setting of a slot goes when the slot is scaled to standby or deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from delivery.alerts import AlertSource
from delivery.autoscale import (
    AutoscaleClient,
    AutoscaleSpec,
    autoscale_name,
    drop_slot_autoscale,
    ensure_slot_autoscale,
)
from delivery.codeasset import staged
from delivery.smoke import SmokeTestError
from delivery.spec import (
    TAG_ENVIRONMENT,
    TAG_FINGERPRINT,
    TAG_MODEL,
    TAG_PATTERN,
    DataCollectionSpec,
    DeploymentSpec,
    ProbeSpec,
    RolloutPolicy,
)
from delivery.stages import ReleaseRecord, Stages, smoke
from delivery.workspace import (
    SUCCEEDED,
    TERMINAL_FAILURES,
    DeploymentState,
    EndpointState,
    WorkspaceClient,
    deployment_entity,
)

log = logging.getLogger(__name__)


def _create_or_update(
    workspace: WorkspaceClient,
    spec: DeploymentSpec,
    endpoint: str,
    slot: str,
    base_dir: Path | None,
) -> None:
    # Upload only what the server runs (delivery.codeasset): the same files the hash covers.
    with staged(Path(base_dir or Path.cwd(), spec.code_dir), spec.scoring_script) as code:
        workspace.begin_create_or_update_deployment(
            deployment_entity(spec, endpoint, slot, code_folder=code)
        )


SLOTS = ("blue", "green")


class RolloutError(RuntimeError):
    """A rollout could not complete; traffic is where the message says."""


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
    gate_report: str | None = None
    """The shadow gate's summary, when this rollout ran one."""


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
    alerts: AlertSource | None = None,
    autoscale: AutoscaleClient | None = None,
    scale: AutoscaleSpec | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RolloutResult:
    """Converge the endpoint on `spec` with all traffic; see the module docstring.

    `alerts` answers which of `policy.watch_alerts` fire while a step bakes (None: not watched);
    `autoscale` with `scale` gives each live slot its own autoscale setting.
    """
    policy = policy or RolloutPolicy()
    state = _endpoint(workspace, endpoint)
    deployments = {d.name: d for d in workspace.list_deployments(endpoint)}
    fingerprint = spec.fingerprint()
    record = ReleaseRecord.of(state)

    target, needs_create = _choose_target(state, deployments, fingerprint)
    previous = _previous(state, exclude=target)
    unfinished = (
        not needs_create
        and record is not None
        and not record.finished
        and record.matches(target, fingerprint)
    )
    if unfinished and previous is None and record.previous in deployments:
        # Stopped at 100% during the final bake: the previous slot is still the way back.
        previous = record.previous
    if not needs_create and not unfinished and _serving_all(state, target, deployments[target]):
        live = deployments[target]
        if autoscale is not None and scale is not None and live.id:
            ensure_slot_autoscale(autoscale, scale, endpoint, live.name, live.id)
        return _keep(workspace, endpoint, state, live, spec, policy, previous, base_dir)

    original = _Traffic(dict(state.traffic), dict(state.mirror_traffic))
    if needs_create:
        if state.traffic.get(target, 0) > 0 or target in state.mirror_traffic:
            # the slot still holds traffic from an interrupted rollout: take it back first
            workspace.set_traffic(endpoint, _all_to(previous), {})
            original = _Traffic(_all_to(previous), {})
        log.info("%s: deploying %s to slot %s at 0%% traffic", endpoint, spec.model, target)
        deploying = ReleaseRecord(target, previous, fingerprint, "deploying", 0)
        workspace.set_traffic(endpoint, original.traffic, original.mirror, deploying.tags())
        _create_or_update(workspace, spec, endpoint, target, base_dir)
    ready = _wait_ready(workspace, endpoint, target, fingerprint, policy, sleep, clock)
    try:
        smoke(workspace, endpoint, target, spec.pattern)
    except SmokeTestError:
        if original.traffic.get(target, 0) > 0 and previous is not None:
            workspace.set_traffic(endpoint, _all_to(previous), {})
        raise
    if autoscale is not None and scale is not None and ready.id:
        # Before any traffic (mirror included) reaches the slot.
        ensure_slot_autoscale(autoscale, scale, endpoint, target, ready.id)

    stages = Stages(
        workspace,
        endpoint,
        spec.pattern,
        target,
        previous,
        policy,
        alerts,
        sleep,
        clock,
        fingerprint=fingerprint,
    )
    history = stages.run(start=original.traffic.get(target, 0))
    if previous is not None:
        _retire_previous(workspace, endpoint, previous, policy, autoscale)
    return RolloutResult(
        endpoint=endpoint,
        live=target,
        previous=previous if policy.keep_previous else None,
        changed=True,
        traffic=history[-1] if history else dict(state.traffic),
        history=tuple(history),
        deployment_id=ready.id,
        gate_report=stages.gate_report.summary() if stages.gate_report else None,
    )


def _retire_previous(
    workspace: WorkspaceClient,
    endpoint: str,
    previous: str,
    policy: RolloutPolicy,
    autoscale: AutoscaleClient | None,
) -> None:
    # After the final bake: the old slot's autoscale goes first, or it would scale it back up.
    if autoscale is not None:
        drop_slot_autoscale(autoscale, endpoint, previous)
    if not policy.keep_previous:
        log.info("%s: deleting previous deployment %s", endpoint, previous)
        workspace.delete_deployment(endpoint, previous)
        return
    standby = workspace.get_deployment(endpoint, previous)
    if standby is not None and (standby.instance_count or 0) > policy.standby_instances:
        log.info(
            "%s: scaling standby %s to %d instance(s)", endpoint, previous, policy.standby_instances
        )
        workspace.scale_deployment(endpoint, previous, policy.standby_instances)


def rollback(
    workspace: WorkspaceClient,
    endpoint: str,
    *,
    autoscale: AutoscaleClient | None = None,
    policy: RolloutPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RolloutResult:
    """Return all traffic to the previous (standby) slot.

    A standby scaled down after its release is scaled back to the live slot's size first, and
    it gets a copy of the live slot's autoscale setting, before it takes any traffic.
    """
    policy = policy or RolloutPolicy()
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
    current = workspace.get_deployment(endpoint, live) if live else None
    wanted = current.instance_count if current and current.instance_count else None
    if wanted and (candidate.instance_count or 0) < wanted:
        log.info("%s: scaling %s up to %d before it takes traffic", endpoint, standby, wanted)
        workspace.scale_deployment(endpoint, candidate.name, wanted)
        candidate = _wait_ready(
            workspace,
            endpoint,
            candidate.name,
            candidate.tags.get(TAG_FINGERPRINT, ""),
            policy,
            sleep,
            clock,
        )
    if autoscale is not None and live and current is not None and current.id and candidate.id:
        setting = autoscale.get_autoscale(autoscale_name(endpoint, live))
        if setting is not None:
            autoscale.put_autoscale(
                autoscale_name(endpoint, candidate.name),
                _retarget(setting, current.id, candidate.id),
            )
    traffic = {candidate.name: 100, live: 0}
    record = ReleaseRecord(
        candidate.name,
        live,
        candidate.tags.get(TAG_FINGERPRINT, ""),
        "rolled-back",
        100,
        "manual rollback",
    )
    workspace.set_traffic(endpoint, traffic, {}, record.tags())
    return RolloutResult(
        endpoint=endpoint,
        live=candidate.name,
        previous=live,
        changed=True,
        traffic=traffic,
        history=(traffic,),
        deployment_id=candidate.id,
    )


def abort(workspace: WorkspaceClient, endpoint: str) -> RolloutResult | None:
    """After a killed release: put all traffic on the previous slot and record it as cancelled.

    Returns None when no release is unfinished (nothing to do). The CI job runs this when a
    release job is cancelled or times out, since a killed process cannot clean up after itself.
    """
    state = _endpoint(workspace, endpoint)
    record = ReleaseRecord.of(state)
    if record is None or record.finished:
        return None
    back = record.previous
    known_good = back and workspace.get_deployment(endpoint, back)
    if not known_good or known_good.provisioning_state != SUCCEEDED:
        # Nothing to go back to (a first release): keep the split, record that it was cut short.
        traffic = dict(state.traffic)
        back = record.slot
    else:
        traffic = {back: 100}
    cancelled = ReleaseRecord(
        record.slot,
        record.previous,
        record.fingerprint,
        "cancelled",
        0,
        "release job cancelled or timed out",
    )
    workspace.set_traffic(endpoint, traffic, {}, cancelled.tags())
    return RolloutResult(
        endpoint=endpoint,
        live=back,
        previous=record.slot,
        changed=True,
        traffic=traffic,
        history=(traffic,),
    )


def _retarget(setting: Mapping, old: str, new: str) -> dict:
    import json

    return json.loads(json.dumps(setting).replace(old, new))


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
        _create_or_update(workspace, spec, endpoint, live.name, base_dir)
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


def _all_to(name: str | None) -> dict[str, int]:
    return {name: 100} if name else {}


__all__ = [
    "SLOTS",
    "TAG_ENVIRONMENT",
    "TAG_FINGERPRINT",
    "TAG_MODEL",
    "TAG_PATTERN",
    "DataCollectionSpec",
    "DeploymentSpec",
    "ProbeSpec",
    "RolloutError",
    "RolloutPolicy",
    "RolloutResult",
    "abort",
    "next_slot",
    "retire",
    "rollback",
    "rollout",
]
