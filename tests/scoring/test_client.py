"""Client: gateway 424 unwrapping, retries with backoff on 429/503, clear errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import requests

from scoring.client import ScoringClient, ScoringError, error_from_response


def make_response(
    status: int, body: object = None, headers: dict | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = {200: "OK", 424: "Failed Dependency", 429: "Too Many Requests"}.get(
        status, ""
    )
    response._content = json.dumps(body).encode() if body is not None else b""
    response.headers.update(headers or {})
    return response


@dataclass
class ScriptedSession:
    """Answers each POST with the next scripted response and records what was sent."""

    responses: list[requests.Response | Exception]
    sent: list[dict] = field(default_factory=list)

    def post(self, url: str, json: dict, headers: dict, timeout: float) -> requests.Response:
        self.sent.append({"url": url, "json": json, "headers": headers, "timeout": timeout})
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_with(*responses: requests.Response | Exception, **kwargs: object) -> ScoringClient:
    return ScoringClient(
        "http://endpoint/score", session=ScriptedSession(list(responses)), backoff_s=0.0, **kwargs
    )  # type: ignore[arg-type]


def test_gateway_424_reports_the_container_status_and_message() -> None:
    body = {
        "error": {
            "status": 422,
            "message": "invalid request: top_k: too big",
            "details": [{"field": "top_k", "message": "too big"}],
        }
    }
    error = error_from_response(
        make_response(
            424,
            body,
            {
                "ms-azureml-model-error-statuscode": "422",
                "ms-azureml-model-error-reason": "model_error",
            },
        )
    )
    assert error.status == 422
    assert error.message == "invalid request: top_k: too big"
    assert error.details[0]["field"] == "top_k"
    assert not error.retryable


def test_server_message_without_error_envelope_is_kept() -> None:
    error = error_from_response(make_response(500, {"message": "Scoring timeout after 2500 ms"}))
    assert (error.status, error.message) == (500, "Scoring timeout after 2500 ms")


def test_429_and_503_are_retried_then_succeed() -> None:
    ok = make_response(200, {"text": "hi", "finish_reason": "stop", "usage": {}})
    client = client_with(
        make_response(429, headers={"Retry-After": "0"}),
        make_response(503),
        requests.Timeout("slow"),
        ok,
    )
    assert client.generate("hello", max_new_tokens=3)["text"] == "hi"
    sent = client.session.sent  # type: ignore[attr-defined]
    assert len(sent) == 4
    assert sent[0]["json"] == {"task": "generate", "prompt": "hello", "max_new_tokens": 3}


def test_retries_stop_after_max_attempts_with_the_last_error() -> None:
    client = client_with(*[make_response(429)] * 3, max_attempts=3)
    with pytest.raises(ScoringError) as caught:
        client.analyze("text")
    assert caught.value.status == 429


def test_client_errors_are_not_retried() -> None:
    client = client_with(make_response(400, {"error": {"message": "body is not valid JSON"}}))
    with pytest.raises(ScoringError, match="HTTP 400: body is not valid JSON"):
        client.analyze(["a", "b"])


def test_bearer_token_and_deployment_header_are_sent() -> None:
    client = client_with(make_response(200, {"results": []}), deployment="green")
    client.token_provider = lambda: "token-123"
    client.analyze(["a"], top_k=1)
    headers = client.session.sent[0]["headers"]  # type: ignore[attr-defined]
    assert headers["Authorization"] == "Bearer token-123"
    assert headers["azureml-model-deployment"] == "green"
