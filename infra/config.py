"""Stack configuration: read once, validated, frozen.

This is the only module that calls `pulumi.Config`. `load_settings()` reads `Pulumi.<stack>.yaml`
through the Pulumi runtime; `parse_settings()` validates plain values so tests can feed it
literals. The stack file's shape is declared once, as pydantic models (camelCase keys, bounds,
allowed values, cross-field Azure rules); `stack_file_schema()` publishes it as JSON schema.
Defaults are the secure choice and live here only; stack files hold what differs. Every error
names the key, the value and what is allowed, and is raised before any resource exists.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any

import pulumi
from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from delivery.fields import (
    SPEC_CONFIG,
    Flag,
    OrNone,
    Text,
    invalid,
    items,
    number,
    one_of,
    text,
    whole,
)
from delivery.gate import GatePolicy
from delivery.spec import (
    DEFAULT_CODE_DIR,
    DEFAULT_SCORING_SCRIPT,
    SERVERS,
    DataCollectionSpec,
    ProbeSpec,
    RequestTimeoutMs,
    RolloutPolicy,
)
from delivery.stackconfig import (
    DELIVERY_NAMESPACE,
    UNCHECKED_VERSION,
    EnvironmentConfig,
    ModelConfig,
)
from infra import sizing
from infra.config_types import (
    HHMM,
    Cidr,
    ConfigError,
    ConfigModel,
    Toggle,
    file_schema,
    validate,
)
from infra.naming import Kind, Namer, unique_suffix
from scoring.schemas import PATTERNS as SCORING_PATTERNS

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
STORAGE_SKUS = ("Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS")
# Request patterns the scoring package serves (its pattern table); one endpoint each.
PATTERNS = tuple(SCORING_PATTERNS)
AUTH_MODES = ("AADToken", "AMLToken", "Key")
# Deployment metrics Azure Monitor autoscale can act on.
CPU_AUTOSCALE_METRICS = ("CpuUtilizationPercentage", "CpuMemoryUtilizationPercentage")
GPU_AUTOSCALE_METRICS = ("GpuUtilizationPercentage", "GpuMemoryUtilizationPercentage")
AUTOSCALE_METRICS = (*CPU_AUTOSCALE_METRICS, *GPU_AUTOSCALE_METRICS)
# Targets the stack may reach through private endpoints (infra.network.platform_targets).
PRIVATE_ENDPOINT_TARGETS = ("workspace", "blob", "file", "vault", "registry", "monitor")
_REGISTRY_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/"
    r"Microsoft\.MachineLearningServices/registries/[A-Za-z0-9][A-Za-z0-9_-]{2,32}$"
)
# Metric alert windows Azure accepts (minutes).
ALERT_WINDOWS = (1, 5, 15, 30, 60)
# The keys the delivery CLI writes under `byom:`; serverEnvironment only matters to
# `server: openai`.
REQUIRED_DELIVERY_KEYS = ("model", "environment")
DELIVERY_KEYS = (*REQUIRED_DELIVERY_KEYS, "serverEnvironment")

_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_FQDN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,}$")


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


class PrincipalSettings(ConfigModel):
    """An Entra ID principal (object id and type) granted roles by this stack."""

    object_id: text(_GUID, "an Entra ID object id (GUID)")
    principal_type: one_of(*PRINCIPAL_TYPES) = Field(alias="type")


class NetworkSettings(ConfigModel):
    """Private networking: one VNet whose subnet hosts the private endpoints."""

    private: Flag = True
    address_space: Cidr = "10.20.0.0/16"
    private_endpoint_subnet: Cidr = "10.20.0.0/24"
    private_endpoints: (
        Annotated[
            tuple[str, ...],
            items(lambda t: t in PRIVATE_ENDPOINT_TARGETS, ", ".join(PRIVATE_ENDPOINT_TARGETS), 1),
        ]
        | None
    ) = None
    """Targets reached through private endpoints. None as parsed: all when private, else none; a
    public stack may still use some (dev keeps the workspace's, so the private path is
    exercised before prod)."""

    @model_validator(mode="after")
    def _subnet_inside(self) -> NetworkSettings:
        space = ipaddress.IPv4Network(self.address_space)
        if not ipaddress.IPv4Network(self.private_endpoint_subnet).subnet_of(space):
            raise invalid(
                f"a subnet inside addressSpace {self.address_space}",
                "privateEndpointSubnet",
                self.private_endpoint_subnet,
            )
        return self


class WorkspaceSettings(ConfigModel):
    """The Azure ML workspace and its dependent resources."""

    sku: one_of("Basic") = "Basic"
    isolation_mode: one_of(*ISOLATION_MODES) = "AllowOnlyApprovedOutbound"
    firewall_sku: one_of("Basic", "Standard") = "Standard"
    outbound_fqdns: Annotated[
        tuple[str, ...],
        items(lambda f: isinstance(f, str) and _FQDN.match(f), "host names such as pypi.org", 1),
    ] = ()
    storage_sku: one_of(*STORAGE_SKUS) = "Standard_ZRS"
    storage_shared_key_access: Flag = False
    registry_sku: one_of("Basic", "Standard", "Premium") = "Premium"
    log_retention_days: whole(30, 730) = 30
    high_business_impact: Flag | None = None
    """Create-only. None as parsed: on where the data is confidential or restricted."""
    existing_resource_group: Text | None = None
    protect: Flag = True
    """Pulumi `protect` on stateful resources and a CanNotDelete lock on the resource group."""
    blob_soft_delete_days: whole(0, 365) = 7
    """Blob and container soft delete retention (0: off)."""
    blob_versioning: Flag = True
    key_vault_purge_protection: Flag = True
    registry_zone_redundancy: Flag | None = None
    """Create-only, Premium only. None as parsed: on for a private Premium registry."""
    registry_export: Flag | None = None
    """Whether images may be exported. None as parsed: off when private (Azure allows off only
    then)."""
    model_registries: Annotated[
        tuple[str, ...],
        items(
            lambda r: isinstance(r, str) and _REGISTRY_ID.match(r),
            "ARM ids of Azure ML registries (/subscriptions/.../registries/<name>)",
            1,
        ),
    ] = ()
    """Azure ML registries models come from: a private endpoint outbound rule each."""

    @model_validator(mode="after")
    def _fqdns_need_approved_outbound(self) -> WorkspaceSettings:
        if self.outbound_fqdns and self.isolation_mode != "AllowOnlyApprovedOutbound":
            raise invalid(
                "[] unless isolationMode is AllowOnlyApprovedOutbound",
                "outboundFqdns",
                list(self.outbound_fqdns),
            )
        return self


class IdentitySettings(ConfigModel):
    """Humans and applications that get roles on the platform."""

    data_scientists: PrincipalSettings | None = None
    deployer: PrincipalSettings | None = None
    invokers: tuple[PrincipalSettings, ...] = ()
    promoters: tuple[PrincipalSettings, ...] = ()
    """Principals that promote this stack's images into another stack's registry (ACR import
    reads the source with the caller's identity): the other stack's release runner identity."""
    invoker_role_id: (
        text(_GUID, "the GUID of the endpoint invoker role created once (docs/infrastructure.md)")
        | None
    ) = None
    """None: this stack declares the role (its deployer then needs roleDefinitions/write)."""


class ComputeInstanceSettings(ConfigModel):
    """A personal notebook VM."""

    enabled: Flag = True
    vm_size: Text = "Standard_DS3_v2"
    assigned_user_object_id: text(_GUID, "the notebook user's Entra ID object id")
    # Azure accepts 15 minutes to 3 days.
    idle_shutdown_minutes: whole(15, 3 * 24 * 60) = 30
    nightly_stop_cron: (
        text(r"^(\S+\s+){4}\S+$", "a 5-field cron expression such as '0 20 * * *'") | None
    ) = None
    time_zone: Text = "UTC"


class ClusterSettings(ConfigModel):
    """A training/batch cluster that scales to zero."""

    enabled: Flag = True
    vm_size: Text = "Standard_DS3_v2"
    max_nodes: whole(1, 100) = 2
    vm_priority: one_of("Dedicated", "LowPriority") = "Dedicated"
    idle_seconds_before_scale_down: whole(60, 86400) = 120


class ComputeSettings(ConfigModel):
    """Optional compute instance and cluster."""

    instance: Annotated[ComputeInstanceSettings | None, Toggle] = None
    cluster: Annotated[ClusterSettings | None, Toggle] = None


class OffHoursSettings(ConfigModel):
    """A smaller instance range outside working hours (nights, and weekends if set)."""

    enabled: Flag = True
    # Managed online deployments cannot scale to zero.
    min_instances: whole(1, 20) = 1
    max_instances: whole(1, 20) = 1
    time_zone: Text = "UTC"
    """Windows time zone name, as Azure Monitor autoscale takes it (`W. Europe Standard Time`)."""
    workday_start: HHMM = "07:00"
    """`HH:MM` when the working-hours range starts."""
    workday_end: HHMM = "19:00"
    """`HH:MM` when the off-hours range starts."""
    weekends: Flag = True
    """Off-hours all Saturday and Sunday too."""

    @model_validator(mode="after")
    def _ordered(self) -> OffHoursSettings:
        if self.workday_end <= self.workday_start:
            raise invalid(
                f"later than workdayStart {self.workday_start}", "workdayEnd", self.workday_end
            )
        if self.max_instances < self.min_instances:
            raise invalid(
                f"at least minInstances ({self.min_instances})", "maxInstances", self.max_instances
            )
        return self


class AutoscaleSettings(ConfigModel):
    """Azure Monitor autoscale for a deployment: instance range and metric thresholds."""

    enabled: Flag = True
    min_instances: whole(1, 20) = 1
    max_instances: whole(1, 20) = 2
    metric: one_of(*AUTOSCALE_METRICS) | None = None
    """None as parsed: GpuUtilizationPercentage on GPU instance types, else CPU utilisation."""
    scale_out_above: whole(1, 100) = 70
    scale_in_below: whole(0, 99) = 25
    # GPU instances take minutes to provision; a short cooldown would overshoot.
    cooldown_minutes: whole(1, 1440) = 15
    off_hours: Annotated[OffHoursSettings | None, Toggle] = None

    @model_validator(mode="after")
    def _ranges(self) -> AutoscaleSettings:
        hi, lo = self.max_instances, self.min_instances
        if hi < lo:
            raise invalid(f"at least minInstances ({lo})", "maxInstances", hi)
        off = self.off_hours
        if off is not None and off.max_instances > hi:
            allowed = f"at most maxInstances ({hi}): off-hours only scale down"
            raise invalid(allowed, "offHours.maxInstances", off.max_instances)
        if self.scale_in_below >= self.scale_out_above:
            allowed = f"below scaleOutAbove ({self.scale_out_above})"
            raise invalid(allowed, "scaleInBelow", self.scale_in_below)
        return self


class DeploymentSettings(ConfigModel):
    """One pattern's deployment: SKU, instances, request handling, probes, autoscale.

    As parsed, unset timeouts, probe delays and server variables are None or absent; the
    endpoints block resolves them from the model size and token budget (`infra.sizing`).
    """

    instance_type: Text
    instance_count: whole(1, 20) = 1
    max_concurrent_requests_per_instance: whole(1, 1000) = 1
    max_new_tokens: Annotated[whole(0, 32768), OrNone] = None
    """The deployment's cap on generated tokens (SCORING_MAX_NEW_TOKENS); None: the package's."""
    min_tokens_per_second: Annotated[whole(0, 10000), OrNone] = None
    # The managed endpoint maximum is 180 s.
    request_timeout_ms: RequestTimeoutMs | None = None
    liveness_probe: ProbeSpec = Field(default_factory=ProbeSpec)
    readiness_probe: ProbeSpec = Field(default_factory=ProbeSpec)
    environment_variables: sizing.StackVariables = Field(default_factory=dict)
    autoscale: Annotated[AutoscaleSettings | None, Toggle] = None
    server: one_of(*SERVERS) = "azmlinfsrv"
    """azmlinfsrv: Azure ML's inference server runs score.py (POST /score); openai: the
    OpenAI-compatible custom container (byom:serverEnvironment) with /v1/... and /score."""
    _pattern: str = PrivateAttr("")

    @property
    def pattern(self) -> str:
        """The scoring pattern this deployment serves (its key under `deployments`)."""
        return self._pattern

    @property
    def min_instances(self) -> int:
        """The floor of running instances: autoscale's minimum, else the fixed count."""
        return self.autoscale.min_instances if self.autoscale else self.instance_count

    @model_validator(mode="after")
    def _fits(self) -> DeploymentSettings:
        max_new, rate = self.max_new_tokens, self.min_tokens_per_second
        if (
            max_new
            and rate
            and sizing.request_timeout_ms(max_new, rate) > sizing.MAX_REQUEST_TIMEOUT_MS
        ):
            allowed = (
                f"at most {(sizing.MAX_REQUEST_TIMEOUT_MS // 1000 - 10) * rate} at "
                f"minTokensPerSecond {rate} (the endpoint cuts requests at 180 s)"
            )
            raise invalid(allowed, "maxNewTokens", max_new)
        scale = self.autoscale
        if scale and not scale.min_instances <= self.instance_count <= scale.max_instances:
            allowed = f"within autoscale {scale.min_instances}..{scale.max_instances}"
            raise invalid(allowed, "instanceCount", self.instance_count)
        if scale is None:
            return self
        # An LLM on a GPU is GPU-bound: its CPU stays low while requests queue.
        gpu = sizing.is_gpu(self.instance_type)
        metrics = GPU_AUTOSCALE_METRICS if gpu else CPU_AUTOSCALE_METRICS
        if scale.metric is not None and scale.metric not in metrics:
            allowed = f"{', '.join(metrics)} on {'GPU' if gpu else 'CPU'} {self.instance_type}"
            raise invalid(allowed, "autoscale.metric", scale.metric)
        metric = scale.metric or metrics[0]
        return self.model_copy(update={"autoscale": scale.model_copy(update={"metric": metric})})


class DeliveryRecords(ConfigModel):
    """The `byom` namespace: model and environment versions to deploy."""

    model: ModelConfig
    environment: EnvironmentConfig
    server_environment: EnvironmentConfig | None = None
    """`byom:serverEnvironment`: the OpenAI-compatible server's image, for `server: openai`."""

    @property
    def model_asset_id(self) -> str:
        """The model reference a deployment names (registry or workspace asset)."""
        return self.model.asset_id

    @property
    def environment_asset_id(self) -> str:
        """The environment reference a deployment names."""
        return self.environment.asset_id

    def environment_for(self, server: str) -> str:
        """The environment a deployment with this server runs: the conda environment for
        Azure ML's inference server, the server image for the OpenAI-compatible container."""
        if server == "azmlinfsrv":
            return self.environment_asset_id
        image = self.server_environment
        if image is None:
            allowed = "registered by `python -m delivery register` (needed by server: openai)"
            raise ConfigError(f"{DELIVERY_NAMESPACE}:serverEnvironment", None, allowed)
        return f"azureml:{image.name}:{image.version}"


def _size_gb(raw: Any) -> float | None:
    try:
        return float(raw) or None
    except (TypeError, ValueError):
        return None  # reported by the field's own check


def _probe_defaults(deployment: Any, delay: int) -> Any:
    # LLM containers load weights before answering; probes must wait for that. Readiness fails
    # fast once up; liveness allows a long stall (a long generation) before a restart.
    if not isinstance(deployment, Mapping):
        return deployment
    blocks = {"livenessProbe": 30, "readinessProbe": 3}
    probes = {
        key: {"initialDelaySeconds": delay, "failureThreshold": failures, **given}
        if isinstance(given := deployment.get(key) or {}, Mapping)
        else given
        for key, failures in blocks.items()
    }
    return {**deployment, **probes}


def _check_patterns(raw: Any) -> Any:
    if isinstance(raw, Mapping):
        for pattern, value in raw.items():
            if pattern not in PATTERNS:
                raise invalid(
                    "deployments keyed by pattern: " + ", ".join(PATTERNS), pattern, value
                )
        if not raw:
            raise invalid("at least one of " + ", ".join(PATTERNS), value={})
    return raw


class EndpointsSettings(ConfigModel):
    """Managed online endpoints, one per pattern, and their deployments."""

    auth_mode: one_of(*AUTH_MODES) = "AADToken"
    public_network_access: one_of("Enabled", "Disabled") | None = None
    """None as parsed: `Disabled` in private stacks, else `Enabled`."""
    egress_public_network_access: one_of("enabled", "disabled") | None = None
    """`enabled` or `disabled` (lowercase, as azure-ai-ml takes it); create-only in Azure."""
    code_dir: Text = DEFAULT_CODE_DIR
    scoring_script: Text = DEFAULT_SCORING_SCRIPT
    model_size_gb: Annotated[number(0.0, 2000.0), OrNone] = None
    """Weights to load; drives probe delays and the worker timeout (infra.sizing)."""
    by_pattern: Annotated[dict[str, DeploymentSettings], BeforeValidator(_check_patterns)] = Field(
        alias="deployments"
    )
    rollout: RolloutPolicy = Field(default_factory=lambda: RolloutPolicy(gate=GatePolicy()))
    _assets: DeliveryRecords | None = PrivateAttr(None)
    _deployments: tuple[DeploymentSettings, ...] = PrivateAttr(())

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, raw: Any) -> Any:
        """Unset probe timing follows the model size; the shadow gate is on unless disabled."""
        if not isinstance(raw, Mapping):
            return raw
        delay = sizing.probe_initial_delay_s(_size_gb(raw.get("modelSizeGb")))
        raw = dict(raw)
        deployments = raw.get("deployments")
        if isinstance(deployments, Mapping):
            raw["deployments"] = {p: _probe_defaults(d, delay) for p, d in deployments.items()}
        rollout = raw.get("rollout") or {}
        if isinstance(rollout, Mapping):
            gate = rollout.get("gate") or {}
            if isinstance(gate, Mapping) and gate.get("probeTexts") == []:
                gate = {k: v for k, v in gate.items() if k != "probeTexts"}  # the built-in set
            raw["rollout"] = {**rollout, "gate": gate}
        return raw

    @property
    def assets(self) -> DeliveryRecords | None:
        """None until a model and environment are registered: endpoints without deployments."""
        return self._assets

    @property
    def deployments(self) -> tuple[DeploymentSettings, ...]:
        """Each pattern's deployment with its derived limits (`infra.sizing.resolve`)."""
        return self._deployments

    @model_validator(mode="after")
    def _resolve(self) -> EndpointsSettings:
        size = self.model_size_gb
        self._deployments = tuple(sizing.resolve(d, p, size) for p, d in self.by_pattern.items())
        return self


