"""OpenAI request parsing: what is honoured, what is refused and under which parameter name."""

from __future__ import annotations

from typing import Any

import pytest

from scoring import openai_api as oai
from scoring.openai_api import ChatCompletionRequest, CompletionRequest, OpenAIError
from scoring.schemas import ErrorDetail
from scoring.service import ClientError

HI = [{"role": "user", "content": "hi"}]
BRIEF = {"type": "text", "text": "be brief"}


def refused(model: type[oai.R], payload: dict[str, Any]) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        oai.parse(model, payload)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 3}, "n"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"guided_regex": "a+"}, "guided_regex"),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"logprobs": True, "stream": True}, "logprobs"),
    ],
)
def test_chat_refusals_name_the_parameter(extra: dict[str, Any], param: str) -> None:
    error = refused(ChatCompletionRequest, {"messages": HI, **extra})
    assert error.param == param
    assert error.body()["error"]["param"] == param
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_defaults_are_openais_and_off_values_are_accepted() -> None:
    request = oai.parse(
        ChatCompletionRequest,
        {
            "messages": [{"role": "developer", "content": [BRIEF]}, *HI],
            "n": 1,
            "presence_penalty": 0,
            "response_format": {"type": "text"},
            "stop": "\n",
        },
    )
    assert isinstance(request, ChatCompletionRequest)
    assert request.temperature == 1.0
    assert request.stop == ["\n"]
    assert oai.chat_messages(request)[0] == {"role": "system", "content": "be brief"}
    generate, defaulted, renames = oai.generate_request(request, 256)
    assert generate.max_new_tokens == 256
    assert defaulted
    assert renames == {"max_new_tokens": "max_tokens"}


def test_max_completion_tokens_wins_and_is_the_name_errors_use() -> None:
    request = oai.parse(
        ChatCompletionRequest, {"messages": HI, "max_tokens": 5, "max_completion_tokens": 7}
    )
    generate, defaulted, renames = oai.generate_request(request, 256)
    assert generate.max_new_tokens == 7
    assert not defaulted
    limit = ClientError(
        422, "max_new_tokens: 7 exceeds", [ErrorDetail(field="max_new_tokens", message="x")]
    )
    error = OpenAIError.from_client_error(limit, renames)
    assert (error.status, error.param) == (400, "max_completion_tokens")
    assert "max_completion_tokens: 7" in error.message


def test_a_full_queue_keeps_429_and_retry_after() -> None:
    busy = ClientError(429, "generation queue is full", headers={"Retry-After": "1"})
    error = OpenAIError.from_client_error(busy, {})
    assert (error.status, error.code, error.headers) == (
        429,
        "rate_limit_exceeded",
        {"Retry-After": "1"},
    )
    assert error.body()["error"]["type"] == "rate_limit_error"


def test_completions_take_one_prompt() -> None:
    request = oai.parse(CompletionRequest, {"prompt": ["only one"], "echo": True, "logprobs": 2})
    assert isinstance(request, CompletionRequest)
    assert request.prompt_text() == "only one"
    with pytest.raises(OpenAIError) as caught:
        oai.parse(CompletionRequest, {"prompt": ["a", "b"]}).prompt_text()  # type: ignore[union-attr]
    assert caught.value.param == "prompt"
    assert refused(CompletionRequest, {"prompt": "x", "best_of": 2}).param == "best_of"
    assert refused(CompletionRequest, {"prompt": "x", "suffix": "y"}).param == "suffix"


def test_legacy_logprobs_include_the_chosen_token_and_offsets() -> None:
    from scoring.schemas import AnalysisSummary, Buckets, TextAnalysis, TokenInfo

    tokens = [
        TokenInfo(id=1, token="The", logprob=None, rank=None, top=[]),
        TokenInfo(
            id=2,
            token=" cat",
            logprob=-3.0,
            rank=4,
            top=[{"id": 3, "token": " dog", "logprob": -1.0}],
        ),
    ]
    summary = AnalysisSummary(
        num_tokens=2,
        scored_tokens=1,
        mean_logprob=-3.0,
        perplexity=20.0,
        buckets=Buckets(top10=1, top100=0, top1000=0, beyond=0),
    )
    logprobs = oai.completion_logprobs(TextAnalysis(tokens=tokens, summary=summary), 0, 1)
    assert logprobs == {
        "tokens": ["The", " cat"],
        "token_logprobs": [None, -3.0],
        "top_logprobs": [None, {" dog": -1.0, " cat": -3.0}],
        "text_offset": [0, 3],
    }
