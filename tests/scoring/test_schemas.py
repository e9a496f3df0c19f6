"""Request schemas: bounds, strict types, exactly-one-of rules, and the published OpenAPI."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scoring.schemas import AnalyzeRequest, GenerateRequest, openapi_document


def _error_fields(model: type, payload: dict) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    return {".".join(map(str, e["loc"])) for e in caught.value.errors()}


def test_generate_defaults_are_greedy_and_bounded() -> None:
    request = GenerateRequest.model_validate({"prompt": "hi"})
    assert (request.max_new_tokens, request.temperature, request.top_p, request.top_k) == (
        128,
        0.0,
        1.0,
        0,
    )
    assert request.stop == []
    assert request.seed is None


def test_single_stop_string_becomes_a_list() -> None:
    assert GenerateRequest.model_validate({"prompt": "x", "stop": "\n"}).stop == ["\n"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"prompt": "x", "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompt": "x", "max_new_tokens": 5000}, "max_new_tokens"),
        ({"prompt": "x", "max_new_tokens": "5"}, "max_new_tokens"),
        ({"prompt": "x", "temperature": 2.5}, "temperature"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "top_k": -1}, "top_k"),
        ({"prompt": "x", "seed": -3}, "seed"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "x", "stop": [""]}, "stop.0"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x", "temprature": 1.0}, "temprature"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": []}, "messages"),
    ],
)
def test_generate_rejects_out_of_range_and_wrong_types(payload: dict, field: str) -> None:
    assert field in _error_fields(GenerateRequest, payload)


@pytest.mark.parametrize(
    "payload", [{}, {"prompt": "x", "messages": [{"role": "user", "content": "y"}]}]
)
def test_generate_needs_exactly_one_of_prompt_or_messages(payload: dict) -> None:
    with pytest.raises(ValidationError, match="exactly one of 'prompt' or 'messages'"):
        GenerateRequest.model_validate(payload)


def test_analyze_accepts_text_or_texts() -> None:
    assert AnalyzeRequest.model_validate({"text": "a"}).all_texts() == ["a"]
    assert AnalyzeRequest.model_validate({"texts": ["a", "b"]}).all_texts() == ["a", "b"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"text": ""}, "text"),
        ({"texts": []}, "texts"),
        ({"texts": ["ok", ""]}, "texts.1"),
        ({"text": "a", "top_k": 101}, "top_k"),
        ({"text": ["a"]}, "text"),
    ],
)
def test_analyze_rejects_empty_and_out_of_range(payload: dict, field: str) -> None:
    assert field in _error_fields(AnalyzeRequest, payload)


def test_openapi_document_describes_both_patterns_and_errors() -> None:
    doc = openapi_document()
    post = doc["paths"]["/score"]["post"]
    refs = {
        s["$ref"] for s in post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    }
    assert refs == {"#/components/schemas/GenerateRequest", "#/components/schemas/AnalyzeRequest"}
    assert {"400", "413", "422", "429"} <= post["responses"].keys()
    generate = doc["components"]["schemas"]["GenerateRequest"]["properties"]
    assert generate["max_new_tokens"]["maximum"] == 4096
