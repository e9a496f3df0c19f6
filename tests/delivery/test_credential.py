"""`delivery.credential.arm_client`: the ARM REST client alerts and autoscale connect with."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from requests.adapters import BaseAdapter
from urllib3 import HTTPResponse

from delivery import credential as release_credential
from delivery.alerts import AzureMonitorAlerts
from delivery.autoscale import AzureAutoscale
from delivery.workspace import WorkspaceRef

REF = WorkspaceRef("sub", "rg-byom", "mlw-byom")


class _Token:
    def __init__(self) -> None:
        self.scopes: tuple[str, ...] = ()

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes = scopes
        return AccessToken("arm-token", int(time.time()) + 3600)


class _Recorder(BaseAdapter):
    """The network under azure-core's requests transport: answers every request with one status
    and JSON body, and keeps the requests it was sent."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.status, self.body = status, {} if body is None else body

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = self.status
        response.headers["content-type"] = "application/json"
        content = json.dumps(self.body).encode()
        response.raw = HTTPResponse(io.BytesIO(content), status=self.status, preload_content=False)
        response.request, response.url = request, request.url
        return response

    def close(self) -> None: ...

    def transport(self) -> RequestsTransport:
        session = requests.Session()
        session.mount("https://", self)
        return RequestsTransport(session=session)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> _Token:
    token = _Token()
    monkeypatch.setattr(release_credential, "credential", lambda: token)
    return token


def test_arm_client_sends_to_arm_with_a_token_for_the_arm_scope(token: _Token) -> None:
    network = _Recorder()
    client = release_credential.arm_client(transport=network.transport())
    url = "https://management.azure.com/subscriptions/sub?api-version=2022-12-01"
    assert client.send_request(HttpRequest("GET", url)).status_code == 200
    (sent,) = network.sent
    assert sent.url == url
    assert sent.headers["Authorization"] == "Bearer arm-token"
    assert token.scopes == (release_credential.ARM_SCOPE,)


def test_alerts_and_autoscale_reach_arm_through_the_arm_client(token: _Token) -> None:
    network = _Recorder(404)
    client = release_credential.arm_client(transport=network.transport())
    assert AzureAutoscale(REF, client).get_autoscale("byom-blue") is None
    network.status, network.body = 200, {"value": []}
    assert AzureMonitorAlerts(REF, client).fired("byom-ep", ["latency"]) == []
    autoscale, alerts = (request.url for request in network.sent)
    assert autoscale.startswith(
        "https://management.azure.com/subscriptions/sub/resourceGroups/rg-byom/providers/"
        "Microsoft.Insights/autoscalesettings/byom-blue?api-version="
    )
    assert alerts.startswith(
        "https://management.azure.com/subscriptions/sub/providers/Microsoft.AlertsManagement/"
        "alerts?api-version="
    )
