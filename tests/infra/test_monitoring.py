"""Alerts, action group, data collection, scheduled autoscale and derived timeouts in both plans."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra import sizing
from infra.config import ConfigError, parse_settings
from infra.monitoring import ROLLOUT_SIGNALS
from infra.plan import Plan, PlannedResource, prop
from tests.infra.conftest import of_type

ACTION_GROUP = "azure-native:monitor:ActionGroup"
METRIC_ALERT = "azure-native:monitor:MetricAlert"
ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
ROLLOUT = "pulumi-python:dynamic/byom:Rollout"


def _rollouts(plan: Plan) -> dict[str, PlannedResource]:
    return {r.props["deployment"]["pattern"]: r for r in of_type(plan.resources, ROLLOUT)}


def _alerts(plan: Plan) -> dict[str, PlannedResource]:
    return {r.props["ruleName"]: r for r in of_type(plan.resources, METRIC_ALERT)}


def test_one_action_group_notifies_the_owner(stack_plan: Plan) -> None:
    """Every stack has one action group with an e-mail receiver."""
    [group] = of_type(stack_plan.resources, ACTION_GROUP)
    assert prop(group.props, "emailReceivers.0.emailAddress") == "ml-platform@example.com"
    assert len(group.props["groupShortName"]) <= 12, group.urn


def test_each_pattern_has_error_throttle_latency_and_instance_alerts(stack_plan: Plan) -> None:
    """4 rules per pattern, every one of them wired to the action group."""
    [group] = of_type(stack_plan.resources, ACTION_GROUP)
    alerts = of_type(stack_plan.resources, METRIC_ALERT)
    metrics = sorted(prop(a.props, "criteria.allOf.0.metricName") for a in alerts)
    assert metrics == sorted(
        ["RequestsPerMinute", "RequestsPerMinute", "RequestLatency_P95", "DeploymentCapacity"] * 2
    )
    for alert in alerts:
        assert group.urn in alert.dependencies, f"{alert.urn} does not notify the action group"
        assert alert.props["autoMitigate"] is True, alert.urn


def test_endpoint_rules_split_by_slot_so_a_rollout_knows_who_fired(stack_plan: Plan) -> None:
    """5xx, 429 and p95 rules are scoped to the endpoint and split by `deployment`."""
    endpoint_ids = {r.urn for r in of_type(stack_plan.resources, ENDPOINT)}
    for alert in of_type(stack_plan.resources, METRIC_ALERT):
        criterion = prop(alert.props, "criteria.allOf.0")
        if criterion["metricName"] == "DeploymentCapacity":
            assert alert.props["scopes"][0].endswith("/deployments/blue"), alert.urn
            continue
        assert any(u in alert.dependencies for u in endpoint_ids), alert.urn
        assert {"name": "deployment", "operator": "Include", "values": ["*"]} in criterion[
            "dimensions"
        ], alert.urn


def test_status_filters_match_the_signal(stack_plan: Plan) -> None:
    """The 5xx rule filters statusCodeClass 5xx; the 429 rule statusCode 429."""
    for name, alert in _alerts(stack_plan).items():
        dims = {
            d["name"]: d["values"] for d in prop(alert.props, "criteria.allOf.0.dimensions") or []
        }
        if "-5xx-" in name:
            assert dims["statusCodeClass"] == ["5xx"], alert.urn
        if "-429-" in name:
            assert dims["statusCode"] == ["429"], alert.urn


def test_rollouts_watch_their_patterns_endpoint_rules(stack_plan: Plan) -> None:
    """The names a rollout watches are exactly its pattern's declared endpoint rules."""
    alerts = _alerts(stack_plan)
    for pattern, rollout in _rollouts(stack_plan).items():
        watched = rollout.props["policy"]["watch_alerts"]
        assert len(watched) == len(ROLLOUT_SIGNALS), rollout.urn
        assert all(name in alerts and f"-{pattern}-" in name for name in watched), rollout.urn


def test_rollouts_run_the_shadow_gate(stack_plan: Plan) -> None:
    """Gate on in both stacks; generate deployments also answer analysis for it."""
    for rollout in _rollouts(stack_plan).values():
        assert rollout.props["policy"]["gate"]["enabled"] is True, rollout.urn
        patterns = rollout.props["deployment"]["environment_variables"]["SCORING_PATTERNS"]
        assert "analyze" in patterns.split(","), rollout.urn


def test_prod_gate_thresholds_come_from_the_stack(plans: dict[str, Plan]) -> None:
    """Pulumi.prod.yaml tightens the log-prob and perplexity limits and bakes 10/50/100."""
    rollout = _rollouts(plans["prod"])["generate"]
    gate = rollout.props["policy"]["gate"]
    assert (gate["max_mean_logprob_drop"], gate["max_perplexity_ratio"]) == (0.05, 1.15)
    assert rollout.props["policy"]["traffic_steps"] == [10, 50, 100]


