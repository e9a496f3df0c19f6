"""Where a private stack's release jobs run: ephemeral GitHub runners inside the stack's VNet.

Prod turns public network access off on the workspace, its storage, registry and endpoints, so a
release (code and model uploads, smoke and gate requests to the scoring URI) only works from inside
the VNet. This component adds, for such a stack:

- a runner subnet in the platform VNet, delegated to Container Apps, with a NAT gateway as its only
  way out (to GitHub, Pulumi Cloud and ARM); everything of the platform it reaches through the
  private endpoints and private DNS zones of `infra.network`;
- an internal Container Apps environment in that subnet;
- a Container Apps **job** with the KEDA `github-runner` scale rule: GitHub's queue of jobs that
  ask for this stack's runner label starts one container per job, which registers an ephemeral
  runner, runs that one job and exits. Nothing runs (or costs) between releases;
- a user-assigned identity the job runs as. It is the release's Azure credential
  (`delivery.credential` picks it up through `IDENTITY_ENDPOINT`): no client secret, nothing that
  expires mid-release. Its data-plane grants are declared here; the control-plane rights that
  `pulumi up` needs are granted once by the platform team (docs/delivery-pipeline.md), since a
  stack must not grant itself the right to grant.

The GitHub App key the scaler and the runner use lives in Key Vault; the job reads it by
reference with its identity, so no secret value appears in config, state or outputs. Reading that
one secret is granted in the one-time set-up, on the secret itself (not here: this stack does not
own that vault).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import app, managedidentity, network

from infra import roles
from infra.config_operations import ReleaseRunnerSettings
from infra.naming import Kind, Namer

APP_KEY_SECRET = "github-app-key"


def runner_label(stack: str) -> str:
    """The label a workflow job names in `runs-on` to get this stack's runner."""
    return f"byom-{stack}-release"


@dataclass(frozen=True)
class ReleaseRunnerArgs:
    """Inputs of the release runner component."""

    namer: Namer
    stack: str
    location: str
    tags: Mapping[str, str]
    resource_group_name: pulumi.Input[str]
    resource_group_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    vnet_name: pulumi.Input[str]
    workspace_id: pulumi.Input[str]
    storage_account_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    settings: ReleaseRunnerSettings


