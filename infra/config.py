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

from infra import sizing
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
# Request patterns the scoring package serves; one endpoint each (env var SCORING_PATTERNS).
PATTERNS = ("generate", "analyze")
AUTH_MODES = ("AADToken", "AMLToken", "Key")
# Deployment metrics Azure Monitor autoscale can act on.
AUTOSCALE_METRICS = (
    "CpuUtilizationPercentage",
    "CpuMemoryUtilizationPercentage",
    "GpuUtilizationPercentage",
    "GpuMemoryUtilizationPercentage",
)
# Azure ML data collector rolling rates, and metric alert windows Azure accepts (minutes).
ROLLING_RATES = ("Minute", "Hour", "Day")
ALERT_WINDOWS = (1, 5, 15, 30, 60)
# Namespace of the keys the delivery CLI writes (`byom:model`, `byom:environment`).
DELIVERY_NAMESPACE = "byom"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CRON = re.compile(r"^(\S+\s+){4}\S+$")
_FQDN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,}$")
_WORKLOAD = re.compile(r"^[a-z][a-z0-9]{1,7}$")
_SUFFIX = re.compile(r"^[a-z0-9]{4,8}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
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
class ProbeSettings:
    """Liveness or readiness probe timing, in seconds."""

    initial_delay_s: int
    period_s: int
    timeout_s: int
    failure_threshold: int
    success_threshold: int


@dataclass(frozen=True)
class OffHoursSettings:
    """A smaller instance range outside working hours (nights, and weekends if set)."""

    min_instances: int
    max_instances: int
    time_zone: str
    """Windows time zone name, as Azure Monitor autoscale takes it (`W. Europe Standard Time`)."""
    workday_start: str
    """`HH:MM` when the working-hours range starts."""
    workday_end: str
    """`HH:MM` when the off-hours range starts."""
    weekends: bool
    """Off-hours all Saturday and Sunday too."""


@dataclass(frozen=True)
class AutoscaleSettings:
    """Azure Monitor autoscale for a deployment: instance range and metric thresholds."""

    min_instances: int
    max_instances: int
    metric: str
    scale_out_above: int
    scale_in_below: int
    cooldown_minutes: int
    off_hours: OffHoursSettings | None = None


@dataclass(frozen=True)
class DeploymentSettings:
    """One pattern's deployment: SKU, instances, request handling, probes, autoscale."""

    pattern: str
    instance_type: str
    instance_count: int
    max_concurrent_requests_per_instance: int
    request_timeout_ms: int
    liveness_probe: ProbeSettings
    readiness_probe: ProbeSettings
    environment_variables: Mapping[str, str]
    autoscale: AutoscaleSettings | None
    max_new_tokens: int | None = None
    """The deployment's cap on generated tokens (SCORING_MAX_NEW_TOKENS); None: the package's."""

    @property
    def min_instances(self) -> int:
        """The floor of running instances: autoscale's minimum, else the fixed count."""
        return self.autoscale.min_instances if self.autoscale else self.instance_count


@dataclass(frozen=True)
class GateSettings:
    """The shadow stage's token-level comparison (see delivery.gate.GatePolicy)."""

    enabled: bool
    probe_texts: tuple[str, ...]
    """Empty: the built-in probe set."""
    max_mean_logprob_drop: float
    max_perplexity_ratio: float
    max_bucket_shift: float
    max_latency_ratio: float
    latency_slack_ms: int
    max_error_rate: float
    min_scored_tokens: int


@dataclass(frozen=True)
class RolloutSettings:
    """How traffic moves to a new deployment (blue/green)."""

    traffic_steps: tuple[int, ...]
    mirror_percent: int
    step_wait_s: int
    """Bake period of each intermediate step (and of the mirror phase), watching alerts."""
    keep_previous: bool
    gate: GateSettings
    final_bake_s: int = 300
    """Bake at 100% (alerts watched, previous slot still full size) before the release is done."""
    standby_instances: int = 1
    """Instances the previous slot keeps after the final bake (when `keep_previous`)."""
    release: str = "inline"
    """`inline`: `pulumi up` runs the release; `stage`: `pulumi up` declares it and
    `python -m delivery release` runs it."""


RELEASE_MODES = ("inline", "stage")


@dataclass(frozen=True)
class AssetSettings:
    """Model and environment versions to deploy, as the delivery CLI recorded them."""

    model_asset_id: str
    environment_asset_id: str


@dataclass(frozen=True)
class EndpointsSettings:
    """Managed online endpoints, one per pattern, and their deployments."""

    auth_mode: str
    public_network_access: str
    egress_public_network_access: str
    """`enabled` or `disabled` (lowercase, as azure-ai-ml takes it); create-only in Azure."""
    code_dir: str
    scoring_script: str
    deployments: tuple[DeploymentSettings, ...]
    rollout: RolloutSettings
    assets: AssetSettings | None
    """None until a model and environment are registered: endpoints without deployments."""
    model_size_gb: float | None = None
    """Weights to load; drives probe delays and the worker timeout (infra.sizing)."""


@dataclass(frozen=True)
class AlertSettings:
    """Metric alerts per deployment pattern, split by slot (`deployment` dimension)."""

    enabled: bool
    server_errors_per_minute: int
    throttled_per_minute: int
    latency_p95_ms: int | None
    """None: 80% of each deployment's request timeout."""
    window_minutes: int
    severity: int


@dataclass(frozen=True)
class DataCollectionSettings:
    """Request/response capture with Azure ML's data collector, redacted by the scoring package."""

    enabled: bool
    sampling_rate: float
    rolling_rate: str
    redact_fields: tuple[str, ...]
    """JSON field names whose values are replaced before capture (on top of pattern redaction)."""


@dataclass(frozen=True)
class MonitoringSettings:
    """Action group, alerts and data collection for the endpoints."""

    action_group_short_name: str
    emails: tuple[str, ...]
    alerts: AlertSettings
    data_collection: DataCollectionSettings


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
    endpoints: EndpointsSettings | None = None
    monitoring: MonitoringSettings | None = None

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

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self._get(name, default)
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):
            value = float(value)  # values set with `pulumi config set` arrive as strings
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ConfigError(self.path(name), value, f"a number from {lo:g} to {hi:g}")
        return float(value)

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