def test_data_collection_is_declared_in_both_stacks(plans: dict[str, Plan]) -> None:
    """Dev captures by default (internal data); prod opted in at 5% with field redaction."""
    dev = _rollouts(plans["dev"])["generate"].props["deployment"]
    prod = _rollouts(plans["prod"])["generate"].props["deployment"]
    assert dev["data_collection"]["enabled"] is True
    assert prod["data_collection"]["enabled"] is True
    assert prod["data_collection"]["sampling_rate"] == pytest.approx(0.05)
    assert prod["data_collection"]["collections"] == ["model_inputs", "model_outputs"]
    env = prod["environment_variables"]
    assert env["SCORING_CAPTURE"] == "true"
    assert env["SCORING_REDACT_FIELDS"] == "tokens,top"


def test_autoscale_has_working_and_off_hours_profiles(stack_plan: Plan) -> None:
    """Generate scales down at night: a recurring off-hours profile with a smaller maximum."""
    from delivery.autoscale import AutoscaleSpec

    generate = _rollouts(stack_plan)["generate"]
    spec = AutoscaleSpec.from_props(generate.props["autoscale"])
    setting = spec.setting(f"/x/onlineEndpoints/e/deployments/{'blue'}")
    profiles = {p["name"]: p for p in setting["properties"]["profiles"]}
    assert set(profiles) == {"default", "working-hours", "off-hours"}, generate.urn
    off, work = profiles["off-hours"], profiles["working-hours"]
    assert int(off["capacity"]["maximum"]) < int(work["capacity"]["maximum"]), generate.urn
    assert off["recurrence"]["schedule"]["days"] == work["recurrence"]["schedule"]["days"]
    assert off["recurrence"]["schedule"]["hours"] > work["recurrence"]["schedule"]["hours"]
    assert off["recurrence"]["schedule"]["timeZone"] == "W. Europe Standard Time"


def test_engine_memory_follows_the_instance_type() -> None:
    """GPU SKUs give vLLM a share of GPU memory; CPU SKUs a KV cache sized from the VM."""
    assert sizing.engine_memory("Standard_NC24ads_A100_v4", 0.3) == {
        "SCORING_GPU_MEMORY_UTILIZATION": "0.9"
    }
    # DS3_v2: 14 GiB, 4 for the runtime, 0.3 of weights: half of the 9.7 left.
    assert sizing.engine_memory("Standard_DS3_v2", 0.3) == {"SCORING_KV_CACHE_GIB": "4"}
    assert sizing.engine_memory("Standard_DS2_v2", 2.0) == {"SCORING_KV_CACHE_GIB": "1"}
    assert sizing.engine_memory("Standard_Unlisted_v9", 1.0) == {}


def test_deployments_carry_the_engine_sizing(plans: dict[str, Plan]) -> None:
    """Sequences from the concurrency, memory from the SKU (GPU in prod, DS3_v2 in dev)."""
    for stack, memory in (
        ("prod", "SCORING_GPU_MEMORY_UTILIZATION"),
        ("dev", "SCORING_KV_CACHE_GIB"),
    ):
        deployment = _rollouts(plans[stack])["generate"].props["deployment"]
        env = deployment["environment_variables"]
        concurrency = int(deployment["max_concurrent_requests_per_instance"])
        assert env["SCORING_MAX_BATCH_SIZE"] == str(concurrency), stack
        assert memory in env, stack
    dev = _rollouts(plans["dev"])["generate"].props["deployment"]["environment_variables"]
    assert dev["SCORING_KV_CACHE_GIB"] == "5"  # 14 GiB, 4 for the runtime, no modelSizeGb


def test_prod_timeouts_follow_model_size_and_token_budget(plans: dict[str, Plan]) -> None:
    """modelSizeGb sets probe delay and WORKER_TIMEOUT; maxNewTokens the request timeout."""
    deployment = _rollouts(plans["prod"])["generate"].props["deployment"]
    budget = sizing.startup_budget(0.3)
    assert deployment["liveness_probe"]["initial_delay_s"] == budget.probe_initial_delay_s
    env = deployment["environment_variables"]
    assert env["WORKER_TIMEOUT"] == str(budget.worker_timeout_s)
    assert env["SCORING_MAX_NEW_TOKENS"] == "1024"
    assert deployment["request_timeout_ms"] == sizing.request_timeout_ms(1024, 10)
    assert float(env["SCORING_REQUEST_TIMEOUT_S"]) < deployment["request_timeout_ms"] / 1000


BASE: dict[str, Any] = {
    "location": "swedencentral",
    "tags": {"owner": "o@example.com", "costCenter": "c", "dataClassification": "internal"},
    "endpoints": {"deployments": {"generate": {"instanceType": "Standard_NC24ads_A100_v4"}}},
}


def _parse(classification: str = "internal", **changes: Any) -> Any:
    values = copy.deepcopy(BASE)
    values["tags"]["dataClassification"] = classification
    values.update(changes)
    return parse_settings(values, stack="prod")


