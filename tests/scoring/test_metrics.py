"""Per-request metrics and redacted capture, from the service and from the real server."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from scoring.local_server import LocalServer
from scoring.metrics import EVENT, SKIPPED_OFF, MetricsRecorder, RequestMetrics
from scoring.model import LoadedModel
from scoring.redaction import REDACTED, Capture, Redactor, load_hook
from scoring.service import ScoringService
from scoring.settings import ScoringSettings

GENERATE_FIELDS = {"tokens_in", "tokens_out", "latency_ms", "queue_wait_ms", "finish_reason"}


class ListSink:
    """A capture sink that keeps what it was given."""

    def __init__(self) -> None:
        self.records: list[tuple[object, object]] = []

    def write(self, request: object, response: object) -> None:
        self.records.append((request, response))


def records(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The structured metric lines logged so far."""
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "scoring.metrics"]


@pytest.fixture
def service(tiny_lm: LoadedModel) -> ScoringService:
    return ScoringService(tiny_lm, ScoringSettings(max_new_tokens=16))


def test_generate_logs_one_line_with_tokens_latency_and_skip_reason(
    service: ScoringService, caplog: pytest.LogCaptureFixture
) -> None:
    """A generation logs tokens in/out and latency; perplexity is skipped, with the reason."""
    caplog.set_level(logging.INFO, logger="scoring.metrics")
    reply = service.handle(json.dumps({"prompt": "hello world", "max_new_tokens": 4}).encode())
    [line] = records(caplog)
    assert (line["event"], line["pattern"], line["status"]) == (EVENT, "generate", 200)
    assert line["tokens_out"] == reply.body["usage"]["completion_tokens"]
    assert line["tokens_in"] == reply.body["usage"]["prompt_tokens"]
    assert line["latency_ms"] > 0
    assert line["perplexity"] is None
    assert line["perplexity_skipped"] == SKIPPED_OFF
    assert set(line) >= GENERATE_FIELDS


