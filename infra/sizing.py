"""Cold start and timeouts derived from the model's size and a deployment's token budget.

A large model takes minutes to download and load; a long generation takes minutes to decode. The
defaults of Azure (probes after 10 s), gunicorn (worker killed after 300 s silent, which includes
`init()`) and the endpoint (5 s request timeout) kill both. These pure functions turn three facts
from stack config into the numbers that let them finish:

- `modelSizeGb` (endpoints): weights to download from storage and load onto the GPU;
- `maxNewTokens` and `minTokensPerSecond` (deployment): the longest generation and the slowest
  per-request decode rate at full batch on that SKU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator

from delivery.fields import invalid
from delivery.spec import (
    DEFAULT_PROBE_INITIAL_DELAY_S,
    DEFAULT_REQUEST_TIMEOUT_MS,
    PROBE_INITIAL_DELAY_S,
)
from scoring.settings import ScoringSettings

if TYPE_CHECKING:
    from infra.config_endpoints import DeploymentSettings

# Download from workspace storage plus load to GPU, per GB of safetensors, measured loosely on
# A100/T4 SKUs (weights mount over blobfuse): a conservative figure, not a benchmark.
LOAD_SECONDS_PER_GB = 20
# Container start, imports, CUDA context and the warm-up generation in init().
STARTUP_BASE_SECONDS = 90
# vLLM's own start-up on top of that (SCORING_ENGINE=vllm, the image's default engine): spawn
# the engine-core process, profile a forward pass, torch.compile the model, allocate the KV cache.
# Measured on the demo model on this project's 2-core CPU machine: see docs/performance.md
# ("vLLM start-up"); the slowest start seen there, rounded up. Not measured on a GPU SKU.
VLLM_STARTUP_SECONDS = 270
# CPU SKUs: what the OS, the server and the engine's own buffers keep, outside weights and cache.
CPU_RUNTIME_RESERVE_GB = 4
# GPU SKUs: vLLM's default share of GPU memory (weights, activations and the KV cache).
GPU_MEMORY_UTILIZATION = 0.9
# Memory of the CPU SKUs a stack may name for a CPU deployment (Azure VM sizes, GiB).
CPU_INSTANCE_MEMORY_GB = {
    "Standard_DS2_v2": 7,
    "Standard_DS3_v2": 14,
    "Standard_DS4_v2": 28,
    "Standard_DS5_v2": 56,
    "Standard_F4s_v2": 8,
    "Standard_F8s_v2": 16,
    "Standard_F16s_v2": 32,
    "Standard_F32s_v2": 64,
    "Standard_E4s_v3": 32,
    "Standard_E8s_v3": 64,
    "Standard_E16s_v3": 128,
}
# Prompt processing and response serialisation on top of decoding.
PREFILL_MARGIN_SECONDS = 10
# The package answers 503 this long before the endpoint would cut the request with a 408.
DEADLINE_MARGIN_SECONDS = 5
GUNICORN_DEFAULT_TIMEOUT = 300


@dataclass(frozen=True)
class StartupBudget:
    """How long a replica may take to become ready, and what follows from it."""

    load_seconds: int
    """Estimated time from container start to ready (load + warm-up)."""

    @property
    def probe_initial_delay_s(self) -> int:
        """Probes start after the expected load time plus half again (slow storage, cold cache)."""
        return min(math.ceil(self.load_seconds * 1.5), PROBE_INITIAL_DELAY_S[1])

    @property
    def worker_timeout_s(self) -> int:
        """gunicorn's `--timeout` (env WORKER_TIMEOUT): init() runs inside it, so cover loading."""
        return max(GUNICORN_DEFAULT_TIMEOUT, self.load_seconds * 2)


def startup_budget(model_size_gb: float, engine: str = "vllm") -> StartupBudget:
    """The startup budget of a model of `model_size_gb` gigabytes of weights on `engine`."""
    base = STARTUP_BASE_SECONDS + (VLLM_STARTUP_SECONDS if engine == "vllm" else 0)
    return StartupBudget(math.ceil(base + model_size_gb * LOAD_SECONDS_PER_GB))


def request_timeout_ms(max_new_tokens: int, min_tokens_per_second: int) -> int:
    """The endpoint request timeout a full-length generation at the slowest rate needs."""
    seconds = max_new_tokens / min_tokens_per_second + PREFILL_MARGIN_SECONDS
    return math.ceil(seconds) * 1000


def scoring_deadline_s(request_timeout_ms: int) -> float:
    """The package's own deadline (SCORING_REQUEST_TIMEOUT_S): a little under the endpoint's."""
    return max(request_timeout_ms / 1000 - DEADLINE_MARGIN_SECONDS, 1.0)


def server_concurrency(max_concurrent_requests_per_instance: int) -> dict[str, str]:
    """Server env that matches the scoring package's batch to the endpoint's concurrency.

    The gateway lets ``2 x max_concurrent_requests_per_instance`` requests reach an instance at
    once. One worker process (one model copy per GPU) with that many threads accepts all of them:
    ``max_concurrent`` decode together, as many wait for a slot, and the gateway answers 429 past
    that. See docs/performance.md.
    """
    slots = max_concurrent_requests_per_instance
    return {
        "WORKER_COUNT": "1",
        "GUNICORN_CMD_ARGS": f"--threads {2 * slots}",
        **ScoringSettings.environment(max_batch_size=slots, max_queue=slots),
    }


