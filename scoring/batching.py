"""Continuous batching: one background thread owns the model's decode loop.

Request threads (gunicorn ``gthread`` workers) hand their prompt to a bounded queue and wait on a
future. Between two decode steps the loop admits waiting requests into the running batch, so a
request never waits for a whole batch to drain. A full queue answers at once (HTTP 429) instead of
piling up work; a request past its deadline leaves the batch and its caller gets an error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace

import torch
from transformers import GenerationConfig

from scoring.analysis import TokenScores, score_tokens
from scoring.engine import DeadlineExceededError, Job, QueueFullError
from scoring.generation import (
    DecodeBatch,
    Generation,
    Row,
    SamplingParams,
    cut_at_stop,
    eos_ids,
)
from scoring.model import LoadedModel

log = logging.getLogger(__name__)


class _TransformersAnalysis:
    """Token analysis on the transformers weights the engine already holds (no second copy).

    Runs in the caller's thread, one forward pass per request batch, next to the decode loop.
    """

    lm: LoadedModel
    analysis_chunk: int
    compile_analysis: bool
    name: str
    # One forward pass at a time: analysis batches are already as wide as the request.
    analysis_slots = 1

    def analyze(self, batch: list[list[int]], top_k: int, job: Job) -> list[TokenScores]:
        error = job.stop_error()
        if error is not None:  # waited past its budget, or the client left, before the pass
            raise error
        return score_tokens(self.lm, batch, top_k, self.analysis_chunk, self.compile_analysis)


@dataclass(eq=False)
class _Pending(Row):
    """A row with the future its caller waits on."""

    future: Future[Generation] = field(default_factory=Future)


class GenerationEngine(_TransformersAnalysis):
    """Thread-safe front of the decode loop; one per process, shared by all request threads."""

    name = "continuous"

    def __init__(
        self,
        lm: LoadedModel,
        *,
        max_batch_size: int = 16,
        max_queue: int = 64,
        analysis_chunk: int = 256,
        compile_analysis: bool = True,
    ) -> None:
        self.lm = lm
        self.analysis_chunk, self.compile_analysis = analysis_chunk, compile_analysis
        self.max_batch_size = max_batch_size
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="decode-loop", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, prompt_ids: list[int], params: SamplingParams, job: Job) -> Generation:
        """Generate for one prompt; blocks the calling thread, not the batch."""
        timeout_s = job.remaining()
        row = _Pending(prompt_ids, params, deadline=job.deadline)
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            raise QueueFullError(f"{self._queue.maxsize} requests already waiting") from None
        try:
            # The loop expires late rows itself; the margin covers one decode step.
            return row.future.result(timeout=timeout_s + 5.0)
        except FutureTimeout:
            raise DeadlineExceededError(f"no result within {timeout_s:.0f} s") from None

    def _loop(self) -> None:
        batch = DecodeBatch(self.lm)
        while True:
            try:
                self._admit(batch)
                for row in batch.step() if len(batch) else ():
                    _resolve(row)
                for row in batch.expire(time.monotonic()):
                    _fail(row, DeadlineExceededError("the request's time budget ran out"))
            except Exception as error:  # a failed step must not kill the loop or strand callers
                log.exception("decode step failed; failing the %d rows in the batch", len(batch))
                for row in batch.rows:
                    _fail(row, error)
                batch = DecodeBatch(self.lm)

    def _admit(self, batch: DecodeBatch) -> None:
        """Move waiting requests into the batch; block only when there is nothing to do."""
        arrivals: list[_Pending] = []
        if not len(batch):
            arrivals.append(self._queue.get())
        while len(batch) + len(arrivals) < self.max_batch_size:
            try:
                arrivals.append(self._queue.get_nowait())
            except queue.Empty:
                break
        now = time.monotonic()
        live = [r for r in arrivals if r.deadline > now and r.future.set_running_or_notify_cancel()]
        for row in arrivals:
            if row not in live and not row.future.done():
                _fail(row, DeadlineExceededError("the request waited in the queue past its budget"))
        if live:
            try:
                finished = batch.admit(list(live))
            except Exception as error:
                for row in live:
                    _fail(row, error)
                raise
            for row in finished:
                _resolve(row)


def _resolve(row: Row) -> None:
    assert isinstance(row, _Pending)
    row.future.set_result(row.result())


def _fail(row: Row, error: BaseException) -> None:
    assert isinstance(row, _Pending)
    if not row.future.done():
        row.future.set_exception(error)


class SerialEngine(_TransformersAnalysis):
    """The naive baseline: one request at a time, plain ``model.generate`` for each.

    Kept for benchmarks (``SCORING_ENGINE=serial``) and as a fallback for models whose cache
    does not support row-wise batching.
    """

    name = "serial"

    def __init__(
        self,
        lm: LoadedModel,
        *,
        max_queue: int = 64,
        analysis_chunk: int = 256,
        compile_analysis: bool = True,
    ) -> None:
        self.lm = lm
        self.analysis_chunk, self.compile_analysis = analysis_chunk, compile_analysis
        self._model_lock = threading.Lock()
        self._room = threading.BoundedSemaphore(max_queue + 1)

    def submit(self, prompt_ids: list[int], params: SamplingParams, job: Job) -> Generation:
        timeout_s = max(job.remaining(), 0.0)
        if not self._room.acquire(blocking=False):
            raise QueueFullError("the serial engine's queue is full")
        try:
            queued = time.monotonic()
            if not self._model_lock.acquire(timeout=timeout_s):
                raise DeadlineExceededError(f"waited {timeout_s:.0f} s for the model")
            try:
                wait = time.monotonic() - queued
                return replace(plain_generate(self.lm, prompt_ids, params), queue_wait_s=wait)
            finally:
                self._model_lock.release()
        finally:
            self._room.release()


def plain_generate(lm: LoadedModel, prompt_ids: list[int], params: SamplingParams) -> Generation:
    """``model.generate`` for one prompt, with the same result semantics as the batch loop."""
    sampling = params.temperature > 0
    config = GenerationConfig(
        max_new_tokens=params.max_new_tokens,
        do_sample=sampling,
        temperature=params.temperature if sampling else None,
        top_p=params.top_p if sampling else None,
        top_k=(params.top_k or None) if sampling else None,
        stop_strings=list(params.stop) or None,
        pad_token_id=lm.tokenizer.pad_token_id,
        eos_token_id=sorted(eos_ids(lm)),
    )
    if params.seed is not None:
        torch.manual_seed(params.seed)  # global RNG: safe only because calls are serialised
    ids = torch.tensor([prompt_ids], device=lm.device)
    with torch.inference_mode():
        out = lm.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            generation_config=config,
            tokenizer=lm.tokenizer,
        )
    new = out[0, len(prompt_ids) :].tolist()
    ended = bool(new) and new[-1] in eos_ids(lm)
    tokens = new[:-1] if ended else new
    text = lm.tokenizer.decode(tokens, skip_special_tokens=True)
    text, stopped = cut_at_stop(text, params.stop)
    ended = ended or stopped
    return Generation(text, "stop" if ended else "length", len(prompt_ids), len(tokens))
