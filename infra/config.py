"""Stack configuration: read once, validated, frozen.

This is the only module that calls `pulumi.Config`. `load_settings()` reads `Pulumi.<stack>.yaml`
through the Pulumi runtime; `parse_settings()` validates plain values so tests can feed it
literals. The stack file's shape is declared once, as pydantic models (camelCase keys, bounds,
allowed values, cross-field Azure rules); `stack_file_schema()` publishes it as JSON schema.
Sections live by concern: `infra.config_platform` (network, workspace, identity, compute),
`infra.config_endpoints` (deployments, autoscale, rollout, `byom:` records),
`infra.config_operations` (monitoring, release runner); `infra.config_types` is their base.
This module is the edge: `StackConfig`, the rules between sections, reading and the schema.
Defaults are the secure choice and live in those models only; stack files hold what differs.
Every error names the key, the value and what is allowed, and is raised before any resource
exists.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

import pulumi
from pydantic import PrivateAttr, model_validator

from delivery.fields import Text, invalid, one_of, text
from delivery.stackconfig import DELIVERY_NAMESPACE, UNCHECKED_VERSION
from infra.config_endpoints import (
    DELIVERY_KEYS,
    REQUIRED_DELIVERY_KEYS,
    DeliveryRecords,
    EndpointsSettings,
)
from infra.config_operations import EMAIL, MonitoringSettings, ReleaseRunnerSettings
from infra.config_platform import (
    PRIVATE_ENDPOINT_TARGETS,
    ComputeSettings,
    IdentitySettings,
    NetworkSettings,
    WorkspaceSettings,
)
from infra.config_types import ConfigError, ConfigModel, file_schema, validate
from infra.naming import Kind, Namer, unique_suffix

PROJECT = "azureml-byom"

# Data residency: the platform may only be deployed to EU regions that offer the GPU SKUs we use.
ALLOWED_REGIONS = (
    "swedencentral",
    "westeurope",
    "northeurope",
    "francecentral",
    "germanywestcentral",
)
DATA_CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")
# Classifications whose data may only be reached over private endpoints.
PRIVATE_ONLY_CLASSIFICATIONS = ("confidential", "restricted")


class TagSettings(ConfigModel):
    """The tag set every taggable resource carries."""

    owner: Text
    cost_center: Text
    data_classification: one_of(*DATA_CLASSIFICATIONS)
    _environment: str = PrivateAttr("")

    @property
    def environment(self) -> str:
        """The stack name."""
        return self._environment

    def as_dict(self) -> dict[str, str]:
        """Tags in Azure's form."""
        return {
            "environment": self.environment,
            "owner": self.owner,
            "costCenter": self.cost_center,
            "dataClassification": self.data_classification,
            "managedBy": "pulumi",
            "project": PROJECT,
        }


