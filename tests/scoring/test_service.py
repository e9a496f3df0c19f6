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


def assert_client_error(
    service: ScoringService, payload: object, status: int, field: str | None, message: str
) -> None:
    """The reply has this status, its message says this, and its details name the field."""
    got, body = call(service, payload)
    assert got == status, body
    assert message in body["error"]["message"]
    if field is not None:
        assert field in [d["field"] for d in body["error"]["details"]]


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
    assert_client_error(service, payload, status, field, message)
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
    original = generation.DecodeBatch.start_prefill

    def blocked_admit(self: generation.DecodeBatch, rows: list) -> None:
        release.wait(timeout=30)
        original(self, rows)

    monkeypatch.setattr(generation.DecodeBatch, "start_prefill", blocked_admit)
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


@pytest.mark.parametrize(
    ("payload", "status", "field", "message"),
    [
        ({"task": []}, 422, "task", "must be one of"),
        ({"task": {}}, 422, "task", "must be one of"),
        ({"task": 3, "text": "x"}, 422, "task", "must be one of"),
        (b"[" * 4000, 400, None, "nested deeper than"),
        (b'{"prompt": "x", "stop": ' + b"[" * 40 + b"]" * 40 + b"}", 400, None, "nested deeper"),
        (b'{"prompt": "x", "temperature": NaN}', 400, None, "not valid JSON"),
        (b'{"prompt": "x", "top_p": Infinity}', 400, None, "not valid JSON"),
    ],
)
def test_malformed_input_gets_a_4xx_not_a_500(
    service: ScoringService, payload: object, status: int, field: str | None, message: str
) -> None:
    assert_client_error(service, payload, status, field, message)


def test_brackets_inside_strings_do_not_count_as_nesting(service: ScoringService) -> None:
    status, _ = call(service, {"text": "[" * 20 + "{" * 20})
    assert status == 200


def test_anything_unexpected_is_a_json_500_with_the_request_id_and_a_metric_line(
    service: ScoringService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "_score", broken)
    with caplog.at_level("INFO", logger="scoring.metrics"):
        reply = service.handle(b'{"text": "hello"}', request_id="req-123")
    assert reply.status == 500
    assert reply.body["error"]["request_id"] == "req-123"
    assert "a bug" not in reply.body["error"]["message"]  # internals stay in the log
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "scoring.metrics"]
    assert (line["status"], line["request_id"], line["pattern"]) == (500, "req-123", "analyze")
    assert "RuntimeError" in line["error"]
    monkeypatch.undo()
    assert call(service, {"text": "still serving"})[0] == 200


def test_every_error_reply_carries_the_request_id(service: ScoringService) -> None:
    reply = service.handle(b"{not json", request_id="abc")
    assert reply.body["error"]["request_id"] == "abc"
    assert service.handle(b"{not json").body["error"]["request_id"]  # one is made up if absent


def test_analysis_accepts_a_text_exactly_as_long_as_the_context(tiny_lm: LoadedModel) -> None:
    context = tiny_lm.context_length
    words = next(
        k
        for k in range(context - 10, context + 10)
        if len(tiny_lm.tokenizer(" ".join(["hello"] * k)).input_ids) == context
    )
    service = ScoringService(
        tiny_lm, ScoringSettings(max_input_tokens=4 * context, patterns="analyze")
    )
    exact = " ".join(["hello"] * words)
    status, body = call(service, {"text": exact, "top_k": 0})
    assert status == 200, body
    assert body["summary"]["num_tokens"] == context
    status, body = call(service, {"text": exact + " hello", "top_k": 0})
    assert status == 413
    assert f"at most {context}" in body["error"]["message"]


def slow_forward(lm: LoadedModel, monkeypatch: pytest.MonkeyPatch, delay_s: float) -> list[int]:
    """Every forward pass of the model's body sleeps first; returns a list that counts them."""
    calls: list[int] = []
    base = lm.model.base_model
    forward = base.forward

    def slow(*args: object, **kwargs: object) -> object:
        calls.append(1)
        time.sleep(delay_s)
        return forward(*args, **kwargs)

    monkeypatch.setattr(base, "forward", slow)
    return calls


def test_padded_positions_count_against_the_token_limit(tiny_lm: LoadedModel) -> None:
    service = ScoringService(tiny_lm, ScoringSettings(max_total_tokens=55, patterns="analyze"))
    texts = [" ".join(["hello"] * 30), " ".join(["hello"] * 24)]
    lengths = [len(tiny_lm.tokenizer(t).input_ids) for t in texts]
    assert sum(lengths) <= 55 < 2 * max(lengths)  # fits as tokens, not as padded work
    status, body = call(service, {"texts": texts, "top_k": 0})
    assert status == 413
    assert "positions once grouped and padded" in body["error"]["message"]


def test_analysis_past_its_deadline_is_503_and_its_work_stops(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure 3: with a 1 s budget an analysis still answered 200 after 2-12 s."""
    settings = ScoringSettings(request_timeout_s=0.5, analysis_forward_tokens=8, patterns="analyze")
    service = ScoringService(tiny_lm, settings)
    calls = slow_forward(tiny_lm, monkeypatch, 0.1)
    started = time.monotonic()
    reply = service.handle(json.dumps({"text": " ".join(["hello"] * 200), "top_k": 0}).encode())
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "1"
    assert time.monotonic() - started < 2.2  # the whole text: 25 slices, >= 2.5 s
    assert len(calls) < 200 / 8  # stopped, not run to the end


def test_a_queued_analysis_leaves_at_its_deadline_with_503(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = ScoringService(tiny_lm, ScoringSettings(request_timeout_s=0.4, patterns="analyze"))
    slow_forward(tiny_lm, monkeypatch, 2.0)
    body = json.dumps({"text": "hello world", "top_k": 0}).encode()
    first = threading.Thread(target=service.handle, args=(body,))
    first.start()
    time.sleep(0.1)  # the first one holds the model
    started = time.monotonic()
    reply = service.handle(body)
    waited = time.monotonic() - started
    first.join()
    assert reply.status == 503
    assert "did not finish in time" in reply.body["error"]["message"]
    assert waited < 1.6  # left the queue at its deadline, not when the model freed up (2 s)


def test_a_cancelled_analysis_stops_and_is_recorded_as_499(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ScoringSettings(analysis_forward_tokens=8, patterns="analyze")
    service = ScoringService(tiny_lm, settings)
    calls = slow_forward(tiny_lm, monkeypatch, 0.05)
    job = service.new_job()
    threading.Timer(0.2, job.cancelled.set).start()
    reply = service.handle(json.dumps({"text": " ".join(["hello"] * 200)}).encode(), job)
    assert reply.status == 499
    assert len(calls) < 200 / 8


def test_the_depth_scan_stays_linear_on_escaped_quotes(tiny_lm: LoadedModel) -> None:
    """A regex that fails and restarts at every escaped quote would take minutes here."""
    service = ScoringService(tiny_lm, ScoringSettings(patterns="analyze"))
    bomb = b'{"text": "' + b'\\"' * 400_000  # an unterminated string of escaped quotes
    started = time.monotonic()
    status, body = call(service, bomb)
    assert status == 400
    assert "not valid JSON" in body["error"]["message"]
    assert time.monotonic() - started < 10  # linear: well under a second on a quiet machine
