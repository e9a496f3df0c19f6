"""Request/response capture for Azure ML's data collector, redacted before anything is written.

`Redactor` walks a JSON value: fields named in ``SCORING_REDACT_FIELDS`` lose their value, strings
lose e-mail addresses, phone and card numbers, IBANs, IP addresses and bearer tokens, and an
optional hook (``SCORING_REDACTION_HOOK=package.module:function``) gets the last word. `Capture`
samples requests (``SCORING_CAPTURE_SAMPLE_RATE``), redacts both sides, and hands them to the
collector: Azure ML's ``azureml.ai.monitoring.Collector`` (collections ``model_inputs`` and
``model_outputs``) when the deployment has a data collector, else (a local run) one JSON log line
each. A deployment whose data collector is configured but whose image lacks
``azureml-ai-monitoring`` fails at start-up: the payloads would otherwise end up in the container
log instead of the governed collections.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scoring.settings import ScoringSettings

log = logging.getLogger("scoring.capture")

REDACTED = "[REDACTED]"
# (label, pattern); the label replaces the match, so captured text still shows what was there.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("[EMAIL]", re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")),
    ("[TOKEN]", re.compile(r"(?i)\bbearer\s+[\w\-.~+/]+=*")),
    ("[IBAN]", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")),
    ("[CARD]", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("[PHONE]", re.compile(r"(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?(?:[ .-]?\d{2,4}){2,3}\b")),
    ("[IP]", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
)

Hook = Callable[[Any], Any]


def load_hook(spec: str) -> Hook:
    """Import `package.module:function`; the function takes and returns a JSON value."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"redaction hook {spec!r}: expected 'package.module:function'")
    hook = getattr(importlib.import_module(module), name, None)
    if not callable(hook):
        raise ValueError(f"redaction hook {spec!r}: {name} is not a function in {module}")
    return hook


@dataclass(frozen=True)
class Redactor:
    """Removes sensitive values from a JSON value; returns a redacted copy."""

    fields: frozenset[str] = frozenset()
    patterns: tuple[tuple[str, re.Pattern[str]], ...] = PATTERNS
    hook: Hook | None = None

    def __call__(self, value: Any) -> Any:
        redacted = self._walk(value)
        return self.hook(redacted) if self.hook is not None else redacted

    def text(self, text: str) -> str:
        """A string with every pattern's matches replaced by its label."""
        for label, pattern in self.patterns:
            text = pattern.sub(label, text)
        return text

    def _walk(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: REDACTED if str(k).lower() in self.fields else self._walk(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


class Sink(Protocol):
    """Where captured, redacted records go."""

    def write(self, request: Any, response: Any) -> None:
        """Store one request and its response."""
        ...


class LogSink:
    """One JSON line per side on the `scoring.capture` logger."""

    def write(self, request: Any, response: Any) -> None:
        log.info(json.dumps({"event": "scoring.capture", "request": request, "response": response}))


class CollectorSink:
    """Azure ML data collector (custom logging): `model_inputs` and `model_outputs`."""

    def __init__(self) -> None:
        from azureml.ai.monitoring import Collector  # installed in the deployment image only

        self._inputs = Collector(name="model_inputs")
        self._outputs = Collector(name="model_outputs")

    def write(self, request: Any, response: Any) -> None:
        import pandas as pd

        context = self._inputs.collect(pd.DataFrame([{"request": json.dumps(request)}]))
        self._outputs.collect(pd.DataFrame([{"response": json.dumps(response)}]), context)


@dataclass
class Capture:
    """Samples, redacts, then writes; a failure to capture never fails the request."""

    redactor: Redactor = field(default_factory=Redactor)
    sink: Sink = field(default_factory=LogSink)
    sample_rate: float = 1.0
    enabled: bool = True
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def record(self, request: Any, response: Any) -> bool:
        """Capture one exchange if sampled; True when it was written."""
        if not self.enabled or self._random.random() >= self.sample_rate:
            return False
        try:
            # Redaction happens here, before the sink sees anything.
            self.sink.write(self.redactor(request), self.redactor(response))
        except Exception:  # capture is best effort: log it, keep serving
            log.exception("capture failed; the request was served, its record dropped")
            return False
        return True

    @classmethod
    def from_settings(
        cls, settings: ScoringSettings, environ: Mapping[str, str] | None = None
    ) -> Capture:
        """Capture as the deployment configured it (`capture`, `redact_fields` and the hook);
        `environ` says whether Azure ML configured a data collector."""
        fields = frozenset(name.lower() for name in settings.redact_fields)
        hook = settings.redaction_hook
        redactor = Redactor(fields=fields, hook=load_hook(hook) if hook else None)
        if not settings.capture:
            return cls(redactor, LogSink(), 0.0, enabled=False)
        if not collector_configured(os.environ if environ is None else environ):
            # A local run (no Azure data collector): one JSON log line per exchange.
            return cls(redactor, LogSink(), settings.capture_sample_rate)
        try:
            sink = CollectorSink()
        except ImportError as exc:
            raise RuntimeError(
                f"{ScoringSettings.env_name('capture')}=true and the deployment has a data "
                "collector, but azureml-ai-monitoring is not installed in the image: captured "
                "payloads would go to the container log. Add it to the environment "
                "(environments/*.conda.yaml)"
            ) from exc
        # Azure's collector samples by the deployment's samplingRate itself.
        return cls(redactor, sink, 1.0)


def collector_configured(environ: Mapping[str, str]) -> bool:
    """Whether Azure ML configured a data collector for this container (MDC settings)."""
    return bool(environ.get("AZUREML_MDC_CONFIG_PATH")) or (
        environ.get("AZUREML_MDC_ENABLED", "false").lower() == "true"
    )
