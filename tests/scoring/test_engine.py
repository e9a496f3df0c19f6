"""Both engines honour the Job end to end: deadline from arrival, cancellation, streamed text."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from scoring import generation
from scoring.batching import GenerationEngine, SerialEngine
from scoring.engine import CancelledError, DeadlineExceededError, Job
from scoring.generation import SamplingParams, TextStream
from scoring.model import LoadedModel
from scoring.service import ScoringService
from scoring.settings import ScoringSettings

ENGINES = ["continuous", "serial"]


@pytest.fixture
def no_eos(tiny_lm: LoadedModel) -> Iterator[LoadedModel]:
    """The tiny model without EOS: random weights would otherwise stop at a random length."""
    tiny_lm.model.generation_config.eos_token_id = None
    try:
        yield tiny_lm
    finally:
        tiny_lm.model.generation_config.eos_token_id = tiny_lm.tokenizer.eos_token_id


def make_engine(kind: str, lm: LoadedModel, **kwargs: int) -> GenerationEngine | SerialEngine:
    if kind == "serial":
        return SerialEngine(lm, max_queue=kwargs.get("max_queue", 8))
    return GenerationEngine(lm, **kwargs)


def slow_forward(lm: LoadedModel, monkeypatch: pytest.MonkeyPatch, delay_s: float) -> None:
    """Every forward pass takes at least ``delay_s``: timings stop depending on the machine."""
    forward = lm.model.forward

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(delay_s)
        return forward(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", slow)


class StepCounter:
    """Counts forward passes of the model; runs ``at(n)`` when the n-th one starts."""

    def __init__(self, lm: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.hooks: dict[int, threading.Event] = {}
        forward = lm.model.forward

        def counted(*args: object, **kwargs: object) -> object:
            self.count += 1
            if self.count in self.hooks:
                self.hooks[self.count].set()
            return forward(*args, **kwargs)

        monkeypatch.setattr(lm.model, "forward", counted)

    def cancel_at(self, step: int, event: threading.Event) -> None:
        self.hooks[step] = event


# TextStream: what the streaming sink receives ------------------------------------------------


def stream_pieces(texts: list[str], stop: tuple[str, ...] = ()) -> tuple[list[str], str]:
    pieces: list[str] = []
    stream = TextStream(pieces.append, stop)
    for text in texts[:-1]:
        stream.update(text)
    return pieces, stream.finish(texts[-1])


def test_stream_holds_back_an_unfinished_multibyte_character() -> None:
    pieces, final = stream_pieces(["h", "hé", "hé \ufffd", "hé \ufffd", "hé 日", "hé 日本"])
    assert pieces == ["h", "é", " 日", "本"]
    assert "".join(pieces) == final == "hé 日本"


def test_stream_holds_back_what_may_start_a_stop_string() -> None:
    # "END" is the stop string: "E" and "EN" may be its start, so they wait.
    pieces, final = stream_pieces(["a", "aE", "aEN", "aENx", "aENxE"], stop=("END",))
    assert pieces == ["a", "ENx", "E"]  # the last "E" waits for finish()
    assert "".join(pieces) == final
    pieces, final = stream_pieces(["a", "aE", "aEN", "a"], stop=("END",))
    assert pieces == ["a"]  # "EN" never went out: the stop string cut it off
    assert final == "a"


def test_stream_holds_back_trailing_whitespace_a_tokenizer_may_fold() -> None:
    pieces, final = stream_pieces(["hello", "hello ", "hello."])
    assert pieces == ["hello", "."]  # the space never went out: the tokenizer folded it away
    assert final == "hello."


def test_a_failing_sink_stops_the_stream_and_reports_it() -> None:
    failed = threading.Event()

    def gone(_: str) -> None:
        raise BrokenPipeError("client went away")

    stream = TextStream(gone, (), failed.set)
    stream.update("hello world")
    assert failed.is_set()
    assert stream.finish("hello world and more") == "hello world and more"


# Streaming through both engines ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ENGINES)
def test_streamed_pieces_join_to_the_final_text(kind: str, tiny_lm: LoadedModel) -> None:
    """Random weights emit stray byte tokens: partial UTF-8 that the stream must not split."""
    engine = make_engine(kind, tiny_lm)
    prompt = tiny_lm.tokenizer("the quick brown").input_ids
    for seed in range(6):
        pieces: list[str] = []
        params = SamplingParams(24, temperature=1.0, seed=seed, stop=("e",) if seed % 2 else ())
        result = engine.submit(prompt, params, Job.within(30, on_text=pieces.append))
        assert "".join(pieces) == result.text
        assert all(pieces)


@pytest.mark.parametrize("kind", ENGINES)
def test_stream_pieces_arrive_while_generating(kind: str, no_eos: LoadedModel) -> None:
    engine = make_engine(kind, no_eos)
    prompt = no_eos.tokenizer("hello world").input_ids
    arrivals: list[float] = []
    engine.submit(
        prompt,
        SamplingParams(40, temperature=1.0, seed=1),
        Job.within(30, on_text=lambda _: arrivals.append(time.monotonic())),
    )
    assert len(arrivals) > 5  # many pieces, not one at the end


# Cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ENGINES)
def test_cancelled_job_leaves_within_one_decode_step(
    kind: str, no_eos: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(kind, no_eos)
    steps = StepCounter(no_eos, monkeypatch)
    job = Job.within(60)
    steps.cancel_at(5, job.cancelled)  # the client goes away during the 5th forward pass
    with pytest.raises(CancelledError):
        engine.submit(no_eos.tokenizer("hello").input_ids, SamplingParams(200), job)
    assert steps.count <= 6  # at most the step that was running when it was cancelled, + 1


def test_a_failing_sink_cancels_the_job(no_eos: LoadedModel) -> None:
    engine = GenerationEngine(no_eos)

    def gone(_: str) -> None:
        raise BrokenPipeError

    job = Job.within(60, on_text=gone)
    with pytest.raises(CancelledError):
        engine.submit(no_eos.tokenizer("hello").input_ids, SamplingParams(200), job)
    assert job.cancelled.is_set()


def test_a_cancelled_row_leaves_and_its_neighbours_finish(
    no_eos: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = GenerationEngine(no_eos, max_batch_size=4)
    alone = engine.submit(
        no_eos.tokenizer("the quick").input_ids, SamplingParams(30), Job.within(60)
    )
    doomed, outcomes = Job.within(60), {}

    def run(name: str, text: str, job: Job) -> None:
        try:
            outcomes[name] = engine.submit(
                no_eos.tokenizer(text).input_ids, SamplingParams(30), job
            )
        except CancelledError as error:
            outcomes[name] = error

    threads = [
        threading.Thread(target=run, args=("keep", "the quick", Job.within(60))),
        threading.Thread(target=run, args=("drop", "hello world", doomed)),
    ]
    slow_forward(no_eos, monkeypatch, 0.01)
    StepCounter(no_eos, monkeypatch).cancel_at(8, doomed.cancelled)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert isinstance(outcomes["drop"], CancelledError)
    assert outcomes["keep"].text == alone.text  # type: ignore[union-attr]


def occupy_the_only_slot(
    engine: GenerationEngine | SerialEngine, lm: LoadedModel
) -> threading.Thread:
    """A 200-token request in the background: it holds the batch slot (or the model lock)."""
    busy = threading.Thread(
        target=engine.submit,
        args=(lm.tokenizer("hello").input_ids, SamplingParams(200), Job.within(60)),
    )
    busy.start()
    return busy


@pytest.mark.parametrize("kind", ENGINES)
def test_a_queued_job_that_is_cancelled_never_reaches_the_model(
    kind: str, no_eos: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(kind, no_eos, max_batch_size=1)
    slow_forward(no_eos, monkeypatch, 0.01)
    busy = occupy_the_only_slot(engine, no_eos)
    time.sleep(0.2)  # the only batch slot (or the serial model lock) is taken, for >= 2 s
    steps = StepCounter(no_eos, monkeypatch)
    job = Job.within(60)
    threading.Timer(0.2, job.cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        engine.submit(no_eos.tokenizer("the quick").input_ids, SamplingParams(5), job)
    assert time.monotonic() - started < 1.5  # did not wait for the slot
    busy.join(timeout=60)
    assert steps.count <= 200  # only the busy request's steps ran


# Deadlines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ENGINES)
def test_deadline_counts_from_arrival_queue_wait_included(
    kind: str, no_eos: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(kind, no_eos, max_batch_size=1)
    slow_forward(no_eos, monkeypatch, 0.01)
    busy = occupy_the_only_slot(engine, no_eos)
    time.sleep(0.2)  # the slot is taken for >= 2 s
    job = Job.within(0.3)  # arrived now; its whole budget goes on waiting for the slot
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        engine.submit(no_eos.tokenizer("the quick").input_ids, SamplingParams(5), job)
    assert time.monotonic() - started < 1.5
    busy.join(timeout=60)


@pytest.mark.parametrize("kind", ENGINES)
def test_a_running_row_past_its_deadline_stops(
    kind: str, no_eos: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(kind, no_eos)
    slow_forward(no_eos, monkeypatch, 0.02)
    steps = StepCounter(no_eos, monkeypatch)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        engine.submit(no_eos.tokenizer("hello").input_ids, SamplingParams(200), Job.within(0.3))
    assert time.monotonic() - started < 3.0
    assert steps.count < 50  # stopped, not run to 200 tokens


def test_an_expired_job_is_refused_before_any_work(no_eos: LoadedModel) -> None:
    with pytest.raises(DeadlineExceededError):
        GenerationEngine(no_eos).submit([1, 2], SamplingParams(5), Job(deadline=0.0))


# The service records a cancelled request -----------------------------------------------------


def test_service_records_a_cancelled_generation_as_499(
    no_eos: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    service = ScoringService(no_eos, ScoringSettings(max_new_tokens=200))
    job = service.new_job()
    threading.Timer(0.1, job.cancelled.set).start()
    with caplog.at_level("INFO", logger="scoring.metrics"):
        reply = service.handle(b'{"prompt": "hello", "max_new_tokens": 200}', job)
    assert reply.status == 499
    [line] = [r.getMessage() for r in caplog.records if r.name == "scoring.metrics"]
    assert '"status": 499' in line
    assert "cancelled" in line


def test_serial_setting_selects_the_serial_engine(tiny_lm: LoadedModel) -> None:
    service = ScoringService(tiny_lm, ScoringSettings(engine="serial", patterns="generate"))
    assert isinstance(service.engine, SerialEngine)
    assert isinstance(
        ScoringService(tiny_lm, ScoringSettings(patterns="generate")).engine, GenerationEngine
    )


def test_offline_batches_need_no_job(tiny_lm: LoadedModel) -> None:
    prompt = tiny_lm.tokenizer("hello").input_ids
    [result] = generation.generate(tiny_lm, [prompt], [SamplingParams(3)])
    assert result.completion_tokens <= 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ENGINES)
def test_demo_model_streams_multibyte_text_whole(kind: str, demo_lm: LoadedModel) -> None:
    engine = make_engine(kind, demo_lm)
    messages = [{"role": "user", "content": "Say hello in Japanese and add an emoji."}]
    text = demo_lm.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    prompt = demo_lm.tokenizer(text, add_special_tokens=False).input_ids
    pieces: list[str] = []
    result = engine.submit(prompt, SamplingParams(24), Job.within(60, on_text=pieces.append))
    assert "".join(pieces) == result.text
    assert any(ord(c) > 0x2FFF for c in result.text)  # CJK or emoji: several bytes per character
    assert not any("\ufffd" in p for p in pieces)


# Chunked prefill -------------------------------------------------------------------------------


def test_prefill_in_slices_gives_the_same_text_as_whole(tiny_lm: LoadedModel) -> None:
    prompts = [
        tiny_lm.tokenizer(t).input_ids
        for t in ("the quick brown fox jumps over the lazy dog", "hello world", "a model")
    ]
    params = SamplingParams(max_new_tokens=8)
    whole = [g.text for g in generation.generate(tiny_lm, prompts, [params] * 3)]
    batch = generation.DecodeBatch(tiny_lm)
    rows = [generation.Row(p, params) for p in prompts]
    batch.start_prefill(rows)
    slices = 0
    while batch.prefilling is not None:
        batch.prefill_step(budget=6)  # 3 rows: 2 columns a slice
        slices += 1
    while len(batch):
        batch.step()
    assert slices >= 4
    assert [r.result().text for r in rows] == whole


def test_a_long_prompt_is_prefilled_between_decode_steps_of_running_rows(
    no_eos: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure 5: a long prompt's prefill stalled every running row until it was done."""
    engine = GenerationEngine(no_eos, prefill_chunk_tokens=16)
    shapes: list[tuple[int, int]] = []
    forward = no_eos.model.forward

    def logged(*args: object, **kwargs: object) -> object:
        shapes.append(tuple(kwargs["input_ids"].shape))  # type: ignore[union-attr,arg-type]
        time.sleep(0.005)
        return forward(*args, **kwargs)

    monkeypatch.setattr(no_eos.model, "forward", logged)
    running = threading.Thread(
        target=engine.submit,
        args=(no_eos.tokenizer("hello").input_ids, SamplingParams(150), Job.within(60)),
    )
    running.start()
    time.sleep(0.1)
    long_prompt = no_eos.tokenizer(" ".join(["hello"] * 160)).input_ids
    assert len(long_prompt) > 100
    engine.submit(long_prompt, SamplingParams(2), Job.within(60))
    running.join(timeout=60)
    slices = [i for i, (rows, cols) in enumerate(shapes) if cols > 1]
    long_slices = [i for i in slices if shapes[i][0] == 1 and i > 0]
    assert max(shapes[i][1] for i in long_slices) <= 16
    assert len(long_slices) >= len(long_prompt) // 16
    # Between two slices of the long prompt, the running row took a decode step.
    for a, b in itertools.pairwise(long_slices):
        assert any(shapes[i][1] == 1 for i in range(a + 1, b)), shapes[a : b + 1]


def test_a_prompt_cancelled_during_its_prefill_stops_there(
    no_eos: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = GenerationEngine(no_eos, prefill_chunk_tokens=8)
    steps = StepCounter(no_eos, monkeypatch)
    job = Job.within(60)
    steps.cancel_at(3, job.cancelled)
    long_prompt = no_eos.tokenizer(" ".join(["hello"] * 160)).input_ids
    with pytest.raises(CancelledError):
        engine.submit(long_prompt, SamplingParams(5), job)
    assert steps.count <= 4  # not the ~20 slices of the whole prompt
