"""The OpenAI-compatible server (``python -m scoring.serve``) on loopback, called by the real
``openai`` and ``azure-ai-inference`` clients."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import SystemMessage, UserMessage
from azure.core.credentials import AccessToken

from scoring.client import AML_SCOPE, ScoringClient
from scoring.local_server import LocalOpenAIServer

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
QUESTION = "What is the capital of France?"
ANSWER = "The capital of France is Paris."
PANGRAM = "The quick brown fox jumps over the lazy dog."
# Greedy decoding of this prompt does not end before max_tokens: a long-running row.
ENDLESS = "Count from one to one thousand in words: one, two, three,"
LIMITS = {
    "SCORING_MAX_INPUT_TOKENS": "256",
    "SCORING_MAX_NEW_TOKENS": "200",
    "SCORING_MAX_BATCH_SIZE": "2",
    "SCORING_MAX_QUEUE": "1",
    # The front door is under test here; vLLM behind /score is covered by test_http and
    # test_engines (each vLLM start costs minutes on this machine).
    "SCORING_ENGINE": "continuous",
}


@pytest.fixture(scope="module")
def server(demo_model_dir: Path) -> Iterator[LocalOpenAIServer]:
    with LocalOpenAIServer(demo_model_dir, env=LIMITS) as running:
        yield running


class TokenProvider:
    """Stands in for ``get_bearer_token_provider(DefaultAzureCredential(), AML_SCOPE)``."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"entra-token-{self.calls}"


