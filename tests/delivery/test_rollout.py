"""Blue/green rollout against the in-memory workspace: first deploy, new versions, failures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from azure.ai.ml.entities import ManagedOnlineDeployment
from azure.core.exceptions import HttpResponseError

from delivery.fake import FakeWorkspace
from delivery.rollout import (
    TAG_FINGERPRINT,
    DeploymentSpec,
    RolloutError,
    RolloutPolicy,
    next_slot,
    rollback,
    rollout,
)
from delivery.smoke import SmokeTestError
from delivery.workspace import deployment_entity
from scoring.schemas import PATTERNS
from tests.delivery.conftest import ENDPOINT, deploy, register_spec, write_tiny_model


def _broken(endpoint: str, deployment: str, request: str) -> str:
    return json.dumps({"text": "half an answer"})  # no finish_reason, no usage


@pytest.fixture
def first_spec(fake: FakeWorkspace, tiny_model: Path, code_dir: Path) -> DeploymentSpec:
    """The spec of a first model version, registered in the workspace."""
    return register_spec(fake, tiny_model, code_dir)


@pytest.fixture
def second_spec(fake: FakeWorkspace, tmp_path: Path, code_dir: Path) -> DeploymentSpec:
    """The spec of a retrained model (other weights), registered in the workspace."""
    return register_spec(fake, write_tiny_model(tmp_path / "tiny-llm-v2", seed=1), code_dir)


def test_slots_alternate_deterministically() -> None:
    """A new deployment takes the slot that is not live; blue when nothing is."""
    assert next_slot(None) == "blue"
    assert next_slot("blue") == "green"
    assert next_slot("green") == "blue"
    assert next_slot("legacy") == "blue"


def test_first_deploy_takes_all_traffic_after_a_smoke_test(
    fake: FakeWorkspace, first_spec: DeploymentSpec, fast_policy: RolloutPolicy
) -> None:
    """On an empty endpoint: create blue, wait until ready, smoke it, then give it 100%."""
    result = deploy(fake, first_spec, fast_policy)
    assert result.live == "blue"
    assert result.previous is None
    assert result.changed
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert result.history == ({"blue": 100},)
    assert result.deployment_id.endswith(f"/onlineEndpoints/{ENDPOINT}/deployments/blue")
    ops = [m[0] for m in fake.mutations if m[0] in ("create_or_update_deployment", "set_traffic")]
    assert ops == ["create_or_update_deployment", "set_traffic"]
    [(_, deployment, request)] = fake.invocations
    assert deployment == "blue"
    assert json.loads(request)["max_new_tokens"] == 8


def test_a_new_model_version_rolls_out_blue_green_in_steps(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """v2 goes to green at 0%, is smoke-tested, then takes 10% and 100%; blue stays as standby."""
    deploy(fake, first_spec, fast_policy)
    fake.mutations.clear()
    fake.invocations.clear()

    result = deploy(fake, second_spec, fast_policy)

    assert (result.live, result.previous) == ("green", "blue")
    assert result.history == ({"green": 10, "blue": 90}, {"green": 100, "blue": 0})
    assert fake.traffic(ENDPOINT) == {"green": 100, "blue": 0}
    # green was recorded, created and smoke-tested before any traffic moved
    assert fake.mutations[0][0] == "tag_endpoint"
    assert '\\"stage\\":\\"deploying\\"' in fake.mutations[0][2]
    assert fake.mutations[1] == ("create_or_update_deployment", ENDPOINT, "green")
    # smoke, re-check at 10%, re-check after the final bake at 100%
    assert [i[1] for i in fake.invocations] == ["green", "green", "green"]
    green = fake.deployments[(ENDPOINT, "green")].entity
    assert green.model == second_spec.model
    assert fake.get_deployment(ENDPOINT, "blue").provisioning_state == "Succeeded"


def test_a_failing_smoke_test_keeps_the_old_traffic(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """A wrong response shape fails the rollout with the reason; blue keeps 100%."""
    deploy(fake, first_spec, fast_policy)
    fake.respond(ENDPOINT, "green", _broken)
    with pytest.raises(SmokeTestError, match="missing 'finish_reason'; missing 'usage'") as error:
        deploy(fake, second_spec, fast_policy)
    assert error.value.deployment == "green"
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert not any(m[0] == "set_traffic" for m in fake.mutations[-1:])


def test_an_invoke_error_is_a_failed_smoke_test(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """An HTTP error from the new deployment is reported and traffic does not move."""
    deploy(fake, first_spec, fast_policy)
    fake.fail_next("invoke", HttpResponseError("(424) model error: CUDA out of memory"))
    with pytest.raises(SmokeTestError, match="CUDA out of memory"):
        deploy(fake, second_spec, fast_policy)
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_a_failure_after_the_first_step_returns_traffic_to_the_old_slot(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """If the re-check at 10% fails, blue gets its 100% back before the error is raised."""
    deploy(fake, first_spec, fast_policy)
    answers = iter([None, _broken])  # first smoke passes (canned), re-check at 10% is broken

    def flaky(endpoint: str, deployment: str, request: str) -> str:
        broken = next(answers)
        if broken is None:
            return json.dumps(PATTERNS["generate"].example_response)
        return broken(endpoint, deployment, request)

    fake.respond(ENDPOINT, "green", flaky)
    with pytest.raises(SmokeTestError):
        deploy(fake, second_spec, fast_policy)
    traffic_updates = [json.loads(m[2]) for m in fake.mutations if m[0] == "set_traffic"]
    assert traffic_updates[-2:] == [{"green": 10, "blue": 90}, {"blue": 100}]
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_failed_provisioning_keeps_traffic_and_says_so(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """A deployment that ends Failed never gets traffic or a smoke request."""
    deploy(fake, first_spec, fast_policy)
    fake.invocations.clear()
    fake.fail_provisioning(ENDPOINT, "green")
    with pytest.raises(RolloutError, match="provisioning ended Failed; traffic unchanged"):
        deploy(fake, second_spec, fast_policy)
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert fake.invocations == []


def test_a_deployment_that_never_gets_ready_times_out(
    fake: FakeWorkspace, first_spec: DeploymentSpec
) -> None:
    """Waiting is bounded by ready_timeout_s, measured on the injected clock."""
    fake.polls_until_ready = 1_000
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = RolloutPolicy(ready_timeout_s=60, poll_interval_s=15)
    with pytest.raises(RolloutError, match="not ready after 60s"):
        rollout(fake, ENDPOINT, first_spec, policy, sleep=sleep, clock=lambda: now[0])
    assert fake.traffic(ENDPOINT) == {}


def test_an_unchanged_rerun_does_nothing(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """Re-running with the live spec makes no create, traffic or invoke call."""
    deploy(fake, first_spec, fast_policy)
    deploy(fake, second_spec, fast_policy)
    fake.mutations.clear()
    fake.invocations.clear()
    result = deploy(fake, second_spec, fast_policy)
    assert not result.changed
    assert (result.live, result.previous) == ("green", "blue")
    assert fake.mutations == []
    assert fake.invocations == []


def test_an_interrupted_rollout_resumes_without_a_new_deployment(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """If green already runs the new spec at 10%, the rerun only re-checks and finishes."""
    deploy(fake, first_spec, fast_policy)
    fake.set_traffic(ENDPOINT, {"blue": 100}, {})
    fake.begin_create_or_update_deployment(deployment_entity(second_spec, ENDPOINT, "green"))
    fake.get_deployment(ENDPOINT, "green")
    fake.get_deployment(ENDPOINT, "green")
    fake.set_traffic(ENDPOINT, {"blue": 90, "green": 10}, {})
    fake.mutations.clear()

    result = deploy(fake, second_spec, fast_policy)

    assert result.live == "green"
    # no new deployment; 10% is baked again (a record-only update), then 100%
    assert [m[0] for m in fake.mutations if m[0] != "tag_endpoint"] == ["set_traffic"]
    assert fake.traffic(ENDPOINT) == {"green": 100, "blue": 0}


def test_a_newer_spec_takes_back_traffic_from_an_abandoned_slot(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
    tmp_path: Path,
    code_dir: Path,
) -> None:
    """If green holds 10% of an abandoned v2 and v3 arrives, blue gets 100% back, then v3 steps."""
    deploy(fake, first_spec, fast_policy)
    fake.begin_create_or_update_deployment(deployment_entity(second_spec, ENDPOINT, "green"))
    fake.get_deployment(ENDPOINT, "green")
    fake.get_deployment(ENDPOINT, "green")
    fake.set_traffic(ENDPOINT, {"blue": 90, "green": 10}, {})
    third_spec = register_spec(fake, write_tiny_model(tmp_path / "v3", seed=3), code_dir)
    fake.mutations.clear()

    result = deploy(fake, third_spec, fast_policy)

    assert result.history == ({"green": 10, "blue": 90}, {"green": 100, "blue": 0})
    assert [m for m in fake.mutations if m[0] != "tag_endpoint"][:2] == [
        ("set_traffic", ENDPOINT, '{"blue": 100}', "{}"),
        ("create_or_update_deployment", ENDPOINT, "green"),
    ]
    assert fake.deployments[(ENDPOINT, "green")].entity.model == third_spec.model


def test_mirror_first_copies_traffic_before_shifting(
    fake: FakeWorkspace, first_spec: DeploymentSpec, second_spec: DeploymentSpec
) -> None:
    """With mirror_percent, green first receives a mirrored share, then live steps."""
    policy = RolloutPolicy(traffic_steps=(50, 100), mirror_percent=20, step_wait_s=0)
    deploy(fake, first_spec, policy)
    deploy(fake, second_spec, policy)
    updates = [
        (json.loads(m[2]), json.loads(m[3])) for m in fake.mutations if m[0] == "set_traffic"
    ]
    assert updates[1:] == [
        ({"blue": 100}, {"green": 20}),
        ({"green": 50, "blue": 50}, {}),
        ({"green": 100, "blue": 0}, {}),
    ]


def test_rollback_returns_all_traffic_to_the_previous_slot(
    fake: FakeWorkspace,
    first_spec: DeploymentSpec,
    second_spec: DeploymentSpec,
    fast_policy: RolloutPolicy,
) -> None:
    """After v2 is live on green, rollback puts blue (v1) back at 100% in one update."""
    deploy(fake, first_spec, fast_policy)
    deploy(fake, second_spec, fast_policy)
    result = rollback(fake, ENDPOINT)
    assert (result.live, result.previous) == ("blue", "green")
    assert fake.traffic(ENDPOINT) == {"blue": 100, "green": 0}


def test_rollback_without_a_standby_refuses(
    fake: FakeWorkspace, first_spec: DeploymentSpec, fast_policy: RolloutPolicy
) -> None:
    """With only one deployment there is nothing to roll back to; traffic is untouched."""
    deploy(fake, first_spec, fast_policy)
    with pytest.raises(RolloutError, match="no previous deployment"):
        rollback(fake, ENDPOINT)
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_without_keep_previous_the_old_slot_is_deleted(
    fake: FakeWorkspace, first_spec: DeploymentSpec, second_spec: DeploymentSpec
) -> None:
    """keep_previous=False deletes the old deployment once it has 0% traffic."""
    policy = RolloutPolicy(step_wait_s=0, keep_previous=False)
    deploy(fake, first_spec, policy)
    result = deploy(fake, second_spec, policy)
    assert result.previous is None
    assert (ENDPOINT, "blue") not in fake.deployments
    assert fake.traffic(ENDPOINT) == {"green": 100}


def test_capacity_changes_scale_in_place_unless_autoscale_owns_them(
    fake: FakeWorkspace, first_spec: DeploymentSpec, fast_policy: RolloutPolicy
) -> None:
    """instance_count is not a new deployment: it updates blue in place, or is left to autoscale."""
    deploy(fake, first_spec, fast_policy)
    bigger = replace(first_spec, instance_count=3)
    fake.mutations.clear()
    deploy(fake, bigger, replace(fast_policy, autoscale=True))
    assert fake.mutations == []
    result = deploy(fake, bigger, fast_policy)
    assert result.live == "blue"
    assert fake.mutations == [("create_or_update_deployment", ENDPOINT, "blue")]
    assert fake.deployments[(ENDPOINT, "blue")].entity.instance_count == 3
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_the_endpoint_must_exist(fake: FakeWorkspace, first_spec: DeploymentSpec) -> None:
    """Rollout never creates endpoints: that is the infrastructure stack's job."""
    with pytest.raises(RolloutError, match="does not exist"):
        rollout(fake, "missing-endpoint", first_spec)