def _probe(
    section: _Section | None, path: str, initial_delay_s: int, failures: int
) -> ProbeSettings:
    probe = section or _Section(path, {})
    settings = ProbeSettings(
        initial_delay_s=probe.integer("initialDelaySeconds", initial_delay_s, 0, 3600),
        period_s=probe.integer("periodSeconds", 10, 1, 600),
        timeout_s=probe.integer("timeoutSeconds", 2, 1, 600),
        failure_threshold=probe.integer("failureThreshold", failures, 1, 100),
        success_threshold=probe.integer("successThreshold", 1, 1, 10),
    )
    probe.done()
    return settings


def _autoscale(section: _Section | None) -> AutoscaleSettings | None:
    if section is None or not section.flag("enabled", True):
        return None
    autoscale = AutoscaleSettings(
        min_instances=section.integer("minInstances", 1, 1, 20),
        max_instances=section.integer("maxInstances", 2, 1, 20),
        metric=section.text("metric", "CpuUtilizationPercentage", choices=AUTOSCALE_METRICS),
        scale_out_above=section.integer("scaleOutAbove", 70, 1, 100),
        scale_in_below=section.integer("scaleInBelow", 25, 0, 99),
        # GPU instances take minutes to provision; a short cooldown would overshoot.
        cooldown_minutes=section.integer("cooldownMinutes", 15, 1, 1440),
        off_hours=_off_hours(section.section("offHours")),
    )
    if autoscale.max_instances < autoscale.min_instances:
        raise ConfigError(
            section.path("maxInstances"),
            autoscale.max_instances,
            f"at least minInstances ({autoscale.min_instances})",
        )
    off = autoscale.off_hours
    if off is not None and off.max_instances > autoscale.max_instances:
        raise ConfigError(
            section.path("offHours.maxInstances"),
            off.max_instances,
            f"at most maxInstances ({autoscale.max_instances}): off-hours only scale down",
        )
    if autoscale.scale_in_below >= autoscale.scale_out_above:
        raise ConfigError(
            section.path("scaleInBelow"),
            autoscale.scale_in_below,
            f"below scaleOutAbove ({autoscale.scale_out_above})",
        )
    section.done()
    return autoscale


