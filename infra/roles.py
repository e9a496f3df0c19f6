"""Azure RBAC building blocks: built-in role GUIDs and their permissions, tenant-unique names.

Role assignment names (and custom role ids) are unique in the whole Entra tenant, not only at their
scope. Like Bicep's `guid(scope, principalId, roleDefinitionId)`, every name here is a name-based
UUID of exactly those three values: the same grant always gets the same name (re-runs change
nothing), and any other grant, in any subscription, resource group or stack, gets another.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization

# Built-in role definition GUIDs (the same in every tenant).
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
# "Container Registry Data Importer and Data Reader": ACR import into a registry, and reading the
# images of a registry imported from (AcrPush does not include importImage/action).
ACR_IMPORTER = "577a9874-89fd-4f24-9dbd-b5034d0ad23a"
MONITORING_CONTRIBUTOR = "749f88d5-cbae-40b8-bcfc-e573ddc772fa"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_FILE_DATA_PRIVILEGED_CONTRIBUTOR = "69566ab7-960f-475b-8e7c-b3118f30c6bd"
AZUREML_DATA_SCIENTIST = "f6c7c914-8db3-469d-8ca1-694a8f32e121"
AZUREML_COMPUTE_OPERATOR = "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815"
AZUREML_METRICS_WRITER = "635dd51f-9968-44d3-b7fb-6d9a6bd613ae"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
NETWORK_CONNECTION_APPROVER = "b556d68e-0be0-4f35-a333-ad7ee1ce17ea"

# Never granted by this program; tests and policies check against these.
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
FORBIDDEN_ROLES = {
    OWNER: "Owner",
    CONTRIBUTOR: "Contributor",
    USER_ACCESS_ADMINISTRATOR: "User Access Administrator",
    RBAC_ADMINISTRATOR: "Role Based Access Control Administrator",
}

SHORT_NAMES = {
    ACR_PULL: "acr-pull",
    ACR_PUSH: "acr-push",
    ACR_IMPORTER: "acr-importer",
    STORAGE_BLOB_DATA_READER: "blob-reader",
    STORAGE_BLOB_DATA_CONTRIBUTOR: "blob-contributor",
    STORAGE_FILE_DATA_PRIVILEGED_CONTRIBUTOR: "file-contributor",
    AZUREML_DATA_SCIENTIST: "data-scientist",
    AZUREML_COMPUTE_OPERATOR: "compute-operator",
    AZUREML_METRICS_WRITER: "metrics-writer",
    KEY_VAULT_SECRETS_USER: "kv-secrets-user",
    NETWORK_CONNECTION_APPROVER: "network-approver",
}
"""Readable labels for logical resource names (`identity-endpoint-registry-acr-pull`)."""

SCORE_ACTION = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"
# What a release job does in Azure Monitor besides the workspace: its own autoscale setting per
# slot (created before the slot takes traffic, deleted with it) and the endpoint's fired alerts.
# No built-in role is this narrow: Monitoring Contributor, the obvious pick, has no autoscale
# action at all, and Web Plan Contributor adds App Service plans.
RELEASE_AUTOSCALER_ACTIONS = (
    "Microsoft.Insights/autoscalesettings/read",
    "Microsoft.Insights/autoscalesettings/write",
    "Microsoft.Insights/autoscalesettings/delete",
    "Microsoft.AlertsManagement/alerts/read",
)


@dataclass(frozen=True)
class CustomRole:
    """A role no built-in role matches: declared per resource group by the stack, or created
    once out of band with exactly these actions and named in the stack file by its GUID."""

    key: str
    """Part of its tenant-unique id (`custom_role_guid`)."""
    title: str
    """Its name without the resource group (names are unique in the tenant)."""
    description: str
    actions: tuple[str, ...]


ENDPOINT_INVOKER = CustomRole(
    "endpoint-invoker",
    "AzureML online endpoint invoker",
    "May call the scoring URI of online endpoints, nothing else.",
    (SCORE_ACTION,),
)
# Per-slot autoscale settings and the alerts the release watches.
RELEASE_AUTOSCALER = CustomRole(
    "release-autoscaler",
    "AzureML release autoscaler",
    "May manage autoscale settings and read fired alerts, nothing else.",
    RELEASE_AUTOSCALER_ACTIONS,
)
CUSTOM_ROLES = (ENDPOINT_INVOKER, RELEASE_AUTOSCALER)


@dataclass(frozen=True)
class Permissions:
    """What a role allows, as in its definition (`actions`, `notActions`, `dataActions`...)."""

    name: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


_ML = "Microsoft.MachineLearningServices/workspaces"
REGISTRIES = "Microsoft.ContainerRegistry/registries"
BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
FILES = "Microsoft.Storage/storageAccounts/fileServices/fileshares/files"
# Built-in role contents as Azure publishes them (built-in-roles reference), for the roles this
# program grants. infra.azure_rules checks every operation the platform performs against these.
BUILT_IN_PERMISSIONS: Mapping[str, Permissions] = {
    ACR_PULL: Permissions("AcrPull", actions=("Microsoft.ContainerRegistry/registries/pull/read",)),
    ACR_PUSH: Permissions(
        "AcrPush",
        actions=(
            "Microsoft.ContainerRegistry/registries/pull/read",
            "Microsoft.ContainerRegistry/registries/push/write",
        ),
    ),
    ACR_IMPORTER: Permissions(
        "Container Registry Data Importer and Data Reader",
        # The control-plane trigger of `az acr import`, plus read-only data access (pull,
        # repositories, tags, manifests) to check what was imported and to import from here.
        actions=(f"{REGISTRIES}/importImage/action", f"{REGISTRIES}/read"),
        data_actions=(
            f"{REGISTRIES}/repositories/content/read",
            f"{REGISTRIES}/repositories/metadata/read",
        ),
    ),
    # Listed so the access table can tell what it lacks: for all its breadth (shared keys of Log
    # Analytics workspaces included), it has no Microsoft.Insights/autoscalesettings action.
    MONITORING_CONTRIBUTOR: Permissions(
        "Monitoring Contributor",
        actions=(
            "*/read",
            "Microsoft.AlertsManagement/alerts/*",
            "Microsoft.AlertsManagement/alertsSummary/*",
            "Microsoft.Insights/actiongroups/*",
            "Microsoft.Insights/activityLogAlerts/*",
            "Microsoft.Insights/AlertRules/*",
            "Microsoft.Insights/components/*",
            "Microsoft.Insights/createNotifications/*",
            "Microsoft.Insights/dataCollectionEndpoints/*",
            "Microsoft.Insights/dataCollectionRules/*",
            "Microsoft.Insights/dataCollectionRuleAssociations/*",
            "Microsoft.Insights/DiagnosticSettings/*",
            "Microsoft.Insights/eventtypes/*",
            "Microsoft.Insights/LogDefinitions/*",
            "Microsoft.Insights/metricalerts/*",
            "Microsoft.Insights/MetricDefinitions/*",
            "Microsoft.Insights/Metrics/*",
            "Microsoft.Insights/notificationStatus/*",
            "Microsoft.Insights/Register/Action",
            "Microsoft.Insights/scheduledqueryrules/*",
            "Microsoft.Insights/webtests/*",
            "Microsoft.Insights/workbooks/*",
            "Microsoft.Insights/workbooktemplates/*",
            "Microsoft.Insights/privateLinkScopes/*",
            "Microsoft.Insights/privateLinkScopeOperationStatuses/*",
            "Microsoft.OperationalInsights/workspaces/write",
            "Microsoft.OperationalInsights/workspaces/intelligencepacks/*",
            "Microsoft.OperationalInsights/workspaces/savedSearches/*",
            "Microsoft.OperationalInsights/workspaces/search/action",
            "Microsoft.OperationalInsights/workspaces/sharedKeys/action",
            "Microsoft.OperationalInsights/workspaces/storageinsightconfigs/*",
            "Microsoft.Support/*",
            "Microsoft.AlertsManagement/smartDetectorAlertRules/*",
            "Microsoft.AlertsManagement/actionRules/*",
            "Microsoft.AlertsManagement/smartGroups/*",
            "Microsoft.AlertsManagement/migrateFromSmartDetection/*",
            "Microsoft.AlertsManagement/investigations/*",
            "Microsoft.Monitor/investigations/*",
        ),
    ),
    STORAGE_BLOB_DATA_READER: Permissions(
        "Storage Blob Data Reader",
        actions=(
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ),
        data_actions=(f"{BLOBS}/read",),
    ),
    STORAGE_BLOB_DATA_CONTRIBUTOR: Permissions(
        "Storage Blob Data Contributor",
        actions=(
            "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/write",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ),
        data_actions=(
            f"{BLOBS}/delete",
            f"{BLOBS}/read",
            f"{BLOBS}/write",
            f"{BLOBS}/move/action",
            f"{BLOBS}/add/action",
        ),
    ),
    STORAGE_FILE_DATA_PRIVILEGED_CONTRIBUTOR: Permissions(
        "Storage File Data Privileged Contributor",
        data_actions=(
            f"{FILES}/read",
            f"{FILES}/write",
            f"{FILES}/delete",
            f"{FILES}/modifypermissions/action",
            f"{FILES}/readFileBackupSemantics/action",
            f"{FILES}/writeFileBackupSemantics/action",
        ),
    ),
    AZUREML_DATA_SCIENTIST: Permissions(
        "AzureML Data Scientist",
        actions=(f"{_ML}/*/read", f"{_ML}/*/action", f"{_ML}/*/delete", f"{_ML}/*/write"),
        not_actions=(
            f"{_ML}/delete",
            f"{_ML}/write",
            f"{_ML}/computes/*/write",
            f"{_ML}/computes/*/delete",
            f"{_ML}/computes/listKeys/action",
            f"{_ML}/listKeys/action",
            f"{_ML}/hubs/write",
            f"{_ML}/hubs/delete",
            f"{_ML}/featurestores/write",
            f"{_ML}/featurestores/delete",
        ),
    ),
    AZUREML_COMPUTE_OPERATOR: Permissions(
        "AzureML Compute Operator",
        actions=(f"{_ML}/computes/*", f"{_ML}/notebooks/vm/*"),
    ),
    AZUREML_METRICS_WRITER: Permissions(
        "AzureML Metrics Writer (preview)", actions=(f"{_ML}/metrics/resource/write",)
    ),
    KEY_VAULT_SECRETS_USER: Permissions(
        "Key Vault Secrets User",
        data_actions=(
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ),
    ),
    NETWORK_CONNECTION_APPROVER: Permissions(
        "Azure AI Enterprise Network Connection Approver",
        # The part of the role that covers an Azure ML workspace's dependencies.
        actions=tuple(
            f"{provider}/{action}"
            for provider in (
                "Microsoft.ContainerRegistry/registries",
                "Microsoft.KeyVault/vaults",
                "Microsoft.MachineLearningServices/workspaces",
                "Microsoft.Storage/storageAccounts",
            )
            for action in (
                "privateEndpointConnections/read",
                "privateEndpointConnections/write",
                "privateEndpointConnectionsApproval/action",
            )
        ),
    ),
}

# Namespace for name-based (v5) UUIDs of role assignments and custom roles of this project.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/azureml-byom/infra")


def stable_guid(*parts: str) -> str:
    """Name-based UUID: the same parts give the same GUID on every run, so nothing is duplicated."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def assignment_guid(scope: str, principal_id: str, role_definition_id: str) -> str:
    """Role assignment name for one grant, as Bicep's `guid(scope, principal, role)`.

    ARM ids are case-insensitive, so scope and role id are lower-cased: the same grant written
    with other casing must not get another name (Azure would refuse it as a duplicate).
    """
    return stable_guid(scope.lower(), principal_id.lower(), role_definition_id.lower())


