"""The rules Azure enforces at `pulumi up` that mocks do not know, checked on the offline plans."""

from __future__ import annotations

import dataclasses
import json

import pytest

from infra import azure_rules, roles
from infra.naming import unique_suffix
from infra.plan import STACKS, Plan, PlannedResource, check_rules, plan, settings_for, stack_config
from tests.infra.conftest import of_type

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
OTHER_SUBSCRIPTION = "22222222-2222-2222-2222-222222222222"


@pytest.mark.parametrize("stack", STACKS)
def test_both_stacks_pass_the_rule_set(stack: str) -> None:
    """As committed, after a release, and across the next release's slot flip: no finding."""
    assert [str(f) for f in check_rules(stack)] == []


def test_name_rule_refuses_what_azure_refuses() -> None:
    """A storage account name with a hyphen, a key vault name with '--': refused."""
    bad = [
        PlannedResource(
            "azure-native:storage:StorageAccount",
            "st",
            "u1",
            None,
            True,
            {"accountName": "st-byom-dev"},
        ),
        PlannedResource(
            "azure-native:keyvault:Vault", "kv", "u2", None, True, {"vaultName": "kv--byom"}
        ),
    ]
    findings = azure_rules.check_names(Plan("dev", bad))
    assert [f.resource for f in findings] == ["st", "kv"]


def test_role_assignment_names_derive_from_scope_principal_and_role(
    plans: dict[str, Plan],
) -> None:
    """Like Bicep's guid(scope, principal, role): tenant-unique, the same on every run."""
    for p in plans.values():
        assert azure_rules.check_tenant_unique_names(p) == []
        for r in of_type(p.resources, ROLE_ASSIGNMENT):
            props = r.props
            assert props["roleAssignmentName"] == roles.assignment_guid(
                props["scope"], props["principalId"], props["roleDefinitionId"]
            )


def test_a_name_not_derived_from_the_grant_is_refused(plans: dict[str, Plan]) -> None:
    """The rule catches a name made from project/stack alone (the collision across tenants)."""
    r = of_type(plans["prod"].resources, ROLE_ASSIGNMENT)[0]
    fixed = dataclasses.replace(
        r, props={**r.props, "roleAssignmentName": roles.stable_guid("azureml-byom/prod", "x")}
    )
    (finding,) = azure_rules.check_tenant_unique_names(Plan("prod", [fixed]))
    assert finding.rule == "tenant-unique-names"


def test_two_adopters_of_the_same_stack_do_not_collide(plans: dict[str, Plan]) -> None:
    """Same project and stack name in two subscriptions (DIY backends, no organization): no
    storage, vault, registry, endpoint, role assignment or role name in common."""
    a = plans["prod"]
    b = plan("prod", release=True, subscription_id=OTHER_SUBSCRIPTION)
    assert azure_rules.collisions([a, dataclasses.replace(b, stack="prod-other")]) == []


def test_dev_and_prod_do_not_collide(plans: dict[str, Plan]) -> None:
    assert azure_rules.collisions(list(plans.values())) == []


def test_unique_suffix_without_organization_mixes_in_the_subscription() -> None:
    """`pulumi.get_organization()` is None on DIY backends: no crash, and subscriptions differ."""
    one = unique_suffix(None, "sub-a", "azureml-byom", "prod")
    assert one == unique_suffix(None, "sub-a", "azureml-byom", "prod")
    assert one != unique_suffix(None, "sub-b", "azureml-byom", "prod")


@pytest.mark.parametrize("stack", STACKS)
def test_next_release_changes_no_create_only_property(plans: dict[str, Plan], stack: str) -> None:
    """Blue -> green: nothing create-only changes in place (TargetResourceIdIsImmutable): the
    platform declares no setting that follows the live slot; each slot's own setting comes from
    the rollout, before the slot takes traffic (tests/delivery/test_resume.py)."""
    blue = plans[stack]  # the fixture's release left blue live
    green = plan(stack, release=True, live_slot="green")
    assert azure_rules.create_only_changes(blue, green) == []
    for p in (blue, green):
        assert of_type(p.resources, AUTOSCALE) == [], p.stack
    rollouts = of_type(blue.resources, "pulumi-python:dynamic/byom:Rollout")
    assert rollouts
    assert all(r.props["autoscale"] for r in rollouts if r.props["policy"]["autoscale"])


def test_create_only_rule_refuses_a_repointed_autoscale_target() -> None:
    """The rule itself: a fixed-name setting whose target changes is refused."""

    def setting(target: str) -> PlannedResource:
        return PlannedResource(
            AUTOSCALE,
            "as",
            "urn:as",
            None,
            True,
            {"autoscaleSettingName": "as-byom-generate", "targetResourceUri": target},
        )

    (finding,) = azure_rules.create_only_changes(
        Plan("prod", [setting("/d/blue")]), Plan("prod", [setting("/d/green")])
    )
    assert "targetResourceUri" in finding.message


