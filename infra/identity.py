"""Managed identities and least-privilege RBAC: who may pull, read, write, operate and invoke."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, managedidentity

from infra import roles
from infra.config_platform import PrincipalSettings
from infra.naming import Kind, Namer


@dataclass(frozen=True)
class IdentityArgs:
    """Inputs of the identity component."""

    namer: Namer
    location: str
    subscription_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    resource_group_id: pulumi.Input[str]
    tags: Mapping[str, str]
    workspace_id: pulumi.Input[str]
    storage_account_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    data_scientists: PrincipalSettings | None = None
    deployer: PrincipalSettings | None = None
    invoker_role_id: str | None = None
    """GUID of an invoker role created out of band; None: declare it here (needs the deployer
    to hold `Microsoft.Authorization/roleDefinitions/write`)."""
    workspace_principal_id: pulumi.Input[str] | None = None
    """The workspace's system-assigned identity when it has a managed network (approves the
    managed network's private endpoints); None without one."""
    image_builder: bool = False
    """The compute identity builds environment images and pushes them to the registry."""
    capture_container_id: pulumi.Input[str] | None = None
    """ARM id of the blob container the data collector writes to; None: capture is off."""
    promoters: tuple[PrincipalSettings, ...] = ()
    """Principals that import this registry's images into another stack's registry."""


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
    deployer_role_assignments: list[authorization.RoleAssignment]
    """Grants the release's principal needs before it uploads and deploys (for `depends_on`)."""
    network_role_assignments: list[authorization.RoleAssignment]
    """Grants the workspace needs before its managed network's endpoints can be approved."""

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("byom:identity:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        n = args.namer
        tags = dict(args.tags)
        rg_id = pulumi.Output.from_input(args.resource_group_id)
        scopes: dict[str, pulumi.Input[str]] = {
            "resource-group": rg_id,
            "workspace": args.workspace_id,
            "storage": args.storage_account_id,
            "registry": args.registry_id,
        }
        if args.capture_container_id is not None:
            scopes["capture-container"] = args.capture_container_id

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
        endpoint_grants = [
            ("registry", roles.ACR_PULL, "Online endpoints pull the inference image."),
            ("storage", roles.STORAGE_BLOB_DATA_READER, "Online endpoints download the model."),
            ("workspace", roles.AZUREML_METRICS_WRITER, "Online endpoints write metrics."),
        ]
        if args.capture_container_id is not None:
            # The data collector writes captured requests with the endpoint's identity, into
            # the default datastore's container only.
            endpoint_grants.append(
                (
                    "capture-container",
                    roles.STORAGE_BLOB_DATA_CONTRIBUTOR,
                    "The data collector writes captured requests (modelDataCollector/).",
                )
            )
        self.endpoint_role_assignments = [
            grant("endpoint", endpoint.principal_id, sp, scope, role, why)
            for scope, role, why in endpoint_grants
        ]

        compute_grants = [
            ("registry", roles.ACR_PULL, "Compute pulls job and notebook images."),
            (
                "storage",
                roles.STORAGE_BLOB_DATA_CONTRIBUTOR,
                "Jobs on compute read inputs and write outputs in the default datastore.",
            ),
            (
                "storage",
                roles.STORAGE_FILE_DATA_PRIVILEGED_CONTRIBUTOR,
                "Compute mounts the workspace file share (notebooks) without shared keys.",
            ),
        ]
        if args.image_builder:
            compute_grants.append(
                (
                    "registry",
                    roles.ACR_PUSH,
                    "The image-build cluster pushes environment images to the private registry.",
                )
            )
        for scope, role, why in compute_grants:
            grant("compute", compute.principal_id, sp, scope, role, why)

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
                (
                    "storage",
                    roles.STORAGE_FILE_DATA_PRIVILEGED_CONTRIBUTOR,
                    "Studio notebooks live on the workspace file share; shared keys are off.",
                ),
            ):
                grant(
                    "data-scientists", people.object_id, people.principal_type, scope_key, role, why
                )

        self.deployer_role_assignments = []
        deployer = args.deployer
        if deployer is not None:
            # AzureML Data Scientist covers assets, endpoints, deployments and scoring but not
            # the workspace itself, compute, or role assignments.
            self.deployer_role_assignments = [
                grant(
                    "deployer",
                    deployer.object_id,
                    deployer.principal_type,
                    scope,
                    role,
                    why,
                )
                for scope, role, why in (
                    (
                        "workspace",
                        roles.AZUREML_DATA_SCIENTIST,
                        "Register models, roll out deployments, smoke-test them.",
                    ),
                    (
                        "storage",
                        roles.STORAGE_BLOB_DATA_CONTRIBUTOR,
                        "Upload model and code assets with an Entra token (shared keys are off).",
                    ),
                )
            ]

        for index, promoter in enumerate(args.promoters):
            # ACR import reads the source registry with the importing identity's own roles.
            grant(
                f"promoter{index}",
                promoter.object_id,
                promoter.principal_type,
                "registry",
                roles.ACR_IMPORTER,
                "Promotion imports the images this stack built into another stack, by digest.",
            )

        self.network_role_assignments = []
        if args.workspace_principal_id is not None:
            # Since 2025 nothing grants this automatically: without it the managed network's
            # private endpoints to storage, key vault and registry stay pending.
            self.network_role_assignments = [
                grant(
                    "workspace",
                    args.workspace_principal_id,
                    sp,
                    "resource-group",
                    roles.NETWORK_CONNECTION_APPROVER,
                    "The managed network approves its private endpoints to the dependencies.",
                )
            ]

        invoker_id = roles.custom_role(
            f"{name}-invoker-role",
            roles.ENDPOINT_INVOKER,
            resource_group_id=rg_id,
            resource_group_name=args.resource_group_name,
            existing=args.invoker_role_id,
            subscription_id=args.subscription_id,
            opts=child,
        )

        self.endpoint_identity_id = endpoint.id
        self.endpoint_identity_client_id = endpoint.client_id
        self.endpoint_identity_principal_id = endpoint.principal_id
        self.compute_identity_id = compute.id
        self.invoker_role_definition_id = pulumi.Output.from_input(invoker_id)
        self.register_outputs(
            {
                "endpoint_identity_id": self.endpoint_identity_id,
                "endpoint_identity_client_id": self.endpoint_identity_client_id,
                "compute_identity_id": self.compute_identity_id,
                "invoker_role_definition_id": self.invoker_role_definition_id,
            }
        )
