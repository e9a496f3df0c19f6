"""Deployment settings come from SCORING_* environment variables and are validated."""

from __future__ import annotations

import re
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scoring.settings import Pattern, ScoringSettings


def test_patterns_parse_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_PATTERNS", "analyze")
    assert ScoringSettings().patterns == {Pattern.ANALYZE}
    monkeypatch.setenv("SCORING_PATTERNS", " generate , analyze ")
    assert ScoringSettings().patterns == set(Pattern)


def test_unknown_pattern_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_PATTERNS", "summarize")
    with pytest.raises(ValidationError, match="generate"):
        ScoringSettings()


def test_model_source_prefers_explicit_dir_then_azureml_mount(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SCORING_MODEL_DIR", raising=False)
    monkeypatch.setenv("AZUREML_MODEL_DIR", "/var/azureml-app/azureml-models/m/3")
    assert ScoringSettings().model_source() == "/var/azureml-app/azureml-models/m/3"
    assert ScoringSettings(model_dir="/models/x").model_source() == "/models/x"
    monkeypatch.delenv("AZUREML_MODEL_DIR")
    with pytest.raises(RuntimeError, match="AZUREML_MODEL_DIR"):
        ScoringSettings().model_source()


# What infra writes into a deployment, one value per kind of field.
DEPLOYED = {
    "patterns": "generate,analyze",
    "max_batch_size": 8,
    "max_queue": 8,
    "request_timeout_s": 85.0,
    "max_new_tokens": 512,
    "gpu_memory_utilization": 0.9,
    "kv_cache_gib": 5,
    "engine": "continuous",
    "capture": True,
    "capture_sample_rate": 0.1,
    "redact_fields": ("tokens", "Top"),
    "redaction_hook": "hooks.privacy:scrub",
    "metrics_perplexity_sample": 0.25,
    "log_level": "DEBUG",
    "port": 8080,
}


def test_environment_names_come_from_the_fields() -> None:
    """Each variable is the prefix plus the field name upper-cased; nothing is spelled twice."""
    assert ScoringSettings.environment(max_queue=8, capture=True) == {
        "SCORING_MAX_QUEUE": "8",
        "SCORING_CAPTURE": "true",
    }
    names = ScoringSettings.env_names()
    assert names.keys() == ScoringSettings.model_fields.keys()
    assert all(name == "SCORING_" + field.upper() for field, name in names.items())


def test_the_environment_infra_builds_reads_back_as_the_same_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """settings -> variables -> the server's ScoringSettings(): the same values arrive."""
    env = ScoringSettings.environment(**DEPLOYED)
    assert set(env) == {ScoringSettings.env_name(field) for field in DEPLOYED}
    assert all(isinstance(value, str) for value in env.values())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    read = ScoringSettings()
    given = ScoringSettings(**DEPLOYED)  # the same values, validated from Python objects
    assert {f: getattr(read, f) for f in DEPLOYED} == {f: getattr(given, f) for f in DEPLOYED}
    assert read.patterns == set(Pattern)
    assert read.redact_fields == ("tokens", "Top")
    assert read.kv_cache_gib == 5.0
    # And back again: the server's settings give the same variables.
    assert ScoringSettings.environment(**{f: getattr(read, f) for f in DEPLOYED}) == env


def test_environment_renders_values_as_the_plans_show_them() -> None:
    """Whole floats without '.0', patterns in declaration order, lists comma-joined."""
    env = ScoringSettings.environment(
        patterns=frozenset({Pattern.ANALYZE, Pattern.GENERATE}),
        kv_cache_gib=5,
        request_timeout_s=7.345 - 5,
        redact_fields=["tokens", "top"],
    )
    assert env == {
        "SCORING_PATTERNS": "generate,analyze",
        "SCORING_KV_CACHE_GIB": "5",
        "SCORING_REQUEST_TIMEOUT_S": "2.345",
        "SCORING_REDACT_FIELDS": "tokens,top",
    }
    assert ScoringSettings.environment(max_new_tokens=None) == {}  # None: leave the default


def test_environment_ignores_the_callers_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Infra validates what it writes, not what happens to be set where it runs."""
    monkeypatch.setenv("SCORING_MAX_QUEUE", "0")
    assert ScoringSettings.environment(max_batch_size=4) == {"SCORING_MAX_BATCH_SIZE": "4"}


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (
            {"max_queue": 0},
            "SCORING_MAX_QUEUE = 0 is invalid: greater than or equal to 1",
        ),
        ({"capture_sample_rate": 1.5}, "SCORING_CAPTURE_SAMPLE_RATE"),
        ({"engine": "tgi"}, "'vllm', 'continuous' or 'serial'"),
        ({"redact_fields": ("a,b",)}, "SCORING_REDACT_FIELDS"),
        ({"redaction_hook": "hooks.privacy.scrub"}, "package.module:function"),
        ({"max_queu": 1}, "max_queue"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(values: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"is invalid|not a scoring setting") as caught:
        ScoringSettings.environment(**values)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SCORING_MAX_QUEU", "8", "SCORING_MAX_QUEUE"),  # a typo lists the real names
        ("scoring_max_queue", "8", "SCORING_MAX_QUEUE"),
        ("SCORING_MAX_QUEUE", "many", "integer"),
    ],
)
def test_deployment_variables_are_checked_against_the_fields(
    name: str, value: str, fragment: str
) -> None:
    problem = ScoringSettings.variable_problem(name, value)
    assert problem is not None
    assert fragment in problem


def test_other_variables_and_good_settings_pass() -> None:
    assert ScoringSettings.variable_problem("WORKER_TIMEOUT", "1200") is None
    assert ScoringSettings.variable_problem("SCORING_ENGINE", "serial") is None
    assert ScoringSettings.variable_problem("SCORING_COMPILE_ANALYSIS", "false") is None


def test_a_bad_variable_fails_at_start_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server refuses what infra would have refused: bounds hold on both sides."""
    monkeypatch.setenv("SCORING_METRICS_PERPLEXITY_SAMPLE", "7")
    with pytest.raises(ValidationError, match="metrics_perplexity_sample"):
        ScoringSettings()


def _strings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each string literal in `path` that is not a docstring."""
    previous = tokenize.NEWLINE
    with path.open("rb") as source:
        for token in tokenize.tokenize(source.readline):
            if token.type == tokenize.STRING and previous not in STATEMENT_START:
                yield token.start[0], token.string
            if token.type not in (tokenize.COMMENT, tokenize.NL):
                previous = token.type


# A string right after one of these is a statement of its own: a docstring.
STATEMENT_START = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)


def test_no_module_spells_a_variable_name_by_hand() -> None:
    """Server, infra and delivery take every SCORING_* name from scoring/settings.py; prose in
    docstrings and comments may name them."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        f"{path.relative_to(root)}:{line}: {text}"
        for package in ("scoring", "infra", "delivery", "policy")
        for path in sorted((root / package).rglob("*.py"))
        if path != root / "scoring" / "settings.py"
        for line, text in _strings(path)
        if re.search(r"SCORING_[A-Z]", text)
    ]
    assert offenders == []