def custom_role_guid(assignable_scope: str, role: str) -> str:
    """Id of a custom role definition, unique in the tenant: derived from where it may be used."""
    return stable_guid(assignable_scope.lower(), "role", role)


def role_guid(role_definition_id: str) -> str:
    """The GUID at the end of a role definition's ARM id (a bare GUID stays as it is)."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1]


def built_in_role_id(subscription_id: pulumi.Input[str], guid: str) -> pulumi.Output[str]:
    """Full ARM id of a built-in role definition in the given subscription."""
    return pulumi.Output.concat(
        "/subscriptions/",
        subscription_id,
        "/providers/Microsoft.Authorization/roleDefinitions/",
        guid,
    )


def custom_role(
    name: str,
    role: CustomRole,
    *,
    resource_group_id: pulumi.Output[str],
    resource_group_name: pulumi.Input[str],
    existing: str | None,
    subscription_id: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> pulumi.Output[str]:
    """Full id of a custom role usable in one resource group: `existing` (its GUID, created once
    out of band so the deployer needs no roleDefinitions/write) or declared here."""
    if existing is not None:
        return built_in_role_id(subscription_id, existing)
    return authorization.RoleDefinition(
        name,
        # Custom role ids are unique in the tenant: derived from the only scope it serves.
        role_definition_id=resource_group_id.apply(lambda rg: custom_role_guid(rg, role.key)),
        # Custom role names are unique per tenant, so the resource group name is part of it.
        role_name=pulumi.Output.concat(role.title, " (", resource_group_name, ")"),
        description=role.description,
        role_type="CustomRole",
        scope=resource_group_id,
        assignable_scopes=[resource_group_id],
        permissions=[authorization.PermissionArgs(actions=list(role.actions))],
        opts=opts,
    ).id


def assign(
    name: str,
    *,
    scope: pulumi.Input[str],
    role_definition_id: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    principal_type: str,
    description: str,
    opts: pulumi.ResourceOptions,
) -> authorization.RoleAssignment:
    """Role assignment named `assignment_guid(scope, principal, role)`."""
    return authorization.RoleAssignment(
        name,
        role_assignment_name=pulumi.Output.all(scope, principal_id, role_definition_id).apply(
            lambda values: assignment_guid(*values)
        ),
        scope=scope,
        role_definition_id=role_definition_id,
        principal_id=principal_id,
        # An explicit type avoids PrincipalNotFound while a new identity replicates in Entra ID.
        principal_type=principal_type,
        description=description,
        opts=opts,
    )
