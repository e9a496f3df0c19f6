"""The traffic stages of a rollout once the new slot is ready: shadow, steps, bake, roll back.

1. **Shadow** (nothing live moves): optionally mirror a share of live traffic to the new slot and
   bake; then the token-level gate (`delivery.gate`) compares new against current on the probe
   texts. A failed gate ends the rollout.
2. **Steps** (e.g. 10% -> 50% -> 100%): after each intermediate step, bake for the step wait while
   watching the endpoint's alert rules, then re-run the smoke request.

Any failure, a fired alert or a failed gate returns all traffic to the current slot before the
error is raised, so the update fails with traffic where it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from delivery.alerts import AlertSource, FiredAlert, concerning
from delivery.gate import GateFailedError, GateReport, run_gate
from delivery.smoke import SmokeTestError, check_response, smoke_case
from delivery.spec import RolloutPolicy
from delivery.workspace import WorkspaceClient

log = logging.getLogger(__name__)


class AlertFiredError(RuntimeError):
    """A watched alert fired for the new slot while it baked; traffic went back."""

    def __init__(self, endpoint: str, target: str, step: str, alerts: list[FiredAlert]) -> None:
        names = ", ".join(map(str, alerts))
        super().__init__(
            f"{endpoint}: alert fired while {target} baked at {step}: {names}; all traffic "
            "returned to the current deployment and the update failed"
        )
        self.alerts = alerts


@dataclass
class Stages:
    """One rollout's traffic stages for `target`, with `previous` the slot holding traffic."""

    workspace: WorkspaceClient
    endpoint: str
    pattern: str
    target: str
    previous: str | None
    policy: RolloutPolicy
    alerts: AlertSource | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    history: list[dict[str, int]] = field(default_factory=list)
    gate_report: GateReport | None = None

    def run(self, start: int) -> list[dict[str, int]]:
        """Shadow (when nothing is live on the target yet), then the traffic steps."""
        # With nothing live there is nothing to protect: a first deployment takes all at once.
        steps = (
            [100] if self.previous is None else [s for s in self.policy.traffic_steps if s > start]
        )
        try:
            if self.previous is not None and start == 0:
                self.shadow()
            for step in steps:
                traffic = {self.target: step}
                if self.previous is not None:
                    traffic[self.previous] = 100 - step
                self._set(traffic, {})
                if step < 100:
                    self.bake(f"{step}%")
                    smoke(self.workspace, self.endpoint, self.target, self.pattern)
        except Exception:
            if self.previous is not None:
                log.warning("%s: returning all traffic to %s", self.endpoint, self.previous)
                self.workspace.set_traffic(self.endpoint, {self.previous: 100}, {})
            raise
        return self.history

    def shadow(self) -> None:
        """Mirror phase (optional) and the token-level gate; no live traffic moves."""
        assert self.previous is not None
        if self.policy.mirror_percent:
            # Mirror only to a deployment with no live traffic (service rule).
            self._set({self.previous: 100}, {self.target: self.policy.mirror_percent})
            self.bake(f"mirror {self.policy.mirror_percent}%")
            smoke(self.workspace, self.endpoint, self.target, self.pattern)
        if self.policy.gate.enabled:
            report = run_gate(
                self.workspace, self.endpoint, self.previous, self.target, self.policy.gate
            )
            self.gate_report = report
            log.info("%s: %s", self.endpoint, report.summary())
            if not report.passed:
                raise GateFailedError(self.endpoint, report)

    def bake(self, step: str) -> None:
        """Wait the step's bake time, polling the watched alerts; raise when one fires."""
        deadline = self.clock() + self.policy.step_wait_s
        while True:
            fired = self._fired()
            if fired:
                raise AlertFiredError(self.endpoint, self.target, step, fired)
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self.sleep(min(self.policy.poll_interval_s, remaining) or remaining)

    def _fired(self) -> list[FiredAlert]:
        if self.alerts is None or not self.policy.watch_alerts:
            return []
        alerts = self.alerts.fired(self.endpoint, self.policy.watch_alerts)
        return concerning(alerts, self.target)

    def _set(self, traffic: dict[str, int], mirror: dict[str, int]) -> None:
        log.info("%s: traffic %s mirror %s", self.endpoint, traffic, mirror)
        self.workspace.set_traffic(self.endpoint, traffic, mirror)
        self.history.append(dict(traffic))


def smoke(workspace: WorkspaceClient, endpoint: str, name: str, pattern: str) -> None:
    """Send the pattern's smoke request to one deployment; raise SmokeTestError on a bad answer."""
    request = json.dumps(smoke_case(pattern).request)
    try:
        body = workspace.invoke(endpoint, name, request)
    except Exception as exc:  # any transport or HTTP error is a failed smoke test, with its text
        raise SmokeTestError(endpoint, name, f"invoke raised {type(exc).__name__}: {exc}") from exc
    problems = check_response(pattern, body)
    if problems:
        raise SmokeTestError(endpoint, name, "; ".join(problems))
    log.info("%s/%s: smoke test passed", endpoint, name)
