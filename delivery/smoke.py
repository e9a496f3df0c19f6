"""Smoke tests per scoring pattern: one request, and a response the scoring contract accepts.

Both come from the pattern table `scoring.schemas.PATTERNS`, the contract the scoring package
publishes: a new pattern gets its smoke test from its row there, with nothing to edit here.

The rollout sends them through the workspace (`delivery.rollout`); from outside, as applications
call, the dev deploy job runs

    python -m delivery.smoke --url <scoring uri> --pattern <pattern> --aad
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from scoring.schemas import PATTERNS

if TYPE_CHECKING:
    from scoring.client import ScoringClient


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


def smoke_endpoint(client: ScoringClient, pattern: str) -> list[str]:
    """Send the pattern's smoke request through ``client``; every way the answer misses the
    pattern's response model (``ScoringError`` when the endpoint refuses it)."""
    answer = client.score(dict(smoke_case(pattern).request))
    return check_response(pattern, json.dumps(answer))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m delivery.smoke",
        description="Send a pattern's smoke request (scoring.schemas.PATTERNS) to a scoring URI "
        "and check the answer against the pattern's response model.",
    )
    parser.add_argument("--url", required=True, help="the endpoint's scoring URI")
    parser.add_argument("--pattern", required=True, choices=sorted(SMOKE_CASES))
    parser.add_argument("--aad", action="store_true", help="Entra ID bearer tokens")
    args = parser.parse_args(argv)
    # The client's packages (requests, tenacity) are the client group's, not the infra group's.
    from scoring.client import ScoringClient, ScoringError, aad_token_provider

    client = ScoringClient(args.url, token_provider=aad_token_provider() if args.aad else None)
    try:
        problems = smoke_endpoint(client, args.pattern)
    except ScoringError as error:
        print(f"{args.pattern} smoke request to {args.url} failed: {error}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"{args.pattern} smoke answer from {args.url}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.pattern} smoke test of {args.url}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
