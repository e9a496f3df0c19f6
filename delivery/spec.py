"""What a rollout deploys and how: plain, frozen values that Pulumi carries as inputs.

`DeploymentSpec` is one slot's deployment (model, environment, SKU, probes, data collection);
`RolloutPolicy` is how traffic reaches it (shadow gate, mirror, steps, bake, watched alerts).
Both round-trip through `to_props`/`from_props`, the shape the dynamic provider stores. Nothing
here imports azure-ai-ml: `delivery.workspace.deployment_entity` builds the Azure entities.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from delivery.fields import (
    SPEC_CONFIG,
    Flag,
    NotInStackFile,
    Spec,
    check,
    invalid,
    number,
    one_of,
    whole,
)
from delivery.gate import GatePolicy
from delivery.smoke import smoke_case

TAG_FINGERPRINT = "byom-fingerprint"
TAG_MODEL = "byom-model"
TAG_ENVIRONMENT = "byom-environment"
TAG_PATTERN = "byom-pattern"
SERVERS = ("azmlinfsrv", "openai")


# The managed endpoint's request timeout range and default (ms), and where the scoring code lives.
REQUEST_TIMEOUT_MS = (1_000, 180_000)
DEFAULT_REQUEST_TIMEOUT_MS = 90_000
RequestTimeoutMs = whole(*REQUEST_TIMEOUT_MS)
# A deployment's own egress flag, lowercase as azure-ai-ml takes it.
EgressAccess = one_of("enabled", "disabled")
DEFAULT_CODE_DIR = "scoring"
DEFAULT_SCORING_SCRIPT = "score.py"
ROLLING_RATES = ("Minute", "Hour", "Day")
SamplingRate = number(0.001, 1.0)
# How long probes wait for a replica to start (s): the range, and the wait for a model of unknown
# size (infra.sizing derives it from the size otherwise).
PROBE_INITIAL_DELAY_S = (0, 3600)
DEFAULT_PROBE_INITIAL_DELAY_S = 600


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class ProbeSpec(Spec):
    """Liveness/readiness probe timing, in seconds (LLMs need a long initial delay)."""

    initial_delay_s: whole(*PROBE_INITIAL_DELAY_S) = Field(
        DEFAULT_PROBE_INITIAL_DELAY_S, alias="initialDelaySeconds"
    )
    period_s: whole(1, 600) = Field(10, alias="periodSeconds")
    timeout_s: whole(1, 600) = Field(2, alias="timeoutSeconds")
    failure_threshold: whole(1, 100) = 30
    success_threshold: whole(1, 10) = 1


# LLM containers load weights before answering; probes wait for that (initial delay). Once up,
# readiness fails fast (3 misses take the replica out of rotation), while liveness allows a long
# stall, a long generation, before a restart (ProbeSpec's own failure threshold).
READINESS_PROBE = ProbeSpec(failure_threshold=3)


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class DataCollectionSpec(Spec):
    """Azure ML data collector (custom logging): which collections, sampled how often.

    The scoring package logs redacted requests to `model_inputs` and responses to
    `model_outputs`; the collector writes them to the workspace's blob store.
    """

    enabled: Flag = False
    sampling_rate: SamplingRate = 1.0
    rolling_rate: one_of(*ROLLING_RATES) = "Hour"
    collections: NotInStackFile[tuple[str, ...]] = ("model_inputs", "model_outputs")


@dataclass(frozen=True)
class DeploymentSpec:
    """What one deployment runs and on what; plain values, so Pulumi can carry it as inputs."""

    pattern: str
    model: str
    environment: str
    instance_type: str
    instance_count: int = 1
    code_dir: str = DEFAULT_CODE_DIR
    scoring_script: str = DEFAULT_SCORING_SCRIPT
    code_hash: str = ""
    max_concurrent_requests_per_instance: int = 1
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    liveness_probe: ProbeSpec = field(default_factory=ProbeSpec)
    readiness_probe: ProbeSpec = field(default_factory=lambda: READINESS_PROBE)
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    egress_public_network_access: str | None = "disabled"
    """None: not sent (a workspace managed network governs egress; the flag no longer applies)."""
    app_insights_enabled: bool = True
    data_collection: DataCollectionSpec = field(default_factory=DataCollectionSpec)
    # azmlinfsrv: Azure ML's inference server runs `scoring_script` from the code asset;
    # openai: the environment is the OpenAI-compatible server's image (custom container with
    # inference_config), which carries its code, so the deployment has no code configuration.
    server: str = "azmlinfsrv"

    def __post_init__(self) -> None:
        smoke_case(self.pattern)  # an unknown pattern fails here, not after a GPU deployment
        if self.server not in SERVERS:
            raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {self.server!r}")
        if self.instance_count < 1:
            raise ValueError(f"instance_count must be >= 1, got {self.instance_count}")
        if self.egress_public_network_access is not None:
            check(EgressAccess, "egress_public_network_access", self.egress_public_network_access)
        check(RequestTimeoutMs, "request_timeout_ms", self.request_timeout_ms)

    def fingerprint(self) -> str:
        """A hash of everything that needs a new deployment; instance count is left out because
        capacity changes in place (and autoscale may own it)."""
        props = self.to_props()
        for key in ("instance_count", "code_dir"):
            props.pop(key)
        if self.data_collection == DataCollectionSpec():
            # Added later: left out at its default so existing slots keep their fingerprint.
            props.pop("data_collection")
        if self.server == "azmlinfsrv":
            props.pop("server")  # likewise
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

    def tags(self) -> dict[str, str]:
        """Tags a deployment of this spec carries: what it runs, and the fingerprint."""
        return {
            TAG_FINGERPRINT: self.fingerprint(),
            TAG_MODEL: self.model,
            TAG_ENVIRONMENT: self.environment,
            TAG_PATTERN: self.pattern,
        }


# What a release does besides waiting: the shadow gate's probe requests, traffic and autoscale
# updates, smoke requests, scaling the standby down (each a few ARM calls or requests).
RELEASE_OVERHEAD_S = 900.0


def _traffic_steps(value: Any) -> tuple[int, ...]:
    steps = list(value) if isinstance(value, list | tuple) else value
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in steps)
        or steps != sorted(set(steps))
        or steps[0] <= 0
        or steps[-1] != 100
    ):
        raise invalid("percentages rising strictly from above 0 to 100, e.g. [10, 100]")
    return tuple(steps)


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class RolloutPolicy(Spec):
    """How traffic moves to a new deployment (blue/green)."""

    traffic_steps: Annotated[tuple[int, ...], BeforeValidator(_traffic_steps)] = (10, 100)
    # > 0: first copy this share of live traffic to the new deployment (responses discarded);
    # the service mirrors at most 50%.
    mirror_percent: whole(0, 50) = 0
    # time at each intermediate step (and the mirror phase) before the re-check and the next step
    step_wait_s: number(0, 86400) = Field(300.0, alias="stepWaitSeconds")
    ready_timeout_s: NotInStackFile[float] = 3600.0
    poll_interval_s: NotInStackFile[float] = 15.0
    # after 100%: bake this long while watching alerts before the release counts as done
    # (None: the step wait); a fired alert sends all traffic back to the previous slot
    final_bake_s: number(0, 86400) | None = Field(None, alias="finalBakeSeconds")
    # keep the previous slot at 0% so `rollback` is one traffic update; after the final bake it
    # is scaled down to `standby_instances` (rollback scales it up again before moving traffic)
    keep_previous: Flag = True
    standby_instances: whole(1, 100) = 1
    # "inline": `pulumi up` runs the release; "stage": `pulumi up` declares it and
    # `python -m delivery release` runs it, outside the platform stack's lock
    release: one_of("inline", "stage") = "inline"
    # autoscale owns instance counts: never scale an already-live deployment in place
    autoscale: NotInStackFile[bool] = False
    # shadow stage: compare the new slot with the live one on probe texts before any traffic
    gate: GatePolicy = Field(default_factory=lambda: GatePolicy(enabled=False))
    # metric alert rules (names) watched while each step bakes; one firing rolls back
    watch_alerts: NotInStackFile[tuple[str, ...]] = ()

    @property
    def final_bake(self) -> float:
        """Seconds of the final bake at 100%."""
        return self.step_wait_s if self.final_bake_s is None else self.final_bake_s

    @property
    def longest_release_s(self) -> float:
        """The longest one release of one deployment may take: provisioning up to the ready
        timeout, the mirror bake, a bake per intermediate step and the final bake, plus
        `RELEASE_OVERHEAD_S`. A job running releases must outlast this, or its timeout kills a
        release that was going well."""
        bakes = (len(self.traffic_steps) - 1 + (self.mirror_percent > 0)) * self.step_wait_s
        return self.ready_timeout_s + bakes + self.final_bake + RELEASE_OVERHEAD_S

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
        if "traffic_steps" in values:
            values["traffic_steps"] = tuple(int(s) for s in values["traffic_steps"])
        for key in ("mirror_percent", "standby_instances"):
            if key in values:
                values[key] = int(values[key])
        if values.get("gate") is not None:
            values["gate"] = GatePolicy.from_props(values["gate"])
        values["watch_alerts"] = tuple(values.get("watch_alerts") or ())
        return cls(**values)
