"""Offline plans shared by the policy tests: each stack's program runs once per session."""

from __future__ import annotations

from typing import Any

import pytest

from policy import check

# Prod with the switches a hurried engineer might flip; each value passes config validation.
INSECURE_PROD_OVERRIDES = (
    "network.private=false",
    # Confidential data must stay private (config refuses it), so the label goes down too.
    "tags.dataClassification=internal",
    "endpoints.authMode=Key",
    "endpoints.deployments.generate.instanceType=Standard_D2s_v3",
    "endpoints.deployments.generate.autoscale.metric=CpuUtilizationPercentage",
    "compute.instance.idleShutdownMinutes=480",
    "workspace.storageSku=Standard_LRS",
    "workspace.highBusinessImpact=false",
)


@pytest.fixture(scope="session")
def prod_resources() -> list[Any]:
    """The prod stack's offline plan, as after a release."""
    return check.plan_resources("prod", release=True)


@pytest.fixture(scope="session")
def dev_resources() -> list[Any]:
    """The dev stack's offline plan, as after a release."""
    return check.plan_resources("dev", release=True)


@pytest.fixture(scope="session")
def insecure_prod_resources() -> list[Any]:
    """The prod plan with INSECURE_PROD_OVERRIDES applied to its stack config."""
    return check.plan_resources("prod", INSECURE_PROD_OVERRIDES, release=True)
