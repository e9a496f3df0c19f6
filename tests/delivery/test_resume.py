"""Safeguards that survive interruption: resume, final bake, standby, cancel, autoscale per slot.

A release job can be killed at any moment (runner lost, job timeout, cancel). Whatever the moment,
the endpoint is left with a split and a record (`byom-release` tag), and the next run resumes the
release with its gate and the bake of the step it stopped in, under the alert watch.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from delivery.autoscale import AutoscaleSpec, autoscale_name
from delivery.fake import FakeWorkspace
from delivery.gate import GatePolicy
from delivery.rollout import DeploymentSpec, RolloutPolicy, abort, rollback, rollout
from delivery.stages import TAG_RELEASE, AlertFiredError, ReleaseCancelledError, ReleaseRecord
from tests.delivery.conftest import ENDPOINT, register_spec, write_tiny_model

RULE = "byom-generate-errors"


class Killed(BaseException):
    """The process was killed: nothing after this reaches Azure."""


class Mortal:
    """A workspace reached by a process that is killed at its `kill_at`-th sleep."""

    def __init__(self, workspace: FakeWorkspace, kill_at: int) -> None:
        self._workspace = workspace
        self.kill_at = kill_at
        self.sleeps = 0
        self.dead = False

    def sleep(self, _seconds: float) -> None:
        self.sleeps += 1
        if self.sleeps == self.kill_at:
            self.dead = True
            raise Killed

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._workspace, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Killed  # a dead process's rollback never reaches Azure
            return attribute(*args, **kwargs)

        return call


def _policy(**overrides: Any) -> RolloutPolicy:
    values: dict[str, Any] = {
        "traffic_steps": (10, 50, 100),
        "mirror_percent": 10,
        "step_wait_s": 3,
        "final_bake_s": 3,
        "poll_interval_s": 1,
        "watch_alerts": (RULE,),
        # canned answers score one token; latency here is the test machine's, not the model's
        "gate": GatePolicy(
            probe_texts=("The quick brown fox.",), min_scored_tokens=1, latency_slack_ms=60_000
        ),
    }
    values.update(overrides)
    return RolloutPolicy(**values)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def two_versions(
    fake: FakeWorkspace, tiny_model: Path, tmp_path: Path, code_dir: Path
) -> tuple[DeploymentSpec, DeploymentSpec]:
    first = register_spec(fake, tiny_model, code_dir)
    second = register_spec(fake, write_tiny_model(tmp_path / "v2", seed=2), code_dir)
    return first, second


def _release(workspace: Any, spec: DeploymentSpec, policy: RolloutPolicy, sleep=None, **kw: Any):
    clock = Clock()

    def tick(seconds: float) -> None:
        if sleep is not None:
            sleep(seconds)
        clock.advance(seconds)

    return rollout(
        workspace, ENDPOINT, spec, policy, alerts=workspace, sleep=tick, clock=clock, **kw
    )


def _record(fake: FakeWorkspace) -> ReleaseRecord:
    record = ReleaseRecord.of(fake.get_endpoint(ENDPOINT))
    assert record is not None
    return record


def _count_sleeps(fake: FakeWorkspace, spec: DeploymentSpec) -> int:
    """Release `spec` once, counting its waits; then roll back and remove its slot again."""
    counter = Mortal(fake, kill_at=10**9)
    _release(counter, spec, _policy(), sleep=counter.sleep)
    rollback(fake, ENDPOINT)
    return counter.sleeps


@pytest.mark.parametrize("with_alert", [False, True], ids=["clean", "alert-on-resume"])
def test_a_release_killed_at_any_point_resumes_with_gate_bake_and_alert_watch(
    fake: FakeWorkspace, two_versions, tmp_path: Path, with_alert: bool
) -> None:
    """Kill the release at each of its waits in turn; the next run re-gates and re-bakes."""
    first, second = two_versions
    _release(fake, first, _policy())
    waits = _count_sleeps(fake, second)
    assert waits >= 10  # provisioning polls, mirror, 10%, 50%, final bake
    for kill_at in range(1, waits + 1):
        # Back to a clean start: v1 on blue with all traffic, no v2 slot.
        if (ENDPOINT, "green") in fake.deployments:
            fake.set_traffic(ENDPOINT, {"blue": 100}, {})
            fake.delete_deployment(ENDPOINT, "green")
        fake.resolve_alert(ENDPOINT, RULE, "green")
        mortal = Mortal(fake, kill_at)
        with pytest.raises(Killed):
            _release(mortal, second, _policy(), sleep=mortal.sleep)
        stopped = fake.traffic(ENDPOINT)
        record = _record(fake)
        assert record.slot == "green", (kill_at, record)
        assert not record.finished, (kill_at, record)
        assert record.share == stopped.get("green", 0), (kill_at, record, stopped)

        fake.invocations.clear()
        if with_alert:
            fake.fire_alert(ENDPOINT, RULE, "green")
            with pytest.raises(AlertFiredError):
                _release(fake, second, _policy())
            assert fake.traffic(ENDPOINT) == {"blue": 100}, kill_at
            assert _record(fake).stage == "rolled-back"
            continue
        result = _release(fake, second, _policy())
        assert result.live == "green"
        assert fake.traffic(ENDPOINT)["green"] == 100
        assert _record(fake).stage == "done"
        # The gate ran again: probe texts were analysed on both slots after the interruption.
        analysed = {
            d for _, d, body in fake.invocations if json.loads(body).get("task") == "analyze"
        }
        assert analysed == {"blue", "green"}, kill_at
        if 0 < stopped.get("green", 0) < 100:
            assert result.history[0] == stopped, kill_at  # the stopped step is baked again
        # Undo for the next kill point: v1 back on blue.
        rollback(fake, ENDPOINT)


def test_the_final_bake_at_100_percent_rolls_back_on_a_fired_alert(
    fake: FakeWorkspace, two_versions
) -> None:
    first, second = two_versions
    _release(fake, first, _policy())
    fired_at_100 = []

    def fire_once_at_full_traffic(_seconds: float) -> None:
        if fake.traffic(ENDPOINT).get("green") == 100 and not fired_at_100:
            fired_at_100.append(True)
            fake.fire_alert(ENDPOINT, RULE, "green")

    with pytest.raises(AlertFiredError, match="100% \\(final bake\\)"):
        _release(fake, second, _policy(), sleep=fire_once_at_full_traffic)
    assert fired_at_100
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert _record(fake).stage == "rolled-back"
    # The previous slot was still at full size: nothing was scaled down or deleted before.
    assert not [m for m in fake.mutations if m[0] in ("scale_deployment", "delete_deployment")]


def test_after_the_final_bake_the_standby_is_scaled_to_its_minimum(
    fake: FakeWorkspace, fast_policy: RolloutPolicy, tiny_model: Path, tmp_path: Path, code_dir
) -> None:
    first = register_spec(fake, tiny_model, code_dir, instance_count=4)
    second = register_spec(
        fake, write_tiny_model(tmp_path / "v2", seed=2), code_dir, instance_count=4
    )
    _release(fake, first, _policy(standby_instances=1))
    _release(fake, second, _policy(standby_instances=1))
    assert fake.get_deployment(ENDPOINT, "blue").instance_count == 1
    assert fake.get_deployment(ENDPOINT, "green").instance_count == 4
    assert ("scale_deployment", ENDPOINT, "blue", "1") in fake.mutations


def test_without_keep_previous_the_standby_is_deleted_after_the_final_bake(
    fake: FakeWorkspace, two_versions
) -> None:
    first, second = two_versions
    _release(fake, first, _policy(keep_previous=False))
    _release(fake, second, _policy(keep_previous=False))
    assert fake.get_deployment(ENDPOINT, "blue") is None
    ops = [m[0] for m in fake.mutations]
    last_traffic = max(i for i, op in enumerate(ops) if op == "set_traffic")
    assert ops.index("delete_deployment") > last_traffic


def test_cancelling_a_release_returns_to_a_known_good_split_with_a_record(
    fake: FakeWorkspace, two_versions
) -> None:
    """SIGINT (GitHub's cancel) mid-bake: traffic back on the previous slot, and it says why."""
    first, second = two_versions
    _release(fake, first, _policy())

    def cancel_at_50(_seconds: float) -> None:
        if fake.traffic(ENDPOINT).get("green") == 50:
            raise KeyboardInterrupt

    with pytest.raises(ReleaseCancelledError, match="all traffic is on blue"):
        _release(fake, second, _policy(), sleep=cancel_at_50)
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    record = _record(fake)
    assert (record.slot, record.previous, record.stage) == ("green", "blue", "cancelled")
    assert "KeyboardInterrupt" in record.reason
    assert len(fake.get_endpoint(ENDPOINT).tags[TAG_RELEASE]) <= 256


def _kill_second_release_at(fake: FakeWorkspace, two_versions, share: int) -> None:
    """Release v1, then kill v2's release (no clean-up reaches Azure) while green has `share`%."""
    first, second = two_versions
    _release(fake, first, _policy())
    mortal = Mortal(fake, kill_at=10**9)

    def kill_at_share(_seconds: float) -> None:
        if fake.traffic(ENDPOINT).get("green") == share:
            mortal.dead = True
            raise Killed

    with pytest.raises(Killed):
        _release(mortal, second, _policy(), sleep=kill_at_share)


def test_abort_after_a_hard_kill_returns_traffic_and_records_it(
    fake: FakeWorkspace, two_versions
) -> None:
    _kill_second_release_at(fake, two_versions, share=50)
    assert fake.traffic(ENDPOINT) == {"green": 50, "blue": 50}  # half-way, but recorded
    assert _record(fake).stage == "step"

    result = abort(fake, ENDPOINT)
    assert result is not None
    assert result.live == "blue"
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert _record(fake).stage == "cancelled"
    assert abort(fake, ENDPOINT) is None  # nothing unfinished any more


SCALE = AutoscaleSpec(
    location="westeurope",
    min_instances=1,
    max_instances=4,
    default_instances=2,
    metric="CpuUtilizationPercentage",
)


def test_each_slot_gets_its_own_autoscale_before_traffic_across_blue_green_blue(
    fake: FakeWorkspace, two_versions, tmp_path: Path, code_dir: Path
) -> None:
    """No setting ever changes its (create-only) target; the live slot is always autoscaled."""
    first, second = two_versions
    third = register_spec(fake, write_tiny_model(tmp_path / "v3", seed=3), code_dir)
    policy = _policy(autoscale=True)
    lives = []
    for spec in (first, second, third):
        result = _release(fake, spec, policy, autoscale=fake, scale=SCALE)
        lives.append(result.live)
        assert fake.autoscaled(ENDPOINT, result.live)
        standby = "green" if result.live == "blue" else "blue"
        assert fake.get_autoscale(autoscale_name(ENDPOINT, standby)) is None
    assert lives == ["blue", "green", "blue"]

    # The plan of autoscale operations: every name only ever targets its own slot ...
    targets: dict[str, set[str]] = {}
    for op in fake.mutations:
        if op[0] == "put_autoscale":
            targets.setdefault(op[1], set()).add(op[2])
    assert {name: len(t) for name, t in targets.items()} == {
        autoscale_name(ENDPOINT, "blue"): 1,
        autoscale_name(ENDPOINT, "green"): 1,
    }
    # ... and each slot's setting exists before the slot takes any traffic.
    for slot in ("green",):
        ops = fake.mutations
        put = ops.index(("put_autoscale", autoscale_name(ENDPOINT, slot), _id(fake, slot)))
        first_traffic = next(
            i for i, op in enumerate(ops) if op[0] == "set_traffic" and f'"{slot}"' in op[3] + op[2]
        )
        assert put < first_traffic


def test_the_fake_refuses_to_repoint_an_autoscale_setting(fake: FakeWorkspace, two_versions):
    from delivery.autoscale import TargetResourceIdIsImmutableError

    first, second = two_versions
    _release(fake, first, _policy(), autoscale=fake, scale=SCALE)
    _release(fake, second, _policy(keep_previous=True))
    with pytest.raises(TargetResourceIdIsImmutableError, match="TargetResourceIdIsImmutable"):
        fake.put_autoscale(autoscale_name(ENDPOINT, "blue"), SCALE.setting(_id(fake, "green")))


def test_rollback_scales_the_standby_up_and_autoscales_it_before_traffic(
    fake: FakeWorkspace, tiny_model: Path, tmp_path: Path, code_dir: Path
) -> None:
    first = register_spec(fake, tiny_model, code_dir, instance_count=3)
    second = register_spec(
        fake, write_tiny_model(tmp_path / "v2", seed=2), code_dir, instance_count=3
    )
    for spec in (first, second):
        _release(fake, spec, _policy(autoscale=True), autoscale=fake, scale=SCALE)
    assert fake.get_deployment(ENDPOINT, "blue").instance_count == 1
    fake.mutations.clear()

    result = rollback(fake, ENDPOINT, autoscale=fake, sleep=lambda _: None)

    assert result.live == "blue"
    ops = [m[0] for m in fake.mutations]
    assert ops.index("scale_deployment") < ops.index("put_autoscale") < ops.index("set_traffic")
    assert fake.get_deployment(ENDPOINT, "blue").instance_count == 3
    assert fake.autoscaled(ENDPOINT, "blue")
    assert _record(fake).stage == "rolled-back"


def _id(fake: FakeWorkspace, slot: str) -> str:
    return fake.get_deployment(ENDPOINT, slot).id


def test_the_abort_command_is_what_a_cancelled_job_runs(fake: FakeWorkspace, two_versions) -> None:
    """`python -m delivery abort` puts a half-way split back and says what it did."""
    import io

    from delivery import __main__ as delivery_cli

    _kill_second_release_at(fake, two_versions, share=10)
    out = io.StringIO()
    workspace_id = fake.ref.arm_id
    argv = ["abort", "--stack", "prod", "--workspace-id", workspace_id, "--endpoint", ENDPOINT]
    assert delivery_cli.main(argv, workspace_factory=lambda ref: fake, out=out) == 0
    assert "release of green cancelled" in out.getvalue()
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert delivery_cli.main(argv, workspace_factory=lambda ref: fake, out=out) == 0
    assert "no unfinished release" in out.getvalue()


def test_autoscale_spec_built_in_code_keeps_the_same_rules() -> None:
    """The rules the stack config enforces hold for a spec built in code or rebuilt from props."""
    from pydantic import ValidationError

    from delivery.autoscale import OffHours

    with pytest.raises(ValidationError, match=r"within autoscale 1\.\.4"):
        replace(SCALE, default_instances=5)
    with pytest.raises(ValidationError, match="off-hours only scale down"):
        replace(SCALE, off_hours=OffHours(max_instances=5))
    with pytest.raises(ValidationError, match="below scaleOutAbove"):
        replace(SCALE, scale_in_below=SCALE.scale_out_above)
    with pytest.raises(ValueError, match="metric"):
        replace(SCALE, metric=None).setting("/x/deployments/blue")
