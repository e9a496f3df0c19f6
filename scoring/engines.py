"""Which engine runs the model: ``SCORING_ENGINE`` read once, the model opened to suit it.

- ``vllm``: vLLM in this process (default wherever it is installed). Only the tokenizer is loaded
  here; vLLM loads the weights itself, once, for both patterns.
- ``continuous``: this project's continuous-batching loop over transformers weights, for models or
  machines vLLM does not support.
- ``serial``: plain ``generate()`` one request at a time, the baseline benchmarks compare against.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from scoring.batching import AnalysisOptions, GenerationEngine, SerialEngine
from scoring.engine import Engine
from scoring.model import LoadedModel, ModelInfo, load_model, load_model_info
from scoring.settings import ScoringSettings
from scoring.vllm_engine import VllmConfig, VllmEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenedModel:
    """The model as the service sees it (tokenizer, context, name) and the engine that runs it."""

    lm: LoadedModel | ModelInfo
    engine: Engine


def open_model(settings: ScoringSettings) -> OpenedModel:
    """Load what ``settings.engine`` needs, and nothing more, and start that engine."""
    source = settings.model_source()
    if settings.engine == "vllm":
        info = load_model_info(source, revision=settings.revision, device=settings.device)
        info = info.within(vllm_max_model_len(settings, info.context_length))
        return OpenedModel(info, VllmEngine(vllm_config(settings, info)))
    lm = load_model(source, revision=settings.revision, device=settings.device)
    return OpenedModel(lm, transformers_engine(lm, settings))


def transformers_engine(
    lm: LoadedModel, settings: ScoringSettings
) -> GenerationEngine | SerialEngine:
    """The engine for weights already loaded with transformers: ``serial`` or ``continuous``."""
    analysis = AnalysisOptions(
        chunk=settings.analysis_chunk_tokens,
        compiled=settings.compile_analysis,
        forward_tokens=settings.analysis_forward_tokens,
    )
    if settings.engine == "serial":
        return SerialEngine(lm, max_queue=settings.max_queue, analysis=analysis)
    return GenerationEngine(
        lm,
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        prefill_chunk_tokens=settings.prefill_chunk_tokens,
        analysis=analysis,
    )


def vllm_max_model_len(settings: ScoringSettings, context_length: int) -> int:
    """vLLM's context: the longest request this deployment accepts, within the model's own.

    The KV cache is sized in blocks of this length, so not reserving the model's full context
    (often 8k-128k) for a deployment that caps requests far lower leaves room for more sequences.
    """
    wanted = settings.max_model_len or settings.max_input_tokens + settings.max_new_tokens
    return min(wanted, context_length)


def vllm_config(settings: ScoringSettings, info: ModelInfo) -> VllmConfig:
    return VllmConfig(
        model=info.source,
        revision=info.revision,
        device=info.device.type,
        max_model_len=info.context_length,
        max_num_seqs=settings.max_batch_size,
        max_logprobs=max(settings.max_top_k, 1),
        kv_cache_gib=settings.kv_cache_gib,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_queue=settings.max_queue,
    )
