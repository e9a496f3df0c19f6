"""The CrossGuard wrapping: one ResourceValidationPolicy per rule, configs valid per stack."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from pulumi_policy import EnforcementLevel, ResourceValidationArgs

from policy import check, pack, rules

POLICY_DIR = Path(check.__file__).parent


def _args(resource_type: str, props: dict, config: dict | None = None) -> ResourceValidationArgs:
    urn = f"urn:pulumi:prod::azureml-byom::{resource_type}::r"
    return ResourceValidationArgs(resource_type, props, urn, "r", None, None, config)  # type: ignore[arg-type]


def _violations(name: str, args: ResourceValidationArgs) -> list[str]:
    (policy,) = [p for p in pack.build_policies() if p.name == name]
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def test_pack_wraps_every_rule_once():
    """Each rule becomes one named resource validation policy with a description."""
    policies = pack.build_policies()
    assert [p.name for p in policies] == list(rules.POLICY_NAMES)
    assert all(p.description and p.remediation_steps for p in policies)


def test_pack_is_mandatory_unless_configured():
    """Without a config file every policy blocks the deployment."""
    assert pack.DEFAULT_ENFORCEMENT is EnforcementLevel.MANDATORY
    assert all(p.enforcement_level is None for p in pack.build_policies())


def test_wrapped_policy_reports_the_rule_reason():
    """A public endpoint seen by CrossGuard is reported with the rule's reason."""
    args = _args(rules.ONLINE_ENDPOINT, {"properties": {"publicNetworkAccess": "Enabled"}})
    assert _violations("no-public-network-access", args) == [
        "properties.publicNetworkAccess is 'Enabled'; set it to 'Disabled'"
    ]


def test_wrapped_policy_reads_its_config():
    """Policy config (as from --policy-pack-config) reaches the rule."""
    props = {"location": "westeurope"}
    narrowed = _args(rules.ML_WORKSPACE, props, {"allowedRegions": ["swedencentral"]})
    assert _violations("allowed-regions", narrowed)
    assert _violations("allowed-regions", _args(rules.ML_WORKSPACE, props)) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_policy_config_matches_the_schemas(stack):
    """Each stack's config names known policies, valid levels and settings of the right type."""
    config = check.load_config(check.config_path(stack))
    check.resolve(config)
    for spec in rules.POLICIES:
        entry = config.get(spec.name, {})
        settings = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        schema = {"type": "object", "properties": dict(spec.schema), "additionalProperties": False}
        jsonschema.validate(settings, schema)


def test_prod_enforces_every_policy():
    """Prod relaxes nothing: every policy is mandatory."""
    resolved = check.resolve(check.load_config(check.config_path("prod")))
    assert {p.enforcement for p in resolved} == {"mandatory"}


def test_dev_relaxes_only_network_exposure_and_auth():
    """Dev may run public (by config) so those two policies advise; the rest still block."""
    resolved = check.resolve(check.load_config(check.config_path("dev")))
    advisory = {p.spec.name for p in resolved if p.enforcement == "advisory"}
    assert advisory == {"no-public-network-access", "endpoint-aad-token-auth"}


def test_policy_pack_project_file_runs_python_in_the_project_venv():
    """PulumiPolicy.yaml declares the Python runtime and the shared virtualenv."""
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == "../.venv"
    assert (POLICY_DIR / "__main__.py").exists()
