"""Entry script for the Azure ML inference server (``azmlinfsrv``).

``init()`` loads the model once per worker process; ``run()`` answers ``POST /score``, streamed
as server-sent events when the body says ``"stream": true``. Client errors are *returned* with
their own status: anything raised here becomes an opaque 500.

    azmlinfsrv --entry_script scoring/score.py --port 5001
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

# The server loads this file by path; make the package importable wherever the code is mounted.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azureml_inference_server_http.api.aml_request import AMLRequest, rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse
from flask import g

from scoring.allocator import limit_arenas
from scoring.disconnect import watch_disconnect
from scoring.engines import open_model
from scoring.schemas import openapi_document
from scoring.service import ClientError, ScoreStream, ScoringService
from scoring.settings import ScoringSettings

log = logging.getLogger("scoring")
service: ScoringService | None = None


def init() -> None:
    """Open the model on ``SCORING_ENGINE`` (``SCORING_MODEL_DIR`` or the ``AZUREML_MODEL_DIR``
    mount), then warm it.

    The server reports ready only after this returns, so the warm-up generation runs before any
    traffic; a load failure is logged with its reason and fails the worker (the probes show it).
    vLLM's engine core is a spawned process, which is why it starts here and not at import.
    """
    global service
    logging.basicConfig(level=os.environ.get("AZUREML_LOG_LEVEL", "INFO"))
    # The server configures logging before init(); give this package's loggers their own level
    # so the per-request metric lines reach stderr (and the deployment's console log).
    settings = ScoringSettings()
    logging.getLogger("scoring").setLevel(settings.log_level)
    # Before the request threads exist: they will share these arenas (see scoring/allocator.py).
    limit_arenas(settings.malloc_arena_max)
    started = time.perf_counter()
    try:
        opened = open_model(settings)
    except Exception as error:
        log.exception("model load failed: %s: %s", type(error).__name__, error)
        raise
    lm = opened.lm
    log.info(
        "%s engine opened %s in %.1f s", settings.engine, lm.name, time.perf_counter() - started
    )
    service = ScoringService.serving(opened, settings)
    _publish_openapi()
    log.info(
        "serving %s on %s with the %s engine: %s",
        lm.name,
        lm.device,
        settings.engine,
        sorted(settings.patterns),
    )


def _publish_openapi() -> None:
    """The server serves ``swagger3.json`` from its app root when the file exists."""
    app_root = Path(os.environ.get("AML_APP_ROOT", os.getcwd()))
    try:
        (app_root / "swagger3.json").write_text(json.dumps(openapi_document(), indent=1))
    except OSError as error:  # a read-only app root costs the swagger, not the service
        log.warning("could not write swagger3.json to %s: %s", app_root, error)


@rawhttp
def run(request: AMLRequest) -> AMLResponse:
    """Answer one request; the body decides the pattern (see README)."""
    if request.method != "POST":
        reply = ClientError(405, "POST a JSON body to /score").reply()
    elif service is None:
        reply = ClientError(503, "model not loaded", headers={"Retry-After": "5"}).reply()
    else:
        job = service.new_job()  # the deadline counts from here: arrival
        body = request.get_data(cache=False)
        # The server's request id (x-request-id, else a fresh uuid) ties replies to log lines.
        request_id = g.get("request_id") or None
        # Until the answer (or a stream's first event) is ready; a stream's later events notice
        # the client leaving when the server closes the generator.
        with watch_disconnect(request.environ.get("gunicorn.socket"), job.cancelled):
            reply = service.handle(body, job, request_id)
    if isinstance(reply, ScoreStream):
        # A generator body streams through the server (gthread workers flush each event);
        # when the client goes away the server closes it, which cancels the generation.
        headers = {"Content-Type": reply.media_type, **reply.headers}
        return AMLResponse(iter(reply), 200, headers)
    return AMLResponse(reply.body, reply.status, reply.headers, json_str=True)
