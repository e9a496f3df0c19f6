"""Continuous batching: one background thread owns the model's decode loop.

Request threads (gunicorn ``gthread`` workers) hand their prompt to a bounded queue and wait on a
future. Between two decode steps the loop admits waiting requests into the running batch, so a
request never waits for a whole batch to drain. A full queue answers at once (HTTP 429) instead of
piling up work. Each request's :class:`~scoring.engine.Job` is honoured end to end: a request past
its deadline (queue wait included) or cancelled by its client leaves the queue or the batch before
the next decode step, and its caller gets the matching error; streamed text goes to ``on_text``.
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
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from scoring.allocator import trim
from scoring.analysis import TokenScores, score_tokens
from scoring.engine import DeadlineExceededError, Job, QueueFullError
from scoring.generation import (
    DecodeBatch,
    Generation,
    Row,
    SamplingParams,
    TextStream,
    cut_at_stop,
    eos_ids,
)
from scoring.model import LoadedModel

log = logging.getLogger(__name__)

# How often a waiting caller looks at its job: a queued request whose client went away or whose
# deadline passed leaves the queue within this time, without waiting for a free batch slot.
POLL_S = 0.1
# How long past its deadline a caller waits for a running row before giving up on the loop
# (the loop itself evicts the row after the current step; this covers a stuck step).
GRACE_S = 5.0


@dataclass(frozen=True)
class AnalysisOptions:
    """How the transformers engines run token analysis (``SCORING_ANALYSIS_CHUNK_TOKENS``,
    ``SCORING_COMPILE_ANALYSIS``, ``SCORING_ANALYSIS_FORWARD_TOKENS``)."""

    chunk: int = 256  # positions per logits chunk
    compiled: bool = True  # fuse the analysis kernel with torch.compile
    forward_tokens: int = 512  # positions per forward call; the deadline is checked between


class _TransformersAnalysis:
    """Token analysis on the transformers weights the engine already holds (no second copy).

    Runs in the caller's thread, one forward pass per request batch, next to the decode loop.
    """

    name: str
    # One forward pass at a time: analysis batches are already as wide as the request.
    analysis_slots = 1

    def __init__(self, lm: LoadedModel, analysis: AnalysisOptions) -> None:
        self.lm, self.analysis = lm, analysis

    def analyze(self, batch: list[list[int]], top_k: int, job: Job) -> list[TokenScores]:
        # Checked before every forward slice: a late or abandoned analysis stops there.
        return score_tokens(
            self.lm,
            batch,
            top_k,
            self.analysis.chunk,
            self.analysis.compiled,
            forward_tokens=self.analysis.forward_tokens,
            check=job.check,
        )


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
        prefill_chunk_tokens: int | None = 256,
        analysis: AnalysisOptions = AnalysisOptions(),
    ) -> None:
        super().__init__(lm, analysis)
        self.max_batch_size = max_batch_size
        # Positions of new prompts run per loop turn, between two decode steps of the running
        # rows: a long prompt no longer stalls them for its whole prefill. None: all at once.
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.active_rows = 0  # rows in the running batch, as of the last step (for metrics)
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="decode-loop", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, prompt_ids: list[int], params: SamplingParams, job: Job) -> Generation:
        """Generate for one prompt; blocks the calling thread, not the batch."""
        job.check()
        row = _Pending(prompt_ids, params, job)
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            raise QueueFullError(f"{self._queue.maxsize} requests already waiting") from None
        return _await(row.future, job)

    def _loop(self) -> None:
        batch = DecodeBatch(self.lm)
        while True:
            try:
                self._admit(batch)
                # Before the step: a cancelled or late row does not cost the batch another step.
                for row, error in batch.evict(time.monotonic()):
                    _fail(row, error)
                if batch.prefilling is not None:
                    for row in batch.prefill_step(self.prefill_chunk_tokens):
                        _resolve(row)
                for row in batch.step() if len(batch) else ():
                    _resolve(row)
                self.active_rows = len(batch)  # before the loop may block on an empty queue
            except Exception as error:  # a failed step must not kill the loop or strand callers
                log.exception("decode step failed; failing the %d rows in the batch", len(batch))
                prefilling = batch.prefilling.rows if batch.prefilling is not None else []
                for row in [*batch.rows, *prefilling]:
                    _fail(row, error)
                batch = DecodeBatch(self.lm)

    def _admit(self, batch: DecodeBatch) -> None:
        """Start the prefill of waiting requests; block only when there is nothing to do.

        One prefill group at a time: requests arriving during a long prefill wait for it.
        """
        if batch.prefilling is not None:
            return
        arrivals: list[_Pending] = []
        if not len(batch):
            trim()  # the drained batch's KV cache is free: give the pages back while idle
            arrivals.append(self._queue.get())
        while len(batch) + len(arrivals) < self.max_batch_size:
            try:
                arrivals.append(self._queue.get_nowait())
            except queue.Empty:
                break
        now = time.monotonic()
        live = []
        for row in arrivals:
            if not row.future.set_running_or_notify_cancel():
                continue  # its caller already gave up on it
            if (error := row.stop_error(now)) is not None:
                _fail(row, error)
            else:
                live.append(row)
        if live:
            try:
                batch.start_prefill(list(live))
            except Exception as error:
                for row in live:
                    _fail(row, error)
                raise


def _resolve(row: Row) -> None:
    assert isinstance(row, _Pending)
    row.future.set_result(row.result())


def _fail(row: Row, error: BaseException) -> None:
    assert isinstance(row, _Pending)
    if not row.future.done():
        row.future.set_exception(error)


def _await(future: Future[Generation], job: Job) -> Generation:
    """The loop's answer for ``future``; a queued request gives up as soon as its job stops."""
    while True:
        try:
            return future.result(timeout=min(POLL_S, max(job.remaining() + GRACE_S, 0.0)))
        except FutureTimeout:
            pass
        error = job.stop_error()
        if error is None:
            continue
        if future.cancel():  # still queued: it never reaches the model
            raise error
        # Running: the loop evicts it after the current step and fails the future with the reason.
        if job.remaining() < -GRACE_S:
            raise DeadlineExceededError(f"no answer {GRACE_S:.0f} s past the deadline") from None


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
        analysis: AnalysisOptions = AnalysisOptions(),
    ) -> None:
        super().__init__(lm, analysis)
        self._model_lock = threading.Lock()
        self._room = threading.BoundedSemaphore(max_queue + 1)

    def submit(self, prompt_ids: list[int], params: SamplingParams, job: Job) -> Generation:
        job.check()
        if not self._room.acquire(blocking=False):
            raise QueueFullError("the serial engine's queue is full")
        try:
            queued = time.monotonic()
            job.acquire(self._model_lock, POLL_S)  # gives up when the job stops
            try:
                wait = time.monotonic() - queued
                result = plain_generate(self.lm, prompt_ids, params, job)
                return replace(result, queue_wait_s=wait)
            finally:
                self._model_lock.release()
        finally:
            self._room.release()


