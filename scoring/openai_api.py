"""OpenAI's chat-completions and completions API, translated to and from the scoring service.

Only the translation lives here: requests become the service's ``GenerateRequest`` or token ids
for analysis, results become OpenAI's response and chunk shapes. Limits, engine, metrics and
capture are the service's, the same as behind ``/score``.

Parameters this server cannot honour are refused with a 400 naming the parameter (OpenAI's
error shape), never ignored: ``n`` > 1, tools and functions, response formats, penalties,
logit bias, images and audio. Unknown parameters are refused the same way.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scoring.schemas import MAX_STOP_SEQUENCES, SEED_MAX, GenerateRequest, TextAnalysis
from scoring.service import ClientError

MAX_TOP_LOGPROBS = 20  # OpenAI's bound for chat; vLLM's default server cap
DEFAULT_TEMPERATURE = 1.0  # OpenAI samples unless told otherwise

# Parameters OpenAI defines that this server does not implement: each is accepted only at the
# value that means "off", so a client that relies on one learns it at once.
_OFF: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v in (None, 1),
    "best_of": lambda v: v in (None, 1),
    "presence_penalty": lambda v: v in (None, 0, 0.0),
    "frequency_penalty": lambda v: v in (None, 0, 0.0),
    "logit_bias": lambda v: not v,
    "tools": lambda v: not v,
    "tool_choice": lambda v: v in (None, "none"),
    "parallel_tool_calls": lambda v: v in (None, False),
    "functions": lambda v: not v,
    "function_call": lambda v: v in (None, "none"),
    "response_format": lambda v: v in (None, {"type": "text"}),
    "modalities": lambda v: v in (None, ["text"]),
    "audio": lambda v: v is None,
    "prediction": lambda v: v is None,
    "reasoning_effort": lambda v: v is None,
    "web_search_options": lambda v: v is None,
    "suffix": lambda v: not v,
}


class OpenAIError(Exception):
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        499: "client_closed_request",
        500: "server_error",
        503: "service_unavailable",
    }

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status, "invalid_request_error")
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
            }
        }

    @classmethod
    def from_client_error(cls, error: ClientError, renames: dict[str, str]) -> OpenAIError:
        """The service's refusal in OpenAI's terms: its field under the name the client sent;
        a validation 422 is OpenAI's 400."""
        param = error.details[0].field if error.details else None
        message = error.message
        if param in renames:
            message = message.replace(param, renames[param])
            param = renames[param]
        status = 400 if error.status == 422 else error.status
        code = {429: "rate_limit_exceeded", 413: "context_length_exceeded"}.get(status)
        return cls(status, message, param, code, error.headers)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class _Common(BaseModel):
    """What chat and completions requests share (OpenAI's names and defaults)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP_SEQUENCES)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # an end-user id for the caller's own abuse tracking; not used

    # Declared so the check in parse() sees them; refused there unless "off".
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    name: str | None = None


class ChatCompletionRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None
    store: bool | None = None
    metadata: dict[str, str] | None = None

    def length_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"

    def length(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else (self.max_tokens)
        )


class CompletionRequest(_Common):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    best_of: int | None = None
    suffix: str | None = None

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise OpenAIError(400, "send one prompt per request (batch prompts: n/a)", "prompt")
        return self.prompt[0]


R = ChatCompletionRequest | CompletionRequest


def parse(model: type[R], payload: Any) -> R:
    """Validate a request; any parameter this server does not honour is a 400 naming it."""
    if not isinstance(payload, dict):
        raise OpenAIError(400, "the body must be a JSON object")
    for name, is_off in _OFF.items():
        if name in payload and not is_off(payload[name]):
            raise OpenAIError(
                400,
                f"'{name}' is not supported by this server "
                f"(got {payload[name]!r}); remove it or use its default",
                name,
                "unsupported_parameter",
            )
    try:
        request = model.model_validate(payload)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        param = ".".join(map(str, first["loc"])) or None
        if first["type"] == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {param}"
            raise OpenAIError(400, message, param, "unknown_parameter") from None
        raise OpenAIError(400, f"{param}: {first['msg']}", param, "invalid_value") from None
    if isinstance(request, ChatCompletionRequest):
        _check_chat(request)
    if request.stream_options is not None and not request.stream:
        raise OpenAIError(400, "stream_options is only allowed with stream: true", "stream_options")
    return request


def _check_chat(request: ChatCompletionRequest) -> None:
    if request.top_logprobs is not None and not request.logprobs:
        raise OpenAIError(400, "top_logprobs requires logprobs: true", "top_logprobs")
    if request.logprobs and request.stream:
        raise OpenAIError(400, "logprobs are not available when streaming", "logprobs")
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if part.get("type") != "text":
                    raise OpenAIError(
                        400,
                        f"content part type {part.get('type')!r} is not supported: this model "
                        "reads text only",
                        f"messages.{i}.content.{j}.type",
                        "unsupported_content",
                    )


def chat_messages(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """The turns as the chat template wants them (text parts joined, developer = system)."""
    turns = []
    for message in request.messages:
        content = message.content
        if isinstance(content, list):
            content = "".join(str(part.get("text", "")) for part in content)
        role = "system" if message.role == "developer" else message.role
        turns.append({"role": role, "content": content})
    return turns


def generate_request(
    request: R, deployment_max_new_tokens: int
) -> tuple[GenerateRequest, bool, dict[str, str]]:
    """The service request, whether its length was defaulted (fit it to the context), and how
    to rename the service's field names back to the client's."""
    if isinstance(request, ChatCompletionRequest):
        length, length_param = request.length(), request.length_param()
        body: dict[str, Any] = {"messages": chat_messages(request)}
    else:
        length, length_param = request.max_tokens, "max_tokens"
        body = {"prompt": request.prompt_text()}
    if length == 0:
        raise OpenAIError(
            400, f"{length_param} must be at least 1 (0 only with echo)", length_param
        )
    generate = GenerateRequest.model_validate(
        {
            **body,
            "max_new_tokens": length if length else deployment_max_new_tokens,
            "temperature": float(request.temperature),
            "top_p": float(request.top_p),
            "stop": list(request.stop),
            "seed": request.seed,
        },
        strict=False,
    )
    return generate, length is None, {"max_new_tokens": length_param}


# Responses ---------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    model: str,
    text: str,
    finish_reason: str,
    use: dict[str, int],
    logprobs: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        ],
        "usage": use,
    }


def chat_chunk(
    chunk_id: str,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    use: dict[str, int] | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` is the usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:  # OpenAI: null on every chunk but the last when usage was asked for
        chunk["usage"] = use
    return chunk


def completion(
    model: str,
    text: str,
    finish_reason: str,
    use: dict[str, int],
    logprobs: dict[str, Any] | None,
    chunk_id: str | None = None,
    obj: str = "text_completion",
) -> dict[str, Any]:
    return {
        "id": chunk_id or new_id("cmpl"),
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
        ],
        "usage": use,
    }


def chat_logprobs(analysis: TextAnalysis, start: int, top: int) -> dict[str, Any]:
    """OpenAI's ``choices[].logprobs`` for the tokens from ``start`` on (the generated ones)."""
    content = []
    for token in analysis.tokens[start:]:
        content.append(
            {
                "token": token.token,
                "logprob": token.logprob,
                "bytes": list(token.token.encode()),
                "top_logprobs": [
                    {"token": alt.token, "logprob": alt.logprob, "bytes": list(alt.token.encode())}
                    for alt in token.top[:top]
                ],
            }
        )
    return {"content": content}


def completion_logprobs(
    analysis: TextAnalysis, start: int, top: int, offset: int = 0
) -> dict[str, Any]:
    """Legacy ``logprobs`` (tokens, token_logprobs, top_logprobs, text_offset) from ``start``.

    The first token of a text has no prediction: its logprob and alternatives are null, as in
    OpenAI's ``echo`` answers. Alternatives include the chosen token (up to ``top + 1``).
    """
    tokens, logprobs, tops, offsets = [], [], [], []
    for token in analysis.tokens[start:]:
        tokens.append(token.token)
        logprobs.append(token.logprob)
        offsets.append(offset)
        offset += len(token.token)
        if token.logprob is None:
            tops.append(None)
            continue
        alternatives = {alt.token: alt.logprob for alt in token.top[:top]}
        alternatives.setdefault(token.token, token.logprob)
        tops.append(alternatives)
    return {
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def models_list(model: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "azureml-byom"}],
    }