class ReleaseRunner(pulumi.ComponentResource):
    """Ephemeral GitHub runners in the VNet, started per queued job, as a managed identity."""

    label: str
    """The runner label release jobs ask for (`runs-on: [self-hosted, <label>]`)."""
    identity_client_id: pulumi.Output[str]
    identity_principal_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: ReleaseRunnerArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("byom:release:ReleaseRunner", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        n, s, tags = args.namer, args.settings, dict(args.tags)
        rg = args.resource_group_name
        self.label = runner_label(args.stack)

        ip = network.PublicIPAddress(
            f"{name}-egress-ip",
            public_ip_address_name=n.name(Kind.PUBLIC_IP, "runner"),
            resource_group_name=rg,
            location=args.location,
            sku=network.PublicIPAddressSkuArgs(name="Standard"),
            public_ip_allocation_method="Static",
            tags=tags,
            opts=child,
        )
        nat = network.NatGateway(
            f"{name}-nat",
            nat_gateway_name=n.name(Kind.NAT_GATEWAY, "runner"),
            resource_group_name=rg,
            location=args.location,
            sku=network.NatGatewaySkuArgs(name="Standard"),
            public_ip_addresses=[network.SubResourceArgs(id=ip.id)],
            tags=tags,
            opts=child,
        )
        subnet = network.Subnet(
            f"{name}-subnet",
            subnet_name=n.name(Kind.SUBNET, "runner"),
            resource_group_name=rg,
            virtual_network_name=args.vnet_name,
            address_prefix=s.subnet,
            delegations=[
                network.DelegationArgs(
                    name="containerapps", service_name="Microsoft.App/environments"
                )
            ],
            # Out only through the NAT gateway's fixed address (GitHub, Pulumi Cloud, ARM).
            nat_gateway=network.SubResourceArgs(id=nat.id),
            default_outbound_access=False,
            opts=child,
        )
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_name_=n.name(Kind.MANAGED_IDENTITY, "release"),
            resource_group_name=rg,
            location=args.location,
            tags=tags,
            opts=child,
        )
        # Per-slot autoscale settings and the alerts the release watches: a role of exactly that
        # (roles.RELEASE_AUTOSCALER_ACTIONS), since no built-in role is that narrow.
        autoscaler_id = roles.custom_role(
            f"{name}-autoscaler-role",
            roles.RELEASE_AUTOSCALER,
            resource_group_id=pulumi.Output.from_input(args.resource_group_id),
            resource_group_name=rg,
            existing=s.autoscaler_role_id,
            subscription_id=args.subscription_id,
            opts=child,
        )

        def built_in(role: str) -> pulumi.Output[str]:
            return roles.built_in_role_id(args.subscription_id, role)

        grants = [
            # Deployments, traffic, invoke (score action) and asset registration in the workspace.
            (
                args.workspace_id,
                built_in(roles.AZUREML_DATA_SCIENTIST),
                "workspace",
                "Releases models.",
            ),
            # Code and model uploads go to the workspace storage (identity-based datastore).
            (
                args.storage_account_id,
                built_in(roles.STORAGE_BLOB_DATA_CONTRIBUTOR),
                "storage",
                "Uploads release code and model files.",
            ),
            # Promotion imports dev's image into this registry by digest (ACR import is a control-
            # plane action AcrPush lacks); the role also reads the registry to check the result.
            (
                args.registry_id,
                built_in(roles.ACR_IMPORTER),
                "registry",
                "Imports promoted images by digest (delivery.promote).",
            ),
            (
                args.resource_group_id,
                autoscaler_id,
                "monitoring",
                "Creates per-slot autoscale settings and reads alerts.",
            ),
        ]
        assignments = [
            roles.assign(
                f"{name}-{label}",
                scope=scope,
                role_definition_id=role_id,
                principal_id=identity.principal_id,
                principal_type="ServicePrincipal",
                description=description,
                opts=child,
            )
            for scope, role_id, label, description in grants
        ]
        environment = app.ManagedEnvironment(
            f"{name}-environment",
            environment_name=n.name(Kind.CONTAINER_APPS_ENVIRONMENT, "runner"),
            resource_group_name=rg,
            location=args.location,
            vnet_configuration=app.VnetConfigurationArgs(
                infrastructure_subnet_id=subnet.id, internal=True
            ),
            workload_profiles=[
                app.WorkloadProfileArgs(name="Consumption", workload_profile_type="Consumption")
            ],
            public_network_access="Disabled",
            tags=tags,
            opts=child,
        )
        repo_url = f"https://github.com/{s.github_owner}/{s.github_repo}"
        app.Job(
            f"{name}-job",
            job_name=n.name(Kind.CONTAINER_APPS_JOB, "runner"),
            resource_group_name=rg,
            location=args.location,
            environment_id=environment.id,
            identity=app.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=[identity.id]
            ),
            configuration=app.JobConfigurationArgs(
                trigger_type="Event",
                replica_timeout=s.timeout_minutes * 60,
                replica_retry_limit=0,
                secrets=[
                    app.SecretArgs(
                        name=APP_KEY_SECRET,
                        key_vault_url=s.app_key_secret_uri,
                        identity=identity.id,
                    )
                ],
                registries=[
                    app.RegistryCredentialsArgs(
                        server=s.image.split("/", 1)[0], identity=identity.id
                    )
                ],
                event_trigger_config=app.JobConfigurationEventTriggerConfigArgs(
                    parallelism=1,
                    replica_completion_count=1,
                    scale=app.JobScaleArgs(
                        min_executions=0,
                        max_executions=s.max_runners,
                        polling_interval=30,
                        rules=[
                            app.JobScaleRuleArgs(
                                name="github-runner",
                                type="github-runner",
                                metadata={
                                    "owner": s.github_owner,
                                    "runnerScope": "repo",
                                    "repos": s.github_repo,
                                    "labels": self.label,
                                    "applicationID": s.github_app_id,
                                    "installationID": s.github_installation_id,
                                    "targetWorkflowQueueLength": "1",
                                },
                                auth=[
                                    app.ScaleRuleAuthArgs(
                                        secret_ref=APP_KEY_SECRET, trigger_parameter="appKey"
                                    )
                                ],
                            )
                        ],
                    ),
                ),
            ),
            template=app.JobTemplateArgs(
                containers=[
                    app.ContainerArgs(
                        name="runner",
                        image=s.image,
                        resources=app.ContainerResourcesArgs(cpu=2.0, memory="4Gi"),
                        env=[
                            app.EnvironmentVarArgs(name="REPO_URL", value=repo_url),
                            app.EnvironmentVarArgs(name="RUNNER_LABELS", value=self.label),
                            app.EnvironmentVarArgs(name="EPHEMERAL", value="true"),
                            app.EnvironmentVarArgs(name="GITHUB_APP_ID", value=s.github_app_id),
                            app.EnvironmentVarArgs(
                                name="GITHUB_INSTALLATION_ID", value=s.github_installation_id
                            ),
                            app.EnvironmentVarArgs(
                                name="GITHUB_APP_PRIVATE_KEY", secret_ref=APP_KEY_SECRET
                            ),
                            # delivery.credential: this identity is the release's credential.
                            app.EnvironmentVarArgs(
                                name="AZURE_CLIENT_ID", value=identity.client_id
                            ),
                            # azure-native in `pulumi up` uses the same identity.
                            app.EnvironmentVarArgs(name="ARM_USE_MSI", value="true"),
                            app.EnvironmentVarArgs(name="ARM_CLIENT_ID", value=identity.client_id),
                        ],
                    )
                ]
            ),
            tags=tags,
            # The identity must be able to read the key before the first execution.
            opts=pulumi.ResourceOptions(parent=self, depends_on=assignments),
        )
        self.identity_client_id = identity.client_id
        self.identity_principal_id = identity.principal_id
        self.subnet_id = subnet.id
        self.register_outputs(
            {
                "label": self.label,
                "identity_client_id": self.identity_client_id,
                "identity_principal_id": self.identity_principal_id,
                "subnet_id": self.subnet_id,
            }
        )