def _changed_config(stack: str, section: str, key: str, value: object) -> dict[str, str]:
    _, config = stack_config(stack, release=True)
    full = f"azureml-byom:{section}"
    document = json.loads(config.get(full, "{}"))
    document[key] = value
    return {**config, full: json.dumps(document)}


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("highBusinessImpact", False, "hbiWorkspace"),
        ("registryZoneRedundancy", False, "zoneRedundancy"),
        ("storageSku", "Standard_GRS", "sku.name"),
        ("keyVaultPurgeProtection", False, "properties.enablePurgeProtection"),
    ],
)
def test_create_only_rule_refuses_config_changes_azure_cannot_apply(
    plans: dict[str, Plan], key: str, value: object, path: str
) -> None:
    """Plan prod, change one create-only setting, plan again: the rule names the property."""
    before = plans["prod"]
    after = plan("prod", config=_changed_config("prod", "workspace", key, value))
    findings = azure_rules.create_only_changes(before, after)
    assert [path in f.message for f in findings] == [True], findings


@pytest.mark.parametrize("stack", STACKS)
def test_every_operation_has_a_principal_with_a_role_allowing_it(
    plans: dict[str, Plan], stack: str
) -> None:
    """Upload, deploy, smoke-test, read model, pull, push, capture, invoke, approve: all granted."""
    _, config = stack_config(stack, release=True)
    assert azure_rules.check_access(plans[stack], settings_for(stack, config)) == []


@pytest.mark.parametrize(
    ("dropped", "operation"),
    [
        ("identity-endpoint-capture-container-blob-contributor", "endpoint write capture"),
        ("identity-workspace-resource-group-network-approver", "workspace approve"),
        ("identity-compute-registry-acr-push", "compute push built image"),
        ("identity-deployer-storage-blob-contributor", "deployer upload code and model"),
        ("identity-data-scientists-storage-file-contributor", "data-scientists use the file"),
        ("release-registry", "release-runner import promoted images by digest"),
        ("release-monitoring", "release-runner "),
    ],
)
def test_access_rule_finds_the_missing_grant(
    plans: dict[str, Plan], dropped: str, operation: str
) -> None:
    """Remove one grant from the prod plan: the table names the operation left without a role."""
    p = plans["prod"]
    assert any(r.name == dropped for r in p.resources)
    without = dataclasses.replace(p, resources=[r for r in p.resources if r.name != dropped])
    _, config = stack_config("prod", release=True)
    findings = azure_rules.check_access(without, settings_for("prod", config))
    assert findings
    assert all(f.resource.startswith(operation) for f in findings), findings


def test_monitoring_contributor_cannot_give_a_slot_its_autoscale_setting(
    plans: dict[str, Plan],
) -> None:
    """The role the runner used to get reads alerts but has no autoscale action: with it, the
    table names the per-slot autoscale writes (a release would fail at its first new slot)."""
    p = plans["prod"]
    role_ids = "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions"
    contributor = f"{role_ids}/{roles.MONITORING_CONTRIBUTOR}"
    swapped = [
        dataclasses.replace(r, props={**r.props, "roleDefinitionId": contributor})
        if r.name == "release-monitoring"
        else r
        for r in p.resources
    ]
    _, config = stack_config("prod", release=True)
    findings = azure_rules.check_access(
        dataclasses.replace(p, resources=swapped), settings_for("prod", config)
    )
    assert [f.resource for f in findings] == [
        "release-runner create per-slot autoscale settings",
        "release-runner delete the old slot's autoscale setting",
    ]


def test_the_source_registry_must_let_promoters_read_its_images(plans: dict[str, Plan]) -> None:
    """ACR import reads the source with the importing identity: drop dev's grant and the table
    names the promoters' read."""
    p = plans["dev"]
    dropped = "identity-promoter0-registry-acr-importer"
    assert any(r.name == dropped for r in p.resources)
    without = dataclasses.replace(p, resources=[r for r in p.resources if r.name != dropped])
    _, config = stack_config("dev", release=True)
    findings = azure_rules.check_access(without, settings_for("dev", config))
    assert [f.resource for f in findings] == ["promoters read the images they promote"]


def test_role_permissions_follow_azure_wildcards_and_not_actions() -> None:
    scientist = roles.BUILT_IN_PERMISSIONS[roles.AZUREML_DATA_SCIENTIST]
    assert azure_rules.allows(scientist, roles.SCORE_ACTION, data=False)
    assert not azure_rules.allows(
        scientist, "Microsoft.MachineLearningServices/workspaces/write", data=False
    )
    pull = roles.BUILT_IN_PERMISSIONS[roles.ACR_PULL]
    assert not azure_rules.allows(
        pull, "Microsoft.ContainerRegistry/registries/push/write", data=False
    )
    reader = roles.BUILT_IN_PERMISSIONS[roles.STORAGE_BLOB_DATA_READER]
    blob_write = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
    assert not azure_rules.allows(reader, blob_write, data=True)
