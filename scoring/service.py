"""Request handling, apart from the HTTP server: bytes in, status and JSON out.

Every client mistake becomes a 4xx reply whose body names the field and the problem; limits are
checked before any model work. The entry script only adapts this to the inference server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from scoring.allocator import trim
from scoring.analysis import TokenScores, bucket_counts, padded_positions, perplexity
from scoring.engine import CancelledError, DeadlineExceededError, Engine, Job, QueueFullError
from scoring.engines import OpenedModel, transformers_engine
from scoring.generation import Generation, SamplingParams
from scoring.metrics import MetricsRecorder, RequestMetrics, pooled
from scoring.model import LoadedModel, ModelInfo
from scoring.redaction import Capture
from scoring.schemas import (
    AnalysisSummary,
    AnalyzeBatchResponse,
    AnalyzeRequest,
    ErrorBody,
    ErrorDetail,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    TextAnalysis,
    TokenInfo,
    Usage,
)
from scoring.settings import Pattern, ScoringSettings
from scoring.streaming import Event, Failed, Finished, GenerationStream, Piece

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
RETRY_AFTER_S = 1
# Not sent to anyone (the client is gone): the status the metrics record for a cancelled request,
# as nginx logs a client that closed its connection.
CLIENT_CLOSED = 499
# Requests nest two or three levels (messages -> message -> field); far deeper is an attack on the
# parser's recursion, refused before parsing.
MAX_JSON_DEPTH = 32
# A string, or an unterminated one up to the end: never fails, so the scan stays linear (a failing
# match restarted at every escaped quote would be quadratic). Possessive: no backtracking.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\Z)', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_KEYS_OF = {Pattern.GENERATE: {"prompt", "messages"}, Pattern.ANALYZE: {"text", "texts"}}


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One request as :meth:`ScoringService.begin` starts it; the front door fills it in."""

    trace: RequestMetrics
    payload: dict[str, Any] | None = None
    reply: Reply = field(default_factory=lambda: Reply(500, {"error": "no reply"}))
    started: float = field(default_factory=time.perf_counter)

    def fail(self, error: ClientError) -> None:
        self.reply, self.trace.error = error.reply(self.trace.request_id), error.message


