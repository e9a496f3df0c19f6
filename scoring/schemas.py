"""Request and response shapes of both patterns, as pydantic models.

Strict types (``"5"`` is not an int), unknown fields refused, every bound stated here so that
the OpenAPI document the server publishes says exactly what a request may contain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import models_json_schema

MAX_STOP_SEQUENCES = 4
MAX_STOP_LENGTH = 64
SEED_MAX = 2**63 - 1

NonEmptyText = Annotated[str, Field(min_length=1)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ChatMessage(_Request):
    """One chat turn; rendered with the model's own chat template."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(_Request):
    """Pattern 1: continue a prompt or answer a conversation. Exactly one of the two."""

    task: Literal["generate"] | None = None
    prompt: NonEmptyText | None = Field(default=None, description="raw text to continue")
    messages: list[ChatMessage] | None = Field(
        default=None, min_length=1, description="chat turns, rendered with the chat template"
    )
    max_new_tokens: int = Field(default=128, ge=1, le=4096, description="tokens to generate")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="nucleus mass kept")
    top_k: int = Field(default=0, ge=0, le=1000, description="0 = no top-k cut")
    stop: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_LENGTH)]] = Field(
        default_factory=list,
        max_length=MAX_STOP_SEQUENCES,
        description="generation ends before the first of these strings (not included)",
    )
    seed: int | None = Field(
        default=None, ge=0, le=SEED_MAX, description="same seed and parameters, same text"
    )
    stream: bool = Field(
        default=False,
        description="answer text/event-stream: one event per decoded piece, then a final "
        "event with finish_reason and usage",
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class GenerateResponse(BaseModel):
    text: str = Field(description="the generated text, without the prompt or stop string")
    finish_reason: Literal["stop", "length"] = Field(
        description="stop: end-of-sequence token or a stop string; length: max_new_tokens reached"
    )
    usage: Usage


class AnalyzeRequest(_Request):
    """Pattern 2: score the tokens of a text, or of a batch of texts. Exactly one of the two."""

    task: Literal["analyze"] | None = None
    text: NonEmptyText | None = None
    texts: list[NonEmptyText] | None = Field(default=None, min_length=1)
    top_k: int = Field(default=5, ge=0, le=100, description="alternatives listed per token")

    @model_validator(mode="after")
    def _text_or_texts(self) -> AnalyzeRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class Alternative(BaseModel):
    id: int
    token: str
    logprob: float


class TokenInfo(BaseModel):
    id: int
    token: str = Field(description="the token's text")
    logprob: float | None = Field(description="log p(token | tokens before); null for the first")
    rank: int | None = Field(description="1 = the model's most likely token; null for the first")
    top: list[Alternative] = Field(description="the model's top-k candidates at this position")


class Buckets(BaseModel):
    """GLTR buckets: how many tokens ranked within 10, 100, 1000, or beyond."""

    top10: int
    top100: int
    top1000: int
    beyond: int


class AnalysisSummary(BaseModel):
    num_tokens: int
    scored_tokens: int = Field(description="tokens with a prediction (all but the first)")
    mean_logprob: float | None
    perplexity: float | None = Field(description="exp(-mean_logprob)")
    buckets: Buckets


class TextAnalysis(BaseModel):
    tokens: list[TokenInfo]
    summary: AnalysisSummary


class AnalyzeBatchResponse(BaseModel):
    results: list[TextAnalysis] = Field(description="one entry per text, in request order")


class ErrorDetail(BaseModel):
    field: str = Field(description="where the problem is, e.g. 'max_new_tokens' or 'texts.2'")
    message: str


class ErrorBody(BaseModel):
    status: int
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str | None = Field(
        default=None, description="the server's x-request-id: quote it when reporting a problem"
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


def openapi_document(title: str = "azureml-byom scoring", version: str = "1") -> dict[str, Any]:
    """OpenAPI 3 for ``POST /score``; the inference server publishes it as its swagger."""
    models = [
        GenerateRequest,
        AnalyzeRequest,
        GenerateResponse,
        TextAnalysis,
        AnalyzeBatchResponse,
        ErrorResponse,
    ]
    _, schema = models_json_schema(
        [(m, "validation" if m.__name__.endswith("Request") else "serialization") for m in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas = schema["$defs"]

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def body(*names: str) -> dict[str, Any]:
        inner = ref(names[0]) if len(names) == 1 else {"oneOf": [ref(n) for n in names]}
        return {"content": {"application/json": {"schema": inner}}}

    errors = {
        str(code): {"description": text, **body("ErrorResponse")}
        for code, text in [
            (
                400,
                "malformed or too deeply nested JSON, or a pattern this deployment does not serve",
            ),
            (413, "body, text length or token count over the deployment's limits"),
            (422, "a field is missing, has the wrong type or is out of range"),
            (429, "the instance is at capacity; retry after Retry-After seconds"),
            (500, "an unexpected error; the body carries the request id to report"),
            (
                503,
                "the model is not ready, or the request did not finish within its time budget "
                "(queue wait included); retry after Retry-After seconds",
            ),
        ]
    }
    return {
        # 3.1: its schemas are JSON Schema 2020-12, which is what pydantic writes (const,
        # "type": "null", numeric exclusiveMinimum); under 3.0 those are invalid.
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {
            "/": {"get": {"operationId": "health", "responses": {"200": {"description": "ok"}}}},
            "/score": {
                "post": {
                    "operationId": "score",
                    "requestBody": {"required": True, **body("GenerateRequest", "AnalyzeRequest")},
                    "responses": {
                        "200": {
                            "description": "generation, one text's analysis, or a batch's; "
                            "with stream=true, server-sent events: one `data:` line per decoded "
                            "piece, the last with finish_reason and usage",
                            "content": {
                                **body("GenerateResponse", "TextAnalysis", "AnalyzeBatchResponse")[
                                    "content"
                                ],
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **errors,
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }


# GLTR rank buckets, in order: the key in `Buckets` and the highest rank each holds (None: no
# bound). The analysis counts with them, the report colours them, the delivery gate compares them.
RANK_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("top10", 10),
    ("top100", 100),
    ("top1000", 1000),
    ("beyond", None),
)


def rank_bucket(rank: int) -> str:
    """The GLTR bucket of a 1-based rank."""
    return next(key for key, limit in RANK_BUCKETS if limit is None or rank <= limit)


@dataclass(frozen=True)
class PatternContract:
    """What one pattern takes and returns, and how a deployment proves it serves it."""

    request: type[BaseModel]
    response: type[BaseModel]
    smoke_request: Mapping[str, Any]
    """A small request every deployment of the pattern must answer (delivery's smoke test)."""
    example_response: Mapping[str, Any]
    """A valid answer to it (the fake workspace's canned response, the OpenAPI example)."""


# The table of patterns: adding one is a row here plus its handler in `scoring.service` (and its
# name in `scoring.settings.Pattern`). Infra's allowed patterns, delivery's smoke tests and the
# fake workspace's answers all derive from it.
PATTERNS: Mapping[str, PatternContract] = {
    "generate": PatternContract(
        request=GenerateRequest,
        response=GenerateResponse,
        smoke_request={
            "task": "generate",
            "prompt": "Reply with one word: ready?",
            "max_new_tokens": 8,
        },
        example_response={
            "text": "Ready.",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
    ),
    "analyze": PatternContract(
        request=AnalyzeRequest,
        response=TextAnalysis,
        smoke_request={"task": "analyze", "text": "The quick brown fox jumps over the lazy dog."},
        example_response={
            "tokens": [
                {"id": 504, "token": "The", "logprob": None, "rank": None, "top": []},
                {"id": 2365, "token": " quick", "logprob": -7.1, "rank": 212, "top": []},
            ],
            "summary": {
                "num_tokens": 2,
                "scored_tokens": 1,
                "mean_logprob": -7.1,
                "perplexity": 1211.97,
                "buckets": {"top10": 0, "top100": 0, "top1000": 1, "beyond": 0},
            },
        },
    ),
}
