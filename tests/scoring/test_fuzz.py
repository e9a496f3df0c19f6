"""Schemathesis fuzzes the real azmlinfsrv through the OpenAPI document it serves.

Every generated request, valid or not (schemathesis sends both), must get an answer the document
describes: no 5xx, a documented status, a body of the documented schema, and a 4xx for data the
schema forbids. The tiny random model keeps each answer cheap; the examples are derandomized so a
run is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from scoring.local_server import LocalServer

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
LIMITS = {
    "SCORING_MAX_NEW_TOKENS": "16",
    "SCORING_MAX_INPUT_TOKENS": "128",
    "SCORING_REQUEST_TIMEOUT_S": "20",
}


@pytest.fixture(scope="module")
def fuzzed_server(tiny_model_dir: Path) -> Iterator[LocalServer]:
    with LocalServer(tiny_model_dir, env=LIMITS, threads=4) as server:
        yield server


@pytest.fixture
def served_schema(fuzzed_server: LocalServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzzed_server.url + "/swagger.json?version=3")


schema = schemathesis.pytest.from_fixture("served_schema")


@schema.parametrize()
@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_served_openapi_document_holds_under_fuzzing(
    case: schemathesis.Case, fuzzed_server: LocalServer
) -> None:
    case.call_and_validate(base_url=fuzzed_server.url, checks=CHECKS, timeout=60)