def _off_hours(section: _Section | None) -> OffHoursSettings | None:
    if section is None or not section.flag("enabled", True):
        return None
    hhmm = {"pattern": _HHMM, "describe": "a 24-hour time such as '07:00'"}
    off = OffHoursSettings(
        # Managed online deployments cannot scale to zero.
        min_instances=section.integer("minInstances", 1, 1, 20),
        max_instances=section.integer("maxInstances", 1, 1, 20),
        time_zone=section.text("timeZone", "UTC"),
        workday_start=section.text("workdayStart", "07:00", **hhmm),
        workday_end=section.text("workdayEnd", "19:00", **hhmm),
        weekends=section.flag("weekends", True),
    )
    if off.workday_end <= off.workday_start:
        raise ConfigError(
            section.path("workdayEnd"),
            off.workday_end,
            f"later than workdayStart {off.workday_start}",
        )
    if off.max_instances < off.min_instances:
        raise ConfigError(
            section.path("maxInstances"),
            off.max_instances,
            f"at least minInstances ({off.min_instances})",
        )
    section.done()
    return off


def _derived_limits(
    section: _Section, model_size_gb: float | None
) -> tuple[int, int | None, dict[str, str]]:
    """Request timeout, max new tokens and server env vars from the model size and token budget."""
    max_new = section.integer("maxNewTokens", 0, 0, 32768) or None
    rate = section.integer("minTokensPerSecond", 0, 0, 10000) or None
    derived_timeout = 90_000
    if max_new and rate:
        derived_timeout = sizing.request_timeout_ms(max_new, rate)
        if derived_timeout > sizing.MAX_REQUEST_TIMEOUT_MS:
            raise ConfigError(
                section.path("maxNewTokens"),
                max_new,
                f"at most {(sizing.MAX_REQUEST_TIMEOUT_MS // 1000 - 10) * rate} at "
                f"minTokensPerSecond {rate} (the endpoint cuts requests at 180 s)",
            )
    # The managed endpoint maximum is 180 s.
    timeout = section.integer("requestTimeoutMs", derived_timeout, 1_000, 180_000)
    env = {"SCORING_REQUEST_TIMEOUT_S": f"{sizing.scoring_deadline_s(timeout):g}"}
    if max_new:
        env["SCORING_MAX_NEW_TOKENS"] = str(max_new)
    if model_size_gb is not None:
        env["WORKER_TIMEOUT"] = str(sizing.startup_budget(model_size_gb).worker_timeout_s)
    return timeout, max_new, env


def _deployment(
    pattern: str, section: _Section, model_size_gb: float | None = None
) -> DeploymentSettings:
    env = section.section("environmentVariables")
    variables = dict(env.raw) if env is not None else {}
    for key, value in variables.items():
        if not isinstance(value, str) or key == "SCORING_PATTERNS":
            raise ConfigError(
                f"{section.path('environmentVariables')}.{key}",
                value,
                "string values; SCORING_PATTERNS is set from the pattern name",
            )
    timeout, max_new, derived_env = _derived_limits(section, model_size_gb)
    # LLM containers load weights before answering; probes must wait for that.
    delay = (
        600 if model_size_gb is None else sizing.startup_budget(model_size_gb).probe_initial_delay_s
    )
    concurrency = section.integer("maxConcurrentRequestsPerInstance", 1, 1, 1000)
    derived_env = {**sizing.server_concurrency(concurrency), **derived_env}
    deployment = DeploymentSettings(
        pattern=pattern,
        instance_type=section.text("instanceType"),
        instance_count=section.integer("instanceCount", 1, 1, 20),
        max_concurrent_requests_per_instance=concurrency,
        request_timeout_ms=timeout,
        liveness_probe=_probe(
            section.section("livenessProbe"), section.path("livenessProbe"), delay, 30
        ),
        readiness_probe=_probe(
            section.section("readinessProbe"), section.path("readinessProbe"), delay, 3
        ),
        # Explicit variables win over the derived ones.
        environment_variables={**derived_env, **variables},
        autoscale=_autoscale(section.section("autoscale")),
        max_new_tokens=max_new,
    )
    scale = deployment.autoscale
    if scale and not scale.min_instances <= deployment.instance_count <= scale.max_instances:
        raise ConfigError(
            section.path("instanceCount"),
            deployment.instance_count,
            f"within autoscale {scale.min_instances}..{scale.max_instances}",
        )
    section.done()
    return deployment


