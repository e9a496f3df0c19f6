"""The ``vllm`` engine: vLLM's ``AsyncLLM`` in this process, behind the engine seam.

vLLM runs the model in its own engine-core process (paged KV cache, continuous batching, fused
kernels) and streams outputs back over ZMQ; this module owns one asyncio loop thread that talks to
it, and request threads (gunicorn ``gthread`` workers) hand their work to that loop and wait.
One engine serves both patterns: generation, and token analysis through vLLM's prompt
log-probabilities (each prompt token's log-probability, its rank over the full vocabulary, and
the top-k), so there is one copy of the weights whatever the deployment serves.

Nothing here starts vLLM at import: the engine core is a ``spawn``-ed process, which re-imports
the parent's main module, so :class:`VllmEngine` must be built from ``init()`` or a
``__main__``-guarded block, never at module top level.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from scoring.analysis import TokenScores
from scoring.engine import CancelledError, Job, QueueFullError
from scoring.generation import Generation, SamplingParams

if TYPE_CHECKING:
    from vllm.outputs import RequestOutput
    from vllm.v1.engine.async_llm import AsyncLLM

log = logging.getLogger(__name__)

# How often a waiting request thread looks at its job's cancellation and deadline. A decode step
# of a small model takes 10-50 ms here; checking at that rate keeps "stop within one step".
POLL_S = 0.02
# Time to hand a request's final output across the loop after its deadline passes.
RESULT_MARGIN_S = 5.0
GIB = 1 << 30


@dataclass(frozen=True)
class VllmConfig:
    """What vLLM needs from the deployment; derived from the stack in ``infra/sizing.py``."""

    model: str  # local folder or hub id
    revision: str | None
    device: str  # "cpu" or "cuda"
    max_model_len: int
    max_num_seqs: int
    max_logprobs: int
    kv_cache_gib: float  # CPU: the KV cache's size (vLLM reads VLLM_CPU_KVCACHE_SPACE)
    gpu_memory_utilization: float  # GPU: the fraction of GPU memory vLLM may take
    max_queue: int
    seed: int = 0

    def engine_args(self) -> dict[str, Any]:
        """``AsyncEngineArgs`` keywords: fp32 on CPU like the transformers engines, bf16 on GPU."""
        args: dict[str, Any] = {
            "model": self.model,
            "tokenizer": self.model,
            "revision": self.revision,
            "dtype": "float32" if self.device == "cpu" else "bfloat16",
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "max_logprobs": self.max_logprobs,
            "seed": self.seed,
            "disable_log_stats": True,
            "enable_log_requests": False,
        }
        if self.device == "cpu":
            # On CPU, vLLM otherwise sizes the cache as a fraction of *all* host memory.
            args["kv_cache_memory_bytes"] = int(self.kv_cache_gib * GIB)
        else:
            args["gpu_memory_utilization"] = self.gpu_memory_utilization
        return args


def _prepare_process_environment(config: VllmConfig) -> None:
    """Environment vLLM reads when it starts its engine-core process."""
    # The engine core must be spawned: a forked child of a threaded server (gunicorn gthread,
    # torch's pools) can deadlock, and CUDA cannot be forked.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    if config.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(config.kv_cache_gib))))
    # vllm-cpu 0.32 with torch 2.13 cannot reload its AOT-compiled graph ("'function' object has
    # no attribute 'finalize_loading'") and recompiles on every start; the regular compile cache
    # reloads, which halved the engine's start-up here (docs/performance.md).
    os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    # No usage reporting from a server with no internet (and none wanted in production).
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


class VllmEngine:
    """Both patterns on one vLLM engine; thread-safe, one per process."""

    name = "vllm"

    @property
    def analysis_slots(self) -> int:
        """vLLM batches analysis with everything else; admit as many as it runs sequences."""
        return self.config.max_num_seqs

    def __init__(self, config: VllmConfig) -> None:
        self.config = config
        self._ids = itertools.count()
        self.capacity = config.max_num_seqs + config.max_queue
        self._inside = 0
        self._inside_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vllm-loop", daemon=True
        )
        self._thread.start()
        started = time.perf_counter()
        self._llm: AsyncLLM = self._call(self._start()).result()
        self.startup_s = time.perf_counter() - started
        log.info("vLLM engine ready in %.1f s: %s", self.startup_s, config)

    async def _start(self) -> AsyncLLM:
        # Imported here, not at module top: importing vllm is slow and pulls its platform probes.
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        _prepare_process_environment(self.config)
        with _spawn_without_main():
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**self.config.engine_args()))

    def _call(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def shutdown(self) -> None:
        """Stop the engine-core process and the loop thread."""
        llm, self._llm = getattr(self, "_llm", None), None  # type: ignore[assignment]
        if llm is not None:
            # Now, while the interpreter is whole: AsyncLLM.__del__ at exit would do it again.
            llm.shutdown()
            del llm
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # The engine seam ---------------------------------------------------------------------------

    def submit(self, prompt_ids: list[int], params: SamplingParams, job: Job) -> Generation:
        """Generate for one prompt; blocks the calling thread until the result or an error."""
        with self._slot():
            return self._wait(self._call(self._generate(prompt_ids, params, job)), job)

    def analyze(self, batch: list[list[int]], top_k: int, job: Job) -> list[TokenScores]:
        """Score every text's tokens from vLLM's prompt log-probabilities (one request per text).

        vLLM scores the texts with its own batching, next to running generations.
        """
        with self._slot():
            return self._wait(self._call(self._score_all(batch, top_k)), job)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Admission: at most ``capacity`` requests inside; the rest get 429 at once."""
        with self._inside_lock:
            if self._inside >= self.capacity:
                raise QueueFullError(f"{self.capacity} requests already running or waiting")
            self._inside += 1
        try:
            yield
        finally:
            with self._inside_lock:
                self._inside -= 1

    def free_slots(self) -> int:
        with self._inside_lock:
            return self.capacity - self._inside

    def unfinished_requests(self) -> int:
        """Requests vLLM still holds (running or queued); 0 once cancelled ones are aborted."""
        return self._llm.get_num_unfinished_requests()

    def _wait(self, future: Future[Any], job: Job) -> Any:
        """Wait for the loop's answer; cancel it (vLLM aborts the request) when the job stops."""
        while True:
            try:
                return future.result(timeout=POLL_S)
            except TimeoutError:
                pass
            error = job.stop_error()
            if error is not None:
                future.cancel()  # the task sees CancelledError; AsyncLLM.generate aborts it
                raise error

    # On the loop thread ------------------------------------------------------------------------

    async def _generate(
        self, prompt_ids: list[int], params: SamplingParams, job: Job
    ) -> Generation:
        from vllm.inputs import tokens_input

        queued = time.monotonic()
        first: float | None = None
        text: list[str] = []
        tokens, finish, stop_reason = 0, None, None
        stream = self._llm.generate(
            tokens_input(prompt_ids), _sampling_params(params), self._request_id("gen")
        )
        async for out in stream:
            first = first if first is not None else time.monotonic()
            piece = out.outputs[0]
            tokens += len(piece.token_ids)
            if piece.text:
                text.append(piece.text)
                if job.on_text is not None and not _deliver(job.on_text, piece.text, job):
                    await stream.aclose()  # aborts the request in vLLM
                    raise CancelledError("the streaming sink failed; the request was stopped")
            finish, stop_reason = piece.finish_reason, piece.stop_reason
        if finish == "stop" and stop_reason is None:
            tokens -= 1  # vLLM counts the end-of-sequence token; the other engines do not
        return Generation(
            "".join(text),
            "length" if finish == "length" else "stop",
            len(prompt_ids),
            tokens,
            queue_wait_s=(first or queued) - queued,
        )

    async def _score_all(self, batch: list[list[int]], top_k: int) -> list[TokenScores]:
        return list(await asyncio.gather(*(self._score(ids, top_k) for ids in batch)))

    async def _score(self, ids: list[int], top_k: int) -> TokenScores:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.inputs import tokens_input

        if len(ids) < 2:  # nothing to predict; vLLM would still run a step
            return _token_scores(ids, [], top_k)
        params = VllmSamplingParams(
            max_tokens=1, temperature=0.0, prompt_logprobs=top_k, detokenize=False
        )
        final: RequestOutput | None = None
        async for out in self._llm.generate(tokens_input(ids), params, self._request_id("score")):
            final = out
        assert final is not None
        assert final.prompt_logprobs is not None
        return _token_scores(ids, final.prompt_logprobs, top_k)

    def _request_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"


