"""Deployment settings of the scoring server, read once from environment variables.

A managed online deployment sets these in its ``environment_variables``; one image and one model
serve either pattern or both. Every limit is checked before any model work, so a bad request costs
a parse, not a forward pass.

This class is the contract between the server and what deploys it: every ``SCORING_*`` name is
derived from a field here (prefix plus the field name upper-cased), the server reads them with
``ScoringSettings()``, and infra writes them with `ScoringSettings.environment`, which validates
the values through the same fields, so a value the server would refuse fails at plan time.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "SCORING_"
EngineName = Literal["vllm", "continuous", "serial"]
LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


def default_engine() -> EngineName:
    """``vllm`` wherever it is installed, else this project's continuous-batching engine."""
    return "vllm" if importlib.util.find_spec("vllm") is not None else "continuous"


class Pattern(StrEnum):
    """The two inference patterns one model can serve."""

    GENERATE = "generate"
    ANALYZE = "analyze"


class ScoringSettings(BaseSettings):
    """``SCORING_*`` environment variables; defaults suit a small model on one GPU."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

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
        default_factory=default_engine,
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

    # Observability and capture (scoring.metrics, scoring.redaction).
    log_level: LogLevel = Field(default="INFO", description="level of the scoring.* loggers")
    metrics_perplexity_sample: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of generations whose perplexity is computed (a second forward pass)",
    )
    capture: bool = Field(default=False, description="capture requests and responses, redacted")
    capture_sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="share captured on a local run (Azure samples itself)"
    )
    redact_fields: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="comma-separated JSON field names whose values are redacted"
    )
    redaction_hook: str | None = Field(
        default=None, description="package.module:function applied last to each captured value"
    )

    # The OpenAI-compatible server's listener (python -m scoring.serve).
    host: str = Field(default="127.0.0.1", description="address scoring.serve listens on")
    port: int = Field(default=8000, ge=1, le=65535, description="port scoring.serve listens on")
    served_model_name: str | None = Field(
        default=None, description="the model name clients send; default: the model's own"
    )

    @field_validator("patterns", mode="before")
    @classmethod
    def _split_patterns(cls, value: object) -> object:
        if isinstance(value, str):
            value = _split(value)
        if not value:
            raise ValueError(f"set at least one of {[p.value for p in Pattern]}")
        return value

    @field_validator("redact_fields", mode="before")
    @classmethod
    def _split_fields(cls, value: object) -> object:
        if isinstance(value, str):
            return _split(value)
        if isinstance(value, Iterable) and any("," in str(name) for name in value):
            raise ValueError("field names may not contain ',' (the variable is a comma list)")
        return value

    @field_validator("redaction_hook")
    @classmethod
    def _hook_spec(cls, value: str | None) -> str | None:
        # Imported by the server only (scoring.redaction.load_hook): the module lives in its image.
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError("expected 'package.module:function'")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of `field`: ``max_queue`` -> ``SCORING_MAX_QUEUE``."""
        if field not in cls.model_fields:
            allowed = ", ".join(cls.model_fields)
            raise ValueError(f"{field!r} is not a scoring setting; allowed: {allowed}")
        return ENV_PREFIX + field.upper()

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Every field's environment variable, in declaration order."""
        return {field: cls.env_name(field) for field in cls.model_fields}

    @classmethod
    def environment(cls, **values: Any) -> dict[str, str]:
        """The variables that make the server read `values` (field name -> value), validated
        by the fields themselves; a None value is left out (the server keeps its default).

        Raises ValueError naming the variable when the server would refuse a value.
        """
        given = {field: value for field, value in values.items() if value is not None}
        for field in given:
            cls.env_name(field)  # an unknown field fails with the allowed names
        try:
            checked = _Given(**given)
        except ValidationError as error:
            problems = [
                f"{cls.env_name(field)} = {given[field]!r} is invalid: {reason}"
                for field, reason in _reasons(error).items()
            ]
            raise ValueError("; ".join(problems)) from None
        return {cls.env_name(field): _render(getattr(checked, field)) for field in given}

    @classmethod
    def variable_problem(cls, name: str, value: str) -> str | None:
        """What the server would object to in deployment variable `name` (None: nothing).

        Variables without the ``SCORING_`` prefix are not this package's and pass.
        """
        if not name.upper().startswith(ENV_PREFIX):
            return None
        field = {env: field for field, env in cls.env_names().items()}.get(name)
        if field is None:
            return f"a scoring setting: {', '.join(cls.env_names().values())}"
        try:
            _Given(**{field: value})
        except ValidationError as error:
            return "; ".join(_reasons(error).values())
        return None

    def model_source(self) -> str:
        """Where to load the model from: explicit setting, else the folder Azure ML mounts."""
        if self.model_dir is not None:
            return str(self.model_dir)
        mounted = os.environ.get("AZUREML_MODEL_DIR", "")
        if not mounted:
            raise RuntimeError("no model: set SCORING_MODEL_DIR or AZUREML_MODEL_DIR")
        return mounted


class _Given(ScoringSettings):
    """The same fields, validated from the values given only (not the caller's environment)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _render(value: Any) -> str:
    """A value as the variable holds it: what pydantic-settings reads back as the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # 15 significant digits: exact for what a stack holds, without float noise (2.345, not
        # 2.3449999999999998), and whole numbers without '.0'.
        return f"{value:.15g}"
    if isinstance(value, frozenset):  # patterns, in declaration order
        return ",".join(p.value for p in Pattern if p in value)
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _reasons(error: ValidationError) -> dict[str, str]:
    """Field name -> what is wrong with its value, in pydantic's words."""
    reasons: dict[str, str] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        # "Input should be greater than 0" reads as what is allowed: "greater than 0".
        reason = item["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        reasons[field] = reason[:1].lower() + reason[1:]
    return reasons
