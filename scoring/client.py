"""The client applications use to call a scoring endpoint: local server or managed endpoint.

Auth is an Entra ID token from ``DefaultAzureCredential`` (managed identity, workload identity,
Azure CLI...) for the Azure ML endpoint audience; no keys. Requests retry with exponential backoff
on 429, 503, 408 and network timeouts, honouring ``Retry-After``. The managed endpoint's gateway
turns a container 4xx into 424 and puts the original status in a header; the client reports the
original status and the server's message.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt

AML_SCOPE = "https://ml.azure.com/.default"
RETRY_STATUSES = frozenset({408, 429, 503})
MODEL_ERROR_STATUS_HEADER = "ms-azureml-model-error-statuscode"
MODEL_ERROR_REASON_HEADER = "ms-azureml-model-error-reason"
DEPLOYMENT_HEADER = "azureml-model-deployment"


class ScoringError(Exception):
    """The endpoint refused or failed a request; ``status`` is the container's own status."""

    def __init__(
        self,
        status: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message
        self.details = details or []
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status in RETRY_STATUSES


def aad_token_provider(credential: Any | None = None) -> Callable[[], str]:
    """Bearer tokens for Azure ML online endpoints from ``DefaultAzureCredential``."""
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    return get_bearer_token_provider(credential or DefaultAzureCredential(), AML_SCOPE)


def error_from_response(response: requests.Response) -> ScoringError:
    """Read the status and message a failed response carries, unwrapping the gateway's 424."""
    status = response.status_code
    message = f"{response.reason or 'error'}"
    original = response.headers.get(MODEL_ERROR_STATUS_HEADER)
    if status == 424 and original and original.isdigit():
        status = int(original)
        message = response.headers.get(MODEL_ERROR_REASON_HEADER, message)
    details: list[dict[str, Any]] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = str(error.get("message", message))
            details = list(error.get("details", []))
        elif "message" in body:
            message = str(body["message"])
    retry_after = response.headers.get("Retry-After")
    return ScoringError(
        status,
        message,
        details,
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def _should_retry(error: BaseException) -> bool:
    if isinstance(error, ScoringError):
        return error.retryable
    return isinstance(error, requests.Timeout | requests.ConnectionError)


@dataclass
class ScoringClient:
    """Calls ``POST <url>`` (the endpoint's scoring URI, or a local server's ``/score``)."""

    url: str
    token_provider: Callable[[], str] | None = None
    deployment: str | None = None  # pin a deployment, bypassing the traffic split
    timeout_s: float = 90.0
    max_attempts: int = 4
    backoff_s: float = 0.5
    session: requests.Session = field(default_factory=requests.Session)

    @classmethod
    def for_endpoint(cls, scoring_uri: str, **kwargs: Any) -> ScoringClient:
        """A client that authenticates with Entra ID, for a managed online endpoint."""
        return cls(scoring_uri, token_provider=aad_token_provider(), **kwargs)

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, str]] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Pattern 1: ``prompt`` or chat ``messages``; params as in ``GenerateRequest``."""
        body = {"prompt": prompt} if messages is None else {"messages": messages}
        return self.score({"task": "generate", **body, **params})

    def stream_generate(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, str]] | None = None,
        **params: Any,
    ) -> Iterator[dict[str, Any]]:
        """Pattern 1, streamed: yields ``{"text": piece}`` as tokens are decoded, then a last
        event with ``finish_reason`` and ``usage``.

        Refusals before the first event (limits, a full queue) raise ``ScoringError`` and are
        retried like :meth:`score`; an error after it arrives as an ``error`` event and raises.
        Closing the iterator early closes the connection, which stops the generation.
        """
        body = {"prompt": prompt} if messages is None else {"messages": messages}
        payload = {"task": "generate", **body, **params, "stream": True}
        call = retry(
            retry=retry_if_exception(_should_retry),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            reraise=True,
        )(self._open_stream)
        response = call(payload)
        with response:
            for event, data in _server_sent_events(response):
                if event == "error":
                    raise ScoringError(
                        data["error"]["status"], data["error"]["message"], data["error"]["details"]
                    )
                yield data

    def _open_stream(self, payload: dict[str, Any]) -> requests.Response:
        response = self.session.post(
            self.url, json=payload, headers=self._headers(), timeout=self.timeout_s, stream=True
        )
        if response.status_code != 200:
            response.close()
            raise error_from_response(response)
        return response

    def analyze(self, text: str | list[str], *, top_k: int = 5) -> dict[str, Any]:
        """Pattern 2: one text (returns its analysis) or a list (returns ``{"results": [...]}``)."""
        key = "text" if isinstance(text, str) else "texts"
        return self.score({"task": "analyze", key: text, "top_k": top_k})

    def score(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send any JSON body; retries transient failures, raises ``ScoringError`` otherwise."""
        call = retry(
            retry=retry_if_exception(_should_retry),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            reraise=True,
        )(self._post)
        return call(payload)

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, never shorter than the server's ``Retry-After``."""
        backoff = self.backoff_s * 2 ** (state.attempt_number - 1) * random.uniform(0.5, 1.5)
        error = state.outcome.exception() if state.outcome else None
        hinted = error.retry_after if isinstance(error, ScoringError) else None
        return max(backoff, hinted or 0.0)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token_provider is not None:
            # Asked per request: the provider caches the token and refreshes it before expiry.
            headers["Authorization"] = f"Bearer {self.token_provider()}"
        if self.deployment:
            headers[DEPLOYMENT_HEADER] = self.deployment
        return headers

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.session.post(
            self.url, json=payload, headers=self._headers(), timeout=self.timeout_s
        )
        if response.status_code != 200:
            raise error_from_response(response)
        return response.json()


def _server_sent_events(response: requests.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event name, JSON data)`` per server-sent event; comments (keep-alive pings) skipped."""
    event, data = "message", []
    for line in response.iter_lines(decode_unicode=True):
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            continue
        if data:
            yield event, json.loads("\n".join(data))
        event, data = "message", []
