"""Rules the declared platform must follow, checked on the offline plan of each stack."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra import roles
from infra.plan import Plan, collect, prop
from tests.infra.conftest import of_type

WORKSPACE = "azure-native:machinelearningservices:Workspace"
STORAGE = "azure-native:storage:StorageAccount"
VAULT = "azure-native:keyvault:Vault"
REGISTRY = "azure-native:containerregistry:Registry"
COMPUTE = "azure-native:machinelearningservices:Compute"
PEP = "azure-native:network:PrivateEndpoint"
ZONE_GROUP = "azure-native:network:PrivateDnsZoneGroup"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"

# Components and the cloud resources each must parent, for every stack.
EXPECTED_CHILDREN = {
    "byom:workspace:Workspace": {
        "azure-native:resources:ResourceGroup",
        STORAGE,
        VAULT,
        REGISTRY,
        WORKSPACE,
        "azure-native:operationalinsights:Workspace",
        "azure-native:applicationinsights:Component",
        "azure-native:monitor:DiagnosticSetting",
    },
    "byom:identity:Identity": {
        "azure-native:managedidentity:UserAssignedIdentity",
        ROLE_ASSIGNMENT,
    },
    "byom:compute:Compute": {COMPUTE},
}
PROD_ONLY_CHILDREN = {
    "byom:network:Network": {
        "azure-native:network:VirtualNetwork",
        "azure-native:network:Subnet",
        "azure-native:network:NetworkSecurityGroup",
        PEP,
        ZONE_GROUP,
        "azure-native:privatedns:PrivateZone",
        "azure-native:privatedns:VirtualNetworkLink",
    },
}


def _children_by_component(p: Plan) -> dict[str, set[str]]:
    components = {r.urn: r.type for r in p.resources if not r.custom}
    found: dict[str, set[str]] = {t: set() for t in components.values()}
    for r in p.resources:
        if r.custom:
            assert r.parent_urn in components, f"{r.urn} is not parented to a component"
            found[components[r.parent_urn]].add(r.type)
    return found


def test_expected_resources_exist_under_their_components(stack_plan: Plan) -> None:
    """Every cloud resource sits under the component that owns it."""
    found = _children_by_component(stack_plan)
    expected = dict(EXPECTED_CHILDREN)
    if stack_plan.stack == "prod":
        expected.update(PROD_ONLY_CHILDREN)
    for component, types in expected.items():
        assert types <= found.get(component, set()), f"{component} lacks {types - found[component]}"


def test_dev_is_public_but_exercises_the_private_path(plans: dict[str, Plan]) -> None:
    """Dev keeps public access (cost, convenience) but has a managed network that allows
    internet outbound (no firewall) and the workspace's private endpoint."""
    (ws,) = of_type(plans["dev"].resources, WORKSPACE)
    assert ws.props["publicNetworkAccess"] == "Enabled"
    assert prop(ws.props, "managedNetwork.isolationMode") == "AllowInternetOutbound"
    assert prop(ws.props, "managedNetwork.firewallSku") is None
    groups = [
        g
        for r in of_type(plans["dev"].resources, PEP)
        for g in prop(r.props, "privateLinkServiceConnections.0.groupIds")
    ]
    assert groups == ["amlworkspace"]


@pytest.mark.parametrize("token", [WORKSPACE, STORAGE, VAULT, REGISTRY])
def test_prod_disables_public_network_access(plans: dict[str, Plan], token: str) -> None:
    """In prod, the workspace, storage, key vault and registry are reachable only privately."""
    resources = of_type(plans["prod"].resources, token)
    assert resources, f"prod declares no {token}"
    for r in resources:
        value = prop(r.props, "publicNetworkAccess") or prop(
            r.props, "properties.publicNetworkAccess"
        )
        assert value == "Disabled", f"{r.urn}: publicNetworkAccess={value!r}"


def test_prod_workspace_allows_only_approved_outbound(plans: dict[str, Plan]) -> None:
    """The prod workspace uses the managed network with approved outbound only."""
    for r in of_type(plans["prod"].resources, WORKSPACE):
        mode = prop(r.props, "managedNetwork.isolationMode")
        assert mode == "AllowOnlyApprovedOutbound", f"{r.urn}: isolationMode={mode!r}"


def test_every_private_endpoint_has_a_dns_zone_group(stack_plan: Plan) -> None:
    """Each private endpoint gets a zone group, so its FQDN resolves to the private IP."""
    groups = {
        r.props.get("privateEndpointName"): r for r in of_type(stack_plan.resources, ZONE_GROUP)
    }
    for pep in of_type(stack_plan.resources, PEP):
        group = groups.get(pep.props["privateEndpointName"])
        assert group is not None, f"{pep.urn} has no PrivateDnsZoneGroup"
        assert group.props.get("privateDnsZoneConfigs"), f"{group.urn} lists no zones"


def test_prod_has_private_endpoints_for_every_dependency(plans: dict[str, Plan]) -> None:
    """Workspace, blob, file, vault, registry and Azure Monitor get a private endpoint in prod."""
    groups = sorted(
        g
        for r in of_type(plans["prod"].resources, PEP)
        for g in prop(r.props, "privateLinkServiceConnections.0.groupIds")
    )
    assert groups == ["amlworkspace", "azuremonitor", "blob", "file", "registry", "vault"]


