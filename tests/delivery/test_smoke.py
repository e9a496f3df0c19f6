"""Smoke tests come from the scoring contract: valid requests, and responses checked by it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from delivery.fake import CANNED_RESPONSES
from delivery.smoke import SMOKE_CASES, check_response
from delivery.smoke import main as smoke_main
from scoring.schemas import PATTERNS


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_pattern_has_a_smoke_request_its_server_accepts(pattern: str) -> None:
    """Each smoke request passes the pattern's own request model."""
    PATTERNS[pattern].request.model_validate(SMOKE_CASES[pattern].request)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_fakes_canned_answers_pass_the_smoke_check(pattern: str) -> None:
    """The fake answers like the scoring package, so rollout tests exercise real shapes."""
    assert check_response(pattern, json.dumps(CANNED_RESPONSES[pattern])) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"text": "hi"}', "missing 'finish_reason'"),
        ('{"text": "hi", "finish_reason": "maybe", "usage": {}}', "'finish_reason'"),
        ("not json", "expected shape"),
        ("[1, 2]", "expected shape"),
    ],
)
def test_a_wrong_answer_is_named(body: str, problem: str) -> None:
    """Missing fields, values outside the contract and non-objects each fail the smoke test."""
    problems = check_response("generate", body)
    assert any(problem in p for p in problems), problems


class _Answer(BaseHTTPRequestHandler):
    """Answers every POST with ``server.answer`` (status, JSON body); keeps the request."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.requests.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        status, body = self.server.answer  # type: ignore[attr-defined]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/score"


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_smoke_command_sends_the_contract_request_and_accepts_a_valid_answer(
    endpoint: ThreadingHTTPServer, pattern: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m delivery.smoke` (the dev deploy job's check from outside) needs no code per
    pattern: the request and the answer's model come from the pattern table."""
    endpoint.answer = (200, CANNED_RESPONSES[pattern])  # type: ignore[attr-defined]
    assert smoke_main(["--url", _url(endpoint), "--pattern", pattern]) == 0
    assert endpoint.requests == [dict(SMOKE_CASES[pattern].request)]  # type: ignore[attr-defined]
    assert "ok" in capsys.readouterr().out


def test_the_smoke_command_fails_on_a_wrong_answer_or_a_refusal(
    endpoint: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.answer = (200, {"text": "hi"})  # type: ignore[attr-defined]
    assert smoke_main(["--url", _url(endpoint), "--pattern", "generate"]) == 1
    assert "missing 'finish_reason'" in capsys.readouterr().err
    endpoint.answer = (400, {"error": {"status": 400, "message": "no", "details": []}})  # type: ignore[attr-defined]
    assert smoke_main(["--url", _url(endpoint), "--pattern", "analyze"]) == 1
    assert "HTTP 400" in capsys.readouterr().err
