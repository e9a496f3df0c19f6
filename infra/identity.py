"""Managed identities and least-privilege RBAC: who may pull, read, operate and invoke."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, managedidentity

from infra import roles
from infra.config import PrincipalSettings
from infra.naming import Kind, Namer


@dataclass(frozen=True)
class IdentityArgs:
    """Inputs of the identity component."""

    namer: Namer
    stack_key: str
    """`<project>/<stack>`: part of every role assignment's name-based GUID."""
    location: str
    subscription_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    tags: Mapping[str, str]
    workspace_id: pulumi.Input[str]
    storage_account_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    data_scientists: PrincipalSettings | None = None
    deployer: PrincipalSettings | None = None


class Identity(pulumi.ComponentResource):
    """User-assigned identities for endpoints and compute, role assignments, the invoker role."""

    endpoint_identity_id: pulumi.Output[str]
    """ARM id of the identity online endpoints run as."""
    endpoint_identity_client_id: pulumi.Output[str]
    """Client id of the endpoint identity (for `DefaultAzureCredential` inside the container)."""
    endpoint_identity_principal_id: pulumi.Output[str]
    """Object id of the endpoint identity."""
    compute_identity_id: pulumi.Output[str]
    """ARM id of the identity compute instances and clusters run as."""
    invoker_role_definition_id: pulumi.Output[str]
    """ARM id of the custom role that may only score online endpoints."""
    endpoint_role_assignments: list[authorization.RoleAssignment]
    """Grants the endpoint identity needs before an endpoint can use it (for `depends_on`)."""

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("byom:identity:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        n = args.namer
        tags = dict(args.tags)
        scopes = {
            "workspace": args.workspace_id,
            "storage": args.storage_account_id,
            "registry": args.registry_id,
        }

        def grant(
            principal_key: str,
            principal_id: pulumi.Input[str],
            principal_type: str,
            scope_key: str,
            role: str,
            why: str,
        ) -> authorization.RoleAssignment:
            return roles.assign(
                f"{name}-{principal_key}-{scope_key}-{roles.SHORT_NAMES[role]}",
                key=(args.stack_key, scope_key, principal_key, role),
                scope=scopes[scope_key],
                role_definition_id=roles.built_in_role_id(args.subscription_id, role),
                principal_id=principal_id,
                principal_type=principal_type,
                description=why,
                opts=child,
            )

        endpoint, compute = (
            managedidentity.UserAssignedIdentity(
                f"{name}-{role}",
                resource_name_=n.name(Kind.MANAGED_IDENTITY, role),
                resource_group_name=args.resource_group_name,
                location=args.location,
                tags=tags,
                opts=child,
            )
            for role in ("endpoint", "compute")
        )

        # A system-assigned endpoint identity gets these three automatically; a user-assigned
        # one gets nothing, so they are declared here.
        sp = "ServicePrincipal"
        self.endpoint_role_assignments = [
            grant(
                "endpoint",
                endpoint.principal_id,
                sp,
                "registry",
                roles.ACR_PULL,
                "Online endpoints pull the inference image.",
            ),
            grant(
                "endpoint",
                endpoint.principal_id,
                sp,
                "storage",
                roles.STORAGE_BLOB_DATA_READER,
                "Online endpoints download the registered model.",
            ),
            grant(
                "endpoint",
                endpoint.principal_id,
                sp,
                "workspace",
                roles.AZUREML_METRICS_WRITER,
                "Online endpoints write metrics to the workspace.",
            ),
        ]
        grant(
            "compute",
            compute.principal_id,
            sp,
            "registry",
            roles.ACR_PULL,
            "Compute pulls job and notebook images.",
        )
        grant(
            "compute",
            compute.principal_id,
            sp,
            "storage",
            roles.STORAGE_BLOB_DATA_CONTRIBUTOR,
            "Jobs on compute read inputs and write outputs in the default datastore.",
        )

        people = args.data_scientists
        if people is not None:
            for scope_key, role, why in (
                ("workspace", roles.AZUREML_DATA_SCIENTIST, "Use the workspace; no admin rights."),
                ("workspace", roles.AZUREML_COMPUTE_OPERATOR, "Start and stop compute."),
                (
                    "storage",
                    roles.STORAGE_BLOB_DATA_CONTRIBUTOR,
                    "Identity-based datastore access from studio and notebooks.",
                ),
            ):
                grant(
                    "data-scientists", people.object_id, people.principal_type, scope_key, role, why
                )

        deployer = args.deployer
        if deployer is not None:
            # AzureML Data Scientist covers assets, endpoints and deployments but not the
            # workspace itself, compute, or role assignments.
            grant(
                "deployer",
                deployer.object_id,
                deployer.principal_type,
                "workspace",
                roles.AZUREML_DATA_SCIENTIST,
                "Register models and roll out deployments.",
            )
            grant(
                "deployer",
                deployer.object_id,
                deployer.principal_type,
                "storage",
                roles.STORAGE_BLOB_DATA_CONTRIBUTOR,
                "Upload model and code assets.",
            )

        rg_id = pulumi.Output.concat(
            "/subscriptions/", args.subscription_id, "/resourceGroups/", args.resource_group_name
        )
        invoker = authorization.RoleDefinition(
            f"{name}-invoker-role",
            role_definition_id=roles.stable_guid(args.stack_key, "role", "endpoint-invoker"),
            # Custom role names are unique per tenant, so the resource group name is part of it.
            role_name=pulumi.Output.concat(
                "AzureML online endpoint invoker (", args.resource_group_name, ")"
            ),
            description="May call the scoring URI of online endpoints, nothing else.",
            role_type="CustomRole",
            scope=rg_id,
            assignable_scopes=[rg_id],
            permissions=[authorization.PermissionArgs(actions=[roles.SCORE_ACTION])],
            opts=child,
        )

        self.endpoint_identity_id = endpoint.id
        self.endpoint_identity_client_id = endpoint.client_id
        self.endpoint_identity_principal_id = endpoint.principal_id
        self.compute_identity_id = compute.id
        self.invoker_role_definition_id = invoker.id
        self.register_outputs(
            {
                "endpoint_identity_id": self.endpoint_identity_id,
                "endpoint_identity_client_id": self.endpoint_identity_client_id,
                "compute_identity_id": self.compute_identity_id,
                "invoker_role_definition_id": self.invoker_role_definition_id,
            }
        )