class _JobWatch(StoppingCriteria):
    """Checked by ``generate()`` after every token: stops on cancellation or deadline, streams."""

    def __init__(self, lm: LoadedModel, prompt_length: int, stream: TextStream, job: Job) -> None:
        self.lm, self.prompt_length, self.stream, self.job = lm, prompt_length, stream, job
        self.eos = eos_ids(lm)
        self.error: Exception | None = None

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object
    ) -> torch.Tensor:
        self.error = self.job.stop_error()
        if self.error is None and self.stream.sink is not None:
            tokens = [t for t in input_ids[0, self.prompt_length :].tolist() if t not in self.eos]
            text = self.lm.tokenizer.decode(tokens, skip_special_tokens=True)
            self.stream.update(cut_at_stop(text, self.stream.stop)[0])
        stop = self.error is not None
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def plain_generate(
    lm: LoadedModel, prompt_ids: list[int], params: SamplingParams, job: Job | None = None
) -> Generation:
    """``model.generate`` for one prompt, with the same result semantics as the batch loop.

    With a ``job``, a stopping criterion checks its cancellation and deadline after every token
    (raising :class:`CancelledError` or :class:`DeadlineExceededError`) and streams its text.
    """
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
    stream = TextStream(
        job.on_text if job else None, params.stop, job.cancelled.set if job else None
    )
    watch = _JobWatch(lm, len(prompt_ids), stream, job) if job is not None else None
    with torch.inference_mode():
        out = lm.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            generation_config=config,
            tokenizer=lm.tokenizer,
            stopping_criteria=StoppingCriteriaList([watch] if watch else []),
        )
    if watch is not None and watch.error is not None:
        raise watch.error
    new = out[0, len(prompt_ids) :].tolist()
    ended = bool(new) and new[-1] in eos_ids(lm)
    tokens = new[:-1] if ended else new
    text = lm.tokenizer.decode(tokens, skip_special_tokens=True)
    text, stopped = cut_at_stop(text, params.stop)
    ended = ended or stopped
    return Generation(
        stream.finish(text),
        "stop" if ended else "length",
        len(prompt_ids),
        len(tokens),
        token_ids=tuple(tokens),
    )
