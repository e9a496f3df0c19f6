"""Offline plans of both stacks, computed once per session under Pulumi's mocks."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import pytest

from infra.plan import STACKS, Plan, PlannedResource, plan

# The rollout provider's tests (tests/infra/test_rollout.py) run against delivery's fakes.
from tests.delivery.conftest import code_dir, fake, tiny_model  # noqa: F401


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    """The real program run for every stack as after a first release (the example assets)."""
    return {stack: plan(stack, release=True) for stack in STACKS}


@pytest.fixture(scope="session")
def fresh_plans() -> dict[str, Plan]:
    """The real program run for every stack with its stack file's config as committed."""
    return {stack: plan(stack) for stack in STACKS}


@pytest.fixture(params=STACKS)
def stack_plan(request: pytest.FixtureRequest, plans: dict[str, Plan]) -> Plan:
    """Each stack's plan in turn, for rules that hold in every stack."""
    return plans[request.param]


def of_type(resources: list[PlannedResource], token: str) -> list[PlannedResource]:
    """Cloud resources with the given type token."""
    return [r for r in resources if r.type == token]


def is_taggable(token: str) -> bool:
    """Whether `token` is an azure-native resource whose class accepts `tags`."""
    if not token.startswith("azure-native:"):
        return False
    _, module, name = token.split(":")
    cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), name)
    return "tags" in inspect.signature(cls._internal_init).parameters


@pytest.fixture
def taggable() -> Callable[[str], bool]:
    """`is_taggable` as a fixture."""
    return is_taggable
