"""Per-request metrics: one structured JSON log line each, and Application Insights when set up.

Every answered request (2xx and 4xx alike) produces a `RequestMetrics`: pattern, status, latency,
tokens in and out, queue wait, and for analysis the pooled perplexity, mean log-probability and
GLTR rank buckets. The line goes to the `scoring.metrics` logger as
``{"event": "scoring.request", ...}`` (the inference server forwards logs to Application Insights
as traces on a managed deployment); with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set the same
figures also go out as OpenTelemetry metrics (customMetrics) through the Azure Monitor exporter.

Perplexity of generated text costs a second forward pass over prompt and output, so it is
computed for a sampled share of generations only (``SCORING_METRICS_PERPLEXITY_SAMPLE``, default
0: skipped, and the line says why).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from scoring.settings import ScoringSettings

log = logging.getLogger("scoring.metrics")

EVENT = "scoring.request"
SKIPPED_OFF = (
    f"not sampled: {ScoringSettings.env_name('metrics_perplexity_sample')} is 0 "
    "(costs a forward pass)"
)
SKIPPED_UNSAMPLED = "not sampled this request"


@dataclass
class RequestMetrics:
    """What one request cost and what it looked like; None where it does not apply."""

    pattern: str | None = None
    status: int = 200
    latency_ms: float = 0.0
    tokens_in: int | None = None
    tokens_out: int | None = None
    queue_wait_ms: float | None = None
    finish_reason: str | None = None
    texts: int | None = None
    perplexity: float | None = None
    """Analysis: pooled over every scored token; generation: of the generated text, if sampled."""
    mean_logprob: float | None = None
    rank_buckets: dict[str, int] | None = None
    perplexity_skipped: str | None = None
    error: str | None = None
    request_id: str | None = None

    def as_record(self, model: str) -> dict[str, Any]:
        """The JSON line's fields (rounded; JSON has no NaN)."""
        record: dict[str, Any] = {"event": EVENT, "model": model}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                value = round(value, 4) if math.isfinite(value) else None
            record[key] = value
        return record


@dataclass
class MetricsRecorder:
    """Writes each request's metrics as a JSON log line and, when configured, as OTel metrics."""

    model: str
    perplexity_sample: float = 0.0
    meter_provider: Any = None
    prometheus: PrometheusMetrics | None = None
    _instruments: dict[str, Any] = field(default_factory=dict, repr=False)
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.meter_provider is not None:
            meter = self.meter_provider.get_meter("scoring")
            hist, count = meter.create_histogram, meter.create_counter
            self._instruments = {
                "latency": hist("scoring.request.duration", unit="ms"),
                "queue": hist("scoring.queue.wait", unit="ms"),
                "tokens_in": count("scoring.tokens.input", unit="{token}"),
                "tokens_out": count("scoring.tokens.output", unit="{token}"),
                "perplexity": hist("scoring.perplexity"),
                "buckets": count("scoring.analysis.rank_bucket", unit="{token}"),
            }

    def wants_generated_perplexity(self) -> tuple[bool, str | None]:
        """Whether to score this generation's output, and if not, the reason to record."""
        if self.perplexity_sample <= 0:
            return False, SKIPPED_OFF
        if self._random.random() >= self.perplexity_sample:
            return False, SKIPPED_UNSAMPLED
        return True, None

    def record(self, metrics: RequestMetrics) -> None:
        """Emit one request's metrics."""
        log.info(json.dumps(metrics.as_record(self.model), sort_keys=True))
        if self.prometheus is not None:
            self.prometheus.observe(self.model, metrics)
        if not self._instruments:
            return
        attrs = {"pattern": metrics.pattern or "unknown", "status": metrics.status}
        i = self._instruments
        i["latency"].record(metrics.latency_ms, attrs)
        if metrics.queue_wait_ms is not None:
            i["queue"].record(metrics.queue_wait_ms, attrs)
        if metrics.tokens_in:
            i["tokens_in"].add(metrics.tokens_in, attrs)
        if metrics.tokens_out:
            i["tokens_out"].add(metrics.tokens_out, attrs)
        if metrics.perplexity is not None and math.isfinite(metrics.perplexity):
            i["perplexity"].record(metrics.perplexity, attrs)
        for bucket, n in (metrics.rank_buckets or {}).items():
            i["buckets"].add(n, {**attrs, "bucket": bucket})

    @classmethod
    def from_settings(
        cls, model: str, settings: ScoringSettings, environ: Mapping[str, str] | None = None
    ) -> MetricsRecorder:
        """Log always; export to Application Insights when its connection string is set."""
        connection = app_insights_connection(os.environ if environ is None else environ)
        provider = None
        if connection:
            provider = _export_to_app_insights(connection)
        return cls(model, settings.metrics_perplexity_sample, provider)