def _rollout(section: _Section | None, path: str) -> RolloutSettings:
    rollout = section or _Section(path, {})
    steps = rollout.items("trafficSteps") or [10, 100]
    if (
        not all(isinstance(x, int) and not isinstance(x, bool) for x in steps)
        or steps != sorted(set(steps))
        or steps[0] <= 0
        or steps[-1] != 100
    ):
        raise ConfigError(
            rollout.path("trafficSteps"),
            steps,
            "percentages rising strictly from above 0 to 100, e.g. [10, 100]",
        )
    settings = RolloutSettings(
        traffic_steps=tuple(steps),
        mirror_percent=rollout.integer("mirrorPercent", 0, 0, 50),
        step_wait_s=rollout.integer("stepWaitSeconds", 300, 0, 86400),
        keep_previous=rollout.flag("keepPrevious", True),
        gate=_gate(rollout.section("gate") or _Section(rollout.path("gate"), {})),
        final_bake_s=rollout.integer("finalBakeSeconds", 300, 0, 86400),
        standby_instances=rollout.integer("standbyInstances", 1, 1, 100),
        release=rollout.text("release", "inline", choices=RELEASE_MODES),
    )
    rollout.done()
    return settings


def _gate(section: _Section) -> GateSettings:
    texts = section.items("probeTexts")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise ConfigError(section.path("probeTexts"), texts, "a list of non-empty strings")
    gate = GateSettings(
        enabled=section.flag("enabled", True),
        probe_texts=tuple(texts),
        max_mean_logprob_drop=section.number("maxMeanLogprobDrop", 0.10, 0.0, 10.0),
        max_perplexity_ratio=section.number("maxPerplexityRatio", 1.25, 1.0, 100.0),
        max_bucket_shift=section.number("maxBucketShift", 0.10, 0.0, 1.0),
        max_latency_ratio=section.number("maxLatencyRatio", 1.5, 1.0, 100.0),
        latency_slack_ms=section.integer("latencySlackMs", 50, 0, 60_000),
        max_error_rate=section.number("maxErrorRate", 0.0, 0.0, 1.0),
        min_scored_tokens=section.integer("minScoredTokens", 50, 1, 1_000_000),
    )
    section.done()
    return gate


def _assets(model: Any, environment: Any) -> AssetSettings | None:
    if model is None and environment is None:
        return None
    m = _Section(f"{DELIVERY_NAMESPACE}:model", model)
    e = _Section(f"{DELIVERY_NAMESPACE}:environment", environment)
    name, version = m.text("name"), m.text("version")
    m.text("contentHash")  # checked against the version by the delivery CLI that writes it
    registry = m.text("registry", None)
    model_id = (
        f"azureml://registries/{registry}/models/{name}/versions/{version}"
        if registry
        else f"azureml:{name}:{version}"
    )
    env_id = f"azureml:{e.text('name')}:{e.text('version')}"
    m.done()
    e.done()
    return AssetSettings(model_asset_id=model_id, environment_asset_id=env_id)


def _endpoints(
    root: _Section, private: bool, delivery: Mapping[str, Any]
) -> EndpointsSettings | None:
    section = root.section("endpoints")
    if section is None:
        return None
    default_access = "Disabled" if private else "Enabled"
    auth_mode = section.text("authMode", "AADToken", choices=AUTH_MODES)
    public_access = section.text(
        "publicNetworkAccess", default_access, choices=("Enabled", "Disabled")
    )
    if private and auth_mode != "AADToken":
        raise ConfigError(
            section.path("authMode"),
            auth_mode,
            "AADToken when network.private (no keys in private stacks)",
        )
    if private and public_access != "Disabled":
        raise ConfigError(
            section.path("publicNetworkAccess"), public_access, "Disabled when network.private"
        )
    deployments = section.section("deployments", required=True)
    assert deployments is not None
    for pattern in deployments.raw:
        deployments.seen.add(pattern)
        if pattern not in PATTERNS:
            raise ConfigError(
                deployments.path(pattern),
                deployments.raw[pattern],
                "deployments keyed by pattern: " + ", ".join(PATTERNS),
            )
    size = section.number("modelSizeGb", 0.0, 0.0, 2000.0) or None
    parsed = tuple(
        _deployment(p, _Section(deployments.path(p), deployments.raw[p]), size)
        for p in deployments.raw
    )
    if not parsed:
        raise ConfigError(section.path("deployments"), {}, "at least one of " + ", ".join(PATTERNS))
    endpoints = EndpointsSettings(
        auth_mode=auth_mode,
        public_network_access=public_access,
        egress_public_network_access=section.text(
            "egressPublicNetworkAccess", default_access.lower(), choices=("enabled", "disabled")
        ),
        code_dir=section.text("codeDir", "scoring"),
        scoring_script=section.text("scoringScript", "score.py"),
        deployments=parsed,
        rollout=_rollout(section.section("rollout"), section.path("rollout")),
        assets=_assets(delivery.get("model"), delivery.get("environment")),
        model_size_gb=size,
    )
    section.done()
    return endpoints