class StackConfig(ConfigModel):
    """Everything the program needs from the stack configuration (the project's keys)."""

    location: one_of(*ALLOWED_REGIONS)
    workload: text(
        r"^[a-z][a-z0-9]{1,7}$", "2-8 lowercase letters/digits, starting with a letter"
    ) = "byom"
    unique_suffix: text(r"^[a-z0-9]{4,8}$", "4-8 lowercase letters/digits") | None = None
    tags: TagSettings
    network: NetworkSettings = NetworkSettings()
    workspace: WorkspaceSettings = WorkspaceSettings()
    identity: IdentitySettings = IdentitySettings()
    compute: ComputeSettings = ComputeSettings()
    endpoints: EndpointsSettings | None = None
    monitoring: MonitoringSettings = MonitoringSettings()
    release_runner: ReleaseRunnerSettings | None = None
    _stack: tuple[str, str, Namer | None] = PrivateAttr(("", "", None))

    @property
    def project(self) -> str:
        """The Pulumi project name."""
        return self._stack[0]

    @property
    def stack(self) -> str:
        """The stack name (`dev`, `prod`)."""
        return self._stack[1]

    @property
    def namer(self) -> Namer:
        """Names of every resource in this stack (set by `parse_settings`)."""
        if self._stack[2] is None:
            raise RuntimeError("settings not built by parse_settings: no namer")
        return self._stack[2]

    @property
    def request_capture(self) -> bool:
        """Whether the deployments capture requests: there are endpoints and data collection
        is on."""
        return self.endpoints is not None and bool(self.monitoring.data_collection.enabled)

    @property
    def public_network_access(self) -> str:
        """`Enabled` or `Disabled` for every resource that has the switch."""
        return "Disabled" if self.network.private else "Enabled"

    @model_validator(mode="after")
    def _azure_rules(self) -> StackConfig:
        private, cls = self.network.private, self.tags.data_classification
        if cls in PRIVATE_ONLY_CLASSIFICATIONS and not private:
            raise invalid(f"true when tags.dataClassification is {cls}", "network.private", False)
        ws = self.workspace
        if private and not ws.managed_network:
            allowed = "AllowOnlyApprovedOutbound or AllowInternetOutbound when network.private"
            raise invalid(allowed, "workspace.isolationMode", ws.isolation_mode)
        if private and ws.registry_sku != "Premium":
            allowed = "Premium when network.private (private endpoints need Premium)"
            raise invalid(allowed, "workspace.registrySku", ws.registry_sku)
        runner = self.release_runner
        if runner is not None:
            space = ipaddress.IPv4Network(self.network.address_space)
            subnet = ipaddress.IPv4Network(runner.subnet)
            taken = ipaddress.IPv4Network(self.network.private_endpoint_subnet)
            if not subnet.subnet_of(space) or subnet.overlaps(taken):
                allowed = (
                    f"a subnet inside network.addressSpace {space}, apart from the private "
                    f"endpoint subnet {taken}"
                )
                raise invalid(allowed, "releaseRunner.subnet", runner.subnet)
        e = self.endpoints
        if private and e is not None and e.auth_mode != "AADToken":
            allowed = "AADToken when network.private (no keys in private stacks)"
            raise invalid(allowed, "endpoints.authMode", e.auth_mode)
        if private and e is not None and e.public_network_access not in (None, "Disabled"):
            allowed = "Disabled when network.private"
            raise invalid(allowed, "endpoints.publicNetworkAccess", e.public_network_access)
        if e is not None and ws.managed_network and e.egress_public_network_access is not None:
            allowed = (
                "not set when the workspace has a managed network (isolationMode other than "
                "Disabled): Microsoft says the flag no longer applies there; outbound traffic is "
                "governed by the managed network's rules"
            )
            key = "endpoints.egressPublicNetworkAccess"
            raise invalid(allowed, key, e.egress_public_network_access)
        self._check_private_endpoints()
        self._check_registry()
        return self._stack_defaults()

    def _check_private_endpoints(self) -> None:
        targets = self.network.private_endpoints
        complete = targets is None or set(targets) == set(PRIVATE_ENDPOINT_TARGETS)
        if self.network.private and not complete:
            allowed = "all targets when private (without public access nothing reaches the rest)"
            raise invalid(allowed, "network.privateEndpoints", list(targets or ()))
        if "registry" in (targets or ()) and self.workspace.registry_sku != "Premium":
            allowed = "Premium when network.privateEndpoints includes registry"
            raise invalid(allowed, "workspace.registrySku", self.workspace.registry_sku)

    def _check_registry(self) -> None:
        ws, private = self.workspace, self.network.private
        if ws.registry_zone_redundancy and ws.registry_sku != "Premium":
            allowed = "false unless registrySku is Premium"
            raise invalid(allowed, "workspace.registryZoneRedundancy", True)
        if ws.registry_export is False and not (private and ws.registry_sku == "Premium"):
            allowed = (
                "true unless network.private and registrySku Premium (Azure refuses to disable "
                "export on a registry with public network access)"
            )
            raise invalid(allowed, "workspace.registryExport", False)
        if ws.model_registries and not ws.managed_network:
            allowed = (
                "[] unless isolationMode is AllowInternetOutbound or AllowOnlyApprovedOutbound"
            )
            raise invalid(allowed, "workspace.modelRegistries", list(ws.model_registries))

    def _stack_defaults(self) -> StackConfig:
        """Defaults that follow from other keys: network reach, mail receivers, capture."""
        access, owner, m = self.public_network_access, self.tags.owner, self.monitoring
        private, ws = self.network.private, self.workspace
        # With a managed network the egress flag no longer applies: not sent at all.
        egress = None if ws.managed_network else access.lower()
        endpoints = self.endpoints and self.endpoints.model_copy(
            update={
                "public_network_access": self.endpoints.public_network_access or access,
                "egress_public_network_access": self.endpoints.egress_public_network_access
                or egress,
            }
        )
        targets = self.network.private_endpoints
        network = self.network.model_copy(
            update={
                "private_endpoints": tuple(
                    t
                    for t in PRIVATE_ENDPOINT_TARGETS
                    if t in (targets if targets is not None else PRIVATE_ENDPOINT_TARGETS * private)
                )
            }
        )
        confidential = self.tags.data_classification in PRIVATE_ONLY_CLASSIFICATIONS
        premium = ws.registry_sku == "Premium"
        workspace = ws.model_copy(
            update={
                "high_business_impact": confidential
                if ws.high_business_impact is None
                else ws.high_business_impact,
                "registry_zone_redundancy": premium and private
                if ws.registry_zone_redundancy is None
                else ws.registry_zone_redundancy,
                "registry_export": not private
                if ws.registry_export is None
                else ws.registry_export,
            }
        )
        # Default receiver: the owner tag, when it is a mailbox.
        emails = m.action_group.emails or ((owner,) if EMAIL.match(owner) else ())
        # Off by default where the data is confidential: capture is then an explicit choice.
        capture = m.data_collection.enabled
        if capture is None:
            capture = self.tags.data_classification not in PRIVATE_ONLY_CLASSIFICATIONS
        group = m.action_group.model_copy(update={"emails": emails})
        collection = dataclasses.replace(m.data_collection, enabled=capture)
        monitoring = m.model_copy(update={"action_group": group, "data_collection": collection})
        return self.model_copy(
            update={
                "endpoints": endpoints,
                "monitoring": monitoring,
                "network": network,
                "workspace": workspace,
            }
        )


