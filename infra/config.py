"""Stack configuration: read once, validated, frozen.

This is the only module that calls `pulumi.Config`. `load_settings()` reads `Pulumi.<stack>.yaml`
through the Pulumi runtime; `parse_settings()` does the validation on plain values so tests can
feed it literals. Defaults are the secure choice and live here only; stack files hold what differs.
Every error names the key, the value and what is allowed, and is raised before any resource exists.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

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
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal")
ISOLATION_MODES = ("Disabled", "AllowInternetOutbound", "AllowOnlyApprovedOutbound")
WORKSPACE_SKUS = ("Basic",)
STORAGE_SKUS = ("Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS")
REGISTRY_SKUS = ("Basic", "Standard", "Premium")
FIREWALL_SKUS = ("Basic", "Standard")
VM_PRIORITIES = ("Dedicated", "LowPriority")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CRON = re.compile(r"^(\S+\s+){4}\S+$")
_FQDN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,}$")
_WORKLOAD = re.compile(r"^[a-z][a-z0-9]{1,7}$")
_SUFFIX = re.compile(r"^[a-z0-9]{4,8}$")
_REQUIRED = object()


class ConfigError(ValueError):
    """A stack configuration value is missing or invalid."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        super().__init__(f"config {key} = {value!r} is invalid; allowed: {allowed}")


@dataclass(frozen=True)
class TagSettings:
    """The tag set every taggable resource carries."""

    environment: str
    owner: str
    cost_center: str
    data_classification: str

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


@dataclass(frozen=True)
class PrincipalSettings:
    """An Entra ID principal (object id and type) granted roles by this stack."""

    object_id: str
    principal_type: str


@dataclass(frozen=True)
class NetworkSettings:
    """Private networking: one VNet whose subnet hosts the private endpoints."""

    private: bool
    address_space: str
    private_endpoint_subnet: str


@dataclass(frozen=True)
class WorkspaceSettings:
    """The Azure ML workspace and its dependent resources."""

    sku: str
    isolation_mode: str
    firewall_sku: str
    outbound_fqdns: tuple[str, ...]
    storage_sku: str
    storage_shared_key_access: bool
    registry_sku: str
    log_retention_days: int
    high_business_impact: bool
    existing_resource_group: str | None


@dataclass(frozen=True)
class IdentitySettings:
    """Humans and applications that get roles on the platform."""

    data_scientists: PrincipalSettings | None
    deployer: PrincipalSettings | None
    invokers: tuple[PrincipalSettings, ...]


@dataclass(frozen=True)
class ComputeInstanceSettings:
    """A personal notebook VM."""

    vm_size: str
    assigned_user_object_id: str
    idle_shutdown_minutes: int
    nightly_stop_cron: str | None
    time_zone: str


@dataclass(frozen=True)
class ClusterSettings:
    """A training/batch cluster that scales to zero."""

    vm_size: str
    max_nodes: int
    vm_priority: str
    idle_seconds_before_scale_down: int


