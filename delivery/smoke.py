"""Smoke tests per scoring pattern: one request and the response shape it must produce.

`SMOKE_CASES` is the one table to edit when the scoring schemas change: a request body, and the
fields the JSON response must have, as dotted paths with their JSON types.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SmokeCase:
    """A request for one pattern and the shape its response must have."""

    request: Mapping[str, Any]
    # dotted path -> JSON type: "string", "number", "object", "array" ("array+" = non-empty)
    expect: Mapping[str, str]


SMOKE_CASES: Mapping[str, SmokeCase] = {
    "generate": SmokeCase(
        request={"task": "generate", "prompt": "Reply with one word: ready?", "max_new_tokens": 8},
        expect={"text": "string", "finish_reason": "string", "usage": "object"},
    ),
    "analyze": SmokeCase(
        request={"task": "analyze", "text": "The quick brown fox jumps over the lazy dog."},
        expect={"tokens": "array+", "summary": "object", "summary.perplexity": "number"},
    ),
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
    """Every way the response body misses its pattern's shape; empty when it fits."""
    try:
        payload = json.loads(body)
    except (TypeError, json.JSONDecodeError) as exc:
        return [f"response is not JSON ({exc}): {str(body)[:200]!r}"]
    if not isinstance(payload, dict):
        return [f"response is a JSON {type(payload).__name__}, not an object: {str(body)[:200]!r}"]
    problems = []
    for path, kind in smoke_case(pattern).expect.items():
        found, value = _lookup(payload, path)
        if not found:
            problems.append(f"missing {path!r}")
        elif not _is(kind, value):
            problems.append(f"{path!r} should be {kind}, got {json.dumps(value)[:80]}")
    return problems


def _lookup(payload: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = payload
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _is(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        # JSON has no NaN; a finite float or an int (not a bool) is a number
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "array+":
        return isinstance(value, list) and len(value) > 0
    raise ValueError(f"unknown shape kind {kind!r}")