def parse_settings(
    values: Mapping[str, Any],
    *,
    stack: str,
    organization: str | None = "",
    project: str = PROJECT,
    delivery: Mapping[str, Any] | None = None,
    subscription_id: str = "",
) -> StackConfig:
    """Validate raw config values (top-level keys without the project prefix) into settings.

    `delivery` holds the `byom:model`, `byom:environment` and (optional)
    `byom:serverEnvironment` blocks (keys `model`, `environment`, `serverEnvironment`).
    """
    settings: StackConfig = validate(StackConfig, values, f"{project}:")
    # Global names (storage, key vault, registry, endpoints) must not collide between adopters:
    # on a DIY backend there is no organization, so the subscription tells them apart.
    suffix = settings.unique_suffix or unique_suffix(organization, subscription_id, project, stack)
    settings._stack = (project, stack, Namer(settings.workload, stack, suffix))
    settings.tags._environment = stack
    delivery = {k: v for k, v in (delivery or {}).items() if v is not None}
    if settings.endpoints is not None and delivery:
        records = {k: delivery.get(k) or {} for k in REQUIRED_DELIVERY_KEYS}
        records.update({k: delivery[k] for k in DELIVERY_KEYS if k in delivery})
        # The delivery CLI checked each version against its hash when it wrote the block.
        unchecked = {UNCHECKED_VERSION: True}
        key = f"{DELIVERY_NAMESPACE}:"
        assets = validate(DeliveryRecords, records, key, unchecked)
        for deployment in settings.endpoints.deployments:
            assets.environment_for(deployment.server)  # a missing image fails here, by key
        settings.endpoints._assets = assets
        _check_release(settings)
    # Fail here, not halfway through a deployment, when a name cannot be built.
    for kind in Kind:
        if kind.value.abbreviation:
            settings.namer.name(kind)
    return settings


