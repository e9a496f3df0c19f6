"""Deployment settings of the scoring server, read once from environment variables.

A managed online deployment sets these in its ``environment_variables``; one image and one model
serve either pattern or both. Every limit is checked before any model work, so a bad request costs
a parse, not a forward pass.
"""

from __future__ import annotations

import importlib.util
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EngineName = Literal["vllm", "continuous", "serial"]


def default_engine() -> EngineName:
    """``vllm`` wherever it is installed, else this project's continuous-batching engine."""
    return "vllm" if importlib.util.find_spec("vllm") is not None else "continuous"


class Pattern(StrEnum):
    """The two inference patterns one model can serve."""

    GENERATE = "generate"
    ANALYZE = "analyze"


class ScoringSettings(BaseSettings):
    """``SCORING_*`` environment variables; defaults suit a small model on one GPU."""

    model_config = SettingsConfigDict(env_prefix="SCORING_", frozen=True)

    # NoDecode: the variable is a comma list, not JSON.
    patterns: Annotated[frozenset[Pattern], NoDecode] = Field(
        default=frozenset(Pattern), description="comma-separated patterns this deployment serves"
    )
    model_dir: Path | None = Field(
        default=None, description="local model folder or hub id; default: AZUREML_MODEL_DIR"
    )
    revision: str | None = Field(
        default=None, description="hub revision when model_dir is a hub id"
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")

    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="413 above this")
    max_input_tokens: int = Field(default=4096, ge=16, description="prompt or text length cap")
    max_new_tokens: int = Field(default=1024, ge=1, description="cap on max_new_tokens")
    max_batch_texts: int = Field(default=16, ge=1, description="texts per analysis request")
    max_total_tokens: int = Field(default=16384, ge=16, description="tokens per request, all texts")
    max_top_k: int = Field(default=20, ge=0, le=100, description="alternatives per token")

    engine: EngineName = Field(
        default_factory=lambda: default_engine(),
        description="vllm (default where installed) | continuous (this project's batching loop, "
        "for models or machines vLLM does not support) | serial (plain generate(), the baseline)",
    )
    max_batch_size: int = Field(default=16, ge=1, description="generation requests per batch")
    max_queue: int = Field(default=64, ge=1, description="waiting requests before 429")
    prefill_chunk_tokens: int = Field(
        default=256,
        ge=1,
        description="new-prompt positions run between two decode steps of the running rows",
    )
    request_timeout_s: float = Field(default=60.0, gt=0, description="deadline per request")
    malloc_arena_max: int = Field(
        default=2,
        ge=0,
        description="glibc malloc arenas shared by the request threads (0: glibc's default)",
    )
    compile_analysis: bool = Field(
        default=True, description="fuse the analysis kernel with torch.compile (eager fallback)"
    )
    analysis_chunk_tokens: int = Field(default=256, ge=1, description="positions per logits chunk")
    analysis_forward_tokens: int = Field(
        default=512,
        ge=1,
        description="positions (texts x slice) per forward call; deadline checked between calls",
    )

    # vLLM only (infra/sizing.py derives them from the instance type and the concurrency).
    max_model_len: int | None = Field(
        default=None, ge=16, description="vLLM's context; default: prompt limit + new-token limit"
    )
    kv_cache_gib: float = Field(
        default=2.0, gt=0, description="CPU: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)"
    )
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="GPU: fraction of GPU memory vLLM may use"
    )

    @field_validator("patterns", mode="before")
    @classmethod
    def _split_patterns(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError(f"set at least one of {[p.value for p in Pattern]}")
        return value

    def model_source(self) -> str:
        """Where to load the model from: explicit setting, else the folder Azure ML mounts."""
        if self.model_dir is not None:
            return str(self.model_dir)
        mounted = os.environ.get("AZUREML_MODEL_DIR", "")
        if not mounted:
            raise RuntimeError("no model: set SCORING_MODEL_DIR or AZUREML_MODEL_DIR")
        return mounted