def engine_memory(instance_type: str, model_size_gb: float | None) -> dict[str, str]:
    """vLLM's memory settings for one replica on `instance_type`.

    GPU: the share of GPU memory vLLM may take (weights and KV cache inside it). CPU: the KV
    cache's size, half of what the VM keeps free once the runtime and the weights are counted.
    The number of sequences it holds is SCORING_MAX_BATCH_SIZE (`server_concurrency`); the
    context is the deployment's prompt plus new-token limits (scoring.engines).
    """
    if is_gpu(instance_type):
        return ScoringSettings.environment(gpu_memory_utilization=GPU_MEMORY_UTILIZATION)
    memory = CPU_INSTANCE_MEMORY_GB.get(instance_type)
    if memory is None:
        return {}  # an unlisted CPU SKU keeps the package default (SCORING_KV_CACHE_GIB)
    free = memory - CPU_RUNTIME_RESERVE_GB - (model_size_gb or 0.0)
    return ScoringSettings.environment(kv_cache_gib=max(1, math.floor(free / 2)))


def derived_request_timeout_ms(
    max_new_tokens: int | None, min_tokens_per_second: int | None
) -> int:
    """The request timeout when the stack sets none: the slowest full generation, else 90 s."""
    if max_new_tokens and min_tokens_per_second:
        return request_timeout_ms(max_new_tokens, min_tokens_per_second)
    return DEFAULT_REQUEST_TIMEOUT_MS


def probe_initial_delay_s(model_size_gb: float | None) -> int:
    """When probes start: after the load estimate, or 10 minutes when the size is unknown.

    The estimate assumes the image's default engine (vLLM, the slowest to start), whichever
    engine a deployment pins: probes are set per endpoint, before the deployments are read.
    """
    if model_size_gb is None:
        return DEFAULT_PROBE_INITIAL_DELAY_S
    return startup_budget(model_size_gb).probe_initial_delay_s


def server_env(
    max_concurrent_requests_per_instance: int,
    request_timeout_ms: int,
    max_new_tokens: int | None,
    model_size_gb: float | None,
    instance_type: str = "",
    engine: str = "vllm",
) -> dict[str, str]:
    """Server env vars derived from concurrency, timeout, token budget, model size and SKU."""
    env = server_concurrency(max_concurrent_requests_per_instance)
    env.update(engine_memory(instance_type, model_size_gb))
    env.update(
        ScoringSettings.environment(
            request_timeout_s=scoring_deadline_s(request_timeout_ms),
            max_new_tokens=max_new_tokens or None,  # 0 or None: the package's own cap
        )
    )
    if model_size_gb is not None:
        env["WORKER_TIMEOUT"] = str(startup_budget(model_size_gb, engine).worker_timeout_s)
    return env


# Set by the program from the deployment's pattern (plus analyze for the gate), never by hand.
PROGRAM_SET = (ScoringSettings.env_name("patterns"),)


def stack_variables(raw: Any) -> Any:
    """A deployment's `environmentVariables` as a stack file may write them: string values, and
    a scoring package variable only where its settings know the name and accept the value."""
    for name, value in raw.items() if isinstance(raw, Mapping) else ():
        if not isinstance(value, str):
            raise invalid("string values", str(name), value)
        if name in PROGRAM_SET:
            raise invalid("leaving it out: the program sets it from the pattern name", name, value)
        if problem := ScoringSettings.variable_problem(name, value):
            raise invalid(problem, name, value)
    return raw


StackVariables = Annotated[dict[str, str], BeforeValidator(stack_variables)]


def resolve(
    deployment: DeploymentSettings, pattern: str, model_size_gb: float | None
) -> DeploymentSettings:
    """A deployment as parsed, with its request timeout and server variables filled in."""
    timeout = deployment.request_timeout_ms or derived_request_timeout_ms(
        deployment.max_new_tokens, deployment.min_tokens_per_second
    )
    derived = server_env(
        deployment.max_concurrent_requests_per_instance,
        timeout,
        deployment.max_new_tokens,
        model_size_gb,
        deployment.instance_type,
        # The image's default engine is vLLM; a deployment may pin another with SCORING_ENGINE.
        deployment.environment_variables.get(ScoringSettings.env_name("engine"), "vllm"),
    )
    resolved = deployment.model_copy(
        update={
            "request_timeout_ms": timeout,
            # Explicit variables win over the derived ones.
            "environment_variables": {**derived, **deployment.environment_variables},
        }
    )
    resolved._pattern = pattern
    return resolved


# N-series VM families carry GPUs (NC: compute, ND: deep learning, NV: visualisation).
_GPU_FAMILIES = ("NC", "ND", "NV")


def is_gpu(instance_type: str) -> bool:
    """Whether a managed online endpoint instance type has GPUs (`Standard_NC24ads_A100_v4`)."""
    family = instance_type.upper().removeprefix("STANDARD_")
    return family.startswith(_GPU_FAMILIES)
