"""The traffic stages of a rollout once the new slot is ready: shadow, steps, bake, roll back.

1. **Shadow** (nothing live moves): optionally mirror a share of live traffic to the new slot and
   bake; then the token-level gate (`delivery.gate`) compares new against current on the probe
   texts. A failed gate ends the rollout.
2. **Steps** (e.g. 10% -> 50% -> 100%): after each intermediate step, bake for the step wait while
   watching the endpoint's alert rules, then re-run the smoke request.
3. **Final bake** at 100%: the previous slot still runs at full size while the alerts are watched
   for `final_bake_s`; only then is the release done.

Any failure, a fired alert, a failed gate or a cancellation (SIGINT/SIGTERM) returns all traffic
to the previous slot before the error is raised. Every traffic change carries the release record
(`ReleaseRecord`, the endpoint tag `byom-release`) in the same update, so a process killed at any
point leaves a split that says which release made it and at which stage; a resumed release runs
the gate again and re-bakes the step it stopped in before it moves on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from delivery.alerts import AlertSource, FiredAlert, concerning
from delivery.gate import GateFailedError, GateReport, run_gate
from delivery.smoke import SmokeTestError, check_response, smoke_case
from delivery.spec import RolloutPolicy
from delivery.workspace import EndpointState, WorkspaceClient

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


TAG_RELEASE = "byom-release"
# stages after which a release is over; any other stage in the record is a release to resume
FINISHED = frozenset({"done", "rolled-back", "cancelled", "failed"})
CANCELLATIONS = (KeyboardInterrupt, SystemExit)


@dataclass(frozen=True)
class ReleaseRecord:
    """What the last release did to an endpoint, kept in the endpoint's `byom-release` tag."""

    slot: str
    previous: str | None
    fingerprint: str
    stage: str
    share: int
    reason: str = ""

    @property
    def finished(self) -> bool:
        """Whether the release ended (done, rolled back, cancelled or failed)."""
        return self.stage in FINISHED

    def tags(self) -> dict[str, str]:
        """The tag; the reason is cut so the value stays within Azure's 256 characters."""
        values = {**asdict(self), "fingerprint": self.fingerprint[:16]}
        text = json.dumps(values, separators=(",", ":"))
        if len(text) > 256:
            values["reason"] = self.reason[: max(0, len(self.reason) - (len(text) - 256) - 3)]
            values["reason"] += "..."
            text = json.dumps(values, separators=(",", ":"))
        return {TAG_RELEASE: text}

    def matches(self, slot: str, fingerprint: str) -> bool:
        """Whether this record is about `slot` running the spec with `fingerprint`."""
        return (
            self.slot == slot
            and bool(self.fingerprint)
            and fingerprint.startswith(self.fingerprint[:16])
        )

    @classmethod
    def of(cls, state: EndpointState) -> ReleaseRecord | None:
        """The endpoint's record, or None (never released by this tool, or unreadable)."""
        raw = state.tags.get(TAG_RELEASE)
        if not raw:
            return None
        try:
            values = json.loads(raw)
            return cls(**{**values, "share": int(values["share"])})
        except (TypeError, ValueError, KeyError):
            log.warning("%s: unreadable %s tag %r", state.name, TAG_RELEASE, raw)
            return None