def test_every_variable_is_documented() -> None:
    """README's table or docs/operations.md says what each SCORING_* variable does."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text() + (root / "docs" / "operations.md").read_text()
    assert [name for name in ScoringSettings.env_names().values() if name not in text] == []


def test_the_openai_server_options_override_their_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m scoring.serve`: --port beats SCORING_PORT, SCORING_HOST applies when no option
    is given, and a bad value is a usage error naming the setting."""
    from scoring import serve

    ran: dict[str, Any] = {}
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **kwargs: ran.update(kwargs))
    monkeypatch.setattr(serve.logging, "basicConfig", lambda **kwargs: ran.update(log=kwargs))
    monkeypatch.setattr(serve, "create_app", lambda server, settings: ran.update(app=locals()))
    monkeypatch.setenv("SCORING_HOST", "0.0.0.0")
    monkeypatch.setenv("SCORING_PORT", "9000")
    monkeypatch.setenv("SCORING_SERVED_MODEL_NAME", "byom")
    serve.main(["--port", "8100", "--model-dir", "/models/m"])
    assert (ran["host"], ran["port"]) == ("0.0.0.0", 8100)
    assert ran["app"]["settings"].model_dir == Path("/models/m")
    assert ran["app"]["server"].served_name == "byom"
    assert ran["log"] == {"level": "INFO"}
    with pytest.raises(SystemExit):
        serve.main(["--port", "many"])
    assert "port" in capsys.readouterr().err
