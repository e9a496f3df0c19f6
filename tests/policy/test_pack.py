"""The CrossGuard pack: one policy per rule, valid stack configs, the real analyzer protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import jsonschema
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
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


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    """The pack started the way Pulumi starts it (`python -m pulumi.policy <engine> policy`)."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(POLICY_DIR)],
        cwd=tmp_path_factory.mktemp("cwd"),  # not the repository: the pack finds its own imports
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert port.isdigit(), process.stderr.read()  # type: ignore[union-attr]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait()


def _policy_config(stack: str) -> dict[str, analyzer_pb2.PolicyConfig]:
    levels = {
        "advisory": analyzer_pb2.ADVISORY,
        "mandatory": analyzer_pb2.MANDATORY,
        "disabled": analyzer_pb2.DISABLED,
    }
    result = {}
    for policy in check.resolve(check.load_config(check.config_path(stack))):
        properties = struct_pb2.Struct()
        properties.update(dict(policy.config))
        result[policy.spec.name] = analyzer_pb2.PolicyConfig(
            enforcementLevel=levels[policy.enforcement], properties=properties
        )
    return result


def _analyze(stub, resource_type: str, props: dict) -> dict[str, tuple[int, str]]:
    properties = struct_pb2.Struct()
    properties.update(props)
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type, properties=properties, urn=f"urn:pulumi:dev::p::{resource_type}::r"
    )
    response = stub.Analyze(request)
    return {d.policyName: (d.enforcementLevel, d.message) for d in response.diagnostics}


def test_analyzer_lists_every_policy_as_mandatory_by_default(analyzer):
    """Over the analyzer protocol the pack reports its name and seven mandatory policies."""
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == pack.PACK_NAME
    assert [(p.name, p.enforcementLevel) for p in info.policies] == [
        (name, analyzer_pb2.MANDATORY) for name in rules.POLICY_NAMES
    ]


def test_analyzer_applies_the_dev_policy_config(analyzer):
    """With dev's config a public key-auth endpoint is advice; a wrong region still blocks."""
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=_policy_config("dev")))
    found = _analyze(
        analyzer,
        rules.ONLINE_ENDPOINT,
        {
            "location": "eastus",
            "properties": {"publicNetworkAccess": "Enabled", "authMode": "Key"},
            "tags": {k: "dev" for k in rules.REQUIRED_TAGS},
        },
    )
    assert found["no-public-network-access"][0] == analyzer_pb2.ADVISORY
    assert found["endpoint-aad-token-auth"][0] == analyzer_pb2.ADVISORY
    level, message = found["allowed-regions"]
    assert level == analyzer_pb2.MANDATORY
    assert message.endswith("location is 'eastus'; allowed: " + ", ".join(rules.ALLOWED_REGIONS))
    assert set(found) == {"no-public-network-access", "endpoint-aad-token-auth", "allowed-regions"}
