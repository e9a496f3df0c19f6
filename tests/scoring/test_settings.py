"""Deployment settings come from SCORING_* environment variables and are validated."""

from __future__ import annotations

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
