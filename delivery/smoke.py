"""Smoke tests per scoring pattern: one request, and a response the scoring contract accepts.

Both come from the pattern table `scoring.schemas.PATTERNS`, the contract the scoring package
publishes: a new pattern gets its smoke test from its row there, with nothing to edit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from scoring.schemas import PATTERNS


@dataclass(frozen=True)
class SmokeCase:
    """A request for one pattern and the model its response must validate against."""

    request: Mapping[str, Any]
    response: type[BaseModel]


SMOKE_CASES: Mapping[str, SmokeCase] = {
    pattern: SmokeCase(contract.smoke_request, contract.response)
    for pattern, contract in PATTERNS.items()
}


class SmokeTestError(RuntimeError):
    """A deployment answered its smoke request wrongly or not at all."""

    def __init__(self, endpoint: str, deployment: str, reason: str) -> None:
        super().__init__(f"smoke test of {endpoint}/{deployment} failed: {reason}")
        self.endpoint = endpoint
        self.deployment = deployment
        self.reason = reason


def smoke_case(pattern: str) -> SmokeCase:
    """The case for a pattern; an unknown pattern is a configuration error."""
    try:
        return SMOKE_CASES[pattern]
    except KeyError:
        raise ValueError(
            f"no smoke test for pattern {pattern!r}; known patterns: {', '.join(SMOKE_CASES)}"
        ) from None


def check_response(pattern: str, body: str) -> list[str]:
    """Every way the response body misses its pattern's response model; empty when it fits."""
    try:
        smoke_case(pattern).response.model_validate_json(body)
    except ValidationError as exc:
        return [_problem(error) for error in exc.errors()]
    return []


def _problem(error: Any) -> str:
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"missing {path!r}"
    if not path:
        return f"response is not a JSON object of the expected shape: {error['msg']}"
    return f"{path!r}: {error['msg']}, got {str(error.get('input'))[:80]}"
