"""What the first real `pulumi up` needs and the prod controls, on the offline plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import roles
from infra.config import ConfigError, parse_settings
from infra.plan import REPO_ROOT, STACKS, Plan, PlannedResource, plan, prop, stack_config
from tests.infra.conftest import of_type

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
WORKSPACE = "azure-native:machinelearningservices:Workspace"
STORAGE = "azure-native:storage:StorageAccount"
REGISTRY = "azure-native:containerregistry:Registry"
ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
COMPUTE = "azure-native:machinelearningservices:Compute"
DIAGNOSTICS = "azure-native:monitor:DiagnosticSetting"
ROLLOUT = "pulumi-python:dynamic/byom:Rollout"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
LOCK = "azure-native:authorization:ManagementLockAtResourceGroupLevel"
STATEFUL = (
    "azure-native:resources:ResourceGroup",
    STORAGE,
    "azure-native:keyvault:Vault",
    REGISTRY,
    WORKSPACE,
    "azure-native:operationalinsights:Workspace",
)


def _grants(p: Plan, role: str) -> list[PlannedResource]:
    return [
        r
        for r in of_type(p.resources, ROLE_ASSIGNMENT)
        if r.props["roleDefinitionId"].endswith(f"/{role}")
    ]


def _one(p: Plan, token: str) -> PlannedResource:
    (resource,) = of_type(p.resources, token)
    return resource


# --- the first `pulumi up` ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stack_files_carry_no_example_assets(stack: str) -> None:
    """The delivery CLI writes byom:model/environment; a fresh stack must not roll out a model
    that does not exist."""
    config = yaml.safe_load(Path(REPO_ROOT, f"Pulumi.{stack}.yaml").read_text())["config"]
    assert not [key for key in config if key.startswith("byom:")]


def test_a_stack_without_assets_creates_endpoints_with_no_deployment(
    fresh_plans: dict[str, Plan],
) -> None:
    for p in fresh_plans.values():
        assert of_type(p.resources, ENDPOINT)
        assert not of_type(p.resources, ROLLOUT)
        assert not of_type(p.resources, AUTOSCALE)


def _parse(**values: Any) -> Any:
    base: dict[str, Any] = {
        "location": "swedencentral",
        "tags": {"owner": "o", "costCenter": "c", "dataClassification": "internal"},
        "network": {"private": False},
        "workspace": {"isolationMode": "Disabled", "registrySku": "Basic"},
        "endpoints": {
            "deployments": {"generate": {"instanceType": "Standard_NC4as_T4_v3"}},
        },
    }
    delivery = values.pop("delivery", {})
    for key, value in values.items():
        base[key] = value
    return parse_settings(base, stack="dev", delivery=delivery)


RELEASE = {
    "model": {"name": "m", "version": "1", "contentHash": "sha256:00"},
    "environment": {"name": "e", "version": "1"},
}


def test_a_release_needs_a_deployer() -> None:
    """Shared keys are off: uploads use the caller's Entra token, which only the deployer's
    grants allow."""
    with pytest.raises(ConfigError) as caught:
        _parse(delivery=RELEASE)
    assert caught.value.key == "azureml-byom:identity.deployer"
    deployer = {"deployer": {"objectId": "4e8d1c2b-7a6f-4b3e-9d2c-1f0e8a7b6c5d", "type": "Group"}}
    assert _parse(delivery=RELEASE, identity=deployer).endpoints.assets is not None


def test_the_release_waits_for_the_deployer_grants_to_propagate(plans: dict[str, Plan]) -> None:
    """Rollout -> Sleep(120 s) -> the deployer's grants (mlops-v2 waits the same)."""
    for p in plans.values():
        (sleep,) = [r for r in p.resources if r.type == "time:index/sleep:Sleep"]
        assert sleep.props["createDuration"] == "120s"
        deployer = {r.urn for r in of_type(p.resources, ROLE_ASSIGNMENT) if "deployer" in r.name}
        assert len(deployer) == 2
        assert deployer <= set(sleep.dependencies)
        for rollout in of_type(p.resources, ROLLOUT):
            assert sleep.urn in rollout.dependencies


def test_the_invoker_role_id_is_derived_from_its_scope(plans: dict[str, Plan]) -> None:
    role = _one(plans["dev"], "azure-native:authorization:RoleDefinition")
    (scope,) = role.props["assignableScopes"]
    assert role.props["roleDefinitionId"] == roles.custom_role_guid(scope, "endpoint-invoker")


# --- managed network ---------------------------------------------------------------------------


def test_workspace_identity_approves_the_managed_network_endpoints(plans: dict[str, Plan]) -> None:
    for p in plans.values():
        ws = _one(p, WORKSPACE)
        (grant,) = _grants(p, roles.NETWORK_CONNECTION_APPROVER)
        assert grant.props["principalId"] == prop(ws.outputs, "identity.principalId")
        rg = _one(p, "azure-native:resources:ResourceGroup")
        assert grant.props["scope"] == rg.outputs["id"]
        waiting = [*of_type(p.resources, ENDPOINT), *of_type(p.resources, COMPUTE)]
        assert waiting
        for resource in waiting:
            assert grant.urn in resource.dependencies, resource.urn


