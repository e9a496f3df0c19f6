"""A generation read piece by piece while the engine decodes it, by threads or by asyncio.

The engine's ``submit`` blocks its caller until the text is done and hands each decoded piece to
``Job.on_text`` on the way. :class:`GenerationStream` runs ``submit`` on its own thread and turns
those calls into a sequence of events: :class:`Piece` (new text), then exactly one
:class:`Finished` (the engine's result) or :class:`Failed` (the engine's error). Closing the stream
sets ``Job.cancelled``, so a client that goes away frees its batch row within one decode step.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from scoring.engine import Engine, Job
from scoring.generation import Generation, SamplingParams


@dataclass(frozen=True)
class Piece:
    text: str


@dataclass(frozen=True)
class Finished:
    result: Generation


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Piece | Finished | Failed


class GenerationStream:
    """One running generation; iterate it (threads) or ``async for`` it (event loop), once."""

    def __init__(
        self, engine: Engine, prompt_ids: list[int], params: SamplingParams, job: Job
    ) -> None:
        self.job, self.prompt_ids = job, prompt_ids
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._wake: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self.result: Generation | None = None
        job.on_text = lambda text: self._put(Piece(text))
        self._thread = threading.Thread(
            target=self._run, args=(engine, prompt_ids, params), name="stream", daemon=True
        )
        self._thread.start()

    def _run(self, engine: Engine, prompt_ids: list[int], params: SamplingParams) -> None:
        try:
            self._put(Finished(engine.submit(prompt_ids, params, self.job)))
        except BaseException as error:  # handed to the reader, never lost on this thread
            self._put(Failed(error))

    def _put(self, event: Event) -> None:
        self._events.put(event)
        with self._lock:
            wake = self._wake
        if wake is not None:
            wake()

    def next_event(self, timeout: float | None = None) -> Event:
        """Block until the next event (threads)."""
        return self._remember(self._events.get(timeout=timeout))

    async def anext_event(self) -> Event:
        """Wait for the next event without blocking the event loop."""
        while True:
            try:
                return self._remember(self._events.get_nowait())
            except queue.Empty:
                pass
            ready = asyncio.Event()
            with self._lock:
                self._wake = functools.partial(
                    asyncio.get_running_loop().call_soon_threadsafe, ready.set
                )
            if self._events.empty():  # an event put before the wake-up was set is not missed
                await ready.wait()
            with self._lock:
                self._wake = None

    def _remember(self, event: Event) -> Event:
        if isinstance(event, Finished):
            self.result = event.result
        return event

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.next_event()
            yield event
            if not isinstance(event, Piece):
                return

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self.anext_event()
            yield event
            if not isinstance(event, Piece):
                return

    def cancel(self) -> None:
        """The reader is gone: ask the engine to drop the row at its next step."""
        self.job.cancelled.set()