def _window(minutes: int) -> int:
    if minutes not in ALERT_WINDOWS:
        raise invalid(", ".join(map(str, ALERT_WINDOWS)))
    return minutes


def _short_name(name: str) -> str:
    if len(name) > 12:
        raise invalid("at most 12 characters")
    return name


class AlertSettings(ConfigModel):
    """Metric alerts per deployment pattern, split by slot (`deployment` dimension)."""

    enabled: Flag = True
    server_errors_per_minute: whole(1, 100_000) = 1
    throttled_per_minute: whole(1, 100_000) = 10
    latency_p95_ms: Annotated[whole(0, 180_000), OrNone] = None
    """None: 80% of each deployment's request timeout."""
    window_minutes: Annotated[whole(1, 60), AfterValidator(_window)] = 5
    severity: whole(0, 4) = 2


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class DataCollectionSettings(DataCollectionSpec):
    """Request/response capture with Azure ML's data collector, redacted by the scoring package."""

    enabled: Flag | None = None
    """None as parsed: off where the data is confidential (capture is then an explicit choice)."""
    sampling_rate: number(0.001, 1.0) = 0.1
    redact_fields: Annotated[
        tuple[str, ...], items(lambda f: isinstance(f, str) and f, "a list of JSON field names")
    ] = ()
    """JSON field names whose values are replaced before capture (on top of pattern redaction)."""