def test_the_managed_network_is_provisioned_with_the_workspace(plans: dict[str, Plan]) -> None:
    for p in plans.values():
        ws = _one(p, WORKSPACE)
        assert ws.props["provisionNetworkNow"] is True
        assert "allowPublicAccessWhenBehindVnet" not in ws.props


def test_a_model_registry_gets_a_private_endpoint_outbound_rule() -> None:
    registry = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-reg/providers/"
        "Microsoft.MachineLearningServices/registries/byomreg"
    )
    _, config = stack_config("prod", release=True)
    ws = json.loads(config["azureml-byom:workspace"])
    model = json.loads(config["byom:model"])
    config["azureml-byom:workspace"] = json.dumps({**ws, "modelRegistries": [registry]})
    config["byom:model"] = json.dumps({**model, "registry": "byomreg"})
    rule = prop(_one(plan("prod", config=config), WORKSPACE).props, "managedNetwork.outboundRules")
    assert rule["registry-byomreg"] == {
        "type": "PrivateEndpoint",
        "category": "UserDefined",
        "destination": {"serviceResourceId": registry, "subresourceTarget": "amlregistry"},
    }
    config["azureml-byom:workspace"] = json.dumps(ws)
    with pytest.raises(ConfigError, match="modelRegistries"):
        plan("prod", config=config)


def test_no_egress_flag_is_sent_under_a_managed_network(plans: dict[str, Plan]) -> None:
    for p in plans.values():
        for r in of_type(p.resources, ROLLOUT):
            assert r.props["deployment"].get("egress_public_network_access") is None
    with pytest.raises(ConfigError, match="no longer applies"):
        _parse(
            workspace={"isolationMode": "AllowInternetOutbound", "registrySku": "Basic"},
            endpoints={
                "egressPublicNetworkAccess": "disabled",
                "deployments": {"generate": {"instanceType": "Standard_NC4as_T4_v3"}},
            },
        )


def test_gpu_deployments_autoscale_on_gpu_metrics(plans: dict[str, Plan]) -> None:
    for r in of_type(plans["prod"].resources, AUTOSCALE):
        assert prop(r.props, "profiles.0.rules.0.metricTrigger.metricName") == (
            "GpuUtilizationPercentage"
        )
    scale = _parse().endpoints.deployments[0]
    assert scale.autoscale is None
    gpu = {"generate": {"instanceType": "Standard_NC4as_T4_v3", "autoscale": {}}}
    default = _parse(endpoints={"deployments": gpu}).endpoints.deployments[0].autoscale
    assert default.metric == "GpuUtilizationPercentage"
    cpu_metric = {
        "generate": {**gpu["generate"], "autoscale": {"metric": "CpuUtilizationPercentage"}}
    }
    with pytest.raises(ConfigError, match="GPU"):
        _parse(endpoints={"deployments": cpu_metric})


# --- data-plane access -------------------------------------------------------------------------


def test_endpoint_identity_writes_capture_only_into_the_default_container(
    plans: dict[str, Plan],
) -> None:
    p = plans["prod"]
    ws = _one(p, WORKSPACE)
    writers = [r for r in _grants(p, roles.STORAGE_BLOB_DATA_CONTRIBUTOR) if "endpoint" in r.name]
    (grant,) = writers
    assert grant.props["scope"] == (
        f"{_one(p, STORAGE).outputs['id']}/blobServices/default/containers/"
        f"azureml-blobstore-{ws.outputs['workspaceId']}"
    )


def test_people_and_compute_get_the_file_share_role(plans: dict[str, Plan]) -> None:
    for p in plans.values():
        names = {r.name for r in _grants(p, roles.STORAGE_FILE_DATA_PRIVILEGED_CONTRIBUTOR)}
        assert names == {
            "identity-compute-storage-file-contributor",
            "identity-data-scientists-storage-file-contributor",
        }


def test_the_image_build_cluster_may_push(plans: dict[str, Plan]) -> None:
    assert _one(plans["prod"], WORKSPACE).props["imageBuildCompute"]
    # Only the build cluster pushes; nothing else writes images into the registry.
    assert [r.name for r in _grants(plans["prod"], roles.ACR_PUSH)] == [
        "identity-compute-registry-acr-push"
    ]
    assert not _grants(plans["dev"], roles.ACR_PUSH)


def test_promotion_imports_by_digest_with_the_importer_role(plans: dict[str, Plan]) -> None:
    """Prod's release runner imports into prod's registry; dev lets the promoters read its own.
    Container Registry Data Importer and Data Reader, never AcrPush (no importImage/action) or
    Contributor."""
    [runner] = _grants(plans["prod"], roles.ACR_IMPORTER)
    assert runner.name == "release-registry"
    [promoter] = _grants(plans["dev"], roles.ACR_IMPORTER)
    registry = _one(plans["dev"], "azure-native:containerregistry:Registry")
    assert promoter.props["scope"] == registry.outputs["id"]
    assert promoter.props["principalId"] == "0d6f3a1c-8b2e-4f7a-9c5d-2e1b4a6f8c3d"
    importer = roles.BUILT_IN_PERMISSIONS[roles.ACR_IMPORTER]
    push = roles.BUILT_IN_PERMISSIONS[roles.ACR_PUSH]
    action = "Microsoft.ContainerRegistry/registries/importImage/action"
    assert action in importer.actions
    assert action not in push.actions