@contextlib.contextmanager
def _spawn_without_main() -> Iterator[None]:
    """Start vLLM's processes without re-running this process's main module in them.

    ``spawn`` re-imports the parent's ``__main__`` in each child unless it has neither a module
    name nor a file. Under ``azmlinfsrv`` that is the server's launcher, which pulls in Flask; in
    vllm-cpu 0.32 the worker then scans every module's globals at start-up
    (``register_triton_kernel_overrides``) and Flask's ``request``/``current_app`` proxies raise
    "Working outside of application context", killing the engine core. vLLM's children need
    nothing from the parent's main module (their targets live in vllm), so hide it while they start.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


def _deliver(sink: Callable[[str], None], piece: str, job: Job) -> bool:
    """Hand a piece to the streaming sink; a sink that raises cancels the job."""
    try:
        sink(piece)
        return True
    except Exception:
        log.exception("streaming sink failed; cancelling the request")
        job.cancelled.set()
        return False


def _sampling_params(params: SamplingParams) -> Any:
    """This project's per-request parameters as vLLM's, streaming deltas."""
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.sampling_params import RequestOutputKind

    return VllmSamplingParams(
        max_tokens=params.max_new_tokens,
        temperature=params.temperature,  # 0 is greedy in vLLM too
        top_p=params.top_p,
        top_k=params.top_k,  # 0 means the whole vocabulary in both
        seed=params.seed,
        stop=list(params.stop) or None,  # excluded from the text, as cut_at_stop does
        output_kind=RequestOutputKind.DELTA,
    )


def _token_scores(ids: list[int], prompt_logprobs: Any, top_k: int) -> TokenScores:
    """vLLM's per-position dicts (token id -> Logprob, actual token included) as TokenScores."""
    n = len(ids) - 1
    logprobs, ranks = torch.empty(n), torch.empty(n, dtype=torch.long)
    top_ids = torch.empty((n, top_k), dtype=torch.long)
    top_lps = torch.empty((n, top_k))
    for i, position in enumerate(prompt_logprobs[1:]):  # position 0 predicts nothing
        actual = position[ids[i + 1]]
        logprobs[i], ranks[i] = actual.logprob, actual.rank
        # The actual token is added to the top-k when it is not among them: drop it by rank.
        best = sorted(position.items(), key=lambda item: item[1].rank)[:top_k]
        for j, (token_id, entry) in enumerate(best):
            top_ids[i, j], top_lps[i, j] = token_id, entry.logprob
    return TokenScores(ids, logprobs, ranks, top_ids, top_lps)
