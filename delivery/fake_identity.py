"""Fake GitHub OIDC issuer and Entra ID token endpoint, with the lifetimes that break long releases.

- `FakeGitHubOIDC` issues ID tokens (the federated assertion) that expire after `lifetime_s`
  (GitHub's are valid for minutes).
- `FakeEntra` is an azure-core transport for the Entra token endpoint: it exchanges an assertion
  for an access token of `token_lifetime_s`, and refuses an expired assertion with AADSTS700024,
  as Entra does. Real `azure.identity` credentials run against it unchanged.
- `FakeEntra.authorize` is what the fake workspace asks on every call: is this bearer token one we
  issued, for this audience, and still valid now?

Both read time from `clock` (seconds since the epoch), so a test can run a two-hour release in
milliseconds; azure-identity and MSAL read `time.time`, which such a test points at the same clock.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse

Clock = Callable[[], float]


@dataclass
class FakeGitHubOIDC:
    """Issues a new ID token per request, each valid for `lifetime_s`."""

    clock: Clock = time.time
    lifetime_s: float = 300.0
    issued: int = 0

    def __call__(self) -> str:
        self.issued += 1
        return f"gh-oidc.{self.issued}.{self.clock() + self.lifetime_s:.0f}"


@dataclass
class _Issued:
    scope: str
    expires_on: float


@dataclass
class FakeEntra(HttpTransport):
    """The token endpoint (`/oauth2/v2.0/token`) as an azure-core transport."""

    clock: Clock = time.time
    token_lifetime_s: float = 300.0
    tokens: dict[str, _Issued] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    # -- the transport ---------------------------------------------------------------------------

    def __enter__(self) -> FakeEntra:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request, **kwargs):
        form = urllib.parse.parse_qs(_body(request))
        assertion = (form.get("client_assertion") or [""])[0]
        scope = (form.get("scope") or [""])[0].split(" ")[0]
        if not _valid_assertion(assertion, self.clock()):
            message = (
                "AADSTS700024: Client assertion is not within its valid time range. "
                f"Current time: {self.clock():.0f}, assertion: {assertion!r}"
            )
            self.refusals.append(message)
            return _response(
                request,
                400,
                {"error": "invalid_client", "error_description": message, "error_codes": [700024]},
            )
        token = f"fake-access-{len(self.tokens) + 1}"
        self.tokens[token] = _Issued(scope, self.clock() + self.token_lifetime_s)
        return _response(
            request,
            200,
            {
                "access_token": token,
                "expires_in": int(self.token_lifetime_s),
                "token_type": "Bearer",
            },
        )

    # -- what a fake service asks ----------------------------------------------------------------

    def authorize(self, token: str, scope: str, operation: str) -> None:
        """Raise as the service would when `token` is unknown, for another audience, or expired."""
        issued = self.tokens.get(token)
        if issued is None:
            raise ClientAuthenticationError(f"{operation}: token was not issued by Entra")
        if issued.scope != scope:
            raise ClientAuthenticationError(
                f"{operation}: token audience {issued.scope} is not {scope}"
            )
        if issued.expires_on <= self.clock():
            raise ClientAuthenticationError(f"{operation}: token expired (401 InvalidToken)")


def _valid_assertion(assertion: str, now: float) -> bool:
    parts = assertion.split(".")
    return len(parts) == 3 and parts[0] == "gh-oidc" and float(parts[2]) > now


def _body(request) -> str:
    data = request.data if request.data is not None else request.body
    if isinstance(data, dict):
        return urllib.parse.urlencode(data)
    if isinstance(data, bytes):
        return data.decode("utf-8")
    return str(data or "")


def _response(request, status: int, body: dict) -> RequestsTransportResponse:
    raw = requests.Response()
    raw.status_code = status
    raw.headers["content-type"] = "application/json"
    raw._content = json.dumps(body).encode("utf-8")
    raw.url = request.url
    return RequestsTransportResponse(request, raw)
