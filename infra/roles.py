"""Azure RBAC building blocks: built-in role GUIDs and deterministic role assignment names."""

from __future__ import annotations

import uuid

import pulumi
from pulumi_azure_native import authorization

# Built-in role definition GUIDs (the same in every tenant).
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
AZUREML_DATA_SCIENTIST = "f6c7c914-8db3-469d-8ca1-694a8f32e121"
AZUREML_COMPUTE_OPERATOR = "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815"
AZUREML_METRICS_WRITER = "635dd51f-9968-44d3-b7fb-6d9a6bd613ae"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

# Never granted by this program; tests and policies check against these.
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
FORBIDDEN_ROLES = {
    OWNER: "Owner",
    CONTRIBUTOR: "Contributor",
    USER_ACCESS_ADMINISTRATOR: "User Access Administrator",
}

SHORT_NAMES = {
    ACR_PULL: "acr-pull",
    STORAGE_BLOB_DATA_READER: "blob-reader",
    STORAGE_BLOB_DATA_CONTRIBUTOR: "blob-contributor",
    AZUREML_DATA_SCIENTIST: "data-scientist",
    AZUREML_COMPUTE_OPERATOR: "compute-operator",
    AZUREML_METRICS_WRITER: "metrics-writer",
    KEY_VAULT_SECRETS_USER: "kv-secrets-user",
}
"""Readable labels for logical resource names (`identity-endpoint-registry-acr-pull`)."""

SCORE_ACTION = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"

# Namespace for name-based (v5) UUIDs of role assignments and custom roles of this project.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/azureml-byom/infra")


def stable_guid(*parts: str) -> str:
    """Name-based UUID: the same parts give the same GUID on every run, so nothing is duplicated."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def built_in_role_id(subscription_id: pulumi.Input[str], guid: str) -> pulumi.Output[str]:
    """Full ARM id of a built-in role definition in the given subscription."""
    return pulumi.Output.concat(
        "/subscriptions/",
        subscription_id,
        "/providers/Microsoft.Authorization/roleDefinitions/",
        guid,
    )


def assign(
    name: str,
    *,
    key: tuple[str, ...],
    scope: pulumi.Input[str],
    role_definition_id: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    principal_type: str,
    description: str,
    opts: pulumi.ResourceOptions,
) -> authorization.RoleAssignment:
    """Role assignment whose ARM name is a uuid5 of `key` (stack, scope, principal, role)."""
    return authorization.RoleAssignment(
        name,
        role_assignment_name=stable_guid(*key),
        scope=scope,
        role_definition_id=role_definition_id,
        principal_id=principal_id,
        # An explicit type avoids PrincipalNotFound while a new identity replicates in Entra ID.
        principal_type=principal_type,
        description=description,
        opts=opts,
    )
