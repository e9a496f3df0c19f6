"""Endpoints, rollouts and autoscale as the program declares them in each stack."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from infra.config import ConfigError, parse_settings
from infra.config_endpoints import PATTERNS
from infra.plan import Plan, PlannedResource, prop
from tests.infra.conftest import of_type

ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
ROLLOUT = "pulumi-python:dynamic/byom:Rollout"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"


def _by_pattern(resources: list[PlannedResource], token: str) -> dict[str, PlannedResource]:
    return {r.name.split("-")[1]: r for r in of_type(resources, token)}


def test_one_endpoint_and_rollout_per_pattern(stack_plan: Plan) -> None:
    """Every configured pattern gets its endpoint and a rollout that deploys to it."""
    endpoints = _by_pattern(stack_plan.resources, ENDPOINT)
    rollouts = _by_pattern(stack_plan.resources, ROLLOUT)
    assert set(endpoints) == set(PATTERNS)
    assert set(rollouts) == set(endpoints)
    for pattern, rollout in rollouts.items():
        assert rollout.props["endpoint_name"] == endpoints[pattern].props["endpointName"]
        assert endpoints[pattern].urn in rollout.dependencies, f"{rollout.urn} ignores its endpoint"


def test_rollout_serves_its_pattern(stack_plan: Plan) -> None:
    """SCORING_PATTERNS selects the pattern (plus analyze for the gate); probes wait for loading."""
    for pattern, r in _by_pattern(stack_plan.resources, ROLLOUT).items():
        deployment = r.props["deployment"]
        env = deployment["environment_variables"]
        assert env["SCORING_PATTERNS"].split(",") in ([pattern], [pattern, "analyze"]), r.urn
        assert deployment["pattern"] == pattern, r.urn
        assert deployment["liveness_probe"]["initial_delay_s"] >= 60, r.urn
        assert deployment["model"].startswith("azureml"), r.urn


def test_server_concurrency_matches_the_endpoint_concurrency(stack_plan: Plan) -> None:
    """One model copy; threads for all the gateway admits; the batch is the concurrency."""
    for r in _by_pattern(stack_plan.resources, ROLLOUT).values():
        deployment = r.props["deployment"]
        env = deployment["environment_variables"]
        slots = int(deployment["max_concurrent_requests_per_instance"])
        assert env["WORKER_COUNT"] == "1", r.urn
        assert env["GUNICORN_CMD_ARGS"] == f"--threads {2 * slots}", r.urn
        assert env["SCORING_MAX_BATCH_SIZE"] == str(slots), r.urn
        assert env["SCORING_MAX_QUEUE"] == str(slots), r.urn


def test_endpoints_leave_traffic_to_the_rollout(stack_plan: Plan) -> None:
    """The endpoint declares no traffic and ignores it, so Pulumi never fights the rollout."""
    for r in of_type(stack_plan.resources, ENDPOINT):
        assert "traffic" not in r.props["properties"], r.urn
        assert "properties.traffic" in r.ignore_changes, r.urn
        # ... nor the release record the rollout writes with each traffic change.
        assert 'tags["byom-release"]' in r.ignore_changes, r.urn


def test_endpoints_wait_for_their_identity_grants(stack_plan: Plan) -> None:
    """A user-assigned endpoint identity must hold AcrPull etc. before the endpoint exists."""
    grants = {
        r.urn
        for r in of_type(stack_plan.resources, ROLE_ASSIGNMENT)
        if r.name.startswith("identity-endpoint-")
    }
    # Pull, read, metrics; and write into the capture container where data collection is on.
    assert len(grants) == 4
    for r in of_type(stack_plan.resources, ENDPOINT):
        assert grants <= set(r.dependencies), f"{r.urn} does not depend on {grants}"
        assert prop(r.props, "identity.type") == "UserAssigned", r.urn


def test_prod_endpoints_are_private_with_entra_auth(plans: dict[str, Plan]) -> None:
    """Prod: AAD token auth, no public network access; no egress flag under a managed network."""
    for r in of_type(plans["prod"].resources, ENDPOINT):
        assert prop(r.props, "properties.authMode") == "AADToken", r.urn
        assert prop(r.props, "properties.publicNetworkAccess") == "Disabled", r.urn
    for r in of_type(plans["prod"].resources, ROLLOUT):
        # Microsoft: the flag no longer applies with a managed network; avoid setting it.
        assert r.props["deployment"].get("egress_public_network_access") is None, r.urn
        assert r.props["deployment"]["instance_type"].startswith("Standard_N"), f"{r.urn}: no GPU"


def test_each_slot_is_autoscaled_by_its_own_setting_never_a_repointed_one(
    plans: dict[str, Plan],
) -> None:
    """No platform-stack autoscale setting follows the live slot (its target is create-only,
    TargetResourceIdIsImmutable); each rollout carries the rules for one setting per slot."""
    from delivery.autoscale import AutoscaleSpec, autoscale_name

    for plan in plans.values():
        assert of_type(plan.resources, AUTOSCALE) == [], plan.stack
    rollouts = _by_pattern(plans["prod"].resources, ROLLOUT)
    assert rollouts
    for pattern, r in rollouts.items():
        assert r.props["policy"]["autoscale"] is True, r.urn
        spec = AutoscaleSpec.from_props(r.props["autoscale"])
        count = r.props["deployment"]["instance_count"]
        assert spec.min_instances <= count <= spec.max_instances, r.urn
        endpoint = r.props["endpoint_name"]
        names = {autoscale_name(endpoint, slot) for slot in ("blue", "green")}
        assert len(names) == 2, pattern  # blue and green never share (and re-point) a setting
        for slot in ("blue", "green"):
            target = f"/x/onlineEndpoints/{endpoint}/deployments/{slot}"
            setting = spec.setting(target)
            assert setting["properties"]["targetResourceUri"] == target
            for profile in setting["properties"]["profiles"]:
                for rule in profile["rules"]:
                    assert rule["metricTrigger"]["metricResourceUri"] == target


def test_invokers_get_only_the_custom_role_on_each_endpoint(plans: dict[str, Plan]) -> None:
    """Applications are granted the score-only role at endpoint scope, not on the workspace."""
    invokers = [r for r in of_type(plans["prod"].resources, ROLE_ASSIGNMENT) if "invoker" in r.name]
    assert len(invokers) == len(PATTERNS)
    for r in invokers:
        assert "/onlineEndpoints/" in r.props["scope"], r.urn
        assert "/roleDefinitions/" in r.props["roleDefinitionId"], r.urn


BASE: dict[str, Any] = {
    "location": "swedencentral",
    "tags": {"owner": "o", "costCenter": "c", "dataClassification": "internal"},
    "endpoints": {"deployments": {"generate": {"instanceType": "Standard_NC24ads_A100_v4"}}},
}


def _parse(**endpoint_changes: Any) -> Any:
    values = copy.deepcopy(BASE)
    values["endpoints"].update(endpoint_changes)
    return parse_settings(values, stack="prod")


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"authMode": "Key"}, "azureml-byom:endpoints.authMode"),
        ({"publicNetworkAccess": "Enabled"}, "azureml-byom:endpoints.publicNetworkAccess"),
        (
            {"deployments": {"chat": {"instanceType": "x"}}},
            "azureml-byom:endpoints.deployments.chat",
        ),
        (
            {"deployments": {"generate": {"instanceType": "x", "requestTimeoutMs": 600000}}},
            "azureml-byom:endpoints.deployments.generate.requestTimeoutMs",
        ),
        (
            {
                "deployments": {
                    "generate": {
                        "instanceType": "x",
                        "instanceCount": 5,
                        "autoscale": {"maxInstances": 2},
                    }
                }
            },
            "azureml-byom:endpoints.deployments.generate.instanceCount",
        ),
        ({"rollout": {"trafficSteps": [50, 10]}}, "azureml-byom:endpoints.rollout.trafficSteps"),
    ],
)
def test_invalid_endpoint_config_fails_naming_the_key(changes: dict, key: str) -> None:
    """Endpoint settings are checked before anything is declared."""
    with pytest.raises(ConfigError) as caught:
        _parse(**changes)
    assert caught.value.key == key


def test_endpoints_without_registered_assets_have_no_rollout() -> None:
    """Before the first model is registered, endpoints exist but nothing is deployed."""
    settings = _parse()
    assert settings.endpoints is not None
    assert settings.endpoints.assets is None


def test_prod_releases_leave_the_stack_and_bake_at_full_traffic(plans: dict[str, Plan]) -> None:
    """Prod declares its releases (`stage`) for the release job; dev runs them in `pulumi up`."""
    for pattern, rollout in _by_pattern(plans["prod"].resources, ROLLOUT).items():
        policy = rollout.props["policy"]
        assert policy["release"] == "stage", pattern
        assert policy["final_bake_s"] >= policy["step_wait_s"], pattern
        assert policy["standby_instances"] == 1, pattern
    for rollout in _by_pattern(plans["dev"].resources, ROLLOUT).values():
        assert rollout.props["policy"]["release"] == "inline"
    releases = plans["prod"].outputs["releases"]
    assert set(releases) == set(_by_pattern(plans["prod"].resources, ROLLOUT))
    for declared in releases.values():
        assert {"deployment", "policy", "autoscale", "endpoint_name"} <= set(declared)


MODEL = {"name": "m", "version": "3f2a9c0d1b4e5f67", "contentHash": "sha256:3f2a9c0d1b4e5f67"}
# As `delivery.promote` writes them in a locked-down stack: the images dev built, by digest.
CONDA_ENV = {
    "name": "byom-inference-gpu",
    "version": "9a8b7c6d5e4f3a2b",
    "image": "crbyomprod.azurecr.io/byom/byom-inference-gpu@sha256:" + "1" * 64,
}
SERVER_ENV = {
    "name": "byom-openai-server",
    "version": "150a171e851fad01",
    "image": "crbyomprod.azurecr.io/byom/byom-openai-server@sha256:" + "2" * 64,
}
DEPLOYER = {"objectId": "4e8d1c2b-7a6f-4b3e-9d2c-1f0e8a7b6c5d", "type": "Group"}


def _with_server(server: str, **delivery: Any) -> Any:
    values = copy.deepcopy(BASE)
    values["endpoints"]["deployments"]["generate"]["server"] = server
    values["identity"] = {"deployer": DEPLOYER}  # a release needs one (infra/config.py)
    return parse_settings(values, stack="prod", delivery={"model": MODEL, **delivery})


def test_a_deployment_picks_its_server_and_the_matching_environment() -> None:
    """azmlinfsrv runs on the conda environment; openai on the server image (custom container)."""
    records = {"environment": CONDA_ENV, "serverEnvironment": SERVER_ENV}
    default = _with_server("azmlinfsrv", **records)
    assert default.endpoints is not None
    assert default.endpoints.assets is not None
    [deployment] = default.endpoints.deployments
    assert default.endpoints.assets.environment_for(deployment.server) == (
        "azureml:byom-inference-gpu:9a8b7c6d5e4f3a2b"
    )
    openai = _with_server("openai", **records)
    assert openai.endpoints is not None
    assert openai.endpoints.assets is not None
    [deployment] = openai.endpoints.deployments
    assert deployment.server == "openai"
    assert openai.endpoints.assets.environment_for("openai") == (
        "azureml:byom-openai-server:150a171e851fad01"
    )


def test_an_openai_deployment_without_the_server_image_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        _with_server("openai", environment=CONDA_ENV)
    assert caught.value.key == "byom:serverEnvironment"
    _with_server("azmlinfsrv", environment=CONDA_ENV)  # not needed by the inference server


@pytest.mark.parametrize("server", ["azmlinfsrv", "openai"])
def test_a_locked_down_stack_deploys_images_by_digest_only(server: str) -> None:
    """AllowOnlyApprovedOutbound (the default, prod): an environment the workspace would have to
    build from its spec fails validation, naming the key; a stack with internet outbound may."""
    records = {"environment": CONDA_ENV, "serverEnvironment": SERVER_ENV}
    key = "environment" if server == "azmlinfsrv" else "serverEnvironment"
    unpinned = {**records, key: {k: v for k, v in records[key].items() if k != "image"}}
    with pytest.raises(ConfigError) as caught:
        _with_server(server, **unpinned)
    assert caught.value.key == f"byom:{key}.image"
    assert "AllowOnlyApprovedOutbound" in str(caught.value)
    values = copy.deepcopy(BASE)
    values["endpoints"]["deployments"]["generate"]["server"] = server
    values["identity"] = {"deployer": DEPLOYER}
    values["workspace"] = {**values.get("workspace", {}), "isolationMode": "AllowInternetOutbound"}
    parse_settings(values, stack="dev", delivery={"model": MODEL, **unpinned})


def test_an_unknown_server_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        _with_server("vllm", environment=CONDA_ENV)
    assert caught.value.key == "azureml-byom:endpoints.deployments.generate.server"


def test_the_openai_server_rollout_deploys_the_image_without_code() -> None:
    """The planned rollout carries server=openai and the image; the entity has no code asset."""
    from delivery.spec import DeploymentSpec
    from delivery.workspace import deployment_entity
    from infra.plan import plan, stack_config

    project, config = stack_config("dev", release=True)
    endpoints = json.loads(config[f"{project}:endpoints"])
    endpoints["deployments"]["generate"]["server"] = "openai"
    config[f"{project}:endpoints"] = json.dumps(endpoints)
    config["byom:serverEnvironment"] = json.dumps(SERVER_ENV)
    planned = plan("dev", config=config)
    rollouts = _by_pattern(planned.resources, ROLLOUT)
    generate = rollouts["generate"].props["deployment"]
    assert generate["server"] == "openai"
    assert generate["environment"] == "azureml:byom-openai-server:150a171e851fad01"
    assert rollouts["analyze"].props["deployment"]["server"] == "azmlinfsrv"
    spec = DeploymentSpec.from_props(generate)
    assert deployment_entity(spec, "byom-generate-dev", "blue").code_configuration is None


@pytest.mark.parametrize(
    ("variables", "name", "fragment"),
    [
        ({"SCORING_MAX_QUEU": "8"}, "SCORING_MAX_QUEU", "SCORING_MAX_QUEUE"),
        ({"SCORING_MAX_QUEUE": "0"}, "SCORING_MAX_QUEUE", "greater than or equal to 1"),
        ({"SCORING_ENGINE": "tgi"}, "SCORING_ENGINE", "'vllm', 'continuous' or 'serial'"),
        ({"SCORING_PATTERNS": "analyze"}, "SCORING_PATTERNS", "sets it from the pattern name"),
        ({"WORKER_TIMEOUT": 1200}, "WORKER_TIMEOUT", "string values"),
    ],
)
def test_deployment_variables_are_checked_against_the_scoring_settings(
    variables: dict, name: str, fragment: str
) -> None:
    """A SCORING_* variable must be a setting the package reads, with a value it accepts."""
    deployments = {"generate": {"instanceType": "x", "environmentVariables": variables}}
    with pytest.raises(ConfigError) as caught:
        _parse(deployments=deployments)
    variable = f"endpoints.deployments.generate.environmentVariables.{name}"
    assert caught.value.key == f"azureml-byom:{variable}"
    assert fragment in str(caught.value)


def test_known_scoring_variables_and_others_pass_through() -> None:
    variables = {"SCORING_ENGINE": "continuous", "SCORING_MAX_QUEUE": "4", "MY_FLAG": "on"}
    deployments = {"generate": {"instanceType": "x", "environmentVariables": variables}}
    [deployment] = _parse(deployments=deployments).endpoints.deployments
    # As written, on top of the variables infra derives (explicit ones win).
    assert variables.items() <= deployment.environment_variables.items()


def _autoscaled(autoscale: dict[str, Any], instance_type: str = "Standard_NC24ads_A100_v4") -> Any:
    deployment = {"instanceType": instance_type, "autoscale": autoscale}
    [parsed] = _parse(deployments={"generate": deployment}).endpoints.deployments
    return parsed


def _key_of(autoscale: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        _autoscaled(autoscale)
    return caught.value.key


def test_autoscale_config_parses_into_the_delivery_spec_with_its_defaults() -> None:
    """The stack file's autoscale block is a `delivery.autoscale.AutoscaleSpec` (one type, one set
    of defaults); the metric follows the SKU; the rollout gets a plain spec for its deployment."""
    from delivery.autoscale import AutoscaleSpec, OffHours

    gpu = _autoscaled({"offHours": {"timeZone": "W. Europe Standard Time"}})
    scale = gpu.autoscale
    assert isinstance(scale, AutoscaleSpec)
    assert isinstance(scale.off_hours, OffHours)
    defaults = AutoscaleSpec()
    for name in ("min_instances", "max_instances", "scale_out_above", "scale_in_below"):
        assert getattr(scale, name) == getattr(defaults, name), name
    assert scale.cooldown_minutes == defaults.cooldown_minutes
    assert scale.off_hours.time_zone == "W. Europe Standard Time"
    assert scale.metric == "GpuUtilizationPercentage"
    assert _autoscaled({}, "Standard_DS3_v2").autoscale.metric == "CpuUtilizationPercentage"
    assert _autoscaled({"enabled": False}).autoscale is None
    assert _autoscaled({"offHours": {"enabled": False}}).autoscale.off_hours is None

    rollout = scale.for_deployment("swedencentral", gpu.instance_count, {"owner": "o"})
    assert type(rollout) is AutoscaleSpec
    assert type(rollout.off_hours) is OffHours
    props = rollout.to_props()
    assert "enabled" not in props
    assert "enabled" not in props["off_hours"]
    assert AutoscaleSpec.from_props(props) == rollout
    assert rollout.setting("/x/deployments/blue")["location"] == "swedencentral"


@pytest.mark.parametrize(
    ("autoscale", "key"),
    [
        ({"minInstances": 3, "maxInstances": 2}, "autoscale.maxInstances"),
        ({"scaleOutAbove": 50, "scaleInBelow": 50}, "autoscale.scaleInBelow"),
        ({"maxInstances": 2, "offHours": {"maxInstances": 3}}, "autoscale.offHours.maxInstances"),
        ({"offHours": {"minInstances": 2, "maxInstances": 1}}, "autoscale.offHours.maxInstances"),
        (
            {"offHours": {"workdayStart": "19:00", "workdayEnd": "07:00"}},
            "autoscale.offHours.workdayEnd",
        ),
        ({"offHours": {"workdayStart": "7am"}}, "autoscale.offHours.workdayStart"),
        ({"metric": "CpuUtilizationPercentage"}, "autoscale.metric"),
        ({"cooldownMinutes": 0}, "autoscale.cooldownMinutes"),
        ({"minInstances": 0}, "autoscale.minInstances"),
        ({"scaleDown": 1}, "autoscale.scaleDown"),
        ({"location": "westeurope"}, "autoscale.location"),
    ],
)
def test_autoscale_rules_fail_naming_the_key(autoscale: dict[str, Any], key: str) -> None:
    """The spec's bounds and cross-field rules, read from a stack file, name the stack key;
    values the deployment supplies (location) are not stack keys."""
    assert _key_of(autoscale) == f"azureml-byom:endpoints.deployments.generate.{key}"


def test_probe_defaults_come_from_the_delivery_spec() -> None:
    """Readiness fails fast (READINESS_PROBE), liveness keeps ProbeSpec's default, given or not."""
    from delivery.spec import READINESS_PROBE, ProbeSpec

    for given in ({}, {"readinessProbe": {"periodSeconds": 5}, "livenessProbe": {}}):
        deployment = {"instanceType": "Standard_NC24ads_A100_v4", **given}
        [parsed] = _parse(deployments={"generate": deployment}).endpoints.deployments
        assert parsed.readiness_probe.failure_threshold == READINESS_PROBE.failure_threshold
        assert parsed.liveness_probe.failure_threshold == ProbeSpec().failure_threshold
    assert READINESS_PROBE.failure_threshold < ProbeSpec().failure_threshold
