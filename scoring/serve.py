"""The OpenAI-compatible server: the same service as ``/score``, behind OpenAI's API.

    python -m scoring.serve --model-dir DIR --port 8000

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` (OpenAI),
``POST /score`` (the project's two patterns, streaming included), ``GET /health`` (liveness: the
process answers), ``GET /ready`` and ``GET /`` (readiness: the model is loaded and warm),
``GET /metrics`` (Prometheus). On a managed online endpoint this is a custom container whose
``inference_config`` routes liveness to ``/health``, readiness to ``/ready`` and scoring to
``/``, so ``https://<endpoint>.<region>.inference.ml.azure.com/v1/chat/completions`` arrives
here unchanged.

Starlette + sse-starlette + uvicorn, not FastAPI: requests are validated by the service's and
:mod:`scoring.openai_api`'s pydantic models, which answer in OpenAI's error shape; FastAPI's
own validation layer would answer first, in its own shape. The model runs on the engine's
threads, never on the event loop; a streamed request whose client disconnects is cancelled
(``Job.cancelled``) and leaves the batch at the next decode step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import uvicorn
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scoring import openai_api as oai
from scoring.engine import Job
from scoring.engines import open_model
from scoring.generation import Generation, SamplingParams
from scoring.metrics import PrometheusMetrics, RequestMetrics
from scoring.openai_api import ChatCompletionRequest, CompletionRequest, OpenAIError
from scoring.schemas import GenerateResponse
from scoring.service import Call, ClientError, Reply, ScoreStream, ScoringService
from scoring.settings import ScoringSettings
from scoring.streaming import Failed, Finished, GenerationStream, Piece

log = logging.getLogger("scoring.serve")

DONE = "[DONE]"
RETRY_LOADING = {"Retry-After": "5"}
# No keep-alive comments: azure-ai-inference's stream parser refuses any line but `data:`.
# Long silences come before the first token (queue, prefill), and the response starts only then.
PING_S = 0
SEP = "\n"  # LF, not sse-starlette's CRLF default: azure-ai-inference splits events on "\n\n"


class OpenAIServer:
    """Routes over one :class:`ScoringService`, loaded in the background at start-up."""

    def __init__(
        self,
        load: Callable[[], ScoringService],
        served_name: str | None = None,
    ) -> None:
        self._load = load
        self.served_name = served_name
        self.service: ScoringService | None = None
        self.load_error: str | None = None
        self.created = int(time.time())
        self.prometheus = PrometheusMetrics()

    # Start-up and health -------------------------------------------------------------------

    def start_loading(self) -> threading.Thread:
        """Load and warm the model on a thread: liveness answers while it loads."""

        def load() -> None:
            try:
                service = self._load()
                service.metrics.prometheus = self.prometheus
                self.prometheus.watch(service)
                self.served_name = self.served_name or service.lm.name
                self.service = service
                log.info("ready: serving %s as %r", service.lm.name, self.served_name)
            except Exception as error:  # readiness reports it; the probes restart the container
                log.exception("model load failed")
                self.load_error = f"{type(error).__name__}: {error}"

        thread = threading.Thread(target=load, name="model-load", daemon=True)
        thread.start()
        return thread

    async def health(self, request: Request) -> Response:
        if self.load_error:
            return JSONResponse({"status": "failed", "error": self.load_error}, 500)
        return JSONResponse({"status": "alive"})

    async def ready(self, request: Request) -> Response:
        if self.service is None:
            body = {"status": "failed" if self.load_error else "loading", "error": self.load_error}
            return JSONResponse(body, 503, {"Retry-After": "5"})
        return JSONResponse({"status": "ready", "model": self.served_name})

    async def metrics(self, request: Request) -> Response:
        body, content_type = self.prometheus.exposition()
        return Response(body, media_type=content_type)

    def _service(self) -> ScoringService:
        if self.service is None:
            raise OpenAIError(
                503, "the model is loading; retry later", headers={"Retry-After": "5"}
            )
        return self.service

    # /score --------------------------------------------------------------------------------

    async def score(self, request: Request) -> Response:
        if self.service is None:
            reply = ClientError(503, "model not loaded", headers={"Retry-After": "5"}).reply()
            return JSONResponse(reply.body, reply.status, reply.headers)
        job = self.service.new_job()  # the deadline counts from arrival
        body = await request.body()
        answer = await anyio.to_thread.run_sync(self.service.handle, body, job)
        if isinstance(answer, ScoreStream):
            return EventSourceResponse(answer, headers=answer.headers, ping=PING_S, sep=SEP)
        return JSONResponse(answer.body, answer.status, answer.headers)

    # OpenAI --------------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        service = self._service()
        return JSONResponse(oai.models_list(self.served_name or service.lm.name, self.created))

    async def chat_completions(self, request: Request) -> Response:
        return await self._openai(request, ChatCompletionRequest)

    async def completions(self, request: Request) -> Response:
        return await self._openai(request, CompletionRequest)

    async def _openai(self, request: Request, model: type[oai.R]) -> Response:
        try:
            service = self._service()
        except OpenAIError as error:
            return _error_response(error)
        job = service.new_job()  # the deadline counts from arrival
        call = service.begin("generate")
        keep_open = False
        try:
            try:
                call.payload = json.loads(await request.body())
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise OpenAIError(400, f"the body is not valid JSON: {error}") from None
            parsed = oai.parse(model, call.payload)
            self._check_model(parsed.model)
            if isinstance(parsed, CompletionRequest) and parsed.echo:
                reply = await anyio.to_thread.run_sync(
                    self._echo_completion, service, call, parsed, job
                )
            elif parsed.stream:
                response = await self._stream(service, call, parsed, job)
                keep_open = True
                return response
            else:
                reply = await anyio.to_thread.run_sync(self._complete, service, call, parsed, job)
            call.reply = Reply(200, reply)
            return JSONResponse(reply)
        except OpenAIError as error:
            call.reply = Reply(error.status, error.body(), error.headers)
            call.trace.error = error.message
            return _error_response(error)
        finally:
            if not keep_open:
                service.end(call)

    def _check_model(self, name: str | None) -> None:
        if name is not None and name != self.served_name:
            raise OpenAIError(
                404,
                f"The model '{name}' does not exist; this endpoint serves '{self.served_name}'",
                "model",
                "model_not_found",
            )

    def _prepare(
        self, service: ScoringService, call: Call, parsed: oai.R
    ) -> tuple[list[int], SamplingParams, dict[str, str]]:
        generate, defaulted, renames = oai.generate_request(parsed, service.settings.max_new_tokens)
        try:
            ids, params = service.prepare_generation(generate, call.trace, fit_to_context=defaulted)
        except ClientError as error:
            raise OpenAIError.from_client_error(error, renames) from None
        return ids, params, renames

    def _generate(
        self, service: ScoringService, call: Call, parsed: oai.R, job: Job
    ) -> tuple[list[int], Generation, GenerateResponse]:
        """Run one non-streamed generation; refusals in OpenAI's shape, with its names."""
        ids, params, renames = self._prepare(service, call, parsed)
        try:
            result = service.engine_for_generation().submit(ids, params, job)
            return ids, result, service.finish_generation(ids, result, call.trace)
        except Exception as error:
            raise OpenAIError.from_client_error(service.refusal(error), renames) from None

    def _complete(
        self, service: ScoringService, call: Call, parsed: oai.R, job: Job
    ) -> dict[str, Any]:
        """A non-streamed chat completion or completion (runs on a worker thread)."""
        ids, result, done = self._generate(service, call, parsed, job)
        use = oai.usage(done.usage.prompt_tokens, done.usage.completion_tokens)
        name = self.served_name or service.lm.name
        if isinstance(parsed, ChatCompletionRequest):
            logprobs = None
            if parsed.logprobs:
                analysis, start = self._generated_analysis(
                    service, ids, result.token_ids, done.text, parsed.top_logprobs or 0
                )
                logprobs = oai.chat_logprobs(analysis, start, parsed.top_logprobs or 0)
            return oai.chat_completion(name, done.text, done.finish_reason, use, logprobs)
        logprobs = None
        if parsed.logprobs is not None:
            analysis, start = self._generated_analysis(
                service, ids, result.token_ids, done.text, parsed.logprobs
            )
            logprobs = oai.completion_logprobs(analysis, start, parsed.logprobs)
        return oai.completion(name, done.text, done.finish_reason, use, logprobs)

    def _generated_analysis(
        self,
        service: ScoringService,
        ids: list[int],
        generated: tuple[int, ...],
        text: str,
        top: int,
    ) -> tuple[Any, int]:
        """Logprobs of the generated tokens: one scoring pass over prompt + output.

        Values are the model's raw log-probabilities (before temperature and top-p), as vLLM
        reports them by default. Tokens decoded past a stop string (cut from the text) are
        left out.
        """
        kept = list(generated)
        decode = service.lm.tokenizer.decode
        while kept and len(decode(kept, skip_special_tokens=True)) > len(text):
            kept.pop()
        scratch = RequestMetrics()
        try:
            [analysis] = service.analyze_ids(
                [ids + kept], top, scratch, ["messages"], total_field="messages"
            )
        except ClientError as error:
            raise OpenAIError.from_client_error(error, {}) from None
        return analysis, len(ids)

    def _echo_completion(
        self, service: ScoringService, call: Call, parsed: CompletionRequest, job: Job
    ) -> dict[str, Any]:
        """``echo``: the prompt's own token logprobs (``max_tokens: 0`` is token analysis in
        OpenAI's terms), then the completion, if any, scored in the same pass."""
        if parsed.stream:
            raise OpenAIError(400, "echo is not available when streaming", "echo")
        text, top = parsed.prompt_text(), parsed.logprobs
        prompt_ids = service.lm.tokenizer(text).input_ids
        out_text, finish, out_ids = "", "length", ()
        if parsed.max_tokens != 0:
            _, result, done = self._generate(service, call, parsed, job)
            out_text, finish, out_ids = done.text, done.finish_reason, result.token_ids
        logprobs = None
        completion_tokens = 0
        if top is not None:
            analysis, _ = self._generated_analysis(service, prompt_ids, out_ids, out_text, top)
            logprobs = oai.completion_logprobs(analysis, 0, top)
            completion_tokens = len(analysis.tokens) - len(prompt_ids)
            call.trace.mean_logprob = analysis.summary.mean_logprob
            call.trace.perplexity = analysis.summary.perplexity
        else:
            completion_tokens = len(out_ids)
        call.trace.tokens_in = len(prompt_ids)
        use = oai.usage(len(prompt_ids), completion_tokens)
        name = self.served_name or service.lm.name
        return oai.completion(name, text + out_text, finish, use, logprobs)

    async def _stream(
        self, service: ScoringService, call: Call, parsed: oai.R, job: Job
    ) -> Response:
        """Read the first event before committing to a 200: a refusal is still a JSON error."""
        ids, params, renames = await anyio.to_thread.run_sync(self._prepare, service, call, parsed)
        stream = GenerationStream(service.engine_for_generation(), ids, params, job)
        first = await stream.anext_event()
        if isinstance(first, Failed):
            raise OpenAIError.from_client_error(service.refusal(first.error), renames)
        chunks = self._chunks(service, call, parsed, ids, stream, first)
        return EventSourceResponse(chunks, headers=ScoreStream.headers, ping=PING_S, sep=SEP)

    async def _chunks(
        self,
        service: ScoringService,
        call: Call,
        parsed: oai.R,
        ids: list[int],
        stream: GenerationStream,
        event: Any,
    ) -> AsyncIterator[str]:
        chat = isinstance(parsed, ChatCompletionRequest)
        chunk_id = oai.new_id("chatcmpl" if chat else "cmpl")
        name = self.served_name or service.lm.name
        with_usage = parsed.include_usage()
        finished = False

        def chunk(text: str | None, finish: str | None = None, role: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": text} if role else {"content": text}
                if finish is not None:
                    delta = {}
                return json.dumps(oai.chat_chunk(chunk_id, name, delta, finish, None, with_usage))
            body = oai.completion(name, text or "", finish, None, None, chunk_id)  # type: ignore[arg-type]
            if not with_usage:
                body.pop("usage")
            return json.dumps(body)

        try:
            if chat:
                yield chunk("", role=True)
            while isinstance(event, Piece):
                yield chunk(event.text)
                event = await stream.anext_event()
            finished = True
            if isinstance(event, Failed):
                error = OpenAIError.from_client_error(service.refusal(event.error), {})
                call.reply, call.trace.error = Reply(error.status, error.body()), error.message
                yield json.dumps(error.body())
                return
            assert isinstance(event, Finished)
            done = service.finish_generation(ids, event.result, call.trace)
            call.reply = Reply(200, {"text": done.text, "finish_reason": done.finish_reason})
            yield chunk(None, done.finish_reason)
            if with_usage:
                use = oai.usage(done.usage.prompt_tokens, done.usage.completion_tokens)
                if chat:
                    yield json.dumps(oai.chat_chunk(chunk_id, name, None, None, use, True))
                else:
                    body = oai.completion(name, "", None, use, None, chunk_id)  # type: ignore[arg-type]
                    body["choices"] = []
                    yield json.dumps(body)
            yield DONE
        finally:
            if not finished:  # the client went away mid-stream: free its batch row now
                stream.cancel()
                call.reply = Reply(499, {"error": "the client closed the stream"})
                call.trace.error = "the client closed the stream"
            service.end(call)


def _error_response(error: OpenAIError) -> Response:
    return JSONResponse(error.body(), error.status, error.headers)


def create_app(server: OpenAIServer, settings: ScoringSettings | None = None) -> Starlette:
    """The routes over `server`; `settings` (default: read from the environment) size the
    worker threads."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Blocking service calls run on worker threads; allow every queued request one.
        limits = settings or ScoringSettings()
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, limits.max_queue + limits.max_batch_size)
        server.start_loading()
        yield

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, endpoint, methods=[method])

    return Starlette(
        routes=[
            route("/", server.ready, "GET"),
            # The endpoint's own scoring URI (what `az ml online-endpoint invoke` and the rollout's
            # smoke test call) lands on the scoring route itself.
            route("/", server.score, "POST"),
            route("/health", server.health, "GET"),
            route("/ready", server.ready, "GET"),
            route("/metrics", server.metrics, "GET"),
            route("/score", server.score, "POST"),
            route("/v1/models", server.models, "GET"),
            route("/v1/chat/completions", server.chat_completions, "POST"),
            route("/v1/completions", server.completions, "POST"),
        ],
        lifespan=lifespan,
    )


def service_loader(settings: ScoringSettings) -> Callable[[], ScoringService]:
    """Load, build and warm the service as ``score.py``'s ``init()`` does."""

    def load() -> ScoringService:
        opened = open_model(settings)  # SCORING_ENGINE: vllm, continuous or serial
        return ScoringService.serving(opened, settings)

    return load


# Command-line options, each overriding one setting (whose variable it otherwise reads).
OPTIONS = {
    "--model-dir": "model_dir",
    "--host": "host",
    "--port": "port",
    "--served-model-name": "served_model_name",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option, field in OPTIONS.items():
        info = ScoringSettings.model_fields[field]
        default = "" if info.default is None else f"; default {info.default}"
        variable = ScoringSettings.env_name(field)
        parser.add_argument(option, dest=field, help=f"{info.description} (or {variable}{default})")
    args = parser.parse_args(argv)
    given = {field: getattr(args, field) for field in OPTIONS.values()}
    try:
        settings = ScoringSettings(**{f: value for f, value in given.items() if value is not None})
    except ValidationError as error:
        parser.error(str(error))
    logging.basicConfig(level=settings.log_level)
    server = OpenAIServer(service_loader(settings), settings.served_model_name)
    app = create_app(server, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
