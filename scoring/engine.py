"""The engine seam: what the service asks of any generation engine, whatever runs the model.

Engines (``continuous``: this project's batching loop, ``serial``: plain ``generate()``, ``vllm``)
differ in how they run the model; the service above them (schemas, limits, patterns, errors,
metrics, capture) is one and the same. A request travels with a :class:`Job`, which carries what
the engine must honour: the deadline, the client's cancellation and, for streaming, where each
decoded piece of text goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from scoring.analysis import TokenScores
from scoring.generation import Generation, SamplingParams


class QueueFullError(Exception):
    """The queue is full; retry later."""


class DeadlineExceededError(Exception):
    """The request did not finish within its time budget."""


class CancelledError(Exception):
    """The client went away; its work was stopped."""


@dataclass(eq=False)
class Job:
    """One request's handle from arrival to answer, shared by the caller and the engine.

    ``deadline`` is on the ``time.monotonic()`` clock and counts from arrival, queue wait
    included. Setting ``cancelled`` asks the engine to drop the work within one decode step.
    ``on_text``, when set, receives each new piece of generated text in order; the pieces joined
    equal the final text. It is called from the engine's thread between decode steps, so it must
    not block (hand the piece to a queue); if it raises, the job counts as cancelled.
    """

    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    on_text: Callable[[str], None] | None = None

    @classmethod
    def within(cls, timeout_s: float, **kwargs: object) -> Job:
        return cls(deadline=time.monotonic() + timeout_s, **kwargs)  # type: ignore[arg-type]

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def stop_error(self, now: float | None = None) -> DeadlineExceededError | CancelledError | None:
        """Why this job's work must stop now (cancelled wins over late), or None to go on."""
        if self.cancelled.is_set():
            return CancelledError("the client went away; its work was stopped")
        if (time.monotonic() if now is None else now) >= self.deadline:
            return DeadlineExceededError("the request's time budget ran out")
        return None

    def check(self) -> None:
        """Raise :meth:`stop_error`'s error, if any."""
        if (error := self.stop_error()) is not None:
            raise error

    def acquire(self, lock: threading.Lock | threading.Semaphore, poll_s: float = 0.1) -> None:
        """Take ``lock``, waiting only while this job may go on: when it is cancelled or its
        deadline passes first, raise :meth:`stop_error`'s error without holding the lock."""
        while not lock.acquire(timeout=max(min(poll_s, self.remaining()), 0.0)):
            self.check()
        if (error := self.stop_error()) is not None:
            lock.release()
            raise error


class Engine(Protocol):
    """What the service needs from an engine: generation and token analysis on one model copy.

    ``name`` is the ``SCORING_ENGINE`` value that selects it; ``analysis_slots`` is how many
    analysis requests it runs at once (the service queues the rest).
    """

    name: str
    analysis_slots: int

    def submit(self, prompt_ids: list[int], params: SamplingParams, job: Job) -> Generation:
        """Generate for one prompt; blocks the calling thread until the result or an error.

        Raises :class:`QueueFullError`, :class:`DeadlineExceededError` or :class:`CancelledError`.
        """
        ...

    def analyze(self, batch: list[list[int]], top_k: int, job: Job) -> list[TokenScores]:
        """Each text's token log-probabilities, full-vocabulary ranks and top-k alternatives.

        Raises the same errors as :meth:`submit`.
        """
        ...