def test_sampled_generation_gets_the_perplexity_of_its_output(
    tiny_lm: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    """With sampling at 1, the generated text is scored (a finite perplexity above 1)."""
    caplog.set_level(logging.INFO, logger="scoring.metrics")
    service = ScoringService(
        tiny_lm, ScoringSettings(), metrics=MetricsRecorder(tiny_lm.name, perplexity_sample=1.0)
    )
    service.handle(json.dumps({"prompt": "the quick brown", "max_new_tokens": 6}).encode())
    [line] = records(caplog)
    assert line["perplexity"] > 1
    assert line["perplexity_skipped"] is None


def test_analysis_logs_rank_buckets_and_pooled_perplexity(
    service: ScoringService, caplog: pytest.LogCaptureFixture
) -> None:
    """Bucket counts add up to the scored tokens; perplexity pools both texts."""
    caplog.set_level(logging.INFO, logger="scoring.metrics")
    body = {"texts": ["the quick brown fox", "hello world, hello tokens"], "top_k": 0}
    reply = service.handle(json.dumps(body).encode())
    [line] = records(caplog)
    scored = sum(r["summary"]["scored_tokens"] for r in reply.body["results"])
    assert (line["pattern"], line["texts"]) == ("analyze", 2)
    assert sum(line["rank_buckets"].values()) == scored
    assert set(line["rank_buckets"]) == {"top10", "top100", "top1000", "beyond"}
    assert line["perplexity"] > 1
    assert line["queue_wait_ms"] >= 0


def test_client_errors_are_recorded_with_their_status(
    service: ScoringService, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4xx is a metric too: status and the error message, no token counts."""
    caplog.set_level(logging.INFO, logger="scoring.metrics")
    service.handle(b"not json")
    [line] = records(caplog)
    assert line["status"] == 400
    assert line["error"].startswith("body is not valid JSON")
    assert line["tokens_in"] is None


def test_metrics_go_to_opentelemetry_when_a_provider_is_set() -> None:
    """Latency, tokens and GLTR buckets become OTel instruments (exported to App Insights)."""
    reader = InMemoryMetricReader()
    recorder = MetricsRecorder("m", meter_provider=MeterProvider(metric_readers=[reader]))
    recorder.record(
        RequestMetrics("analyze", 200, 12.5, 9, 0, 0.1, rank_buckets={"top10": 5, "beyond": 3})
    )
    data = reader.get_metrics_data()
    points = {
        m.name: m.data.data_points
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {
        "scoring.request.duration",
        "scoring.tokens.input",
        "scoring.analysis.rank_bucket",
    } <= set(points)
    buckets = {p.attributes["bucket"]: p.value for p in points["scoring.analysis.rank_bucket"]}
    assert buckets == {"top10": 5, "beyond": 3}


def test_from_settings_exports_only_with_a_connection_string() -> None:
    """No connection string: logs only; perplexity sampling comes from the settings."""
    settings = ScoringSettings(metrics_perplexity_sample=0.5)
    recorder = MetricsRecorder.from_settings("m", settings, {})
    assert recorder.meter_provider is None
    assert recorder.perplexity_sample == 0.5


def test_redactor_masks_fields_and_patterns_in_nested_json() -> None:
    """Named fields lose their value; e-mails, cards, phones, IBANs, IPs, tokens are labelled."""
    redact = Redactor(fields=frozenset({"user_id"}))
    text = (
        "Mail jane.doe@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958, "
        "IBAN DE89 3704 0044 0532 0130 00 from 10.1.2.3 with Bearer abc.def-ghi"
    )
    out = redact({"user_id": "u-42", "messages": [{"content": text}], "max_new_tokens": 8})
    assert out["user_id"] == REDACTED
    assert out["max_new_tokens"] == 8
    content = out["messages"][0]["content"]
    for label in ("[EMAIL]", "[CARD]", "[PHONE]", "[IBAN]", "[IP]", "[TOKEN]"):
        assert label in content
    assert not re.search(r"jane|4111|7946|DE89|10\.1\.2\.3|abc\.def", content), content


def test_redaction_is_applied_before_capture(service: ScoringService) -> None:
    """The sink only sees redacted text, and no per-token list that could rebuild it."""
    sink = ListSink()
    service.capture = Capture(Redactor(fields=frozenset({"tokens"})), sink, 1.0)
    try:
        service.handle(json.dumps({"prompt": "mail bob@example.org", "max_new_tokens": 2}).encode())
        service.handle(json.dumps({"text": "mail bob@example.org now"}).encode())
    finally:
        service.capture = None
    [(gen_request, gen_response), (ana_request, ana_response)] = sink.records
    assert gen_request["prompt"] == "mail [EMAIL]"
    assert "usage" in gen_response
    assert ana_request["text"] == "mail [EMAIL] now"
    assert ana_response["tokens"] == REDACTED
    assert "perplexity" in ana_response["summary"]
    assert "bob@example.org" not in json.dumps(sink.records)


def test_capture_hook_runs_last_and_sampling_skips(tmp_path: Path, monkeypatch) -> None:
    """A hook named in the environment gets the redacted value; rate 0 captures nothing."""
    (tmp_path / "myhooks.py").write_text(
        "def drop_prompt(value):\n"
        "    if isinstance(value, dict):\n"
        "        return {k: v for k, v in value.items() if k != 'prompt'}\n"
        "    return value\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = ScoringSettings(
        capture=True, capture_sample_rate=1, redaction_hook="myhooks:drop_prompt"
    )
    capture = Capture.from_settings(settings, {})
    sink = ListSink()
    capture.sink = sink
    assert capture.record({"prompt": "x", "text": "a@b.cd"}, {"ok": 1})
    assert sink.records == [({"text": "[EMAIL]"}, {"ok": 1})]
    capture.sample_rate = 0.0
    assert not capture.record({"prompt": "y"}, {})
    with pytest.raises(ValueError, match=r"expected 'package\.module:function'"):
        load_hook("no-colon")


def test_capture_is_off_unless_the_deployment_enables_it() -> None:
    """Without SCORING_CAPTURE=true nothing is written."""
    capture = Capture.from_settings(ScoringSettings(), {})
    assert not capture.enabled
    assert not capture.record({"prompt": "x"}, {})


@pytest.mark.slow
def test_real_server_warms_up_and_logs_metrics_and_redacted_capture(tiny_model_dir: Path) -> None:
    """azmlinfsrv: warm-up before ready, one JSON metrics line per request, capture redacted."""
    env = {
        "SCORING_CAPTURE": "true",
        "SCORING_REDACT_FIELDS": "tokens",
        "SCORING_ENGINE": "continuous",  # metrics and capture sit above the engine
    }
    with LocalServer(tiny_model_dir, env=env, threads=2) as server:
        url = server.url + "/score"
        ok = requests.post(url, json={"prompt": "mail x@y.org", "max_new_tokens": 3}, timeout=60)
        analysis = requests.post(url, json={"text": "hello world, hello tokens"}, timeout=60)
        bad = requests.post(url, json={"prompt": "x", "max_new_tokens": 99_999}, timeout=60)
        assert (ok.status_code, analysis.status_code, bad.status_code) == (200, 200, 422)
        log = server.log_path.read_text(errors="replace")
    assert "warm-up done in" in log
    lines = [
        json.loads(m) for m in re.findall(r'(\{"[^\n]*"event": "scoring\.request"[^\n]*\})', log)
    ]
    by_status = {(line["pattern"], line["status"]): line for line in lines}
    generate = by_status[("generate", 200)]
    assert generate["tokens_out"] == ok.json()["usage"]["completion_tokens"]
    assert set(generate) >= GENERATE_FIELDS
    analyze = by_status[("analyze", 200)]
    assert sum(analyze["rank_buckets"].values()) == analysis.json()["summary"]["scored_tokens"]
    assert "max_new_tokens" in by_status[("generate", 422)]["error"]
    captured = [line for line in log.splitlines() if '"scoring.capture"' in line]
    assert captured, "no capture line in the server log"
    assert "x@y.org" not in log
    assert any('"tokens": "[REDACTED]"' in line for line in captured)