class PrometheusMetrics:
    """The same per-request figures as Prometheus series, for servers that expose ``/metrics``.

    Names follow Prometheus conventions (base units, ``_total`` counters); the gauges read the
    engine's queue and running batch at scrape time.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ["model", "pattern", "status"]
        reg = self.registry
        self.requests = Counter("scoring_requests", "answered requests", labels, registry=reg)
        self.latency = Histogram(
            "scoring_request_duration_seconds",
            "time from arrival to the last byte of the answer",
            labels,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=reg,
        )
        self.queue_wait = Histogram(
            "scoring_queue_wait_seconds",
            "time before the model took the request",
            labels,
            registry=reg,
        )
        self.tokens = Counter(
            "scoring_tokens", "tokens read and written", [*labels, "direction"], registry=reg
        )
        self.queued = Gauge("scoring_queue_depth", "requests waiting for the engine", registry=reg)
        self.active = Gauge("scoring_active_rows", "rows in the running batch", registry=reg)

    def observe(self, model: str, m: RequestMetrics) -> None:
        key = {"model": model, "pattern": m.pattern or "unknown", "status": str(m.status)}
        self.requests.labels(**key).inc()
        self.latency.labels(**key).observe(m.latency_ms / 1000)
        if m.queue_wait_ms is not None:
            self.queue_wait.labels(**key).observe(m.queue_wait_ms / 1000)
        if m.tokens_in:
            self.tokens.labels(**key, direction="in").inc(m.tokens_in)
        if m.tokens_out:
            self.tokens.labels(**key, direction="out").inc(m.tokens_out)

    def watch(self, service: Any) -> None:
        """Read the queue depth and the running rows from the service's engine at scrape time."""
        engine = getattr(service, "engine", None)
        self.queued.set_function(lambda: float(getattr(engine, "queued", 0)))
        self.active.set_function(lambda: float(getattr(engine, "active_rows", 0)))

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def app_insights_connection(env: Mapping[str, str]) -> str | None:
    """The connection string, or one built from the key a deployment with App Insights gets."""
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return env["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    if env.get("AML_APP_INSIGHTS_ENABLED") == "true" and env.get("AML_APP_INSIGHTS_KEY"):
        return f"InstrumentationKey={env['AML_APP_INSIGHTS_KEY']}"
    return None


def _export_to_app_insights(connection: str) -> Any:
    """Metrics (customMetrics) and the JSON lines (traces) to Application Insights."""
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorLogExporter,
        AzureMonitorMetricExporter,
    )
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    # Private providers: the inference server's own telemetry set-up stays untouched.
    logs = LoggerProvider()
    logs.add_log_record_processor(
        BatchLogRecordProcessor(AzureMonitorLogExporter(connection_string=connection))
    )
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
    exporter = AzureMonitorMetricExporter(connection_string=connection)
    return MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)])


def pooled(logprob_lists: list[list[float]]) -> tuple[float | None, float | None]:
    """Mean log-probability and perplexity over every scored token of several texts."""
    values = [lp for lps in logprob_lists for lp in lps]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, math.exp(-mean)