def test_the_service_refuses_traffic_to_a_missing_deployment(fake: FakeWorkspace) -> None:
    """The rule behind the endpoint/deployment cycle: traffic may only name existing deployments."""
    with pytest.raises(HttpResponseError, match="does not exist"):
        fake.set_traffic(ENDPOINT, {"blue": 100}, {})


def test_the_deployment_entity_carries_every_setting(first_spec: DeploymentSpec) -> None:
    """to_deployment builds a real ManagedOnlineDeployment with settings, probes and tags."""
    spec = replace(first_spec, request_timeout_ms=120_000, max_concurrent_requests_per_instance=4)
    deployment = deployment_entity(spec, ENDPOINT, "green", base_dir=Path("/repo"))
    assert isinstance(deployment, ManagedOnlineDeployment)
    assert (deployment.name, deployment.endpoint_name) == ("green", ENDPOINT)
    assert deployment.model == spec.model
    assert deployment.environment == spec.environment
    assert deployment.code_configuration.scoring_script == "score.py"
    assert deployment.instance_type == "Standard_NC4as_T4_v3"
    assert deployment.request_settings.request_timeout_ms == 120_000
    assert deployment.request_settings.max_concurrent_requests_per_instance == 4
    assert deployment.liveness_probe.initial_delay == 600
    assert deployment.readiness_probe.failure_threshold == 3
    assert deployment.egress_public_network_access == "disabled"
    assert deployment.environment_variables["SCORING_PATTERNS"] == "generate"
    assert deployment.tags[TAG_FINGERPRINT] == spec.fingerprint()
    assert deployment.tags["byom-pattern"] == "generate"