class ReleaseCancelledError(RuntimeError):
    """The release was cancelled; traffic went back to the previous slot, with a record."""


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
    fingerprint: str = ""
    history: list[dict[str, int]] = field(default_factory=list)
    gate_report: GateReport | None = None

    def run(self, start: int) -> list[dict[str, int]]:
        """From `start` (the target's share now): shadow or re-gate, steps, final bake.

        `start` > 0 is a resumed release: the gate runs again and the step it stopped in is
        baked again (alert watch and smoke request) before traffic moves on.
        """
        if self.previous is None:
            # With nothing live there is nothing to protect: a first deployment takes all at once.
            self._set({self.target: 100}, {}, "done")
            return self.history
        try:
            if start == 0:
                self.shadow()
            else:
                log.info("%s: resuming %s at %d%%", self.endpoint, self.target, start)
                self.gate()
                if start < 100:
                    self._set(self._split(start), {}, "step")
                    self._bake_and_smoke(f"{start}% (resumed)", self.policy.step_wait_s)
            for step in [s for s in self.policy.traffic_steps if s > start]:
                self._set(self._split(step), {}, "step" if step < 100 else "final-bake")
                if step < 100:
                    self._bake_and_smoke(f"{step}%", self.policy.step_wait_s)
            self._bake_and_smoke("100% (final bake)", self.policy.final_bake)
        except BaseException as exc:
            self._return_traffic(exc)
            if isinstance(exc, CANCELLATIONS):
                raise ReleaseCancelledError(
                    f"{self.endpoint}: release of {self.target} cancelled; all traffic is on "
                    f"{self.previous} (recorded in the endpoint tag {TAG_RELEASE})"
                ) from exc
            raise
        # The split stays as the last step left it; only the record says the release is done.
        done = self._record_for("done", 100)
        self.workspace.set_traffic(self.endpoint, self._split(100), {}, done.tags())
        return self.history

    def shadow(self) -> None:
        """Mirror phase (optional) and the token-level gate; no live traffic moves."""
        assert self.previous is not None
        if self.policy.mirror_percent:
            # Mirror only to a deployment with no live traffic (service rule).
            self._set({self.previous: 100}, {self.target: self.policy.mirror_percent}, "shadow")
            self._bake_and_smoke(f"mirror {self.policy.mirror_percent}%", self.policy.step_wait_s)
        self.gate()

    def gate(self) -> None:
        """The token-level gate (when enabled): compare the new slot with the previous one."""
        assert self.previous is not None
        if not self.policy.gate.enabled:
            return
        report = run_gate(
            self.workspace, self.endpoint, self.previous, self.target, self.policy.gate
        )
        self.gate_report = report
        log.info("%s: %s", self.endpoint, report.summary())
        if not report.passed:
            raise GateFailedError(self.endpoint, report)

    def bake(self, step: str, seconds: float | None = None) -> None:
        """Wait the bake time, polling the watched alerts; raise when one fires."""
        deadline = self.clock() + (self.policy.step_wait_s if seconds is None else seconds)
        while True:
            fired = self._fired()
            if fired:
                raise AlertFiredError(self.endpoint, self.target, step, fired)
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self.sleep(min(self.policy.poll_interval_s, remaining) or remaining)

    def _bake_and_smoke(self, step: str, seconds: float) -> None:
        self.bake(step, seconds)
        smoke(self.workspace, self.endpoint, self.target, self.pattern)

    def _split(self, step: int) -> dict[str, int]:
        assert self.previous is not None
        return {self.target: step, self.previous: 100 - step}

    def _return_traffic(self, exc: BaseException) -> None:
        stage = "cancelled" if isinstance(exc, CANCELLATIONS) else "rolled-back"
        log.warning("%s: %s; returning all traffic to %s", self.endpoint, stage, self.previous)
        record = self._record_for(stage, 0, f"{type(exc).__name__}: {exc}")
        self.workspace.set_traffic(self.endpoint, {self.previous: 100}, {}, record.tags())

    def _fired(self) -> list[FiredAlert]:
        if self.alerts is None or not self.policy.watch_alerts:
            return []
        alerts = self.alerts.fired(self.endpoint, self.policy.watch_alerts)
        return concerning(alerts, self.target)

    def _record_for(self, stage: str, share: int, reason: str = "") -> ReleaseRecord:
        return ReleaseRecord(self.target, self.previous, self.fingerprint, stage, share, reason)

    def _set(self, traffic: dict[str, int], mirror: dict[str, int], stage: str) -> None:
        # The record's share is the target's live share (mirrored traffic is not live).
        share = traffic.get(self.target, 0)
        log.info("%s: traffic %s mirror %s (%s)", self.endpoint, traffic, mirror, stage)
        tags = self._record_for(stage, share).tags()
        self.workspace.set_traffic(self.endpoint, traffic, mirror, tags)
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