@dataclass(frozen=True)
class ComputeSettings:
    """Optional compute instance and cluster."""

    instance: ComputeInstanceSettings | None
    cluster: ClusterSettings | None


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs from the stack configuration."""

    project: str
    stack: str
    location: str
    namer: Namer
    tags: TagSettings
    network: NetworkSettings
    workspace: WorkspaceSettings
    identity: IdentitySettings
    compute: ComputeSettings

    @property
    def public_network_access(self) -> str:
        """`Enabled` or `Disabled` for every resource that has the switch."""
        return "Disabled" if self.network.private else "Enabled"


class _Section:
    """A config object (`azureml-byom:network`) read key by key; unknown keys are errors."""

    def __init__(self, key: str, raw: Any, sep: str = ".") -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(key, raw, "an object (YAML mapping)")
        self.key = key
        self.sep = sep
        self.raw = dict(raw)
        self.seen: set[str] = set()

    def _get(self, name: str, default: Any) -> Any:
        self.seen.add(name)
        value = self.raw.get(name)
        if value is None:
            if default is _REQUIRED:
                raise ConfigError(self.path(name), None, "a value (the key is required)")
            return default
        return value

    def path(self, name: str) -> str:
        """Full key of a field, for messages."""
        return f"{self.key}{self.sep}{name}"

    def text(
        self,
        name: str,
        default: Any = _REQUIRED,
        *,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
        describe: str = "",
    ) -> Any:
        value = self._get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not value:
            raise ConfigError(self.path(name), value, describe or "a non-empty string")
        if choices and value not in choices:
            raise ConfigError(self.path(name), value, ", ".join(choices))
        if pattern is not None and not pattern.match(value):
            raise ConfigError(self.path(name), value, describe or pattern.pattern)
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        # Values set with `pulumi config set` arrive as strings.
        if value in ("true", "false"):
            value = value == "true"
        if not isinstance(value, bool):
            raise ConfigError(self.path(name), value, "true, false")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self._get(name, default)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(self.path(name), value, f"an integer from {lo} to {hi}")
        return value

    def section(self, name: str, *, required: bool = False) -> _Section | None:
        value = self._get(name, _REQUIRED if required else None)
        return None if value is None else _Section(self.path(name), value)

    def items(self, name: str) -> list[Any]:
        value = self._get(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.path(name), value, "a list")
        return value

    def done(self) -> None:
        """Reject keys this program does not read (typos would otherwise be silently ignored)."""
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise ConfigError(
                self.path(unknown[0]),
                self.raw[unknown[0]],
                "one of the known keys: " + ", ".join(sorted(self.seen)),
            )


def _cidr(section: _Section, name: str, default: str) -> str:
    value = section.text(name, default)
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise ConfigError(section.path(name), value, "an IPv4 CIDR such as 10.20.0.0/16") from None


def _principal(section: _Section | None) -> PrincipalSettings | None:
    if section is None:
        return None
    principal = PrincipalSettings(
        object_id=section.text("objectId", pattern=_GUID, describe="an Entra ID object id (GUID)"),
        principal_type=section.text("type", choices=PRINCIPAL_TYPES),
    )
    section.done()
    return principal


def _tags(root: _Section, stack: str) -> TagSettings:
    section = root.section("tags", required=True)
    assert section is not None
    tags = TagSettings(
        environment=stack,
        owner=section.text("owner"),
        cost_center=section.text("costCenter"),
        data_classification=section.text("dataClassification", choices=DATA_CLASSIFICATIONS),
    )
    section.done()
    return tags


def _network(root: _Section) -> NetworkSettings:
    section = root.section("network") or _Section(root.path("network"), {})
    network = NetworkSettings(
        private=section.flag("private", True),
        address_space=_cidr(section, "addressSpace", "10.20.0.0/16"),
        private_endpoint_subnet=_cidr(section, "privateEndpointSubnet", "10.20.0.0/24"),
    )
    space = ipaddress.IPv4Network(network.address_space)
    if not ipaddress.IPv4Network(network.private_endpoint_subnet).subnet_of(space):
        raise ConfigError(
            section.path("privateEndpointSubnet"),
            network.private_endpoint_subnet,
            f"a subnet inside addressSpace {network.address_space}",
        )
    section.done()
    return network


def _workspace(root: _Section, private: bool) -> WorkspaceSettings:
    section = root.section("workspace") or _Section(root.path("workspace"), {})
    fqdns = section.items("outboundFqdns")
    for fqdn in fqdns:
        if not isinstance(fqdn, str) or not _FQDN.match(fqdn):
            raise ConfigError(section.path("outboundFqdns"), fqdn, "host names such as pypi.org")
    workspace = WorkspaceSettings(
        sku=section.text("sku", "Basic", choices=WORKSPACE_SKUS),
        isolation_mode=section.text(
            "isolationMode", "AllowOnlyApprovedOutbound", choices=ISOLATION_MODES
        ),
        firewall_sku=section.text("firewallSku", "Standard", choices=FIREWALL_SKUS),
        outbound_fqdns=tuple(fqdns),
        storage_sku=section.text("storageSku", "Standard_ZRS", choices=STORAGE_SKUS),
        storage_shared_key_access=section.flag("storageSharedKeyAccess", False),
        registry_sku=section.text("registrySku", "Premium", choices=REGISTRY_SKUS),
        log_retention_days=section.integer("logRetentionDays", 30, 30, 730),
        high_business_impact=section.flag("highBusinessImpact", False),
        existing_resource_group=section.text("existingResourceGroup", None),
    )
    if private and workspace.isolation_mode == "Disabled":
        raise ConfigError(
            section.path("isolationMode"),
            workspace.isolation_mode,
            "AllowOnlyApprovedOutbound or AllowInternetOutbound when network.private",
        )
    if private and workspace.registry_sku != "Premium":
        raise ConfigError(
            section.path("registrySku"),
            workspace.registry_sku,
            "Premium when network.private (private endpoints need Premium)",
        )
    if fqdns and workspace.isolation_mode != "AllowOnlyApprovedOutbound":
        raise ConfigError(
            section.path("outboundFqdns"),
            fqdns,
            "[] unless isolationMode is AllowOnlyApprovedOutbound",
        )
    section.done()
    return workspace


def _identity(root: _Section) -> IdentitySettings:
    section = root.section("identity") or _Section(root.path("identity"), {})
    invokers = section.items("invokers")
    identity = IdentitySettings(
        data_scientists=_principal(section.section("dataScientists")),
        deployer=_principal(section.section("deployer")),
        invokers=tuple(
            _principal(_Section(f"{section.path('invokers')}[{i}]", item))  # type: ignore[misc]
            for i, item in enumerate(invokers)
        ),
    )
    section.done()
    return identity


def _compute(root: _Section) -> ComputeSettings:
    section = root.section("compute") or _Section(root.path("compute"), {})
    instance = None
    ci = section.section("instance")
    if ci is not None and ci.flag("enabled", True):
        instance = ComputeInstanceSettings(
            vm_size=ci.text("vmSize", "Standard_DS3_v2"),
            assigned_user_object_id=ci.text(
                "assignedUserObjectId",
                pattern=_GUID,
                describe="the notebook user's Entra ID object id",
            ),
            # Azure accepts 15 minutes to 3 days.
            idle_shutdown_minutes=ci.integer("idleShutdownMinutes", 30, 15, 3 * 24 * 60),
            nightly_stop_cron=ci.text(
                "nightlyStopCron",
                None,
                pattern=_CRON,
                describe="a 5-field cron expression such as '0 20 * * *'",
            ),
            time_zone=ci.text("timeZone", "UTC"),
        )
        ci.done()
    cluster = None
    cc = section.section("cluster")
    if cc is not None and cc.flag("enabled", True):
        cluster = ClusterSettings(
            vm_size=cc.text("vmSize", "Standard_DS3_v2"),
            max_nodes=cc.integer("maxNodes", 2, 1, 100),
            vm_priority=cc.text("vmPriority", "Dedicated", choices=VM_PRIORITIES),
            idle_seconds_before_scale_down=cc.integer("idleSecondsBeforeScaleDown", 120, 60, 86400),
        )
        cc.done()
    section.done()
    return ComputeSettings(instance=instance, cluster=cluster)


def parse_settings(
    values: Mapping[str, Any], *, stack: str, organization: str = "", project: str = PROJECT
) -> StackSettings:
    """Validate raw config values (top-level keys without the project prefix) into settings."""
    root = _Section(project, values, sep=":")
    location = root.text("location", choices=ALLOWED_REGIONS)
    workload = root.text(
        "workload",
        "byom",
        pattern=_WORKLOAD,
        describe="2-8 lowercase letters/digits, starting with a letter",
    )
    suffix = root.text(
        "uniqueSuffix", None, pattern=_SUFFIX, describe="4-8 lowercase letters/digits"
    )
    tags = _tags(root, stack)
    network = _network(root)
    if tags.data_classification in PRIVATE_ONLY_CLASSIFICATIONS and not network.private:
        raise ConfigError(
            f"{project}:network.private",
            False,
            f"true when tags.dataClassification is {tags.data_classification}",
        )
    settings = StackSettings(
        project=project,
        stack=stack,
        location=location,
        namer=Namer(workload, stack, suffix or unique_suffix(organization, project, stack)),
        tags=tags,
        network=network,
        workspace=_workspace(root, network.private),
        identity=_identity(root),
        compute=_compute(root),
    )
    root.done()
    # Fail here, not halfway through a deployment, when a name cannot be built.
    for kind in Kind:
        if kind.value.abbreviation:
            settings.namer.name(kind)
    return settings


_OBJECT_KEYS = ("tags", "network", "workspace", "identity", "compute")
_STRING_KEYS = ("location", "workload", "uniqueSuffix")


def load_settings() -> StackSettings:
    """Read the current stack's configuration through the Pulumi runtime and validate it."""
    config = pulumi.Config()
    values: dict[str, Any] = {}
    for key in _STRING_KEYS:
        values[key] = config.get(key)
    for key in _OBJECT_KEYS:
        try:
            values[key] = config.get_object(key)
        except (json.JSONDecodeError, pulumi.ConfigTypeError):
            raise ConfigError(f"{config.name}:{key}", config.get(key), "a YAML mapping") from None
    return parse_settings(
        {k: v for k, v in values.items() if v is not None},
        stack=pulumi.get_stack(),
        organization=pulumi.get_organization(),
        project=config.name,
    )
