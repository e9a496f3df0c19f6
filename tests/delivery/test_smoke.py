"""The smoke table follows the scoring schemas: its requests validate, its paths exist."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from delivery.fake import CANNED_RESPONSES
from delivery.smoke import SMOKE_CASES, check_response
from scoring.schemas import AnalyzeRequest, GenerateRequest, GenerateResponse, TextAnalysis

SCHEMAS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "generate": (GenerateRequest, GenerateResponse),
    "analyze": (AnalyzeRequest, TextAnalysis),
}


@pytest.mark.parametrize("pattern", sorted(SMOKE_CASES))
def test_smoke_requests_are_valid_scoring_requests(pattern: str) -> None:
    """Each smoke request passes the scoring package's own request schema."""
    request_model, _ = SCHEMAS[pattern]
    request_model.model_validate(SMOKE_CASES[pattern].request)


@pytest.mark.parametrize("pattern", sorted(SMOKE_CASES))
def test_expected_paths_exist_in_the_response_schema(pattern: str) -> None:
    """Every dotted path the smoke test checks is a field of the scoring response model."""
    _, response_model = SCHEMAS[pattern]
    for path in SMOKE_CASES[pattern].expect:
        model: type[BaseModel] | None = response_model
        for key in path.split("."):
            assert model is not None, f"{path}: {key} is below a non-object field"
            assert key in model.model_fields, f"{path}: {response_model.__name__} has no {key}"
            annotation = model.model_fields[key].annotation
            model = (
                annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel)
                else None
            )


@pytest.mark.parametrize("pattern", sorted(SMOKE_CASES))
def test_the_fakes_canned_answers_are_valid_responses(pattern: str) -> None:
    """The fake answers like the scoring package, so rollout tests exercise real shapes."""
    _, response_model = SCHEMAS[pattern]
    response_model.model_validate(CANNED_RESPONSES[pattern])
    assert check_response(pattern, json.dumps(CANNED_RESPONSES[pattern])) == []


def test_shape_problems_are_listed_one_by_one() -> None:
    """Wrong types, missing fields, NaN-free numbers and non-JSON bodies are all reported."""
    assert check_response("generate", "<html>502</html>")[0].startswith("response is not JSON")
    assert check_response("generate", '"{\\"text\\": 1}"')[0].startswith("response is a JSON str")
    assert check_response("analyze", json.dumps({"tokens": [], "summary": {}})) == [
        "'tokens' should be array+, got []",
        "missing 'summary.perplexity'",
    ]
    assert check_response(
        "analyze", json.dumps({"tokens": [1], "summary": {"perplexity": None}})
    ) == ["'summary.perplexity' should be number, got null"]
