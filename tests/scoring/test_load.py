"""A bounded loopback load test: 64 concurrent clients, bad requests mixed in, nothing lost."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from transformers import AutoTokenizer

from scoring.local_server import LocalServer

pytestmark = pytest.mark.slow

CLIENTS = 64
REQUESTS_PER_CLIENT = 3


@pytest.fixture(scope="module")
def server(demo_model_dir: Path) -> Iterator[LocalServer]:
    env = {
        "SCORING_MAX_BATCH_SIZE": "16",
        "SCORING_MAX_QUEUE": "24",
        "SCORING_REQUEST_TIMEOUT_S": "120",
        # This project's engine under load; vLLM's own admission is tested in test_engines.
        "SCORING_ENGINE": "continuous",
    }
    with LocalServer(demo_model_dir, env=env, threads=16) as running:
        yield running


def request_for(n: int) -> tuple[str, bytes]:
    """Request ``n``: a generation, an analysis, or one of three kinds of bad input."""
    kind = ("generate", "analyze", "generate", "bad-json", "analyze", "out-of-range")[n % 6]
    if kind == "generate":
        body = {"prompt": "word " * (n % 40 + 1), "max_new_tokens": n % 6 + 1}
    elif kind == "analyze":
        body = {"text": f"Request number {n} asks about item {n * 7}.", "top_k": 1}
    elif kind == "bad-json":
        return kind, b'{"prompt": "unterminated'
    else:
        body = {"prompt": "hi", "max_new_tokens": -n}
    return kind, json.dumps(body).encode()


def check(n: int, kind: str, status: int, body: dict, tokenizer: AutoTokenizer) -> str:
    """Return the outcome of request ``n``; fail if its answer belongs to another request."""
    if status == 429:
        return "429"
    if kind == "bad-json":
        assert status == 400, body
    elif kind == "out-of-range":
        assert status == 422, body
        assert body["error"]["details"][0]["field"] == "max_new_tokens"
    elif kind == "generate":
        assert status == 200, body
        assert body["usage"]["prompt_tokens"] == len(tokenizer("word " * (n % 40 + 1)).input_ids)
        assert body["usage"]["completion_tokens"] <= n % 6 + 1
    else:
        assert status == 200, body
        text = "".join(t["token"] for t in body["tokens"])
        assert text == f"Request number {n} asks about item {n * 7}."
    return kind


def test_64_clients_with_bad_requests_mixed_in(server: LocalServer, demo_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)

    def client(index: int) -> list[str]:
        outcomes = []
        with requests.Session() as session:
            for k in range(REQUESTS_PER_CLIENT):
                n = index * REQUESTS_PER_CLIENT + k
                kind, data = request_for(n)
                response = session.post(
                    server.url + "/score",
                    data=data,
                    timeout=180,
                    headers={"Content-Type": "application/json"},
                )
                assert response.status_code < 500, (n, response.status_code, response.text)
                outcomes.append(check(n, kind, response.status_code, response.json(), tokenizer))
        return outcomes

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        outcomes = Counter(o for batch in pool.map(client, range(CLIENTS)) for o in batch)

    assert sum(outcomes.values()) == CLIENTS * REQUESTS_PER_CLIENT
    assert outcomes["bad-json"] > 0
    assert outcomes["generate"] > 0
    assert server.healthy()
    after = requests.post(server.url + "/score", json={"text": "still here"}, timeout=60)
    assert after.status_code == 200
    print(dict(outcomes))


def test_past_capacity_the_server_answers_429_at_once(demo_model_dir: Path) -> None:
    env = {"SCORING_MAX_BATCH_SIZE": "1", "SCORING_MAX_QUEUE": "1", "SCORING_ENGINE": "continuous"}
    body = {"prompt": "Tell me a long story about a dragon.", "max_new_tokens": 24}
    with LocalServer(demo_model_dir, env=env, threads=8) as small:
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(
                pool.map(
                    lambda _: requests.post(small.url + "/score", json=body, timeout=120), range(8)
                )
            )
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) <= {200, 429}, statuses
        assert statuses[429] >= 1
        assert statuses[200] >= 2
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["Retry-After"] == "1"
        assert "queue is full" in refused.json()["error"]["message"]
        assert refused.elapsed.total_seconds() < 2  # refused at once, not after waiting
        assert small.healthy()
