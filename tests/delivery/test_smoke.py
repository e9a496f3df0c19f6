"""Smoke tests come from the scoring contract: valid requests, and responses checked by it."""

from __future__ import annotations

import json

import pytest

from delivery.fake import CANNED_RESPONSES
from delivery.smoke import SMOKE_CASES, check_response
from scoring.schemas import PATTERNS


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_pattern_has_a_smoke_request_its_server_accepts(pattern: str) -> None:
    """Each smoke request passes the pattern's own request model."""
    PATTERNS[pattern].request.model_validate(SMOKE_CASES[pattern].request)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_fakes_canned_answers_pass_the_smoke_check(pattern: str) -> None:
    """The fake answers like the scoring package, so rollout tests exercise real shapes."""
    assert check_response(pattern, json.dumps(CANNED_RESPONSES[pattern])) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"text": "hi"}', "missing 'finish_reason'"),
        ('{"text": "hi", "finish_reason": "maybe", "usage": {}}', "'finish_reason'"),
        ("not json", "expected shape"),
        ("[1, 2]", "expected shape"),
    ],
)
def test_a_wrong_answer_is_named(body: str, problem: str) -> None:
    """Missing fields, values outside the contract and non-objects each fail the smoke test."""
    problems = check_response("generate", body)
    assert any(problem in p for p in problems), problems