class Credential:
    """A TokenCredential as ``DefaultAzureCredential`` is one; records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("entra-token", int(time.time()) + 3600)


def openai_client(server: LocalOpenAIServer, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("api_key", TokenProvider())
    return openai.OpenAI(base_url=server.url + "/v1", **kwargs)


def active_rows(server: LocalOpenAIServer) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(r"^scoring_active_rows (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_openai_chat_completion(server: LocalOpenAIServer) -> None:
    tokens = TokenProvider()
    client = openai_client(server, api_key=tokens)
    for _ in range(2):
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            max_tokens=20,
        )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == ANSWER
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 7
    assert tokens.calls == 2  # asked per request, so a long-lived client picks up a fresh token


def test_openai_streamed_chat_puts_usage_in_the_last_chunk(server: LocalOpenAIServer) -> None:
    chunks = list(
        openai_client(server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            max_completion_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == ANSWER
    assert len(pieces) > 1  # streamed as decoded, not as one block
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (37, 7)
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_logprobs_cover_the_generated_tokens(server: LocalOpenAIServer) -> None:
    reply = openai_client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=20,
        logprobs=True,
        top_logprobs=3,
    )
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == ANSWER
    for token in content:  # greedy: every chosen token is the model's first choice
        assert len(token.top_logprobs) == 3
        assert token.top_logprobs[0].token == token.token
        assert token.logprob == pytest.approx(token.top_logprobs[0].logprob)


def test_completions_echo_logprobs_equal_the_score_analysis(server: LocalOpenAIServer) -> None:
    reply = openai_client(server).completions.create(
        model=MODEL, prompt=PANGRAM, echo=True, logprobs=3, max_tokens=0
    )
    analysis = ScoringClient(server.url + "/score").analyze(PANGRAM, top_k=3)
    choice = reply.choices[0]
    assert choice.text == PANGRAM
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 0
    logprobs = choice.logprobs
    assert logprobs is not None
    assert logprobs.tokens == [t["token"] for t in analysis["tokens"]]
    assert logprobs.token_logprobs == pytest.approx([t["logprob"] for t in analysis["tokens"]])
    assert logprobs.top_logprobs[0] is None
    for tops, token in zip(logprobs.top_logprobs[1:], analysis["tokens"][1:], strict=True):
        expected = {alt["token"]: alt["logprob"] for alt in token["top"]}
        expected.setdefault(token["token"], token["logprob"])
        assert tops == pytest.approx(expected)
    assert logprobs.text_offset[:3] == [0, 3, 9]  # "The", " quick", " brown"


def test_completion_with_echo_continues_the_prompt(server: LocalOpenAIServer) -> None:
    reply = openai_client(server).completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=3, temperature=0, echo=True
    )
    plain = openai_client(server).completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=3, temperature=0
    )
    assert reply.choices[0].text == "The capital of France is" + plain.choices[0].text
    assert plain.usage is not None
    assert plain.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"extra_body": {"guided_json": {}}}, "guided_json"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"max_tokens": 500}, "max_tokens"),
        ({"max_completion_tokens": 500}, "max_completion_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_refused_parameter_raises_the_sdks_bad_request_error(
    server: LocalOpenAIServer, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], **params
        )
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert param in caught.value.message


def test_image_content_is_refused_naming_the_part(server: LocalOpenAIServer) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": [image]}]
        )
    assert caught.value.param == "messages.0.content.0.type"


def test_unknown_model_is_not_found(server: LocalOpenAIServer) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client(server).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )


def test_models_lists_the_served_model(server: LocalOpenAIServer) -> None:
    assert [m.id for m in openai_client(server).models.list()] == [MODEL]


def test_a_full_queue_is_a_rate_limit_error_with_retry_after(server: LocalOpenAIServer) -> None:
    client = openai_client(server, max_retries=0)

    def call(_: int) -> openai.RateLimitError | None:
        try:
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": ENDLESS}],
                temperature=0,
                max_tokens=40,
            )
        except openai.RateLimitError as error:
            return error
        return None

    with ThreadPoolExecutor(6) as pool:
        refusals = list(pool.map(call, range(6)))
    outcomes = ["200" if r is None else "429" for r in refusals]
    for refusal in filter(None, refusals):
        assert refusal.response.headers["Retry-After"] == "1"
        assert refusal.code == "rate_limit_exceeded"
    assert "429" in outcomes
    assert "200" in outcomes
    assert server.healthy()


def test_azure_ai_inference_complete(server: LocalOpenAIServer) -> None:
    credential = Credential()
    client = ChatCompletionsClient(endpoint=server.url + "/v1", credential=credential)
    reply = client.complete(
        messages=[SystemMessage("You are a helpful assistant."), UserMessage(QUESTION)],
        temperature=0,
        max_tokens=20,
        enforce_https=False,  # loopback; endpoints are https
    )
    assert reply.choices[0].message.content == ANSWER
    assert reply.usage.completion_tokens == 7
    assert credential.scopes == [(AML_SCOPE,)]


def test_azure_ai_inference_streamed_complete(server: LocalOpenAIServer) -> None:
    client = ChatCompletionsClient(endpoint=server.url + "/v1", credential=Credential())
    updates = client.complete(
        messages=[UserMessage(QUESTION)],
        temperature=0,
        max_tokens=20,
        stream=True,
        enforce_https=False,
    )
    pieces = [
        u.choices[0].delta.content for u in updates if u.choices and u.choices[0].delta.content
    ]
    assert "".join(pieces) == ANSWER
    assert len(pieces) > 1


def test_score_streams_on_the_openai_server_too(server: LocalOpenAIServer) -> None:
    client = ScoringClient(server.url + "/score")
    events = list(client.stream_generate(messages=[{"role": "user", "content": QUESTION}]))
    assert "".join(e["text"] for e in events) == ANSWER
    assert events[-1]["finish_reason"] == "stop"
    assert events[-1]["usage"]["completion_tokens"] == 7


def test_a_disconnecting_stream_frees_its_batch_row(server: LocalOpenAIServer) -> None:
    assert active_rows(server) == 0
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": ENDLESS}],
        "temperature": 0,
        "max_tokens": 200,
        "stream": True,
    }
    response = requests.post(server.url + "/v1/chat/completions", json=body, stream=True)
    lines = response.iter_lines()
    arrivals = []
    while len(arrivals) < 6:  # the role chunk, then five decoded pieces
        if next(lines).startswith(b"data:"):
            arrivals.append(time.monotonic())
    step_s = (arrivals[-1] - arrivals[1]) / 4
    assert active_rows(server) == 1
    response.close()
    closed = time.monotonic()
    while active_rows(server) != 0:
        assert time.monotonic() - closed < 30, "the row stayed in the batch"
        time.sleep(0.01)
    freed_s = time.monotonic() - closed
    # 195 tokens were still to go; the row left after a step or two, not at the end.
    assert freed_s < max(10 * step_s, 1.0), (freed_s, step_s)
    assert server.healthy()