class ClientError(Exception):
    """A request the server will not run; carries the HTTP status and the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.details, self.headers = details or [], headers or {}

    def reply(self, request_id: str | None = None) -> Reply:
        body = ErrorResponse(
            error=ErrorBody(
                status=self.status,
                message=self.message,
                details=self.details,
                request_id=request_id,
            )
        )
        return Reply(self.status, body.model_dump(), self.headers)


def _field_error(status: int, name: str, message: str) -> ClientError:
    return ClientError(status, f"{name}: {message}", [ErrorDetail(field=name, message=message)])


def _retry_later(status: int, message: str) -> ClientError:
    """A refusal the client should retry (queue full, deadline passed), with ``Retry-After``."""
    return ClientError(status, message, headers={"Retry-After": str(RETRY_AFTER_S)})


def _validation_error(error: ValidationError) -> ClientError:
    details = [
        ErrorDetail(field=".".join(map(str, e["loc"])) or "body", message=e["msg"])
        for e in error.errors(include_url=False)
    ]
    summary = "; ".join(f"{d.field}: {d.message}" for d in details)
    return ClientError(422, f"invalid request: {summary}", details)


class _Gate:
    """At most ``active`` callers inside, at most ``waiting`` queued; the rest are refused.

    A waiting caller leaves when its job's deadline passes or its client goes away.
    """

    POLL_S = 0.1

    def __init__(self, active: int, waiting: int) -> None:
        self._slots = threading.BoundedSemaphore(active)
        self._room = threading.BoundedSemaphore(active + waiting)
        self.waiting = waiting

    @contextlib.contextmanager
    def enter(self, job: Job) -> Iterator[None]:
        if not self._room.acquire(blocking=False):
            raise QueueFullError(f"{self.waiting} requests already waiting")
        try:
            job.acquire(self._slots, self.POLL_S)
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._room.release()


class ScoringService:
    """Both patterns over one model and one engine, within the deployment's limits.

    ``engine`` comes from :func:`scoring.engines.open_model` (which honours ``SCORING_ENGINE``);
    without one, the service runs the transformers weights in ``lm`` with this project's engine
    (``serial`` when the settings say so, else ``continuous``).
    """

    def __init__(
        self,
        lm: LoadedModel | ModelInfo,
        settings: ScoringSettings,
        *,
        engine: Engine | None = None,
        metrics: MetricsRecorder | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.lm, self.settings = lm, settings
        self.metrics = metrics or MetricsRecorder(lm.name)
        self.capture = capture
        # A prompt needs room for one new token; a text to analyse may fill the whole context.
        self.input_limit = min(settings.max_input_tokens, lm.context_length - 1)
        self.analysis_limit = min(settings.max_input_tokens, lm.context_length)
        self.engine: Engine = engine if engine is not None else _engine_for(lm, settings)
        self._analysis_gate = _Gate(self.engine.analysis_slots, waiting=settings.max_queue)

    @classmethod
    def serving(cls, opened: OpenedModel, settings: ScoringSettings) -> ScoringService:
        """The service a server runs: metrics and capture from the environment, warmed up."""
        service = cls(
            opened.lm,
            settings,
            engine=opened.engine,
            metrics=MetricsRecorder.from_settings(opened.lm.name, settings),
            capture=Capture.from_settings(settings),
        )
        log.info("warm-up done in %.2f s", service.warm_up())
        return service

    def handle(
        self, body: bytes, job: Job | None = None, request_id: str | None = None
    ) -> Reply | ScoreStream:
        """Answer one ``POST /score`` body; record its metrics, capture it when enabled.

        ``job`` carries the request's deadline from arrival and its cancellation (the front door
        sets it when the client goes away); by default the deadline starts now. A generate
        request with ``"stream": true`` that passes every check gets a :class:`ScoreStream`
        (its first event already read, so a refusal is still a JSON 4xx). Anything unexpected
        becomes a JSON 500 carrying ``request_id`` (the server's ``x-request-id``), logged with
        its traceback and recorded like every other request.
        """
        job = job if job is not None else self.new_job()
        call = self.begin(request_id=request_id)
        try:
            call.payload = self._parse(body)
            pattern = self._pattern_of(call.payload)
            call.trace.pattern = pattern.value
            if pattern is Pattern.GENERATE:
                request = _validate(GenerateRequest, call.payload)
                if request.stream:
                    return ScoreStream.open(self, call, request, job)
                result: BaseModel = self.generate(request, call.trace, job)
            else:
                result = self.analyze(_validate(AnalyzeRequest, call.payload), call.trace, job)
            call.reply = Reply(200, result.model_dump())
        except ClientError as error:
            call.fail(error)
        except Exception as error:  # a bug or a failing model: answer, record, keep serving
            request_id = call.trace.request_id
            log.exception("request %s failed", request_id)
            call.fail(ClientError(500, f"internal error; request id {request_id}"))
            call.trace.error = f"{type(error).__name__}: {error}"
        self.end(call)
        return call.reply

    def begin(self, pattern: str | None = None, request_id: str | None = None) -> Call:
        """Start timing one call; :meth:`end` records it. Every front door (``/score``, the
        OpenAI routes, streams) answers between the two, so limits, metrics and capture are the
        same whichever door a request came through. Without a ``request_id`` one is made up."""
        trace = RequestMetrics(pattern=pattern, request_id=request_id or uuid.uuid4().hex)
        return Call(trace=trace)

    def end(self, call: Call) -> None:
        """Record the call's metrics and capture it (redacted) when capture is enabled."""
        trace = call.trace
        trace.status = call.reply.status
        trace.latency_ms = (time.perf_counter() - call.started) * 1000
        self.metrics.record(trace)
        if self.capture is not None and call.payload is not None:
            self.capture.record(call.payload, call.reply.body)  # redacts before writing

    def new_job(self, **kwargs: object) -> Job:
        """A job whose deadline is this deployment's request timeout from now (arrival)."""
        return Job.within(self.settings.request_timeout_s, **kwargs)

    def warm_up(self) -> float:
        """One tiny request per served pattern before the server reports ready; returns seconds.

        The first forward pass pays for lazy initialisation (CUDA kernels, allocator, caches);
        doing it in ``init()`` keeps that cost off the first caller and inside the probes' budget.
        """
        start = time.perf_counter()
        ids = self.lm.tokenizer("Hello").input_ids or [0]
        if Pattern.GENERATE in self.settings.patterns:
            self.engine.submit(ids, SamplingParams(1, 0.0, 1.0, 0, (), None), Job.within(300.0))
        if Pattern.ANALYZE in self.settings.patterns:
            self._score([ids * 2], 1, Job.within(300.0))  # also compiles the analysis kernel
        return time.perf_counter() - start

    def _parse(self, body: bytes) -> dict[str, Any]:
        if len(body) > self.settings.max_body_bytes:
            raise ClientError(
                413, f"body is {len(body)} bytes; the limit is {self.settings.max_body_bytes}"
            )
        if _nested_deeper_than(body, MAX_JSON_DEPTH):
            raise ClientError(400, f"body is nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            payload = json.loads(body, parse_constant=_not_json)
        except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
            raise ClientError(400, f"body is not valid JSON: {error}") from None
        if not isinstance(payload, dict):
            raise ClientError(400, f"body must be a JSON object, got {type(payload).__name__}")
        return payload

    def _pattern_of(self, payload: dict[str, Any]) -> Pattern:
        served = sorted(p.value for p in self.settings.patterns)
        task = payload.get("task")
        if task is not None:
            if not isinstance(task, str) or task not in {p.value for p in Pattern}:
                raise _field_error(422, "task", f"must be one of {[p.value for p in Pattern]}")
            pattern = Pattern(task)
        else:
            guesses = [p for p, keys in _KEYS_OF.items() if keys & payload.keys()]
            if len(guesses) != 1 and len(served) == 1:
                guesses = list(self.settings.patterns)
            if len(guesses) != 1:
                raise ClientError(
                    422,
                    "cannot tell the pattern: send 'prompt' or 'messages' to "
                    "generate, 'text' or 'texts' to analyze, or set 'task'",
                )
            pattern = guesses[0]
        if pattern not in self.settings.patterns:
            raise ClientError(
                400,
                f"this deployment does not serve '{pattern.value}' "
                f"(it serves: {', '.join(served)})",
            )
        return pattern

    # Pattern 1 -----------------------------------------------------------------------------

    def generate(
        self, request: GenerateRequest, trace: RequestMetrics | None = None, job: Job | None = None
    ) -> GenerateResponse:
        trace = trace if trace is not None else RequestMetrics()
        job = job if job is not None else self.new_job()
        ids, params = self.prepare_generation(request, trace)
        try:
            result = self.engine_for_generation().submit(ids, params, job)
        except Exception as error:
            raise self.refusal(error) from None
        return self.finish_generation(ids, result, trace)

    def stream(
        self, request: GenerateRequest, trace: RequestMetrics | None = None, job: Job | None = None
    ) -> GenerationStream:
        """Start a generation whose text arrives piece by piece; limits are checked first.

        The caller reads the first event before it commits to a streamed 200: an engine refusal
        (queue full) is then still a plain JSON 4xx (see :meth:`refusal`).
        """
        trace = trace if trace is not None else RequestMetrics()
        job = job if job is not None else self.new_job()
        ids, params = self.prepare_generation(request, trace)
        return GenerationStream(self.engine_for_generation(), ids, params, job)

    def engine_for_generation(self) -> Engine:
        if Pattern.GENERATE not in self.settings.patterns:
            raise ClientError(400, "this deployment does not serve 'generate'")
        return self.engine

    def refusal(self, error: BaseException, what: str = "generation") -> ClientError:
        """The reply for an engine error: retry later when busy or late, else a plain failure."""
        if isinstance(error, ClientError):
            return error
        if isinstance(error, QueueFullError):
            return _retry_later(429, f"{what} queue is full ({error}); retry later")
        if isinstance(error, DeadlineExceededError):
            return _retry_later(503, f"{what} did not finish in time: {error}")
        if isinstance(error, CancelledError):
            return ClientError(CLIENT_CLOSED, f"cancelled: {error}")
        log.error("%s failed: %s: %s", what, type(error).__name__, error)
        return ClientError(500, f"{what} failed: {type(error).__name__}")

    def prepare_generation(
        self,
        request: GenerateRequest,
        trace: RequestMetrics,
        *,
        fit_to_context: bool = False,
    ) -> tuple[list[int], SamplingParams]:
        """Prompt ids and sampling parameters, every limit checked before any model work.

        ``fit_to_context``: the client named no length, so generate at most what still fits
        (OpenAI's default) instead of refusing ``max_new_tokens`` that would not.
        """
        ids = self.prompt_ids(request)
        trace.tokens_in = len(ids)
        field_name = "prompt" if request.prompt is not None else "messages"
        self._check_length(field_name, len(ids))
        max_new = request.max_new_tokens
        if fit_to_context:
            max_new = max(1, min(max_new, self.lm.context_length - len(ids)))
        if max_new > self.settings.max_new_tokens:
            raise _field_error(
                422,
                "max_new_tokens",
                f"{max_new} exceeds this deployment's limit of {self.settings.max_new_tokens}",
            )
        if len(ids) + max_new > self.lm.context_length:
            raise _field_error(
                422,
                "max_new_tokens",
                f"prompt ({len(ids)} tokens) + max_new_tokens "
                f"({max_new}) exceeds the model's context of "
                f"{self.lm.context_length} tokens",
            )
        params = SamplingParams(
            max_new,
            request.temperature,
            request.top_p,
            request.top_k,
            tuple(request.stop),
            request.seed,
        )
        return ids, params

    def finish_generation(
        self, ids: list[int], result: Generation, trace: RequestMetrics
    ) -> GenerateResponse:
        """The response for a finished generation; fills the trace, samples its perplexity."""
        trace.tokens_out, trace.finish_reason = result.completion_tokens, result.finish_reason
        trace.queue_wait_ms = result.queue_wait_s * 1000
        wanted, trace.perplexity_skipped = self.metrics.wants_generated_perplexity()
        if wanted and result.text:
            # Re-tokenized output: close to, not exactly, the sampled ids.
            out = self.lm.tokenizer(result.text, add_special_tokens=False).input_ids
            [scores] = self._score([ids + out], 0, self.new_job())
            _, trace.perplexity = pooled([scores.logprobs[len(ids) - 1 :].tolist()])
        return GenerateResponse(
            text=result.text,
            finish_reason=result.finish_reason,  # type: ignore[arg-type]
            usage=Usage(
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                total_tokens=result.prompt_tokens + result.completion_tokens,
            ),
        )

    def prompt_ids(self, request: GenerateRequest) -> list[int]:
        tokenizer = self.lm.tokenizer
        if request.prompt is not None:
            return tokenizer(request.prompt).input_ids
        if not tokenizer.chat_template:
            raise _field_error(422, "messages", "this model has no chat template; send 'prompt'")
        messages = [m.model_dump() for m in request.messages or []]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already holds the special tokens.
        return tokenizer(text, add_special_tokens=False).input_ids

    def _check_length(self, field_name: str, count: int, limit: int | None = None) -> None:
        limit = self.input_limit if limit is None else limit
        if count > limit:
            raise _field_error(
                413, field_name, f"is {count} tokens; this deployment accepts at most {limit}"
            )

    # Pattern 2 -----------------------------------------------------------------------------

    def analyze(
        self, request: AnalyzeRequest, trace: RequestMetrics | None = None, job: Job | None = None
    ) -> TextAnalysis | AnalyzeBatchResponse:
        trace = trace if trace is not None else RequestMetrics()
        job = job if job is not None else self.new_job()
        texts = request.all_texts()
        if len(texts) > self.settings.max_batch_texts:
            raise _field_error(
                413,
                "texts",
                f"has {len(texts)} texts; the limit is {self.settings.max_batch_texts}",
            )
        if request.top_k > self.settings.max_top_k:
            raise _field_error(
                422,
                "top_k",
                f"{request.top_k} exceeds this deployment's limit of {self.settings.max_top_k}",
            )
        batch = [self.lm.tokenizer(t).input_ids for t in texts]
        fields = ["text"] if request.text is not None else [f"texts.{i}" for i in range(len(texts))]
        results = self.analyze_ids(batch, request.top_k, trace, fields, job=job)
        return results[0] if request.text is not None else AnalyzeBatchResponse(results=results)

    def analyze_ids(
        self,
        batch: list[list[int]],
        top_k: int,
        trace: RequestMetrics,
        fields: list[str],
        total_field: str = "texts",
        job: Job | None = None,
    ) -> list[TextAnalysis]:
        """Score token ids (one list per text) within the deployment's limits.

        ``fields`` name each text, ``total_field`` the whole request, in a 413. ``job``: the
        deadline (queue wait included) and cancellation; the engine checks them between forward
        slices.
        """
        job = job if job is not None else self.new_job()
        for name, ids in zip(fields, batch, strict=True):
            self._check_length(name, len(ids), self.analysis_limit)
        total = sum(map(len, batch))
        # What the model will run: texts are grouped by length, and padding is work too.
        positions = padded_positions([len(ids) for ids in batch])
        if positions > self.settings.max_total_tokens:
            raise _field_error(
                413,
                total_field,
                f"{total} tokens in all ({positions} positions once grouped and padded); "
                f"the limit is {self.settings.max_total_tokens}",
            )
        queued = time.perf_counter()
        try:
            with self._analysis_gate.enter(job):
                trace.queue_wait_ms = (time.perf_counter() - queued) * 1000
                scores = self._score(batch, top_k, job)
        except (QueueFullError, DeadlineExceededError, CancelledError) as error:
            raise self.refusal(error, "analysis") from None
        trim()  # the forward pass's activations are free now: give the pages back
        trace.texts, trace.tokens_in, trace.tokens_out = len(batch), total, 0
        trace.mean_logprob, trace.perplexity = pooled([s.logprobs.tolist() for s in scores])
        trace.rank_buckets = bucket_counts([r for s in scores for r in s.ranks.tolist()])
        return [self._describe(s) for s in scores]

    def _score(self, batch: list[list[int]], top_k: int, job: Job) -> list[TokenScores]:
        """Token scores from whichever engine runs the model."""
        try:
            return self.engine.analyze(batch, top_k, job)
        except (QueueFullError, DeadlineExceededError, CancelledError) as error:
            raise self.refusal(error, "analysis") from None

    def _describe(self, scores: TokenScores) -> TextAnalysis:
        logprobs, ranks = scores.logprobs.tolist(), scores.ranks.tolist()
        top_ids, top_lps = scores.top_ids.tolist(), scores.top_logprobs.tolist()
        # One batched decode of every distinct id (text and alternatives), not one call per use.
        unique = sorted({*scores.ids, *(t for row in top_ids for t in row)})
        text = dict(zip(unique, self.lm.tokenizer.batch_decode([[t] for t in unique]), strict=True))
        tokens = [
            TokenInfo(id=scores.ids[0], token=text[scores.ids[0]], logprob=None, rank=None, top=[])
        ]
        for i, token_id in enumerate(scores.ids[1:]):
            top = [
                {"id": t, "token": text[t], "logprob": lp}
                for t, lp in zip(top_ids[i], top_lps[i], strict=True)
            ]
            tokens.append(
                TokenInfo(
                    id=token_id, token=text[token_id], logprob=logprobs[i], rank=ranks[i], top=top
                )
            )
        mean = sum(logprobs) / len(logprobs) if logprobs else None
        summary = AnalysisSummary(
            num_tokens=len(scores.ids),
            scored_tokens=len(logprobs),
            mean_logprob=mean,
            perplexity=perplexity(logprobs),
            buckets=bucket_counts(ranks),
        )
        return TextAnalysis(tokens=tokens, summary=summary)


class ScoreStream:
    """A streamed ``/score`` generation as server-sent events, for either front door.

    ``data: {"text": piece}`` per decoded piece, then ``data: {"text": "", "finish_reason",
    "usage"}``; an engine error after the first piece ends the stream with
    ``event: error`` and the usual error body. Closing it early (the client went away) cancels
    the generation.
    """

    media_type: ClassVar[str] = "text/event-stream"
    # no-cache and no proxy buffering: each event must leave as soon as it is decoded
    headers: ClassVar[dict[str, str]] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

    def __init__(
        self, service: ScoringService, call: Call, stream: GenerationStream, first: Event
    ) -> None:
        self.service, self.call, self.stream, self.first = service, call, stream, first
        self._ids = stream.prompt_ids
        self._done = self._recorded = False

    @classmethod
    def open(
        cls, service: ScoringService, call: Call, request: GenerateRequest, job: Job | None = None
    ) -> ScoreStream:
        stream = service.stream(request, call.trace, job)
        first = stream.next_event()
        if isinstance(first, Failed):
            raise service.refusal(first.error)
        return cls(service, call, stream, first)

    def __iter__(self) -> Iterator[bytes]:
        try:
            event = self.first
            while True:
                yield self._encode(event)
                if not isinstance(event, Piece):
                    break
                event = self.stream.next_event()
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            event = self.first
            while True:
                yield self._encode(event)
                if not isinstance(event, Piece):
                    break
                event = await self.stream.anext_event()
        finally:
            self.close()

    def _encode(self, event: Event) -> bytes:
        if isinstance(event, Piece):
            return sse({"text": event.text})
        self._done = True
        if isinstance(event, Finished):
            response = self.service.finish_generation(self._ids, event.result, self.call.trace)
            self.call.reply = Reply(200, response.model_dump())
            return sse({**response.model_dump(), "text": ""})
        self.call.fail(self.service.refusal(event.error))
        return sse(self.call.reply.body, event="error")

    def close(self) -> None:
        """End of stream, or the client went away: stop the engine's work, record the call."""
        if not self._done:
            self._done = True
            self.stream.cancel()
            self.call.fail(ClientError(CLIENT_CLOSED, "the client closed the stream"))
        if not self._recorded:
            self._recorded = True
            self.service.end(self.call)


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _engine_for(lm: LoadedModel | ModelInfo, settings: ScoringSettings) -> Engine:
    """This project's engine over weights already loaded; vLLM loads its own (open_model)."""
    if not isinstance(lm, LoadedModel) or (
        settings.engine == "vllm" and "engine" in settings.model_fields_set
    ):
        raise ValueError(
            f"{ScoringSettings.env_name('engine')}=vllm loads the weights itself: build the "
            "service with "
            "scoring.engines.open_model(settings)"
        )
    return transformers_engine(lm, settings)


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON text opens more than ``limit`` brackets at once (strings skipped).

    Stops at the first bracket past the limit, so a body of 50,000 ``[`` costs 33 steps.
    """
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


def _not_json(constant: str) -> None:
    """``NaN`` and ``Infinity`` are JavaScript, not JSON; Python's parser would let them in."""
    raise ValueError(f"{constant} is not a JSON value")


def _validate(model: type[M], payload: dict[str, Any]) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise _validation_error(error) from None