def test_the_fingerprint_follows_what_needs_a_new_deployment(first_spec: DeploymentSpec) -> None:
    """Model, environment, code and settings change the fingerprint; instance count does not."""
    base = first_spec.fingerprint()
    assert replace(first_spec, instance_count=5).fingerprint() == base
    assert replace(first_spec, code_hash="sha256:" + "1" * 64).fingerprint() != base
    assert replace(first_spec, environment="azureml:env:2").fingerprint() != base
    assert replace(first_spec, environment_variables={"X": "1"}).fingerprint() != base
    assert DeploymentSpec.from_props(first_spec.to_props()).fingerprint() == base


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pattern": "classify"}, "no smoke test for pattern"),
        ({"instance_count": 0}, "instance_count"),
        ({"request_timeout_ms": 300_000}, "180000"),
        ({"egress_public_network_access": "Disabled"}, "egress"),
    ],
)
def test_invalid_specs_fail_before_any_azure_call(
    first_spec: DeploymentSpec, changes: dict, message: str
) -> None:
    """Spec validation names the field, so a bad config never reaches a GPU deployment."""
    with pytest.raises(ValueError, match=message):
        replace(first_spec, **changes)


@pytest.mark.parametrize("steps", [(), (10, 50), (50, 10, 100), (0, 100)])
def test_traffic_steps_must_rise_to_100(steps: tuple[int, ...]) -> None:
    """Steps rise strictly from above 0 and end at 100."""
    with pytest.raises(ValueError, match="traffic_steps"):
        RolloutPolicy(traffic_steps=steps)
