"""Each rule called directly with compliant and violating resources (camelCase input shapes)."""

from __future__ import annotations

from typing import Any

import pytest

from infra import config as infra_config
from infra import config_endpoints, roles
from policy import rules
from policy.rules import POLICIES, PolicySpec

SPECS = {spec.name: spec for spec in POLICIES}
TAGS = {
    "environment": "prod",
    "owner": "ml-platform@example.com",
    "costCenter": "CC-1001",
    "dataClassification": "confidential",
}
SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"


def _check(policy: str, resource_type: str, props: dict[str, Any], **config: Any) -> list[str]:
    spec: PolicySpec = SPECS[policy]
    return spec.check(resource_type, props, config)


def _role(guid: str) -> dict[str, Any]:
    return {
        "roleDefinitionId": f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        "scope": f"{SUB}/resourceGroups/rg-byom-prod",
        "principalId": "9f3c2a71-5b8d-4e0f-a1c6-3d7e8f9a0b1c",
    }


def _instance(idle: str | None) -> dict[str, Any]:
    inner = {"vmSize": "Standard_DS3_v2"}
    if idle is not None:
        inner["idleTimeBeforeShutdown"] = idle
    return {"properties": {"computeType": "ComputeInstance", "properties": inner}}


PRIVATE = [
    (rules.ML_WORKSPACE, {"publicNetworkAccess": "Disabled"}),
    (rules.ML_REGISTRY, {"publicNetworkAccess": "Disabled"}),
    (
        rules.STORAGE_ACCOUNT,
        {"publicNetworkAccess": "Disabled", "allowBlobPublicAccess": False},
    ),
    (rules.KEY_VAULT, {"properties": {"publicNetworkAccess": "disabled"}}),
    (rules.CONTAINER_REGISTRY, {"publicNetworkAccess": "Disabled"}),
    (rules.ONLINE_ENDPOINT, {"properties": {"publicNetworkAccess": "Disabled"}}),
    (rules.ONLINE_DEPLOYMENT, {"properties": {"egressPublicNetworkAccess": "Disabled"}}),
    (rules.ROLLOUT, {"deployment": {"egress_public_network_access": "disabled"}}),
]
PUBLIC = [
    (rules.ML_WORKSPACE, {"publicNetworkAccess": "Enabled"}, "publicNetworkAccess is 'Enabled'"),
    (
        rules.ML_WORKSPACE,
        {"publicNetworkAccess": "Disabled", "allowPublicAccessWhenBehindVnet": True},
        "allowPublicAccessWhenBehindVnet is true",
    ),
    (rules.ML_REGISTRY, {}, "publicNetworkAccess is not set (Azure's default is Enabled)"),
    (
        rules.STORAGE_ACCOUNT,
        {"publicNetworkAccess": "Disabled", "allowBlobPublicAccess": True},
        "allowBlobPublicAccess is True",
    ),
    (rules.KEY_VAULT, {"properties": {}}, "properties.publicNetworkAccess is not set"),
    (rules.CONTAINER_REGISTRY, {"publicNetworkAccess": "Enabled"}, "'Enabled'"),
    (
        rules.ONLINE_ENDPOINT,
        {"properties": {"publicNetworkAccess": "Enabled"}},
        "properties.publicNetworkAccess is 'Enabled'",
    ),
    (
        rules.ONLINE_DEPLOYMENT,
        {"properties": {"egressPublicNetworkAccess": "Enabled"}},
        "properties.egressPublicNetworkAccess is 'Enabled'",
    ),
    (
        rules.ROLLOUT,
        {"deployment": {"egress_public_network_access": "enabled"}},
        "deployment.egress_public_network_access is 'enabled'",
    ),
]


@pytest.mark.parametrize(("resource_type", "props"), PRIVATE, ids=lambda x: str(x)[:40])
def test_private_resources_pass_no_public_network_access(resource_type, props):
    """Disabled public access (in any letter case) complies."""
    assert _check("no-public-network-access", resource_type, props) == []


@pytest.mark.parametrize(("resource_type", "props", "reason"), PUBLIC, ids=lambda x: str(x)[:40])
def test_public_or_unset_access_violates_no_public_network_access(resource_type, props, reason):
    """Enabled or unset public access is reported with the property and its value."""
    reasons = _check("no-public-network-access", resource_type, props)
    assert any(reason in r for r in reasons), reasons


def test_no_public_network_access_ignores_other_types():
    """Types without a public access switch are not judged by it."""
    assert _check("no-public-network-access", "azure-native:network:VirtualNetwork", {}) == []


def test_endpoint_with_aad_token_auth_passes():
    """AADToken endpoints comply."""
    props = {"properties": {"authMode": "AADToken"}}
    assert _check("endpoint-aad-token-auth", rules.ONLINE_ENDPOINT, props) == []


