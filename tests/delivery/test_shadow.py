"""Shadow gate, bake periods and alert rollback, with the in-memory Azure fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delivery.fake import FakeWorkspace
from delivery.gate import GateFailedError, GatePolicy
from delivery.rollout import DataCollectionSpec, DeploymentSpec, RolloutPolicy, rollout
from delivery.stages import AlertFiredError
from infra.rollout import RolloutProvider, rollout_props
from scoring.model import LoadedModel
from scoring.service import ScoringService
from scoring.settings import ScoringSettings
from tests.delivery.conftest import ENDPOINT, deploy, register_spec, write_tiny_model
from tests.delivery.test_gate import with_scaled_head

RULES = ("alert-byom-dev-generate-5xx", "alert-byom-dev-generate-p95")


def serve(lm: LoadedModel):
    """A responder that answers through the real scoring service (both patterns) over `lm`."""
    service = ScoringService(lm, ScoringSettings(max_new_tokens=16))
    return lambda endpoint, deployment, body: json.dumps(service.handle(body.encode()).body)


def shadow_policy(**overrides) -> RolloutPolicy:
    """Gate on, three steps, alerts watched, nothing really waits."""
    values = {
        "traffic_steps": (10, 50, 100),
        "step_wait_s": 0,
        "poll_interval_s": 0,
        "gate": GatePolicy(),
        "watch_alerts": RULES,
    }
    values.update(overrides)
    return RolloutPolicy(**values)


@pytest.fixture
def live_blue(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path, tiny_lm: LoadedModel
) -> FakeWorkspace:
    """Blue live with all traffic, answering with the tiny model."""
    fake.respond(ENDPOINT, "blue", serve(tiny_lm))
    first = register_spec(fake, tiny_model, code_dir)
    deploy(fake, first, shadow_policy(), alerts=fake)
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    fake.mutations.clear()
    fake.invocations.clear()
    return fake


@pytest.fixture
def second(fake: FakeWorkspace, tmp_path: Path, code_dir: Path) -> DeploymentSpec:
    """A second model version, registered."""
    return register_spec(fake, write_tiny_model(tmp_path / "v2", seed=1), code_dir)


def traffic_updates(fake: FakeWorkspace) -> list[dict[str, int]]:
    """Every live traffic state the rollout applied, in order."""
    return [json.loads(m[2]) for m in fake.mutations if m[0] == "set_traffic"]


def test_shadow_gate_passes_then_steps_reach_full_traffic(
    live_blue: FakeWorkspace, second: DeploymentSpec, tiny_lm: LoadedModel
) -> None:
    """Green is smoked, probed against blue at 0%, then moves 10 -> 50 -> 100."""
    fake = live_blue
    fake.respond(ENDPOINT, "green", serve(tiny_lm))
    result = deploy(fake, second, shadow_policy(), alerts=fake)
    assert traffic_updates(fake) == [
        {"green": 10, "blue": 90},
        {"green": 50, "blue": 50},
        {"green": 100, "blue": 0},
    ]
    probes = [(d, json.loads(r)) for _, d, r in fake.invocations if '"analyze"' in r]
    assert {d for d, _ in probes} == {"blue", "green"}
    assert len(probes) == 2 * len(GatePolicy().probe_texts)
    assert result.gate_report is not None
    assert result.gate_report.startswith("gate passed: green (candidate) vs blue (current)")


def test_a_failing_gate_keeps_all_traffic_on_the_current_slot(
    live_blue: FakeWorkspace, second: DeploymentSpec, tiny_lm: LoadedModel
) -> None:
    """A badly converted candidate never gets live traffic; the error carries the report."""
    fake = live_blue
    fake.respond(ENDPOINT, "green", serve(with_scaled_head(tiny_lm, 4.0)))
    with pytest.raises(GateFailedError, match="FAIL mean log-prob drop") as error:
        deploy(fake, second, shadow_policy(), alerts=fake)
    assert not error.value.report.passed
    assert all(t.get("green", 0) == 0 for t in traffic_updates(fake))
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_an_alert_firing_mid_rollout_rolls_back(
    live_blue: FakeWorkspace, second: DeploymentSpec, tiny_lm: LoadedModel
) -> None:
    """The 5xx alert fires for green while it bakes at 10%: blue gets 100% back, update fails."""
    fake = live_blue
    fake.respond(ENDPOINT, "green", serve(tiny_lm))

    def sleep(_: float) -> None:
        if fake.traffic(ENDPOINT).get("green") == 10:
            fake.fire_alert(ENDPOINT, RULES[0], "green")

    now = iter(float(t) for t in range(1000))
    policy = shadow_policy(step_wait_s=60, poll_interval_s=15)
    with pytest.raises(AlertFiredError, match="alert-byom-dev-generate-5xx for green") as error:
        rollout(fake, ENDPOINT, second, policy, alerts=fake, sleep=sleep, clock=lambda: next(now))
    assert error.value.alerts[0].deployment == "green"
    assert traffic_updates(fake) == [{"green": 10, "blue": 90}, {"blue": 100}]
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_an_alert_on_the_current_slot_does_not_block_the_new_one(
    live_blue: FakeWorkspace, second: DeploymentSpec, tiny_lm: LoadedModel
) -> None:
    """Blue's own latency alert (the reason for the update, say) is not green's fault."""
    fake = live_blue
    fake.respond(ENDPOINT, "green", serve(tiny_lm))
    fake.fire_alert(ENDPOINT, RULES[1], "blue")
    result = deploy(fake, second, shadow_policy(), alerts=fake)
    assert result.traffic == {"green": 100, "blue": 0}


def test_mirror_phase_bakes_before_the_gate(
    live_blue: FakeWorkspace, second: DeploymentSpec, tiny_lm: LoadedModel
) -> None:
    """With mirrorPercent, green first shadows 20% of live traffic, then the gate runs."""
    fake = live_blue
    fake.respond(ENDPOINT, "green", serve(tiny_lm))
    rollout(
        fake, ENDPOINT, second, shadow_policy(mirror_percent=20), alerts=fake, sleep=lambda _: None
    )
    mirrors = [json.loads(m[3]) for m in fake.mutations if m[0] == "set_traffic"]
    assert mirrors[0] == {"green": 20}
    assert traffic_updates(fake)[-1] == {"green": 100, "blue": 0}


def test_data_collection_reaches_the_deployment_entity(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path
) -> None:
    """Enabled capture becomes the deployment's data collector, sampled as configured."""
    spec = register_spec(
        fake, tiny_model, code_dir, data_collection=DataCollectionSpec(True, 0.25, "Day")
    )
    rollout(
        fake, ENDPOINT, spec, RolloutPolicy(step_wait_s=0, poll_interval_s=0), sleep=lambda _: None
    )
    collector = fake.deployments[(ENDPOINT, "blue")].entity.data_collector
    assert set(collector.collections) == {"model_inputs", "model_outputs"}
    assert (collector.sampling_rate, collector.rolling_rate) == (0.25, "Day")


