"""Policies over offline plans: prod passes everything; an insecure prod config fails clearly."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from policy import check, rules
from tests.policy.conftest import INSECURE_PROD_OVERRIDES

PROD = check.load_config(check.config_path("prod"))


def _found(violations: list[check.Violation]) -> set[tuple[str, str]]:
    return {(v.policy, v.resource_name) for v in violations}


def test_prod_plan_passes_every_policy(prod_resources):
    """The prod stack as committed violates no policy, not even advisory ones."""
    violations = check.evaluate(prod_resources, PROD)
    assert violations == [], "\n".join(map(str, violations))


def test_dev_plan_has_only_advisory_violations(dev_resources):
    """Dev runs public by config: reported as advice, never blocking."""
    violations = check.evaluate(dev_resources, check.load_config(check.config_path("dev")))
    assert {v.enforcement for v in violations} == {"advisory"}
    assert ("no-public-network-access", "workspace-aml") in _found(violations)


def test_insecure_prod_config_fails_with_policy_resource_and_reason(insecure_prod_resources):
    """Flipped prod switches are each reported: the policy, the resource and why."""
    violations = check.evaluate(insecure_prod_resources, PROD)
    assert {v.enforcement for v in violations} == {"mandatory"}
    assert _found(violations) >= {
        ("no-public-network-access", "workspace-aml"),
        ("no-public-network-access", "workspace-storage"),
        ("no-public-network-access", "workspace-vault"),
        ("no-public-network-access", "workspace-registry"),
        ("no-public-network-access", "endpoints-generate"),
        ("endpoint-aad-token-auth", "endpoints-generate"),
        ("endpoint-aad-token-auth", "endpoints-analyze"),
        ("allowed-deployment-skus", "endpoints-generate-rollout"),
        ("compute-instance-idle-shutdown", "compute-instance"),
    }
    reasons = {(v.policy, v.resource_name): v.reason for v in violations}
    assert reasons[("endpoint-aad-token-auth", "endpoints-generate")] == (
        "properties.authMode is 'Key'; set it to 'AADToken' (no keys)"
    )
    assert "'Standard_D2s_v3'" in reasons[("allowed-deployment-skus", "endpoints-generate-rollout")]


def test_owner_assignment_in_the_plan_fails(prod_resources):
    """An Owner grant slipped into prod (config cannot make one) is caught by name."""
    grant = next(r for r in prod_resources if r.type == rules.ROLE_ASSIGNMENT)
    owner = f"/providers/Microsoft.Authorization/roleDefinitions/{rules.OWNER}"
    bad = replace(grant, name="sneaky-owner", props={**grant.props, "roleDefinitionId": owner})
    (violation,) = check.evaluate([*prod_resources, bad], PROD)
    assert (violation.policy, violation.resource_name) == ("no-privileged-roles", "sneaky-owner")
    assert violation.reason.startswith("grants Owner")


def test_compute_instance_without_idle_shutdown_fails(prod_resources):
    """A compute instance whose idle shutdown was dropped is caught."""
    ci = next(r for r in prod_resources if r.name == "compute-instance")
    props = json.loads(json.dumps(ci.props))
    del props["properties"]["properties"]["idleTimeBeforeShutdown"]
    (violation,) = check.evaluate([replace(ci, props=props)], PROD)
    assert violation.policy == "compute-instance-idle-shutdown"
    assert "idleTimeBeforeShutdown is not set" in violation.reason


def test_region_outside_the_policy_list_fails(prod_resources):
    """A policy config narrower than the deployed region flags every located resource."""
    config = {**PROD, "allowed-regions": {"allowedRegions": ["westeurope"]}}
    violations = [
        v for v in check.evaluate(prod_resources, config) if v.policy == "allowed-regions"
    ]
    assert "workspace-aml" in {v.resource_name for v in violations}
    assert all(v.reason.startswith("location is 'swedencentral'") for v in violations)


def test_disabled_policy_is_skipped(dev_resources):
    """enforcementLevel disabled turns a policy off."""
    config = {"no-public-network-access": "disabled", "endpoint-aad-token-auth": "disabled"}
    violations = check.evaluate(dev_resources, config)
    assert not [v for v in violations if v.policy == "no-public-network-access"]


def test_unknown_policy_in_config_is_an_error():
    """A typo in a policy name is refused, naming the known ones."""
    with pytest.raises(check.PolicyConfigError, match="unknown policy 'allowed-region'"):
        check.resolve({"allowed-region": {"allowedRegions": []}})


def test_report_exits_nonzero_and_prints_policy_resource_reason(insecure_prod_resources):
    """The CLI report names each violation and fails on mandatory ones."""
    out = io.StringIO()
    assert check.report("prod", insecure_prod_resources, PROD, out) == 1
    text = out.getvalue()
    assert (
        "[mandatory] endpoint-aad-token-auth: azure-native:machinelearningservices:OnlineEndpoint "
        "'endpoints-generate': properties.authMode is 'Key'" in text
    )
    assert "FAILED: " in text


def test_cli_passes_prod(prod_resources, monkeypatch):
    """`python -m policy.check --stack prod` exits 0."""
    monkeypatch.setattr(
        check, "plan_resources", lambda stack, overrides, release=False: prod_resources
    )
    out = io.StringIO()
    assert check.main(["--stack", "prod"], out=out) == 0
    assert out.getvalue().rstrip().endswith("passed")


def test_cli_passes_overrides_to_the_plan(insecure_prod_resources, monkeypatch):
    """--config-override values reach the plan; the insecure result exits 1."""
    seen = []

    def plan(stack, overrides, release=False):
        seen.append((stack, tuple(overrides)))
        return insecure_prod_resources

    monkeypatch.setattr(check, "plan_resources", plan)
    argv = ["--stack", "prod"]
    for item in INSECURE_PROD_OVERRIDES:
        argv += ["--config-override", item]
    assert check.main(argv, out=io.StringIO()) == 1
    assert seen == [("prod", INSECURE_PROD_OVERRIDES)]


def test_cli_reports_an_invalid_stack_config_with_the_key(capsys):
    """A config value the program refuses exits 2 and names the key."""
    assert check.main(["--stack", "prod", "--config-override", "location=eastus"]) == 2
    assert "config azureml-byom:location = 'eastus' is invalid" in capsys.readouterr().err


def test_config_override_sets_nested_values():
    """Dotted keys edit the stack's structured config; values parse as YAML."""
    config = {"p:network": json.dumps({"private": True}), "p:location": "swedencentral"}
    result = check.apply_overrides(
        config, ["network.private=false", "endpoints.rollout.trafficSteps=[50, 100]"], "p"
    )
    assert json.loads(result["p:network"]) == {"private": False}
    assert json.loads(result["p:endpoints"]) == {"rollout": {"trafficSteps": [50, 100]}}
    assert result["p:location"] == "swedencentral"


def test_prod_deployment_with_too_high_a_floor_fails_min_instances():
    """Three instances at the autoscale floor break prod's limit of two, naming the setting."""
    resources = check.plan_resources(
        "prod",
        [
            "endpoints.deployments.generate.instanceCount=3",
            "endpoints.deployments.generate.autoscale.minInstances=3",
        ],
        release=True,
    )
    config = check.load_config(check.config_path("prod"))
    violations = [
        v for v in check.evaluate(resources, config) if v.policy == "endpoint-min-instances"
    ]
    assert [v.resource_name for v in violations] == ["endpoints-generate-rollout"] * 2
    assert "profile 'default' keeps at least 3 instances; at most 2 allowed" in violations[0].reason