@pytest.mark.parametrize("mode", ["Key", "AMLToken", None])
def test_endpoint_with_keys_or_no_auth_mode_violates_aad_token_auth(mode):
    """Key, AML token or an unset auth mode is reported."""
    props = {"properties": {"authMode": mode}}
    (reason,) = _check("endpoint-aad-token-auth", rules.ONLINE_ENDPOINT, props)
    assert "set it to 'AADToken'" in reason


@pytest.mark.parametrize(
    ("guid", "label"),
    [
        (rules.OWNER, "Owner"),
        (rules.CONTRIBUTOR, "Contributor"),
        (rules.USER_ACCESS_ADMINISTRATOR.upper(), "User Access Administrator"),
    ],
)
def test_privileged_role_assignment_violates(guid, label):
    """Owner, Contributor and User Access Administrator grants are reported by name."""
    (reason,) = _check("no-privileged-roles", rules.ROLE_ASSIGNMENT, _role(guid))
    assert reason.startswith(f"grants {label}")


@pytest.mark.parametrize("guid", [roles.ACR_PULL, roles.AZUREML_DATA_SCIENTIST])
def test_least_privilege_role_assignment_passes(guid):
    """Narrow built-in roles comply."""
    assert _check("no-privileged-roles", rules.ROLE_ASSIGNMENT, _role(guid)) == []


def test_custom_role_with_wildcard_actions_violates():
    """A custom role allowing `*` is Owner in disguise."""
    props = {"permissions": [{"actions": ["*"]}]}
    (reason,) = _check("no-privileged-roles", rules.ROLE_DEFINITION, props)
    assert "allows *" in reason


def test_invoker_custom_role_passes():
    """The score-only invoker role complies."""
    props = {"permissions": [{"actions": [roles.SCORE_ACTION]}]}
    assert _check("no-privileged-roles", rules.ROLE_DEFINITION, props) == []


@pytest.mark.parametrize("idle", ["PT30M", "PT2H", "PT1H30M"])
def test_compute_instance_with_idle_shutdown_passes(idle):
    """Idle shutdown within the limit (120 min by default) complies."""
    assert _check("compute-instance-idle-shutdown", rules.ML_COMPUTE, _instance(idle)) == []


@pytest.mark.parametrize(
    ("idle", "reason"),
    [
        (None, "is not set"),
        ("30 minutes", "is '30 minutes'; set an ISO 8601 duration"),
        ("P1D", "(1440 min); at most 120 min allowed"),
    ],
)
def test_compute_instance_without_bounded_idle_shutdown_violates(idle, reason):
    """A missing, malformed or too long idle time is reported."""
    (found,) = _check("compute-instance-idle-shutdown", rules.ML_COMPUTE, _instance(idle))
    assert reason in found


def test_idle_shutdown_limit_is_configurable():
    """`maxIdleMinutes` raises the limit."""
    props = _instance("P1D")
    assert (
        _check("compute-instance-idle-shutdown", rules.ML_COMPUTE, props, maxIdleMinutes=1440) == []
    )


def test_idle_shutdown_does_not_apply_to_clusters():
    """Clusters scale to zero instead; the rule is for compute instances."""
    props = {"properties": {"computeType": "AmlCompute", "properties": {}}}
    assert _check("compute-instance-idle-shutdown", rules.ML_COMPUTE, props) == []


@pytest.mark.parametrize("location", ["swedencentral", "Sweden Central", "global"])
def test_allowed_or_global_location_passes(location):
    """Allowed regions, in either spelling, and global resources comply."""
    assert _check("allowed-regions", rules.STORAGE_ACCOUNT, {"location": location}) == []


def test_disallowed_location_violates():
    """A region outside the list is reported with the allowed ones."""
    (reason,) = _check("allowed-regions", rules.STORAGE_ACCOUNT, {"location": "eastus"})
    assert reason.startswith("location is 'eastus'; allowed: swedencentral")


def test_allowed_regions_are_configurable():
    """`allowedRegions` narrows the list."""
    props = {"location": "westeurope"}
    assert _check("allowed-regions", rules.ML_WORKSPACE, props, allowedRegions=["swedencentral"])


def test_resources_without_location_pass_allowed_regions():
    """Extension resources (role assignments) have no location of their own."""
    assert _check("allowed-regions", rules.ROLE_ASSIGNMENT, {"scope": "/subscriptions/x"}) == []


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (rules.ONLINE_DEPLOYMENT, {"properties": {"instanceType": "Standard_NC24ads_A100_v4"}}),
        (rules.ROLLOUT, {"deployment": {"instance_type": "STANDARD_NC4AS_T4_V3"}}),
    ],
)
def test_gpu_deployment_sku_passes(resource_type, props):
    """Approved GPU SKUs comply, in any letter case."""
    assert _check("allowed-deployment-skus", resource_type, props) == []


