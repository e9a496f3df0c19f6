"""Request handling without HTTP: every bad input class gets its 4xx, limits before model work."""

from __future__ import annotations

import json
import threading
import time

import pytest

from scoring import generation
from scoring.batching import GenerationEngine
from scoring.engine import Job, QueueFullError
from scoring.generation import SamplingParams
from scoring.model import LoadedModel
from scoring.service import ScoringService
from scoring.settings import Pattern, ScoringSettings


@pytest.fixture(scope="module")
def service(tiny_lm: LoadedModel) -> ScoringService:
    settings = ScoringSettings(
        max_input_tokens=64,
        max_new_tokens=32,
        max_batch_texts=3,
        max_total_tokens=100,
        max_body_bytes=4096,
        max_top_k=10,
    )
    return ScoringService(tiny_lm, settings)


def call(service: ScoringService, payload: object) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reply = service.handle(body)
    return reply.status, reply.body


def test_generate_answers_with_text_finish_reason_and_usage(service: ScoringService) -> None:
    status, body = call(service, {"prompt": "hello world", "max_new_tokens": 4})
    assert status == 200
    assert set(body) == {"text", "finish_reason", "usage"}
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )


def test_chat_messages_are_rendered_with_the_chat_template(service: ScoringService) -> None:
    status, body = call(
        service, {"messages": [{"role": "user", "content": "hello"}], "max_new_tokens": 2}
    )
    rendered = service.lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    assert status == 200
    assert body["usage"]["prompt_tokens"] == len(service.lm.tokenizer(rendered).input_ids)


def test_analyze_single_text_and_batch(service: ScoringService) -> None:
    status, one = call(service, {"text": "the quick brown fox", "top_k": 2})
    assert status == 200
    assert one["tokens"][0]["logprob"] is None
    assert one["tokens"][0]["rank"] is None
    assert all(len(t["top"]) == 2 for t in one["tokens"][1:])
    assert one["summary"]["scored_tokens"] == len(one["tokens"]) - 1
    assert sum(one["summary"]["buckets"].values()) == one["summary"]["scored_tokens"]
    status, many = call(service, {"texts": ["hello world", "the quick brown fox"], "top_k": 2})
    assert status == 200
    assert len(many["results"]) == 2
    # Batched with a shorter neighbour: same tokens and ranks, log-probs equal up to padding noise.
    batched = many["results"][1]["tokens"]
    assert [(t["id"], t["rank"]) for t in batched] == [(t["id"], t["rank"]) for t in one["tokens"]]
    assert [t["logprob"] for t in batched[1:]] == pytest.approx(
        [t["logprob"] for t in one["tokens"][1:]], abs=1e-4
    )


@pytest.mark.parametrize(
    ("payload", "status", "field", "message"),
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"\xff\xfe", 400, None, "not valid JSON"),
        ([1, 2], 400, None, "must be a JSON object"),
        ({"max_new_tokens": 3}, 422, None, "cannot tell the pattern"),
        ({"task": "translate", "text": "x"}, 422, "task", "must be one of"),
        ({"prompt": "x", "max_new_tokens": "3"}, 422, "max_new_tokens", "valid integer"),
        ({"prompt": "x", "temperature": 9}, 422, "temperature", "less than or equal to 2"),
        ({"prompt": "x", "max_new_tokens": 33}, 422, "max_new_tokens", "limit of 32"),
        ({"prompt": "x", "bogus": 1}, 422, "bogus", "Extra inputs"),
        ({"text": ""}, 422, "text", "at least 1 character"),
        ({"text": "x", "top_k": 11}, 422, "top_k", "limit of 10"),
        ({"prompt": "hello " * 80}, 413, "prompt", "at most 64"),
        ({"texts": ["hello " * 80]}, 413, "texts.0", "at most 64"),
        ({"texts": ["a", "b", "c", "d"]}, 413, "texts", "limit is 3"),
        ({"texts": ["hello " * 50] * 3}, 413, "texts", "the limit is 100"),
        ({"prompt": "x" * 5000}, 413, None, "the limit is 4096"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_problem(
    service: ScoringService, payload: object, status: int, field: str | None, message: str
) -> None:
    got, body = call(service, payload)
    assert got == status, body
    assert message in body["error"]["message"]
    if field is not None:
        assert field in [d["field"] for d in body["error"]["details"]]
    assert call(service, {"text": "still serving"})[0] == 200


def test_a_pattern_the_deployment_does_not_serve_is_refused(tiny_lm: LoadedModel) -> None:
    analyze_only = ScoringService(tiny_lm, ScoringSettings(patterns="analyze"))
    status, body = call(analyze_only, {"prompt": "hello"})
    assert status == 400
    assert "does not serve 'generate'" in body["error"]["message"]
    # With one pattern served, a body without recognisable keys goes to that pattern's schema.
    assert call(analyze_only, {"top_k": 2})[0] == 422
    # Analysis runs on the same engine (one model copy), whichever it is.
    assert call(analyze_only, {"text": "hello world"})[0] == 200


def test_full_queue_answers_429_at_once_and_late_requests_503(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = generation.DecodeBatch.admit

    def blocked_admit(self: generation.DecodeBatch, rows: list) -> list:
        release.wait(timeout=30)
        return original(self, rows)

    monkeypatch.setattr(generation.DecodeBatch, "admit", blocked_admit)
    engine = GenerationEngine(tiny_lm, max_batch_size=1, max_queue=2)
    prompt, params = tiny_lm.tokenizer("hello").input_ids, SamplingParams(max_new_tokens=2)
    results: list[object] = []
    workers = [
        threading.Thread(
            target=lambda: results.append(engine.submit(prompt, params, Job.within(30)))
        )
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
        time.sleep(0.2)  # one in the loop (blocked), two waiting: the queue is full
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        engine.submit(prompt, params, Job.within(30))
    assert time.monotonic() - started < 0.5
    release.set()
    for worker in workers:
        worker.join(timeout=30)
    assert len(results) == 3


def test_deadline_exceeded_becomes_503_with_retry_after(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = generation.DecodeBatch.step

    def slow_step(self: generation.DecodeBatch) -> list:
        time.sleep(0.05)
        return original(self)

    monkeypatch.setattr(generation.DecodeBatch, "step", slow_step)
    tiny_lm.model.generation_config.eos_token_id = None
    try:
        slow = ScoringService(tiny_lm, ScoringSettings(request_timeout_s=0.3, max_new_tokens=200))
        status, body = call(slow, {"prompt": "hello", "max_new_tokens": 200})
    finally:
        tiny_lm.model.generation_config.eos_token_id = tiny_lm.tokenizer.eos_token_id
    assert status == 503
    assert "did not finish in time" in body["error"]["message"]
    assert Pattern.GENERATE in slow.settings.patterns
