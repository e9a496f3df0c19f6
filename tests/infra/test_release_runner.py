"""The release runner of a private stack: ephemeral GitHub runners in the VNet, as an identity."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from infra.config import ConfigError, parse_settings
from infra.plan import Plan
from infra.release_runner import runner_label
from infra.roles import FORBIDDEN_ROLES
from tests.infra.conftest import of_type

JOB = "azure-native:app:Job"
ENVIRONMENT = "azure-native:app:ManagedEnvironment"
SUBNET = "azure-native:network:Subnet"
VNET = "azure-native:network:VirtualNetwork"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"

RAW = {
    "githubOwner": "contoso",
    "githubRepo": "azureml-byom",
    "githubAppId": "1",
    "githubInstallationId": "2",
    "appKeySecretUri": "https://kv-ops.vault.azure.net/secrets/runner-key",
    "image": "crops.azurecr.io/runner@sha256:" + "a" * 64,
    "subnet": "10.20.2.0/23",
}


def test_prod_release_jobs_run_on_ephemeral_runners_started_per_queued_job(
    plans: dict[str, Plan],
) -> None:
    [job] = of_type(plans["prod"].resources, JOB)
    config = job.props["configuration"]
    assert config["triggerType"] == "Event"
    [rule] = config["eventTriggerConfig"]["scale"]["rules"]
    assert rule["type"] == "github-runner"
    assert rule["metadata"]["runnerScope"] == "repo"
    assert rule["metadata"]["labels"] == runner_label("prod") == "byom-prod-release"
    assert config["eventTriggerConfig"]["scale"]["minExecutions"] == 0
    # The GitHub App key is a Key Vault reference read with the job's identity: no value.
    [secret] = config["secrets"]
    assert "value" not in secret
    assert secret["keyVaultUrl"].startswith("https://")
    assert rule["auth"] == [{"secretRef": secret["name"], "triggerParameter": "appKey"}]
    # A release longer than the job's replica timeout would be killed: it is long enough.
    assert config["replicaTimeout"] >= 90 * 60
    env = {e["name"]: e for e in job.props["template"]["containers"][0]["env"]}
    assert env["EPHEMERAL"]["value"] == "true"
    assert "AZURE_CLIENT_ID" in env  # delivery.credential picks the managed identity
    assert "@sha256:" in job.props["template"]["containers"][0]["image"]


def test_the_runner_lives_in_the_platform_vnet_on_an_internal_environment(
    plans: dict[str, Plan],
) -> None:
    prod = plans["prod"].resources
    [vnet] = of_type(prod, VNET)
    [runner_subnet] = [s for s in of_type(prod, SUBNET) if "runner" in s.props["subnetName"]]
    space = ipaddress.ip_network(vnet.props["addressSpace"]["addressPrefixes"][0])
    assert ipaddress.ip_network(runner_subnet.props["addressPrefix"]).subnet_of(space)
    assert runner_subnet.props["delegations"][0]["serviceName"] == "Microsoft.App/environments"
    assert runner_subnet.props["defaultOutboundAccess"] is False
    assert "natGateway" in runner_subnet.props
    [environment] = of_type(prod, ENVIRONMENT)
    assert environment.props["vnetConfiguration"]["internal"] is True
    others = [s for s in of_type(prod, SUBNET) if s is not runner_subnet]
    for other in others:
        assert not ipaddress.ip_network(other.props["addressPrefix"]).overlaps(
            ipaddress.ip_network(runner_subnet.props["addressPrefix"])
        )


def test_the_release_identity_gets_data_plane_roles_never_privileged_ones(
    plans: dict[str, Plan],
) -> None:
    grants = [r for r in of_type(plans["prod"].resources, ROLE_ASSIGNMENT) if "release-" in r.name]
    assert len(grants) == 4
    for grant in grants:
        role = grant.props["roleDefinitionId"].rsplit("/", 1)[-1]
        assert role not in FORBIDDEN_ROLES, grant.urn


def test_a_public_stack_has_no_release_runner(plans: dict[str, Plan]) -> None:
    assert of_type(plans["dev"].resources, JOB) == []
    assert plans["dev"].outputs["releaseRunnerLabel"] is None
    assert plans["prod"].outputs["releaseRunnerLabel"] == "byom-prod-release"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"image": "crops.azurecr.io/runner:latest"}, "releaseRunner.image"),
        ({"subnet": "10.99.0.0/23"}, "releaseRunner.subnet"),
        ({"subnet": "10.20.2.0/27"}, "releaseRunner.subnet"),
        ({"appKeySecretUri": "plain-text-key"}, "releaseRunner.appKeySecretUri"),
        ({"subnet": "10.20.0.0/23"}, "releaseRunner.subnet"),  # overlaps the endpoint subnet
        ({"timeoutMinutes": 5}, "releaseRunner.timeoutMinutes"),
        ({"githubToken": "ghp_x"}, "releaseRunner.githubToken"),
    ],
)
def test_invalid_runner_config_names_the_key(change: dict, key: str) -> None:
    values = {
        "location": "swedencentral",
        "tags": {"owner": "o", "costCenter": "c", "dataClassification": "confidential"},
        "network": {"addressSpace": "10.20.0.0/16", "privateEndpointSubnet": "10.20.0.0/24"},
        "releaseRunner": {**RAW, **change},
    }
    assert parse_settings({**values, "releaseRunner": RAW}, stack="prod").release_runner
    with pytest.raises(ConfigError) as error:
        parse_settings(values, stack="prod")
    assert error.value.key == f"azureml-byom:{key}"


def test_the_set_up_targets_resources_the_prod_plan_declares(plans: dict[str, Plan]) -> None:
    """docs/delivery-pipeline.md's first `pulumi up --target` names URNs of the prod program."""
    from infra.plan import REPO_ROOT

    text = (REPO_ROOT / "docs" / "delivery-pipeline.md").read_text()
    targets = re.findall(r"--target '(urn:pulumi:prod::[^']+)'", text)
    assert len(targets) == 2
    assert set(targets) <= {r.urn for r in plans["prod"].resources}


def test_autoscaler_role_id_selects_the_out_of_band_role_and_its_absence_declares_one(
    plans: dict[str, Plan],
) -> None:
    """`releaseRunner.autoscalerRoleId` does what it says: prod (set) grants that GUID and
    declares no role; without it the stack declares the role with exactly the runner's
    autoscale and alert actions, and grants that."""
    from infra import roles
    from infra.plan import plan, stack_config

    def runner_grant(resources: list) -> str:
        [grant] = [r for r in resources if r.name == "release-monitoring"]
        return str(grant.props["roleDefinitionId"])

    prod = plans["prod"].resources
    _, config = stack_config("prod", release=True)
    configured = json.loads(config["azureml-byom:releaseRunner"])["autoscalerRoleId"]
    assert runner_grant(prod).endswith(f"/roleDefinitions/{configured}")
    assert not [r for r in prod if r.name == "release-autoscaler-role"]

    runner = json.loads(config["azureml-byom:releaseRunner"])
    del runner["autoscalerRoleId"]
    declared = plan(
        "prod", config={**config, "azureml-byom:releaseRunner": json.dumps(runner)}
    ).resources
    [role] = [r for r in declared if r.name == "release-autoscaler-role"]
    assert role.props["permissions"] == [{"actions": list(roles.RELEASE_AUTOSCALER_ACTIONS)}]
    assert runner_grant(declared) == str(role.outputs["id"])
