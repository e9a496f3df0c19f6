"""The prod controls of issue 14 under the policy pack: each one, removed from the prod plan,
is reported by a mandatory policy naming the resource (or the stack) and the reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from pulumi_policy import PolicyResource, PolicyResourceOptions, StackValidationArgs

from policy import check, pack, rules

PROD = check.load_config(check.config_path("prod"))
LOG_ANALYTICS = "azure-native:operationalinsights:Workspace"
ENDPOINT = rules.ONLINE_ENDPOINT


def _mandatory(resources: list[Any]) -> set[tuple[str, str]]:
    return {
        (v.policy, v.resource_name)
        for v in check.evaluate(resources, PROD)
        if v.enforcement == "mandatory"
    }


def _edit(
    resources: list[Any], match: Callable[[Any], bool], change: Callable[[Any], Any | None]
) -> list[Any]:
    """`resources` with each matching one changed (or dropped when `change` gives None)."""
    assert any(match(r) for r in resources), "nothing to edit"
    edited = [change(r) if match(r) else r for r in resources]
    return [r for r in edited if r is not None]


def _props(**changes: Any) -> Callable[[Any], Any]:
    return lambda r: replace(r, props={**r.props, **changes})


def _type(token: str) -> Callable[[Any], bool]:
    return lambda r: r.type == token


def _named(name: str) -> Callable[[Any], bool]:
    return lambda r: r.name == name


CASES = [
    # (what is removed, match, change, expected (policy, resource name))
    (
        "protect on storage",
        _type(rules.STORAGE_ACCOUNT),
        lambda r: replace(r, protect=False),
        ("stateful-resources-protected", "workspace-storage"),
    ),
    (
        "the resource group lock",
        _type(rules.RESOURCE_GROUP_LOCK),
        lambda r: None,
        ("stateful-resources-protected", "(stack)"),
    ),
    (
        "blob versioning",
        _type(rules.BLOB_SERVICE),
        _props(isVersioningEnabled=False),
        ("data-protection", "workspace-blob-service"),
    ),
    (
        "the generate endpoint's diagnostics",
        _named("endpoints-generate-diagnostics"),
        lambda r: None,
        ("diagnostic-settings", "endpoints-generate"),
    ),
    (
        "the blob service's diagnostics",
        _named("workspace-blob-diagnostics"),
        lambda r: None,
        ("diagnostic-settings", "workspace-storage"),
    ),
    (
        "the registry's diagnostics",
        _named("workspace-registry-diagnostics"),
        lambda r: None,
        ("diagnostic-settings", "workspace-registry"),
    ),
    (
        "the network approver grant",
        _named("identity-workspace-resource-group-network-approver"),
        lambda r: None,
        ("managed-network-approval", "workspace-aml"),
    ),
    (
        "provisionNetworkNow",
        _type(rules.ML_WORKSPACE),
        _props(provisionNetworkNow=None),
        ("managed-network-ready", "workspace-aml"),
    ),
    (
        "the deprecated switch (added back)",
        _type(rules.ML_WORKSPACE),
        _props(allowPublicAccessWhenBehindVnet=False),
        ("managed-network-ready", "workspace-aml"),
    ),
    (
        "HBI",
        _type(rules.ML_WORKSPACE),
        _props(hbiWorkspace=False),
        ("data-protection", "workspace-aml"),
    ),
    (
        "closed log ingestion",
        _type(LOG_ANALYTICS),
        _props(publicNetworkAccessForIngestion="Enabled"),
        ("private-monitoring", "workspace-logs"),
    ),
    (
        "the monitor private link scope",
        _type(rules.PRIVATE_LINK_SCOPE),
        lambda r: None,
        ("monitor-private-link-scope", "(stack)"),
    ),
    (
        "geo-zone storage",
        _type(rules.STORAGE_ACCOUNT),
        _props(sku={"name": "Standard_ZRS"}),
        ("data-protection", "workspace-storage"),
    ),
    (
        "registry zone redundancy",
        _type(rules.CONTAINER_REGISTRY),
        _props(zoneRedundancy="Disabled"),
        ("data-protection", "workspace-registry"),
    ),
    (
        "disabled registry export",
        _type(rules.CONTAINER_REGISTRY),
        _props(policies=None),
        ("data-protection", "workspace-registry"),
    ),
    (
        "GPU autoscale",
        _named("endpoints-generate-rollout"),
        lambda r: replace(
            r,
            props={
                **r.props,
                "autoscale": {**r.props["autoscale"], "metric": "CpuUtilizationPercentage"},
            },
        ),
        ("gpu-autoscale-metric", "endpoints-generate-rollout"),
    ),
    (
        "the unset egress flag (set again)",
        _named("endpoints-generate-rollout"),
        lambda r: replace(
            r,
            props={
                **r.props,
                "deployment": {**r.props["deployment"], "egress_public_network_access": "disabled"},
            },
        ),
        ("managed-network-approval", "endpoints-generate-rollout"),
    ),
]


def test_the_prod_plan_meets_every_new_control(prod_resources: list[Any]) -> None:
    assert _mandatory(prod_resources) == set()


@pytest.mark.parametrize(("what", "match", "change", "expected"), CASES, ids=[c[0] for c in CASES])
def test_removing_a_control_is_a_mandatory_violation(
    prod_resources: list[Any],
    what: str,
    match: Callable[[Any], bool],
    change: Callable[[Any], Any | None],
    expected: tuple[str, str],
) -> None:
    assert expected in _mandatory(_edit(prod_resources, match, change)), what


@pytest.mark.parametrize(
    "actions",
    [
        ["Microsoft.Authorization/roleDefinitions/write"],
        ["Microsoft.Authorization/roleAssignments/write"],
        ["Microsoft.Authorization/role*/write"],
    ],
)
def test_role_writing_custom_roles_are_privileged(actions: list[str]) -> None:
    props = {"permissions": [{"actions": actions}]}
    assert rules.no_privileged_roles(rules.ROLE_DEFINITION, props, {})


def test_the_rbac_administrator_role_is_privileged() -> None:
    role = f"/providers/Microsoft.Authorization/roleDefinitions/{rules.RBAC_ADMINISTRATOR}"
    (reason,) = rules.no_privileged_roles(
        rules.ROLE_ASSIGNMENT, {"roleDefinitionId": role, "scope": "/subscriptions/s"}, {}
    )
    assert "Role Based Access Control Administrator" in reason


def test_insecure_prod_config_breaks_data_protection_and_gpu_autoscale(
    insecure_prod_resources: list[Any],
) -> None:
    found = _mandatory(insecure_prod_resources)
    assert ("data-protection", "workspace-storage") in found
    assert ("data-protection", "workspace-aml") in found
    assert ("gpu-autoscale-metric", "endpoints-generate-rollout") in found


def test_stack_policy_reports_through_crossguard(prod_resources: list[Any]) -> None:
    """The pack's stack policy sees CrossGuard's resources (with `protect`) and reports by URN."""
    policy_resources = [
        PolicyResource(
            r.type,
            r.props,
            r.urn,
            r.name,
            PolicyResourceOptions(
                r.protect,
                [],
                None,
                None,
                None,
                None,
                None,
            ),
            None,
            None,
            [],
            {},
        )
        for r in prod_resources
    ]
    (policy,) = [p for p in pack.build_policies() if p.name == "stateful-resources-protected"]
    found: list[tuple[str, str | None]] = []
    policy.validate(
        StackValidationArgs(policy_resources, None),  # type: ignore[arg-type]
        lambda message, urn=None: found.append((message, urn)),
    )
    assert found == []
    unprotected = [
        PolicyResource(
            r.resource_type,
            r.props,
            r.urn,
            r.name,
            PolicyResourceOptions(False, [], None, None, None, None, None),
            None,
            None,
            [],
            {},
        )
        if r.resource_type == rules.KEY_VAULT
        else r
        for r in policy_resources
    ]
    policy.validate(
        StackValidationArgs(unprotected, None),  # type: ignore[arg-type]
        lambda message, urn=None: found.append((message, urn)),
    )
    assert [urn.rsplit("::", 1)[-1] for _, urn in found if urn] == ["workspace-vault"]