@pytest.mark.parametrize(
    ("resource_type", "props", "reason"),
    [
        (
            rules.ONLINE_DEPLOYMENT,
            {"properties": {"instanceType": "Standard_F4s_v2"}},
            "properties.instanceType is 'Standard_F4s_v2'",
        ),
        (rules.ROLLOUT, {"deployment": {}}, "deployment.instance_type is not set"),
    ],
)
def test_unapproved_deployment_sku_violates(resource_type, props, reason):
    """CPU or unset SKUs are reported."""
    (found,) = _check("allowed-deployment-skus", resource_type, props)
    assert found.startswith(reason)


def test_fully_tagged_resource_passes():
    """All four tags present complies."""
    assert _check("required-tags", rules.STORAGE_ACCOUNT, {"tags": TAGS}) == []


def test_missing_or_empty_tags_violate():
    """Missing and empty tags are listed."""
    tags = {**TAGS, "owner": ""}
    del tags["costCenter"]
    (reason,) = _check("required-tags", rules.STORAGE_ACCOUNT, {"tags": tags})
    assert reason == "missing tags: owner, costCenter"


def test_expected_tag_value_mismatch_violates():
    """A dev-labelled resource in prod is reported."""
    props = {"tags": {**TAGS, "environment": "dev"}}
    reasons = _check(
        "required-tags", rules.ML_WORKSPACE, props, expectedTagValues={"environment": "prod"}
    )
    assert reasons == ["tag environment is 'dev'; expected 'prod'"]


@pytest.mark.parametrize(
    "resource_type", [rules.ROLE_ASSIGNMENT, "byom:network:Network", rules.ROLLOUT]
)
def test_untaggable_types_pass_required_tags(resource_type):
    """Role assignments, components and dynamic resources cannot carry tags."""
    assert _check("required-tags", resource_type, {}) == []


def test_policy_constants_match_infra():
    """The pack (which cannot import infra) agrees with infra on roles, regions, GPU autoscale
    metrics and tags."""
    assert {k.lower(): v for k, v in rules.PRIVILEGED_ROLES.items()} == roles.FORBIDDEN_ROLES
    assert rules.ALLOWED_REGIONS == infra_config.ALLOWED_REGIONS
    assert rules.GPU_AUTOSCALE_METRICS == config_endpoints.GPU_AUTOSCALE_METRICS
    tags = infra_config.TagSettings(owner="o", costCenter="c", dataClassification="internal")
    tags = tags.as_dict()
    assert set(rules.REQUIRED_TAGS) <= set(tags)


def test_every_setting_has_a_default():
    """Policies work without any config file (every schema entry has a default)."""
    for spec in POLICIES:
        assert all("default" in s for s in spec.schema.values()), spec.name


ROLLOUT_PROPS: dict[str, Any] = {
    "deployment": {"instance_count": 3.0},
    "policy": {"autoscale": False},
}


def test_fixed_instance_count_above_the_floor_limit_violates_min_instances():
    """Three always-on instances without autoscale break a limit of two."""
    reasons = rules.endpoint_min_instances(rules.ROLLOUT, ROLLOUT_PROPS, {"maxMinInstances": 2})
    assert reasons == [
        "deployment.instance_count is 3 without autoscale; at most 2 allowed "
        "(add autoscale to run more only under load)"
    ]


def test_autoscaled_rollout_is_judged_by_its_autoscale_minimum():
    """With autoscale on, the instance count is only the start; the setting's minimum counts."""
    props = {**ROLLOUT_PROPS, "policy": {"autoscale": True}}
    assert rules.endpoint_min_instances(rules.ROLLOUT, props, {"maxMinInstances": 2}) == []
    autoscale = {
        "profiles": [
            {"name": "default", "capacity": {"minimum": "1"}},
            {"name": "off-hours", "capacity": {"minimum": "4"}},
        ]
    }
    reasons = rules.endpoint_min_instances(
        rules.AUTOSCALE_SETTING, autoscale, {"maxMinInstances": 2}
    )
    assert reasons == ["profile 'off-hours' keeps at least 4 instances; at most 2 allowed"]


def test_the_rollouts_per_slot_autoscale_floors_count():
    """The rollout creates each slot's setting: its autoscale floors are judged on the rollout."""
    props = {
        **ROLLOUT_PROPS,
        "policy": {"autoscale": True},
        "autoscale": {"min_instances": 1, "off_hours": {"min_instances": 3}},
    }
    reasons = rules.endpoint_min_instances(rules.ROLLOUT, props, {"maxMinInstances": 2})
    assert reasons == ["profile 'off-hours' keeps at least 3 instances; at most 2 allowed"]


def test_min_instances_policy_defaults_to_one():
    """Without a setting the floor limit is one instance."""
    spec = next(p for p in POLICIES if p.name == "endpoint-min-instances")
    assert spec.settings() == {"maxMinInstances": 1}
    assert spec.check(rules.ROLLOUT, {"deployment": {"instance_count": 2}}) != []
