"""Captured payloads reach Azure ML's data collector, redacted, through the real client package.

The fake collector is a loopback HTTP server that speaks the collector agent's side of
`azureml-ai-monitoring` (POST /modeldata/log, one payload per collection), configured the way a
deployment with a data collector is (`AZUREML_MDC_CONFIG_PATH`, host and port).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scoring.redaction import Capture, CollectorSink
from scoring.settings import ScoringSettings


class FakeCollector(ThreadingHTTPServer):
    """Records each payload with its collection (the `ce-type` header)."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, str]] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/modeldata/log":
                    received.append((self.headers.get("ce-type", ""), body.decode("utf-8")))
                self.send_response(200 if self.path == "/modeldata/log" else 404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from azureml.ai.monitoring.init import teardown

    server = FakeCollector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "mdc.json"
    config.write_text(
        json.dumps(
            {
                "runMode": "cloud",
                "collections": {
                    "model_inputs": {"enabled": True},
                    "model_outputs": {"enabled": True},
                },
            }
        )
    )
    env = {
        "AZUREML_MDC_CONFIG_PATH": str(config),
        "AZUREML_MDC_HOST": "127.0.0.1",
        "AZUREML_MDC_PORT": str(server.server_address[1]),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield server, env
    teardown(wait_for_flush=True)
    server.shutdown()


def test_redacted_payloads_reach_the_collector(collector) -> None:
    server, env = collector
    capture = Capture.from_settings(ScoringSettings(capture=True, redact_fields="tokens"), env)
    assert isinstance(capture.sink, CollectorSink)
    assert capture.record(
        {"prompt": "mail ada@example.org", "max_new_tokens": 4},
        {"text": "ok", "tokens": [{"id": 1, "token": "ok"}]},
    )
    deadline = time.monotonic() + 10
    while len(server.payloads) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    kinds = sorted(kind for kind, _ in server.payloads)
    assert kinds == ["azureml.inference.model_inputs", "azureml.inference.model_outputs"]
    body = "".join(payload for _, payload in server.payloads)
    assert "ada@example.org" not in body
    assert "[EMAIL]" in body
    assert "[REDACTED]" in body


def test_a_deployment_collector_without_the_package_fails_at_start(
    collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prod enables the collector; an image without azureml-ai-monitoring must not start."""
    import builtins

    _, env = collector
    real_import = builtins.__import__

    def no_monitoring(name: str, *args: object, **kwargs: object):
        if name.startswith("azureml.ai.monitoring"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_monitoring)
    with pytest.raises(RuntimeError, match="azureml-ai-monitoring is not installed"):
        Capture.from_settings(ScoringSettings(capture=True), env)


def test_a_local_run_without_a_collector_logs_the_capture() -> None:
    capture = Capture.from_settings(ScoringSettings(capture=True), {})
    assert not isinstance(capture.sink, CollectorSink)