def test_compute_instances_shut_down_when_idle(stack_plan: Plan) -> None:
    """Every compute instance has idle shutdown, no SSH and a personal sharing policy."""
    instances = [
        r
        for r in of_type(stack_plan.resources, COMPUTE)
        if prop(r.props, "properties.computeType") == "ComputeInstance"
    ]
    assert instances, f"{stack_plan.stack} declares no compute instance"
    for r in instances:
        inner = r.props["properties"]["properties"]
        assert inner.get("idleTimeBeforeShutdown", "").startswith("PT"), (
            f"{r.urn}: no idle shutdown"
        )
        assert prop(inner, "sshSettings.sshPublicAccess") == "Disabled", f"{r.urn}: SSH open"
        assert inner.get("applicationSharingPolicy") == "Personal", f"{r.urn}: shared"


def test_prod_compute_has_no_public_ip(plans: dict[str, Plan]) -> None:
    """Prod compute reaches out only through the managed network."""
    for r in of_type(plans["prod"].resources, COMPUTE):
        assert prop(r.props, "properties.properties.enableNodePublicIp") is False, r.urn


def test_clusters_scale_to_zero(stack_plan: Plan) -> None:
    """Clusters keep no node running when idle."""
    for r in of_type(stack_plan.resources, COMPUTE):
        if prop(r.props, "properties.computeType") == "AmlCompute":
            assert prop(r.props, "properties.properties.scaleSettings.minNodeCount") == 0, r.urn


def test_no_role_assignment_grants_owner_contributor_or_uaa(stack_plan: Plan) -> None:
    """Least privilege: none of the broad built-in roles is ever assigned."""
    assignments = of_type(stack_plan.resources, ROLE_ASSIGNMENT)
    assert assignments
    for r in assignments:
        guid = str(r.props.get("roleDefinitionId", "")).rsplit("/", 1)[-1]
        assert guid not in roles.FORBIDDEN_ROLES, f"{r.urn} grants {roles.FORBIDDEN_ROLES[guid]}"


def test_custom_invoker_role_may_only_score(plans: dict[str, Plan]) -> None:
    """Dev declares the endpoint-invoker role: the score action and nothing else."""
    (role,) = of_type(plans["dev"].resources, "azure-native:authorization:RoleDefinition")
    assert role.props["permissions"] == [{"actions": [roles.SCORE_ACTION]}], role.urn


def test_prod_takes_the_invoker_role_from_config(plans: dict[str, Plan]) -> None:
    """Prod's deployer cannot write role definitions: the role was created once, out of band."""
    assert not of_type(plans["prod"].resources, "azure-native:authorization:RoleDefinition")
    invokers = [r for r in of_type(plans["prod"].resources, ROLE_ASSIGNMENT) if "invoker" in r.name]
    assert invokers
    for r in invokers:
        assert r.props["roleDefinitionId"].endswith("/6a1f0c3e-2b9d-4c8e-a7f1-0d3b5c9e2a41")


def test_every_taggable_resource_carries_the_tags(
    stack_plan: Plan, taggable: Callable[[str], bool]
) -> None:
    """Environment, owner, cost center and data classification are on every taggable resource."""
    required = {"environment", "owner", "costCenter", "dataClassification"}
    checked = 0
    for r in stack_plan.resources:
        if r.custom and taggable(r.type):
            tags = r.props.get("tags") or {}
            assert required <= set(tags), f"{r.urn} lacks tags {required - set(tags)}"
            assert tags["environment"] == stack_plan.stack, f"{r.urn}: environment tag"
            checked += 1
    assert checked >= 10


def test_role_assignment_names_are_stable_across_runs(plans: dict[str, Plan]) -> None:
    """Re-running the program yields the same role assignment GUIDs (no duplicates in Azure)."""
    first = {
        r.urn: r.props["roleAssignmentName"]
        for r in of_type(plans["dev"].resources, ROLE_ASSIGNMENT)
    }
    again = {r.urn: r.props["roleAssignmentName"] for r in of_type(collect("dev"), ROLE_ASSIGNMENT)}
    assert first == again
    assert len(set(first.values())) == len(first), "two assignments share a name"


def test_role_assignment_names_differ_between_stacks(plans: dict[str, Plan]) -> None:
    """Stacks in the same subscription never collide on an assignment name."""
    dev = {r.props["roleAssignmentName"] for r in of_type(plans["dev"].resources, ROLE_ASSIGNMENT)}
    prod = {
        r.props["roleAssignmentName"] for r in of_type(plans["prod"].resources, ROLE_ASSIGNMENT)
    }
    assert not dev & prod


def test_storage_and_vault_hardening_is_explicit(stack_plan: Plan) -> None:
    """Security settings are set explicitly in every stack, not left to Azure defaults."""
    for r in of_type(stack_plan.resources, STORAGE):
        assert r.props["allowBlobPublicAccess"] is False, r.urn
        assert r.props["minimumTlsVersion"] == "TLS1_2", r.urn
        assert r.props["allowSharedKeyAccess"] is False, r.urn
    for r in of_type(stack_plan.resources, VAULT):
        assert prop(r.props, "properties.enableRbacAuthorization") is True, r.urn
        # Only where the stack says so; Azure refuses an explicit false (off = not sent).
        expected = True if stack_plan.stack == "prod" else None
        assert prop(r.props, "properties.enablePurgeProtection") is expected, r.urn
    for r in of_type(stack_plan.resources, REGISTRY):
        assert r.props["adminUserEnabled"] is False, r.urn


def test_outputs_include_what_model_delivery_needs(stack_plan: Plan) -> None:
    """Delivery reads the workspace, resource group, subscription, identity and registry."""
    needed = {
        "workspaceName",
        "workspaceId",
        "resourceGroupName",
        "subscriptionId",
        "endpointIdentityId",
        "endpointIdentityClientId",
        "registryName",
    }
    assert needed <= set(stack_plan.outputs)
    assert all(stack_plan.outputs[k] for k in needed)