def test_prod_has_no_outbound_rule_for_package_hosts(plans: dict[str, Plan]) -> None:
    """Prod builds no image, so its managed network needs no FQDN rule (and no firewall)."""
    workspace = _one(plans["prod"], WORKSPACE)
    assert prop(workspace.props, "managedNetwork.isolationMode") == "AllowOnlyApprovedOutbound"
    rules = prop(workspace.props, "managedNetwork.outboundRules") or {}
    assert not [r for r in rules.values() if r.get("type") == "FQDN"]
    assert prop(workspace.props, "managedNetwork.firewallSku") is None


# --- protection and durability ----------------------------------------------------------------


def test_prod_protects_stateful_resources_and_locks_the_group(plans: dict[str, Plan]) -> None:
    prod, dev = plans["prod"], plans["dev"]
    for token in STATEFUL:
        assert all(r.protect for r in of_type(prod.resources, token)), token
        assert not any(r.protect for r in of_type(dev.resources, token)), token
    assert _one(prod, LOCK).props["level"] == "CanNotDelete"
    assert not of_type(dev.resources, LOCK)


def test_blob_soft_delete_and_versioning(stack_plan: Plan) -> None:
    blob = _one(stack_plan, "azure-native:storage:BlobServiceProperties")
    assert blob.props["deleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert blob.props["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert blob.props["isVersioningEnabled"] is True


def test_prod_durability_settings(plans: dict[str, Plan]) -> None:
    prod = plans["prod"]
    assert prop(_one(prod, STORAGE).props, "sku.name") == "Standard_GZRS"
    acr = _one(prod, REGISTRY)
    assert acr.props["zoneRedundancy"] == "Enabled"
    assert prop(acr.props, "policies.exportPolicy.status") == "disabled"
    assert _one(prod, WORKSPACE).props["hbiWorkspace"] is True


def test_registry_export_can_only_be_disabled_when_private() -> None:
    with pytest.raises(ConfigError, match="export"):
        _parse(workspace={"isolationMode": "Disabled", "registryExport": False})


def test_the_basic_firewall_sku_reaches_the_workspace() -> None:
    _, config = stack_config("prod")
    ws = json.loads(config["azureml-byom:workspace"])
    # FQDN rules are what makes Azure ML create the firewall.
    basic = {**ws, "firewallSku": "Basic", "outboundFqdns": ["example.org"]}
    config["azureml-byom:workspace"] = json.dumps(basic)
    workspace = _one(plan("prod", config=config), WORKSPACE)
    assert prop(workspace.props, "managedNetwork.firewallSku") == "Basic"


# --- diagnostics and private monitoring -------------------------------------------------------


def test_diagnostics_cover_endpoints_blob_service_and_registry(stack_plan: Plan) -> None:
    uris = {r.props["resourceUri"]: r for r in of_type(stack_plan.resources, DIAGNOSTICS)}
    for endpoint in of_type(stack_plan.resources, ENDPOINT):
        setting = uris[endpoint.outputs["id"]]
        categories = {entry["category"] for entry in setting.props["logs"]}
        assert categories == {
            "AmlOnlineEndpointTrafficLog",
            "AmlOnlineEndpointConsoleLog",
            "AmlOnlineEndpointEventLog",
        }
    storage = _one(stack_plan, STORAGE).outputs["id"]
    assert f"{storage}/blobServices/default" in uris
    assert _one(stack_plan, REGISTRY).outputs["id"] in uris


def test_prod_monitoring_is_reached_only_through_a_private_link_scope(
    plans: dict[str, Plan],
) -> None:
    prod = plans["prod"]
    scope = _one(prod, "azure-native:monitor:PrivateLinkScope")
    assert scope.props["accessModeSettings"] == {
        "ingestionAccessMode": "PrivateOnly",
        "queryAccessMode": "PrivateOnly",
    }
    linked = {
        r.props["linkedResourceId"]
        for r in of_type(prod.resources, "azure-native:monitor:PrivateLinkScopedResource")
    }
    for token in (
        "azure-native:operationalinsights:Workspace",
        "azure-native:applicationinsights:Component",
    ):
        resource = _one(prod, token)
        assert resource.outputs["id"] in linked
        assert resource.props["publicNetworkAccessForIngestion"] == "Disabled"
        assert resource.props["publicNetworkAccessForQuery"] == "Disabled"
    zones = {
        r.props["privateZoneName"]
        for r in of_type(prod.resources, "azure-native:privatedns:PrivateZone")
    }
    assert {
        "privatelink.monitor.azure.com",
        "privatelink.oms.opinsights.azure.com",
        "privatelink.ods.opinsights.azure.com",
        "privatelink.agentsvc.azure-automation.net",
    } <= zones