def _monitoring(root: _Section, tags: TagSettings) -> MonitoringSettings:
    section = root.section("monitoring") or _Section(root.path("monitoring"), {})
    group = section.section("actionGroup") or _Section(section.path("actionGroup"), {})
    # Default receiver: the owner tag, when it is a mailbox.
    emails = group.items("emails") or ([tags.owner] if _EMAIL.match(tags.owner) else [])
    for email in emails:
        if not isinstance(email, str) or not _EMAIL.match(email):
            raise ConfigError(group.path("emails"), email, "e-mail addresses")
    short_name = group.text("shortName", "byom-ops")
    if len(short_name) > 12:
        raise ConfigError(group.path("shortName"), short_name, "at most 12 characters")
    group.done()

    alerts = section.section("alerts") or _Section(section.path("alerts"), {})
    alert_settings = AlertSettings(
        enabled=alerts.flag("enabled", True),
        server_errors_per_minute=alerts.integer("serverErrorsPerMinute", 1, 1, 100_000),
        throttled_per_minute=alerts.integer("throttledPerMinute", 10, 1, 100_000),
        latency_p95_ms=alerts.integer("latencyP95Ms", 0, 0, 180_000) or None,
        window_minutes=alerts.integer("windowMinutes", 5, 1, 60),
        severity=alerts.integer("severity", 2, 0, 4),
    )
    if alert_settings.window_minutes not in ALERT_WINDOWS:
        raise ConfigError(
            alerts.path("windowMinutes"),
            alert_settings.window_minutes,
            ", ".join(map(str, ALERT_WINDOWS)),
        )
    alerts.done()

    capture = section.section("dataCollection") or _Section(section.path("dataCollection"), {})
    fields = capture.items("redactFields")
    if not all(isinstance(f, str) and f for f in fields):
        raise ConfigError(capture.path("redactFields"), fields, "a list of JSON field names")
    data_collection = DataCollectionSettings(
        # Off by default where the data is confidential: capture is then an explicit choice.
        enabled=capture.flag(
            "enabled", tags.data_classification not in PRIVATE_ONLY_CLASSIFICATIONS
        ),
        sampling_rate=capture.number("samplingRate", 0.1, 0.001, 1.0),
        rolling_rate=capture.text("rollingRate", "Hour", choices=ROLLING_RATES),
        redact_fields=tuple(fields),
    )
    capture.done()
    section.done()
    return MonitoringSettings(
        action_group_short_name=short_name,
        emails=tuple(emails),
        alerts=alert_settings,
        data_collection=data_collection,
    )


def parse_settings(
    values: Mapping[str, Any],
    *,
    stack: str,
    organization: str = "",
    project: str = PROJECT,
    delivery: Mapping[str, Any] | None = None,
) -> StackSettings:
    """Validate raw config values (top-level keys without the project prefix) into settings.

    `delivery` holds the `byom:model` and `byom:environment` blocks (keys `model`, `environment`).
    """
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
        endpoints=_endpoints(root, network.private, delivery or {}),
        monitoring=_monitoring(root, tags),
    )
    # Read and validated by infra.release_runner (the release runner of a private stack).
    root.seen.add("releaseRunner")
    root.done()
    # Fail here, not halfway through a deployment, when a name cannot be built.
    for kind in Kind:
        if kind.value.abbreviation:
            settings.namer.name(kind)
    return settings


_OBJECT_KEYS = ("tags", "network", "workspace", "identity", "compute", "endpoints", "monitoring")
_DELIVERY_KEYS = ("model", "environment")
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
    delivery_config = pulumi.Config(DELIVERY_NAMESPACE)
    delivery: dict[str, Any] = {}
    for key in _DELIVERY_KEYS:
        try:
            delivery[key] = delivery_config.get_object(key)
        except (json.JSONDecodeError, pulumi.ConfigTypeError):
            raise ConfigError(
                f"{DELIVERY_NAMESPACE}:{key}", delivery_config.get(key), "a YAML mapping"
            ) from None
    return parse_settings(
        {k: v for k, v in values.items() if v is not None},
        stack=pulumi.get_stack(),
        organization=pulumi.get_organization(),
        project=config.name,
        delivery={k: v for k, v in delivery.items() if v is not None},
    )
