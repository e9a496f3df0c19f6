"""What a rollout deploys and how: plain, frozen values that Pulumi carries as inputs.

`DeploymentSpec` is one slot's deployment (model, environment, SKU, probes, data collection);
`RolloutPolicy` is how traffic reaches it (shadow gate, mirror, steps, bake, watched alerts).
Both round-trip through `to_props`/`from_props`, the shape the dynamic provider stores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from azure.ai.ml.entities import (
    CodeConfiguration,
    DataCollector,
    DeploymentCollection,
    ManagedOnlineDeployment,
    OnlineRequestSettings,
    ProbeSettings,
)

from delivery.gate import GatePolicy
from delivery.smoke import smoke_case

TAG_FINGERPRINT = "byom-fingerprint"
TAG_MODEL = "byom-model"
TAG_ENVIRONMENT = "byom-environment"
TAG_PATTERN = "byom-pattern"


@dataclass(frozen=True)
class ProbeSpec:
    """Liveness/readiness probe timing, in seconds (LLMs need a long initial delay)."""

    initial_delay_s: int = 600
    period_s: int = 10
    timeout_s: int = 2
    failure_threshold: int = 30
    success_threshold: int = 1

    def to_settings(self) -> ProbeSettings:
        """The azure-ai-ml probe settings."""
        return ProbeSettings(
            initial_delay=self.initial_delay_s,
            period=self.period_s,
            timeout=self.timeout_s,
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
        )


ROLLING_RATES = ("Minute", "Hour", "Day")


@dataclass(frozen=True)
class DataCollectionSpec:
    """Azure ML data collector (custom logging): which collections, sampled how often.

    The scoring package logs redacted requests to `model_inputs` and responses to
    `model_outputs`; the collector writes them to the workspace's blob store.
    """

    enabled: bool = False
    sampling_rate: float = 1.0
    rolling_rate: str = "Hour"
    collections: tuple[str, ...] = ("model_inputs", "model_outputs")

    def __post_init__(self) -> None:
        if not 0 < self.sampling_rate <= 1:
            raise ValueError(f"sampling_rate must be in (0, 1], got {self.sampling_rate}")
        if self.rolling_rate not in ROLLING_RATES:
            raise ValueError(
                f"rolling_rate must be one of {', '.join(ROLLING_RATES)}, got {self.rolling_rate!r}"
            )

    def to_collector(self) -> DataCollector | None:
        """The azure-ai-ml data collector, or None (Azure disables collection when it is null)."""
        if not self.enabled:
            return None
        return DataCollector(
            collections={name: DeploymentCollection(enabled="true") for name in self.collections},
            sampling_rate=self.sampling_rate,
            rolling_rate=self.rolling_rate,
        )


@dataclass(frozen=True)
class DeploymentSpec:
    """What one deployment runs and on what; plain values, so Pulumi can carry it as inputs."""

    pattern: str
    model: str
    environment: str
    instance_type: str
    instance_count: int = 1
    code_dir: str = "scoring"
    scoring_script: str = "score.py"
    code_hash: str = ""
    max_concurrent_requests_per_instance: int = 1
    request_timeout_ms: int = 90_000
    liveness_probe: ProbeSpec = field(default_factory=ProbeSpec)
    readiness_probe: ProbeSpec = field(default_factory=lambda: ProbeSpec(failure_threshold=3))
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    egress_public_network_access: str = "disabled"
    app_insights_enabled: bool = True
    data_collection: DataCollectionSpec = field(default_factory=DataCollectionSpec)

    def __post_init__(self) -> None:
        smoke_case(self.pattern)  # an unknown pattern fails here, not after a GPU deployment
        if self.instance_count < 1:
            raise ValueError(f"instance_count must be >= 1, got {self.instance_count}")
        if self.egress_public_network_access not in ("enabled", "disabled"):
            raise ValueError(
                "egress_public_network_access must be 'enabled' or 'disabled', "
                f"got {self.egress_public_network_access!r}"
            )
        if not 1_000 <= self.request_timeout_ms <= 180_000:
            raise ValueError(
                f"request_timeout_ms must be 1000..180000 (the managed endpoint maximum), "
                f"got {self.request_timeout_ms}"
            )

    def fingerprint(self) -> str:
        """A hash of everything that needs a new deployment; instance count is left out because
        capacity changes in place (and autoscale may own it)."""
        props = self.to_props()
        for key in ("instance_count", "code_dir"):
            props.pop(key)
        if self.data_collection == DataCollectionSpec():
            # Added later: left out at its default so existing slots keep their fingerprint.
            props.pop("data_collection")
        canonical = json.dumps(props, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_props(self) -> dict[str, Any]:
        """Plain JSON-able values (for Pulumi inputs and the fingerprint)."""
        props = asdict(self)
        props["environment_variables"] = dict(self.environment_variables)
        props["data_collection"]["collections"] = list(self.data_collection.collections)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> DeploymentSpec:
        """Rebuild a spec from `to_props` output (Pulumi turns ints into floats; undo that)."""
        values = dict(props)
        for probe in ("liveness_probe", "readiness_probe"):
            if probe in values:
                values[probe] = ProbeSpec(**{k: int(v) for k, v in dict(values[probe]).items()})
        for key in ("instance_count", "max_concurrent_requests_per_instance", "request_timeout_ms"):
            if key in values:
                values[key] = int(values[key])
        values["environment_variables"] = dict(values.get("environment_variables") or {})
        if values.get("data_collection") is not None:
            collection = dict(values["data_collection"])
            collection["collections"] = tuple(collection.get("collections") or ())
            values["data_collection"] = DataCollectionSpec(**collection)
        return cls(**values)

    def to_deployment(
        self, endpoint: str, slot: str, base_dir: Path | None = None
    ) -> ManagedOnlineDeployment:
        """The azure-ai-ml deployment entity for a slot, tagged with what it runs."""
        return ManagedOnlineDeployment(
            name=slot,
            endpoint_name=endpoint,
            model=self.model,
            environment=self.environment,
            code_configuration=CodeConfiguration(
                code=str(Path(base_dir or Path.cwd(), self.code_dir)),
                scoring_script=self.scoring_script,
            ),
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            request_settings=OnlineRequestSettings(
                max_concurrent_requests_per_instance=self.max_concurrent_requests_per_instance,
                request_timeout_ms=self.request_timeout_ms,
            ),
            liveness_probe=self.liveness_probe.to_settings(),
            readiness_probe=self.readiness_probe.to_settings(),
            environment_variables=dict(self.environment_variables),
            egress_public_network_access=self.egress_public_network_access,
            app_insights_enabled=self.app_insights_enabled,
            data_collector=self.data_collection.to_collector(),
            tags={
                TAG_FINGERPRINT: self.fingerprint(),
                TAG_MODEL: self.model,
                TAG_ENVIRONMENT: self.environment,
                TAG_PATTERN: self.pattern,
            },
        )


@dataclass(frozen=True)
class RolloutPolicy:
    """How traffic moves to a new deployment."""

    traffic_steps: tuple[int, ...] = (10, 100)
    # > 0: first copy this share of live traffic to the new deployment (responses discarded)
    mirror_percent: int = 0
    # time at each intermediate step (and the mirror phase) before the re-check and the next step
    step_wait_s: float = 300.0
    ready_timeout_s: float = 3600.0
    poll_interval_s: float = 15.0
    # after 100%: bake this long while watching alerts before the release counts as done
    # (None: the step wait); a fired alert sends all traffic back to the previous slot
    final_bake_s: float | None = None
    # keep the previous slot at 0% so `rollback` is one traffic update; after the final bake it
    # is scaled down to `standby_instances` (rollback scales it up again before moving traffic)
    keep_previous: bool = True
    standby_instances: int = 1
    # autoscale owns instance counts: never scale an already-live deployment in place
    autoscale: bool = False
    # shadow stage: compare the new slot with the live one on probe texts before any traffic
    gate: GatePolicy = field(default_factory=lambda: GatePolicy(enabled=False))
    # metric alert rules (names) watched while each step bakes; one firing rolls back
    watch_alerts: tuple[str, ...] = ()
    # "inline": `pulumi up` runs the release; "stage": `pulumi up` declares it and
    # `python -m delivery release` runs it, outside the platform stack's lock
    release: str = "inline"

    def __post_init__(self) -> None:
        steps = list(self.traffic_steps)
        if not steps or steps[-1] != 100 or steps != sorted(set(steps)) or steps[0] <= 0:
            raise ValueError(
                f"traffic_steps must rise strictly from above 0 to 100, got {self.traffic_steps}"
            )
        if not 0 <= self.mirror_percent <= 50:
            raise ValueError(
                f"mirror_percent must be 0..50 (service limit), got {self.mirror_percent}"
            )
        if self.release not in ("inline", "stage"):
            raise ValueError(f"release must be 'inline' or 'stage', got {self.release!r}")
        if self.standby_instances < 1:
            raise ValueError(f"standby_instances must be >= 1, got {self.standby_instances}")

    @property
    def final_bake(self) -> float:
        """Seconds of the final bake at 100%."""
        return self.step_wait_s if self.final_bake_s is None else self.final_bake_s

    def to_props(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        props = asdict(self)
        props["traffic_steps"] = list(self.traffic_steps)
        props["gate"] = self.gate.to_props()
        props["watch_alerts"] = list(self.watch_alerts)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> RolloutPolicy:
        """Rebuild a policy from `to_props` output."""
        values = dict(props)
        values["traffic_steps"] = tuple(int(s) for s in values.get("traffic_steps", (10, 100)))
        for key in ("mirror_percent", "standby_instances"):
            if key in values:
                values[key] = int(values[key])
        if values.get("gate") is not None:
            values["gate"] = GatePolicy.from_props(values["gate"])
        values["watch_alerts"] = tuple(values.get("watch_alerts") or ())
        return cls(**values)