def test_default_data_collection_keeps_existing_fingerprints(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path
) -> None:
    """A spec without capture hashes as before the field existed; enabling it changes the hash."""
    spec = register_spec(fake, tiny_model, code_dir)
    assert "data_collection" not in json.dumps(spec.fingerprint())
    enabled = register_spec(fake, tiny_model, code_dir, data_collection=DataCollectionSpec(True))
    assert enabled.fingerprint() != spec.fingerprint()


def test_policy_and_spec_round_trip_through_pulumi_props(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path
) -> None:
    """Gate, watched alerts and capture survive to_props/from_props with floats for ints."""
    policy = shadow_policy(gate=GatePolicy(min_scored_tokens=80, probe_texts=("a b c",)))
    props = json.loads(json.dumps(policy.to_props()).replace("80", "80.0"))
    assert RolloutPolicy.from_props(props) == policy
    spec = register_spec(fake, tiny_model, code_dir, data_collection=DataCollectionSpec(True, 0.5))
    assert DeploymentSpec.from_props(json.loads(json.dumps(spec.to_props()))) == spec


def test_the_provider_watches_alerts_only_when_the_policy_names_rules(
    fake: FakeWorkspace, tiny_model: Path, code_dir: Path
) -> None:
    """No rules: no monitor client is built; rules: the alerts factory's source is used."""
    built = []

    def alerts_factory(ref):
        built.append(ref)
        return fake

    provider = RolloutProvider(workspace_factory=lambda ref: fake, alerts_factory=alerts_factory)
    spec = register_spec(fake, tiny_model, code_dir)
    from infra.rollout import RolloutArgs

    args = RolloutArgs(
        "sub", "rg", "ws", ENDPOINT, spec, RolloutPolicy(step_wait_s=0, poll_interval_s=0)
    )
    outs = provider.create(rollout_props(args)).outs
    assert built == []
    assert outs["gate_report"] is None
    watched = RolloutArgs("sub", "rg", "ws", ENDPOINT, spec, shadow_policy())
    provider.update("id", {}, rollout_props(watched))
    assert len(built) == 1
