"""The offline harness relies on Pulumi SDK internals: an SDK upgrade that changes them fails here,
loudly and by name, before any plan silently records nothing."""

from __future__ import annotations

import importlib
from importlib.metadata import version

import pytest

from infra.offline.harness import PRIVATE_APIS, TESTED_WITH


@pytest.mark.parametrize(("module", "path"), PRIVATE_APIS)
def test_the_private_pulumi_apis_the_harness_uses_still_exist(module: str, path: str) -> None:
    """Each private API resolves to something callable in the installed SDK."""
    installed = version("pulumi")
    target: object = importlib.import_module(module)
    for part in path.split("."):
        target = getattr(target, part, None)
        assert target is not None, (
            f"pulumi {installed} has no {module}.{path} (infra/offline/harness.py was written "
            f"against pulumi {TESTED_WITH}): adapt the harness to the new SDK"
        )
    assert callable(target), f"pulumi {installed}: {module}.{path} is no longer callable"


def test_the_pinned_sdk_is_the_one_the_harness_was_tested_with() -> None:
    """requirements.txt and the harness name the same Pulumi version."""
    assert version("pulumi") == TESTED_WITH, (
        f"pulumi {version('pulumi')} is installed but infra/offline/harness.py was tested with "
        f"{TESTED_WITH}: run the offline plans, then update TESTED_WITH"
    )
