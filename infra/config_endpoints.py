"""Stack config of the endpoints: one deployment per scoring pattern, its autoscale, the
rollout policy, and the model and environment versions (`byom:`) the deployments name.

`EndpointsSettings` is `azureml-byom:endpoints`; `DeliveryRecords` is the `byom` namespace the
delivery CLI writes. Unset limits (timeouts, probe delays) are resolved by `infra.sizing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PrivateAttr, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from delivery.autoscale import (
    CPU_AUTOSCALE_METRICS,
    GPU_AUTOSCALE_METRICS,
    AutoscaleSpec,
    OffHours,
)
from delivery.fields import SPEC_CONFIG, Flag, OrNone, Text, invalid, number, one_of, whole
from delivery.gate import GatePolicy
from delivery.spec import (
    DEFAULT_CODE_DIR,
    DEFAULT_SCORING_SCRIPT,
    READINESS_PROBE,
    REQUEST_TIMEOUT_MS,
    SERVERS,
    EgressAccess,
    ProbeSpec,
    RequestTimeoutMs,
    RolloutPolicy,
)
from delivery.stackconfig import DELIVERY_NAMESPACE, EnvironmentConfig, ModelConfig
from infra import sizing
from infra.config_types import ConfigError, ConfigModel, Toggle
from scoring.schemas import PATTERNS as SCORING_PATTERNS

# Request patterns the scoring package serves (its pattern table); one endpoint each.
PATTERNS = tuple(SCORING_PATTERNS)
AUTH_MODES = ("AADToken", "AMLToken", "Key")
# The keys the delivery CLI writes under `byom:`; serverEnvironment only matters to
# `server: openai`.
REQUIRED_DELIVERY_KEYS = ("model", "environment")
DELIVERY_KEYS = (*REQUIRED_DELIVERY_KEYS, "serverEnvironment")


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class OffHoursSettings(OffHours):
    """A smaller instance range outside working hours (nights, and weekends if set)."""

    enabled: Flag = True


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class AutoscaleSettings(AutoscaleSpec):
    """Azure Monitor autoscale for a deployment: instance range and metric thresholds."""

    enabled: Flag = True
    off_hours: Annotated[OffHoursSettings | None, Toggle] = None


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
    readiness_probe: ProbeSpec = Field(default_factory=lambda: READINESS_PROBE)
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
        limit_s = REQUEST_TIMEOUT_MS[1] // 1000
        if max_new and rate and sizing.request_timeout_ms(max_new, rate) > limit_s * 1000:
            allowed = (
                f"at most {(limit_s - sizing.PREFILL_MARGIN_SECONDS) * rate} at "
                f"minTokensPerSecond {rate} (the endpoint cuts requests at {limit_s} s)"
            )
            raise invalid(allowed, "maxNewTokens", max_new)
        scale = self.autoscale
        if scale is None:
            return self
        scale.check_instances("instanceCount", self.instance_count)
        # An LLM on a GPU is GPU-bound: its CPU stays low while requests queue.
        gpu = sizing.is_gpu(self.instance_type)
        metrics = GPU_AUTOSCALE_METRICS if gpu else CPU_AUTOSCALE_METRICS
        if scale.metric is not None and scale.metric not in metrics:
            allowed = f"{', '.join(metrics)} on {'GPU' if gpu else 'CPU'} {self.instance_type}"
            raise invalid(allowed, "autoscale.metric", scale.metric)
        metric = scale.metric or metrics[0]
        return self.model_copy(update={"autoscale": replace(scale, metric=metric)})


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
    # Unset probe delays follow the model size; readiness fails faster than liveness
    # (`delivery.spec.READINESS_PROBE`, else ProbeSpec's defaults).
    if not isinstance(deployment, Mapping):
        return deployment
    readiness = {"failureThreshold": READINESS_PROBE.failure_threshold}
    blocks: dict[str, dict[str, Any]] = {"livenessProbe": {}, "readinessProbe": readiness}
    probes = {
        key: {"initialDelaySeconds": delay, **defaults, **given}
        if isinstance(given := deployment.get(key) or {}, Mapping)
        else given
        for key, defaults in blocks.items()
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
    egress_public_network_access: EgressAccess | None = None
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
