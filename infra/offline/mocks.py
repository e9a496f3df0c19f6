"""Pulumi mocks that answer like Azure: names, ARM ids, identity ids and scoring URIs.

`PlanMocks` echoes each resource's inputs and adds what Azure would compute, so the program's
outputs (ids passed from one component to the next) look like the real ones. Adding a resource
type means a row in `NAME_KEYS` and one in `_ARM_PATHS` (or `_EXTENSION_PATHS`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pulumi

MOCK_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
MOCK_TENANT_ID = "11111111-1111-1111-1111-111111111111"
MOCK_ORGANIZATION = "organization"

# Input that carries each type's physical name, to echo it as the `name` output.
NAME_KEYS = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:keyvault:Vault": "vaultName",
    "azure-native:containerregistry:Registry": "registryName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
    "azure-native:applicationinsights:Component": "resourceName",
    "azure-native:machinelearningservices:Workspace": "workspaceName",
    "azure-native:machinelearningservices:Compute": "computeName",
    "azure-native:machinelearningservices:OnlineEndpoint": "endpointName",
    "azure-native:machinelearningservices:OnlineDeployment": "deploymentName",
    "azure-native:network:VirtualNetwork": "virtualNetworkName",
    "azure-native:network:NetworkSecurityGroup": "networkSecurityGroupName",
    "azure-native:network:Subnet": "subnetName",
    "azure-native:network:PrivateEndpoint": "privateEndpointName",
    "azure-native:network:PrivateDnsZoneGroup": "privateDnsZoneGroupName",
    "azure-native:privatedns:PrivateZone": "privateZoneName",
    "azure-native:privatedns:VirtualNetworkLink": "virtualNetworkLinkName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:authorization:RoleAssignment": "roleAssignmentName",
    "azure-native:authorization:RoleDefinition": "roleDefinitionId",
    "azure-native:monitor:DiagnosticSetting": "name",
    "azure-native:monitor:AutoscaleSetting": "autoscaleSettingName",
    "azure-native:monitor:ActionGroup": "actionGroupName",
    "azure-native:monitor:MetricAlert": "ruleName",
    "azure-native:monitor:PrivateLinkScope": "scopeName",
    "azure-native:monitor:PrivateLinkScopedResource": "name",
    "azure-native:storage:BlobServiceProperties": "blobServicesName",
    "azure-native:authorization:ManagementLockAtResourceGroupLevel": "lockName",
}

# ARM path of each type below its resource group (or below the resource named in `parent`).
_ML = "Microsoft.MachineLearningServices/workspaces"
_NET = "Microsoft.Network"
_ARM_PATHS = {
    "azure-native:storage:StorageAccount": "Microsoft.Storage/storageAccounts/{name}",
    "azure-native:keyvault:Vault": "Microsoft.KeyVault/vaults/{name}",
    "azure-native:containerregistry:Registry": "Microsoft.ContainerRegistry/registries/{name}",
    "azure-native:operationalinsights:Workspace": "Microsoft.OperationalInsights/workspaces/{name}",
    "azure-native:applicationinsights:Component": "Microsoft.Insights/components/{name}",
    "azure-native:machinelearningservices:Workspace": _ML + "/{name}",
    "azure-native:machinelearningservices:Compute": _ML + "/{workspaceName}/computes/{name}",
    "azure-native:machinelearningservices:OnlineEndpoint": (
        _ML + "/{workspaceName}/onlineEndpoints/{name}"
    ),
    "azure-native:machinelearningservices:OnlineDeployment": (
        _ML + "/{workspaceName}/onlineEndpoints/{endpointName}/deployments/{name}"
    ),
    "azure-native:network:VirtualNetwork": _NET + "/virtualNetworks/{name}",
    "azure-native:network:NetworkSecurityGroup": _NET + "/networkSecurityGroups/{name}",
    "azure-native:network:Subnet": _NET + "/virtualNetworks/{virtualNetworkName}/subnets/{name}",
    "azure-native:network:PrivateEndpoint": _NET + "/privateEndpoints/{name}",
    "azure-native:network:PrivateDnsZoneGroup": (
        _NET + "/privateEndpoints/{privateEndpointName}/privateDnsZoneGroups/{name}"
    ),
    "azure-native:privatedns:PrivateZone": _NET + "/privateDnsZones/{name}",
    "azure-native:privatedns:VirtualNetworkLink": (
        _NET + "/privateDnsZones/{privateZoneName}/virtualNetworkLinks/{name}"
    ),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    ),
    "azure-native:monitor:AutoscaleSetting": "Microsoft.Insights/autoscalesettings/{name}",
    "azure-native:monitor:ActionGroup": "Microsoft.Insights/actionGroups/{name}",
    "azure-native:monitor:MetricAlert": "Microsoft.Insights/metricAlerts/{name}",
    "azure-native:monitor:PrivateLinkScope": "Microsoft.Insights/privateLinkScopes/{name}",
    "azure-native:monitor:PrivateLinkScopedResource": (
        "Microsoft.Insights/privateLinkScopes/{scopeName}/scopedResources/{name}"
    ),
    "azure-native:storage:BlobServiceProperties": (
        "Microsoft.Storage/storageAccounts/{accountName}/blobServices/{name}"
    ),
    "azure-native:authorization:ManagementLockAtResourceGroupLevel": (
        "Microsoft.Authorization/locks/{name}"
    ),
}
# Extension resources hang below the resource in `scope` / `resourceUri`.
_EXTENSION_PATHS = {
    "azure-native:authorization:RoleAssignment": ("scope", "roleAssignments"),
    "azure-native:authorization:RoleDefinition": ("scope", "roleDefinitions"),
    "azure-native:monitor:DiagnosticSetting": ("resourceUri", "diagnosticSettings"),
}


def _fake_guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, "/".join(parts)))


class PlanMocks(pulumi.runtime.Mocks):
    """Echo inputs and add what Azure would compute: `name`, ARM `id`, identity ids, URIs.

    `subscription_id` is the subscription the deploying principal works in; `live_slot` the
    slot a previous release left live (a second plan with the other slot shows what the next
    release changes).
    """

    def __init__(
        self, subscription_id: str = MOCK_SUBSCRIPTION_ID, live_slot: str = "blue"
    ) -> None:
        self.subscription_id = subscription_id
        self.live_slot = live_slot

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if not args.custom:
            return f"{args.name}-component", outputs
        if args.typ.startswith("pulumi-python:dynamic"):
            return self._dynamic(args, outputs)
        inputs = args.inputs
        name = str(inputs.get(NAME_KEYS.get(args.typ, ""), args.name))
        outputs["name"] = name
        subscription = f"/subscriptions/{self.subscription_id}"
        rg = f"{subscription}/resourceGroups/{inputs.get('resourceGroupName')}"
        if args.typ == "azure-native:resources:ResourceGroup":
            arm_id = f"{subscription}/resourceGroups/{name}"
        elif args.typ in _EXTENSION_PATHS:
            scope_key, kind = _EXTENSION_PATHS[args.typ]
            provider = (
                "Microsoft.Insights"
                if kind == "diagnosticSettings"
                else ("Microsoft.Authorization")
            )
            arm_id = f"{inputs.get(scope_key)}/providers/{provider}/{kind}/{name}"
        elif args.typ in _ARM_PATHS:
            path = _ARM_PATHS[args.typ].format(
                name=name,
                **{k: v for k, v in inputs.items() if isinstance(v, str) and k != "name"},
            )
            arm_id = f"{rg}/providers/{path}"
        else:
            arm_id = f"{rg}/providers/{args.typ}/{name}"
        outputs["id"] = arm_id

        identity = inputs.get("identity")
        if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            outputs["principalId"] = _fake_guid(arm_id, "principal")
            outputs["clientId"] = _fake_guid(arm_id, "client")
            outputs["tenantId"] = MOCK_TENANT_ID
        elif isinstance(identity, Mapping):
            echoed = dict(identity)
            # Inputs list user-assigned identity ids; Azure answers with a map keyed by id.
            if isinstance(identity.get("userAssignedIdentities"), list):
                echoed["userAssignedIdentities"] = {
                    uai: {
                        "principalId": _fake_guid(uai, "principal"),
                        "clientId": _fake_guid(uai, "client"),
                    }
                    for uai in identity["userAssignedIdentities"]
                }
            if "SystemAssigned" in str(identity.get("type")):
                echoed["principalId"] = _fake_guid(arm_id, "principal")
                echoed["tenantId"] = MOCK_TENANT_ID
            outputs["identity"] = echoed
        if args.typ == "azure-native:machinelearningservices:Workspace":
            outputs["workspaceId"] = _fake_guid(arm_id, "workspace")
        if args.typ == "azure-native:containerregistry:Registry":
            outputs["loginServer"] = f"{name}.azurecr.io"
        if args.typ == "azure-native:machinelearningservices:OnlineEndpoint":
            props = dict(inputs.get("properties") or {})
            props["scoringUri"] = (
                f"https://{name}.{inputs.get('location')}.inference.ml.azure.com/score"
            )
            outputs["properties"] = props
        return arm_id, outputs

    def _dynamic(self, args: pulumi.runtime.MockResourceArgs, outputs: dict) -> tuple[str, dict]:
        # delivery's Rollout: pretend the last rollout made `live_slot` live with all traffic.
        inputs = args.inputs
        slot = self.live_slot
        workspace = (
            f"/subscriptions/{self.subscription_id}/resourceGroups/"
            f"{inputs.get('resource_group_name')}/providers/{_ML}/{inputs.get('workspace_name')}"
        )
        endpoint = f"{workspace}/onlineEndpoints/{inputs.get('endpoint_name')}"
        outputs.update(
            live_deployment=slot,
            live_deployment_id=f"{endpoint}/deployments/{slot}",
            previous_deployment=None,
            traffic={slot: 100},
        )
        return endpoint, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:  # type: ignore[override]
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "subscriptionId": self.subscription_id,
                "tenantId": MOCK_TENANT_ID,
                "objectId": _fake_guid("deployer"),
                "clientId": _fake_guid("deployer-client"),
            }
        return {}