def test_capture_is_off_by_default_for_confidential_data() -> None:
    """Confidential stacks must opt in to data collection; internal ones capture by default."""
    assert not _parse("confidential", network={"private": True}).monitoring.data_collection.enabled
    assert _parse("internal").monitoring.data_collection.enabled


def test_large_model_gets_long_probes_and_worker_timeout() -> None:
    """A 140 GB model: probes start after the load estimate, gunicorn waits twice as long."""
    endpoints = copy.deepcopy(BASE["endpoints"])
    endpoints["modelSizeGb"] = 140
    [d] = _parse(endpoints=endpoints).endpoints.deployments
    assert d.liveness_probe.initial_delay_s == 3600  # 1.5 x (90 + 2800) s, capped at an hour
    assert int(d.environment_variables["WORKER_TIMEOUT"]) >= 2 * (90 + 140 * 20)


def test_explicit_settings_win_over_derived_ones() -> None:
    """An explicit requestTimeoutMs, probe delay or env var is kept as written."""
    endpoints = {
        "modelSizeGb": 10,
        "deployments": {
            "generate": {
                "instanceType": "x",
                "maxNewTokens": 512,
                "minTokensPerSecond": 20,
                "requestTimeoutMs": 100000,
                "livenessProbe": {"initialDelaySeconds": 900},
                "environmentVariables": {"WORKER_TIMEOUT": "1200"},
            }
        },
    }
    [d] = _parse(endpoints=endpoints).endpoints.deployments
    assert d.request_timeout_ms == 100000
    assert d.liveness_probe.initial_delay_s == 900
    assert d.environment_variables["WORKER_TIMEOUT"] == "1200"
    assert d.environment_variables["SCORING_MAX_NEW_TOKENS"] == "512"


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        (
            {
                "endpoints": {
                    "deployments": {
                        "generate": {
                            "instanceType": "x",
                            "maxNewTokens": 4096,
                            "minTokensPerSecond": 5,
                        }
                    }
                }
            },
            "azureml-byom:endpoints.deployments.generate.maxNewTokens",
        ),
        (
            {
                "endpoints": {
                    "deployments": {
                        "generate": {
                            "instanceType": "x",
                            "autoscale": {
                                "maxInstances": 2,
                                "offHours": {"workdayStart": "19:00", "workdayEnd": "07:00"},
                            },
                        }
                    }
                }
            },
            "azureml-byom:endpoints.deployments.generate.autoscale.offHours.workdayEnd",
        ),
        (
            {
                "endpoints": {
                    "deployments": {
                        "generate": {
                            "instanceType": "x",
                            "autoscale": {"maxInstances": 2, "offHours": {"maxInstances": 5}},
                        }
                    }
                }
            },
            "azureml-byom:endpoints.deployments.generate.autoscale.offHours.maxInstances",
        ),
        (
            {
                "endpoints": {
                    "deployments": {"generate": {"instanceType": "x"}},
                    "rollout": {"gate": {"maxPerplexityRatio": 0.5}},
                }
            },
            "azureml-byom:endpoints.rollout.gate.maxPerplexityRatio",
        ),
        (
            {"monitoring": {"alerts": {"windowMinutes": 7}}},
            "azureml-byom:monitoring.alerts.windowMinutes",
        ),
        (
            {"monitoring": {"actionGroup": {"shortName": "much-too-long-name"}}},
            "azureml-byom:monitoring.actionGroup.shortName",
        ),
        (
            {"monitoring": {"dataCollection": {"samplingRate": 2}}},
            "azureml-byom:monitoring.dataCollection.samplingRate",
        ),
    ],
)
def test_invalid_operations_config_fails_naming_the_key(changes: dict, key: str) -> None:
    """Monitoring, gate, schedule and sizing settings are checked before anything is declared."""
    with pytest.raises(ConfigError) as caught:
        _parse(**changes)
    assert caught.value.key == key


def test_sizing_formulas() -> None:
    """Load estimate grows with size; request timeout covers the slowest full generation."""
    assert sizing.startup_budget(0, "continuous").load_seconds == sizing.STARTUP_BASE_SECONDS
    assert sizing.startup_budget(10, "continuous").worker_timeout_s == 2 * (90 + 200)
    assert sizing.startup_budget(0.3, "continuous").worker_timeout_s == 300
    # vLLM (the default engine) adds its measured start-up: compile, profile, KV cache.
    vllm = sizing.startup_budget(0)
    assert vllm.load_seconds == sizing.STARTUP_BASE_SECONDS + sizing.VLLM_STARTUP_SECONDS
    assert vllm.worker_timeout_s == 2 * vllm.load_seconds > sizing.GUNICORN_DEFAULT_TIMEOUT
    assert sizing.request_timeout_ms(1000, 10) == 110_000
    assert sizing.scoring_deadline_s(60_000) == 55.0