def _check_release(settings: StackConfig) -> None:
    """Rules between a registered release and the platform that must carry it."""
    assets = settings.endpoints and settings.endpoints.assets
    if assets is None:
        return
    # Shared keys are off: uploads use the deploying principal's Entra token, so it needs the
    # data roles that only `identity.deployer` receives.
    if settings.identity.deployer is None:
        raise ConfigError(
            f"{settings.project}:identity.deployer",
            None,
            "the principal that runs the release (objectId, type) whenever byom:model is set",
        )
    _check_images_by_digest(settings, assets)
    registry, ws = assets.model.registry, settings.workspace
    if registry and ws.isolation_mode == "AllowOnlyApprovedOutbound":
        names = [r.rsplit("/", 1)[-1] for r in ws.model_registries]
        if registry not in names:
            raise ConfigError(
                f"{settings.project}:workspace.modelRegistries",
                list(ws.model_registries),
                f"the ARM id of registry {registry!r} (byom:model.registry): the managed "
                "network reaches a registry only through a private endpoint outbound rule",
            )


def _check_images_by_digest(settings: StackConfig, assets: DeliveryRecords) -> None:
    """A workspace whose managed network allows only approved outbound builds no image: it
    deploys the image another stack built, imported by digest (`delivery.promote`)."""
    if settings.workspace.isolation_mode != "AllowOnlyApprovedOutbound":
        return
    servers = {d.server for d in settings.endpoints.deployments} if settings.endpoints else set()
    records = [("environment", assets.environment)]
    if "openai" in servers and assets.server_environment is not None:
        records.append(("serverEnvironment", assets.server_environment))
    for key, record in records:
        if record.image is None:
            raise ConfigError(
                f"{DELIVERY_NAMESPACE}:{key}.image",
                None,
                "the image dev built, imported by digest (`python -m delivery.promote --from dev "
                f"--to {settings.stack}` writes it): workspace.isolationMode is "
                "AllowOnlyApprovedOutbound, so Azure ML cannot build from the conda spec here "
                "(no outbound rule for package hosts) and a rebuild would not be dev's image",
            )


_STRING_KEYS = ("location", "workload", "uniqueSuffix")


def _read(config: pulumi.Config, key: str) -> Any:
    if key in _STRING_KEYS:
        return config.get(key)
    try:
        return config.get_object(key)
    except (json.JSONDecodeError, pulumi.ConfigTypeError):
        raise ConfigError(f"{config.name}:{key}", config.get(key), "a YAML mapping") from None


def load_settings(subscription_id: str = "") -> StackConfig:
    """Read the current stack's configuration through the Pulumi runtime and validate it."""
    config, delivery = pulumi.Config(), pulumi.Config(DELIVERY_NAMESPACE)
    values = {f.alias: _read(config, f.alias) for f in StackConfig.model_fields.values()}
    records = {key: _read(delivery, key) for key in DELIVERY_KEYS}
    return parse_settings(
        {k: v for k, v in values.items() if v is not None},
        stack=pulumi.get_stack(),
        organization=pulumi.get_organization(),
        project=config.name,
        delivery=records,
        subscription_id=subscription_id,
    )


def stack_file_schema() -> dict[str, Any]:
    """JSON schema of `Pulumi.<stack>.yaml` (editors, CI): this project's and delivery's keys."""
    title = f"Pulumi.<stack>.yaml of {PROJECT}"
    return file_schema(title, {PROJECT: StackConfig, DELIVERY_NAMESPACE: DeliveryRecords})


if __name__ == "__main__":
    # `python -m infra.config > infra/stack-config.schema.json` refreshes the published schema.
    print(json.dumps(stack_file_schema(), indent=2, sort_keys=True))