class ActionGroupSettings(ConfigModel):
    """Who is notified when an alert fires."""

    short_name: Annotated[Text, Field(max_length=12), AfterValidator(_short_name)] = "byom-ops"
    emails: Annotated[
        tuple[str, ...],
        items(lambda e: isinstance(e, str) and _EMAIL.match(e), "e-mail addresses", True),
    ] = ()
    """Empty as parsed: the owner tag, when it is a mailbox."""


class MonitoringSettings(ConfigModel):
    """Action group, alerts and data collection for the endpoints."""

    action_group: ActionGroupSettings = ActionGroupSettings()
    alerts: AlertSettings = AlertSettings()
    data_collection: DataCollectionSettings = Field(default_factory=DataCollectionSettings)

    @property
    def action_group_short_name(self) -> str:
        """Action group short name (SMS and e-mail sender, at most 12 characters)."""
        return self.action_group.short_name

    @property
    def emails(self) -> tuple[str, ...]:
        """Receivers of the action group."""
        return self.action_group.emails


class ReleaseRunnerSettings(ConfigModel):
    """`releaseRunner` (private stacks): ephemeral GitHub runners in the VNet for release jobs.

    Read by `infra.release_runner`; see docs/delivery-pipeline.md for the one-time set-up.
    """

    github_owner: Text
    github_repo: Text
    github_app_id: text(r"^\d+$", "the GitHub App's numeric id")
    github_installation_id: text(r"^\d+$", "the App installation's numeric id")
    app_key_secret_uri: text(
        r"^https://[a-z0-9-]+\.vault\.azure\.net/secrets/[A-Za-z0-9-]+",
        "https://<vault>.vault.azure.net/secrets/<name>",
    )
    """Key Vault secret holding the GitHub App's private key (read by reference, never copied)."""
    image: text(r"^[^@\s]+@sha256:[0-9a-f]{64}$", "an image pinned by digest (<repo>@sha256:...)")
    subnet: Cidr
    """Runner subnet inside `network.addressSpace`; Container Apps needs a /23 or larger."""
    max_runners: whole(1, 10) = 2
    timeout_minutes: whole(30, 1440) = 180
    """A release job's hard limit (the job's replica timeout): longer than a release's waits."""

    @model_validator(mode="after")
    def _big_enough(self) -> ReleaseRunnerSettings:
        if ipaddress.IPv4Network(self.subnet).prefixlen > 23:
            raise invalid("a /23 or larger (Container Apps environment)", "subnet", self.subnet)
        return self


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
    def public_network_access(self) -> str:
        """`Enabled` or `Disabled` for every resource that has the switch."""
        return "Disabled" if self.network.private else "Enabled"

    @model_validator(mode="after")
    def _azure_rules(self) -> StackConfig:
        private, cls = self.network.private, self.tags.data_classification
        if cls in PRIVATE_ONLY_CLASSIFICATIONS and not private:
            raise invalid(f"true when tags.dataClassification is {cls}", "network.private", False)
        ws = self.workspace
        if private and ws.isolation_mode == "Disabled":
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
        if (
            e is not None
            and ws.isolation_mode != "Disabled"
            and e.egress_public_network_access is not None
        ):
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
        if ws.model_registries and ws.isolation_mode == "Disabled":
            allowed = (
                "[] unless isolationMode is AllowInternetOutbound or AllowOnlyApprovedOutbound"
            )
            raise invalid(allowed, "workspace.modelRegistries", list(ws.model_registries))

    def _stack_defaults(self) -> StackConfig:
        """Defaults that follow from other keys: network reach, mail receivers, capture."""
        access, owner, m = self.public_network_access, self.tags.owner, self.monitoring
        private, ws = self.network.private, self.workspace
        # With a managed network the egress flag no longer applies: not sent at all.
        egress = None if ws.isolation_mode != "Disabled" else access.lower()
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
        emails = m.action_group.emails or ((owner,) if _EMAIL.match(owner) else ())
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


StackSettings = StackConfig


def parse_settings(
    values: Mapping[str, Any],
    *,
    stack: str,
    organization: str | None = "",
    project: str = PROJECT,
    delivery: Mapping[str, Any] | None = None,
    subscription_id: str = "",
) -> StackSettings:
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


def load_settings(subscription_id: str = "") -> StackSettings:
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
