"""GenerationStream: the engine's on_text calls become events, by threads or by asyncio."""

from __future__ import annotations

import asyncio
import threading

import pytest

from scoring.engine import CancelledError, Job, QueueFullError
from scoring.generation import Generation, SamplingParams
from scoring.streaming import Failed, Finished, GenerationStream, Piece


class ScriptedEngine:
    """Calls ``on_text`` with one piece per ``step()``; honours cancellation per piece."""

    def __init__(self, pieces: list[str], error: Exception | None = None) -> None:
        self.pieces, self.error = pieces, error
        self._steps = threading.Semaphore(0)
        self.sent = 0

    def step(self, n: int = 100) -> None:
        self._steps.release(n)

    def submit(self, prompt_ids: list[int], params: SamplingParams, job: Job) -> Generation:
        if isinstance(self.error, QueueFullError):
            raise self.error
        for piece in self.pieces:
            assert self._steps.acquire(timeout=5)
            if job.cancelled.is_set():
                raise CancelledError("client went away")
            assert job.on_text is not None
            job.on_text(piece)
            self.sent += 1
        if self.error is not None:
            raise self.error
        text = "".join(self.pieces)
        return Generation(text, "stop", len(prompt_ids), len(self.pieces))


def test_pieces_then_the_result_in_order() -> None:
    engine = ScriptedEngine(["Hel", "lo", "!"])
    engine.step()
    events = list(GenerationStream(engine, [1, 2], SamplingParams(), Job.within(5)))
    assert events[:-1] == [Piece("Hel"), Piece("lo"), Piece("!")]
    assert isinstance(events[-1], Finished)
    assert events[-1].result.text == "Hello!"


def test_a_refusal_is_the_first_event() -> None:
    stream = GenerationStream(
        ScriptedEngine([], QueueFullError("full")), [1], SamplingParams(), Job.within(5)
    )
    event = stream.next_event(timeout=5)
    assert isinstance(event, Failed)
    assert isinstance(event.error, QueueFullError)


def test_cancel_stops_the_engine_at_its_next_piece() -> None:
    engine = ScriptedEngine(["a", "b", "c", "d"])
    stream = GenerationStream(engine, [1], SamplingParams(), Job.within(5))
    engine.step(1)
    assert stream.next_event(timeout=5) == Piece("a")
    stream.cancel()
    engine.step()
    events = []
    while not isinstance(event := stream.next_event(timeout=5), Failed | Finished):
        events.append(event)
    assert isinstance(event, Failed)
    assert isinstance(event.error, CancelledError)
    assert stream.job.cancelled.is_set()
    assert engine.sent == 1  # nothing decoded after the cancel


def test_the_event_loop_is_not_blocked_while_waiting() -> None:
    engine = ScriptedEngine(["x", "y"])

    async def read() -> list[object]:
        stream = GenerationStream(engine, [1], SamplingParams(), Job.within(5))
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.1)
        engine.step()  # the engine only starts once the loop has shown it is free
        events = [event async for event in stream]
        ticker.cancel()
        assert ticks >= 5
        return events

    # A loop on its own thread: asyncio.run on the main thread would leave it without a current
    # loop, which later tests in the session (Pulumi's mocks) rely on.
    result: list[list[object]] = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(read())))
    runner.start()
    runner.join(30)
    [events] = result
    assert events[:2] == [Piece("x"), Piece("y")]
    assert isinstance(events[2], Finished)


@pytest.mark.parametrize("error", [RuntimeError("boom")])
def test_an_error_after_pieces_ends_the_stream(error: Exception) -> None:
    engine = ScriptedEngine(["a"], error)
    engine.step()
    events = list(GenerationStream(engine, [1], SamplingParams(), Job.within(5)))
    assert events[0] == Piece("a")
    assert isinstance(events[1], Failed)
    assert events[1].error is error
