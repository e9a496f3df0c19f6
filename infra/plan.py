"""Offline plan: run the real Pulumi program under Pulumi's mocks and list what it would declare.

    python -m infra.plan --stack dev [--json | --summary]

This is not `pulumi preview`: nothing talks to Azure, and values Azure would compute (ids,
principal ids) are invented by the mocks. It shows the resources, their parents and the inputs
the program sends, which is what policies and tests check. `collect(stack)` is the stable entry
point for other code (the policy pack): it returns `PlannedResource` records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")
MOCK_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
MOCK_TENANT_ID = "11111111-1111-1111-1111-111111111111"
MOCK_ORGANIZATION = "organization"
# What the delivery CLI writes after registering a model (the stack files carry none): plans
# "after a release" use it to show the rollout, autoscale and the grants a release needs.
EXAMPLE_RELEASE = {
    "byom:model": {
        "name": "smollm2-135m-instruct",
        "version": "3f2a9c0d1b4e5f67",
        "contentHash": "sha256:3f2a9c0d1b4e5f67a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1",
    },
    "byom:environment": {"name": "byom-inference-gpu", "version": "9a8b7c6d5e4f3a2b"},
}


@dataclass(frozen=True)
class PlannedResource:
    """One resource the program registers, with the inputs the Pulumi engine would receive."""

    type: str
    """Type token, e.g. `azure-native:storage:StorageAccount` or `byom:network:Network`."""
    name: str
    """Logical (Pulumi) name."""
    urn: str
    parent_urn: str | None
    """URN of the parent; the stack's URN for top-level components."""
    custom: bool
    """True for cloud resources, False for components."""
    props: dict[str, Any]
    """Inputs with camelCase wire names (`publicNetworkAccess`), ints as floats."""
    dependencies: tuple[str, ...] = ()
    """URNs of explicit and implicit dependencies."""
    ignore_changes: tuple[str, ...] = ()
    """Property paths Pulumi leaves alone on update (`ignore_changes`)."""
    replace_on_changes: tuple[str, ...] = ()
    """Property paths whose change makes Pulumi replace the resource (`replace_on_changes`)."""
    protect: bool = False
    """Whether Pulumi refuses to delete the resource (`protect`)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """What the mocks answered (inputs plus invented `id`, `principalId`...)."""


@dataclass(frozen=True)
class Plan:
    """The result of running a stack's program offline."""

    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any] = field(default_factory=dict)


# Input that carries each type's physical name, to echo it as the `name` output.
_NAME_KEYS = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:keyvault:Vault": "vaultName",
    "azure-native:containerregistry:Registry": "registryName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
    "azure-native:applicationinsights:Component": "resourceName",
    "azure-native:machinelearningservices:Workspace": "workspaceName",
    "azure-native:machinelearningservices:Compute": "computeName",
    "azure-native:machinelearningservices:OnlineEndpoint": "endpointName",
    "azure-native:machinelearningservices:OnlineDeployment": "deploymentName",
    "azure-native:network:VirtualNetwork": "virtualNetworkName",
    "azure-native:network:NetworkSecurityGroup": "networkSecurityGroupName",
    "azure-native:network:Subnet": "subnetName",
    "azure-native:network:PrivateEndpoint": "privateEndpointName",
    "azure-native:network:PrivateDnsZoneGroup": "privateDnsZoneGroupName",
    "azure-native:privatedns:PrivateZone": "privateZoneName",
    "azure-native:privatedns:VirtualNetworkLink": "virtualNetworkLinkName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:authorization:RoleAssignment": "roleAssignmentName",
    "azure-native:authorization:RoleDefinition": "roleDefinitionId",
    "azure-native:monitor:DiagnosticSetting": "name",
    "azure-native:monitor:AutoscaleSetting": "autoscaleSettingName",
    "azure-native:monitor:ActionGroup": "actionGroupName",
    "azure-native:monitor:MetricAlert": "ruleName",
    "azure-native:monitor:PrivateLinkScope": "scopeName",
    "azure-native:monitor:PrivateLinkScopedResource": "name",
    "azure-native:storage:BlobServiceProperties": "blobServicesName",
    "azure-native:authorization:ManagementLockAtResourceGroupLevel": "lockName",
}

# ARM path of each type below its resource group (or below the resource named in `parent`).
_ML = "Microsoft.MachineLearningServices/workspaces"
_NET = "Microsoft.Network"
_ARM_PATHS = {
    "azure-native:storage:StorageAccount": "Microsoft.Storage/storageAccounts/{name}",
    "azure-native:keyvault:Vault": "Microsoft.KeyVault/vaults/{name}",
    "azure-native:containerregistry:Registry": "Microsoft.ContainerRegistry/registries/{name}",
    "azure-native:operationalinsights:Workspace": "Microsoft.OperationalInsights/workspaces/{name}",
    "azure-native:applicationinsights:Component": "Microsoft.Insights/components/{name}",
    "azure-native:machinelearningservices:Workspace": _ML + "/{name}",
    "azure-native:machinelearningservices:Compute": _ML + "/{workspaceName}/computes/{name}",
    "azure-native:machinelearningservices:OnlineEndpoint": (
        _ML + "/{workspaceName}/onlineEndpoints/{name}"
    ),
    "azure-native:machinelearningservices:OnlineDeployment": (
        _ML + "/{workspaceName}/onlineEndpoints/{endpointName}/deployments/{name}"
    ),
    "azure-native:network:VirtualNetwork": _NET + "/virtualNetworks/{name}",
    "azure-native:network:NetworkSecurityGroup": _NET + "/networkSecurityGroups/{name}",
    "azure-native:network:Subnet": _NET + "/virtualNetworks/{virtualNetworkName}/subnets/{name}",
    "azure-native:network:PrivateEndpoint": _NET + "/privateEndpoints/{name}",
    "azure-native:network:PrivateDnsZoneGroup": (
        _NET + "/privateEndpoints/{privateEndpointName}/privateDnsZoneGroups/{name}"
    ),
    "azure-native:privatedns:PrivateZone": _NET + "/privateDnsZones/{name}",
    "azure-native:privatedns:VirtualNetworkLink": (
        _NET + "/privateDnsZones/{privateZoneName}/virtualNetworkLinks/{name}"
    ),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    ),
    "azure-native:monitor:AutoscaleSetting": "Microsoft.Insights/autoscalesettings/{name}",
    "azure-native:monitor:ActionGroup": "Microsoft.Insights/actionGroups/{name}",
    "azure-native:monitor:MetricAlert": "Microsoft.Insights/metricAlerts/{name}",
    "azure-native:monitor:PrivateLinkScope": "Microsoft.Insights/privateLinkScopes/{name}",
    "azure-native:monitor:PrivateLinkScopedResource": (
        "Microsoft.Insights/privateLinkScopes/{scopeName}/scopedResources/{name}"
    ),
    "azure-native:storage:BlobServiceProperties": (
        "Microsoft.Storage/storageAccounts/{accountName}/blobServices/{name}"
    ),
    "azure-native:authorization:ManagementLockAtResourceGroupLevel": (
        "Microsoft.Authorization/locks/{name}"
    ),
}
# Extension resources hang below the resource in `scope` / `resourceUri`.
_EXTENSION_PATHS = {
    "azure-native:authorization:RoleAssignment": ("scope", "roleAssignments"),
    "azure-native:authorization:RoleDefinition": ("scope", "roleDefinitions"),
    "azure-native:monitor:DiagnosticSetting": ("resourceUri", "diagnosticSettings"),
}


def _fake_guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, "/".join(parts)))


class PlanMocks(pulumi.runtime.Mocks):
    """Echo inputs and add what Azure would compute: `name`, ARM `id`, identity ids, URIs.

    `subscription_id` is the subscription the deploying principal works in; `live_slot` the
    slot a previous release left live (a second plan with the other slot shows what the next
    release changes).
    """

    def __init__(
        self, subscription_id: str = MOCK_SUBSCRIPTION_ID, live_slot: str = "blue"
    ) -> None:
        self.subscription_id = subscription_id
        self.live_slot = live_slot

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if not args.custom:
            return f"{args.name}-component", outputs
        if args.typ.startswith("pulumi-python:dynamic"):
            return self._dynamic(args, outputs)
        inputs = args.inputs
        name = str(inputs.get(_NAME_KEYS.get(args.typ, ""), args.name))
        outputs["name"] = name
        subscription = f"/subscriptions/{self.subscription_id}"
        rg = f"{subscription}/resourceGroups/{inputs.get('resourceGroupName')}"
        if args.typ == "azure-native:resources:ResourceGroup":
            arm_id = f"{subscription}/resourceGroups/{name}"
        elif args.typ in _EXTENSION_PATHS:
            scope_key, kind = _EXTENSION_PATHS[args.typ]
            provider = (
                "Microsoft.Insights"
                if kind == "diagnosticSettings"
                else ("Microsoft.Authorization")
            )
            arm_id = f"{inputs.get(scope_key)}/providers/{provider}/{kind}/{name}"
        elif args.typ in _ARM_PATHS:
            path = _ARM_PATHS[args.typ].format(
                name=name,
                **{k: v for k, v in inputs.items() if isinstance(v, str) and k != "name"},
            )
            arm_id = f"{rg}/providers/{path}"
        else:
            arm_id = f"{rg}/providers/{args.typ}/{name}"
        outputs["id"] = arm_id

        identity = inputs.get("identity")
        if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            outputs["principalId"] = _fake_guid(arm_id, "principal")
            outputs["clientId"] = _fake_guid(arm_id, "client")
            outputs["tenantId"] = MOCK_TENANT_ID
        elif isinstance(identity, Mapping):
            echoed = dict(identity)
            # Inputs list user-assigned identity ids; Azure answers with a map keyed by id.
            if isinstance(identity.get("userAssignedIdentities"), list):
                echoed["userAssignedIdentities"] = {
                    uai: {
                        "principalId": _fake_guid(uai, "principal"),
                        "clientId": _fake_guid(uai, "client"),
                    }
                    for uai in identity["userAssignedIdentities"]
                }
            if "SystemAssigned" in str(identity.get("type")):
                echoed["principalId"] = _fake_guid(arm_id, "principal")
                echoed["tenantId"] = MOCK_TENANT_ID
            outputs["identity"] = echoed
        if args.typ == "azure-native:machinelearningservices:Workspace":
            outputs["workspaceId"] = _fake_guid(arm_id, "workspace")
        if args.typ == "azure-native:containerregistry:Registry":
            outputs["loginServer"] = f"{name}.azurecr.io"
        if args.typ == "azure-native:machinelearningservices:OnlineEndpoint":
            props = dict(inputs.get("properties") or {})
            props["scoringUri"] = (
                f"https://{name}.{inputs.get('location')}.inference.ml.azure.com/score"
            )
            outputs["properties"] = props
        return arm_id, outputs

    def _dynamic(self, args: pulumi.runtime.MockResourceArgs, outputs: dict) -> tuple[str, dict]:
        # delivery's Rollout: pretend the last rollout made `live_slot` live with all traffic.
        inputs = args.inputs
        slot = self.live_slot
        workspace = (
            f"/subscriptions/{self.subscription_id}/resourceGroups/"
            f"{inputs.get('resource_group_name')}/providers/{_ML}/{inputs.get('workspace_name')}"
        )
        endpoint = f"{workspace}/onlineEndpoints/{inputs.get('endpoint_name')}"
        outputs.update(
            live_deployment=slot,
            live_deployment_id=f"{endpoint}/deployments/{slot}",
            previous_deployment=None,
            traffic={slot: 100},
        )
        return endpoint, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:  # type: ignore[override]
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "subscriptionId": self.subscription_id,
                "tenantId": MOCK_TENANT_ID,
                "objectId": _fake_guid("deployer"),
                "clientId": _fake_guid("deployer-client"),
            }
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.records: list[PlannedResource] = []

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.records.append(
                PlannedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent_urn=request.parent or None,
                    custom=bool(request.custom),
                    props=_without_provider(rpc.deserialize_properties(request.object)),
                    dependencies=tuple(request.dependencies),
                    ignore_changes=tuple(request.ignoreChanges),
                    replace_on_changes=tuple(request.replaceOnChanges),
                    protect=bool(request.protect),
                    outputs=_without_provider(rpc.deserialize_properties(response.object)),
                )
            )
        return response


def _without_provider(props: dict[str, Any]) -> dict[str, Any]:
    # Dynamic resources carry their pickled provider as an input; it is noise in a plan.
    return {k: v for k, v in props.items() if k != "__provider"}


def read_stack_config(stack: str, root: Path = REPO_ROOT) -> tuple[str, dict[str, str]]:
    """Project name and config of `Pulumi.<stack>.yaml`, encoded as the Pulumi runtime expects."""
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())["name"]
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.name}; stacks here: {', '.join(STACKS)}")
    raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    config: dict[str, str] = {}
    for key, value in raw.items():
        full = key if ":" in key else f"{project}:{key}"
        # Structured values travel as JSON strings, exactly as the CLI passes them.
        config[full] = value if isinstance(value, str) else json.dumps(value)
    return project, config


def run(
    program: Callable[[], Any],
    *,
    stack: str,
    config: Mapping[str, str],
    project: str = "azureml-byom",
    subscription_id: str = MOCK_SUBSCRIPTION_ID,
    live_slot: str = "blue",
) -> Plan:
    """Run `program` under mocks with the given config; returns what it registered and exported."""
    mocks = PlanMocks(subscription_id, live_slot)
    monitor = _RecordingMonitor(mocks)
    # Pulumi's runtime is process-global: start each run from a clean root, config and RPC state.
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_all_config(dict(config), [])
    pulumi.runtime.set_mocks(
        mocks,
        project=project,
        stack=stack,
        preview=False,
        monitor=monitor,
        organization=MOCK_ORGANIZATION,
    )
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    result: dict[str, Any] = {}

    async def body() -> None:
        outputs = program()
        if outputs is not None:
            result.update(await pulumi.Output.from_input(outputs).future() or {})

    _sync_await(run_pulumi_func(body))
    return Plan(stack=stack, resources=list(monitor.records), outputs=result)


def stack_config(stack: str, *, release: bool = False) -> tuple[str, dict[str, str]]:
    """`read_stack_config`, plus the example release's asset keys when `release`."""
    project, config = read_stack_config(stack)
    if release:
        config.update({k: json.dumps(v) for k, v in EXAMPLE_RELEASE.items()})
    return project, config


def plan(
    stack: str,
    *,
    release: bool = False,
    live_slot: str = "blue",
    subscription_id: str = MOCK_SUBSCRIPTION_ID,
    config: Mapping[str, str] | None = None,
) -> Plan:
    """Run the real program (`infra.stack.main`) for `stack` with its stack file's config.

    `release`: as after the first release (the example assets); `live_slot`: the slot that
    release left live; `config`: a full config to use instead of the stack file's.
    """
    from infra import stack as program  # imported late: pulumi_azure_native loads slowly

    project, file_config = stack_config(stack, release=release)
    return run(
        program.main,
        stack=stack,
        config=file_config if config is None else config,
        project=project,
        subscription_id=subscription_id,
        live_slot=live_slot,
    )


def settings_for(
    stack: str,
    config: Mapping[str, str],
    project: str = "azureml-byom",
    subscription_id: str = MOCK_SUBSCRIPTION_ID,
) -> Any:
    """The validated settings the program sees for `config` (as `plan` runs it)."""
    from infra.config import DELIVERY_NAMESPACE, parse_settings

    def value(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    ours = {k.split(":", 1)[1]: value(v) for k, v in config.items() if k.startswith(f"{project}:")}
    delivery = {
        k.split(":", 1)[1]: value(v)
        for k, v in config.items()
        if k.startswith(f"{DELIVERY_NAMESPACE}:")
    }
    return parse_settings(
        ours,
        stack=stack,
        organization=MOCK_ORGANIZATION,
        project=project,
        delivery=delivery,
        subscription_id=subscription_id,
    )


def check_rules(stack: str, config: Mapping[str, str] | None = None) -> list[Any]:
    """The Azure rule set (`infra.azure_rules`) on `stack`: its plan as committed, its plan after
    a release, and the create-only properties between that release and the next one (the live
    slot flips from blue to green)."""
    from infra import azure_rules

    project, released = stack_config(stack, release=True)
    if config is not None:
        released = dict(config)
    fresh = {k: v for k, v in released.items() if k not in EXAMPLE_RELEASE}
    findings = []
    for cfg in (fresh, released):
        p = plan(stack, config=cfg)
        findings += azure_rules.check(p, settings_for(stack, cfg, project))
    blue = plan(stack, config=released, live_slot="blue")
    green = plan(stack, config=released, live_slot="green")
    findings += azure_rules.create_only_changes(blue, green)
    return findings


def collect(stack: str) -> list[PlannedResource]:
    """Resources the program declares for `stack`, as simple records (for tests and policies)."""
    return plan(stack).resources


# Properties shown in the tree and compared between stacks, by type (camelCase dotted paths).
KEY_PROPS: dict[str, tuple[str, ...]] = {
    "azure-native:resources:ResourceGroup": ("location",),
    "azure-native:storage:StorageAccount": (
        "sku.name",
        "publicNetworkAccess",
        "allowSharedKeyAccess",
        "allowBlobPublicAccess",
        "minimumTlsVersion",
        "networkRuleSet.defaultAction",
    ),
    "azure-native:keyvault:Vault": (
        "properties.publicNetworkAccess",
        "properties.enableRbacAuthorization",
        "properties.enablePurgeProtection",
        "properties.networkAcls.defaultAction",
    ),
    "azure-native:containerregistry:Registry": (
        "sku.name",
        "publicNetworkAccess",
        "adminUserEnabled",
        "zoneRedundancy",
        "policies.exportPolicy.status",
    ),
    "azure-native:operationalinsights:Workspace": (
        "retentionInDays",
        "publicNetworkAccessForIngestion",
        "publicNetworkAccessForQuery",
    ),
    "azure-native:applicationinsights:Component": (
        "publicNetworkAccessForIngestion",
        "publicNetworkAccessForQuery",
    ),
    "azure-native:machinelearningservices:Workspace": (
        "publicNetworkAccess",
        "managedNetwork.isolationMode",
        "managedNetwork.firewallSku",
        "provisionNetworkNow",
        "hbiWorkspace",
        "systemDatastoresAuthMode",
        "imageBuildCompute",
    ),
    "azure-native:storage:BlobServiceProperties": (
        "deleteRetentionPolicy.days",
        "isVersioningEnabled",
    ),
    "azure-native:machinelearningservices:Compute": (
        "properties.computeType",
        "properties.properties.vmSize",
        "properties.properties.idleTimeBeforeShutdown",
        "properties.properties.enableNodePublicIp",
        "properties.properties.scaleSettings.maxNodeCount",
    ),
    "azure-native:machinelearningservices:OnlineEndpoint": (
        "properties.authMode",
        "properties.publicNetworkAccess",
    ),
    "azure-native:machinelearningservices:OnlineDeployment": (
        "properties.instanceType",
        "sku.capacity",
        "properties.egressPublicNetworkAccess",
        "properties.environmentVariables.SCORING_PATTERNS",
    ),
    "azure-native:monitor:AutoscaleSetting": (
        "profiles.0.capacity.minimum",
        "profiles.0.capacity.maximum",
        "profiles.0.rules.0.metricTrigger.metricName",
        "profiles.2.name",
        "profiles.2.capacity.maximum",
        "profiles.2.recurrence.schedule.hours",
    ),
    "azure-native:monitor:ActionGroup": ("groupShortName", "emailReceivers.0.emailAddress"),
    "azure-native:monitor:MetricAlert": (
        "criteria.allOf.0.metricName",
        "criteria.allOf.0.threshold",
        "windowSize",
    ),
    "pulumi-python:dynamic/byom:Rollout": (
        "deployment.pattern",
        "deployment.instance_type",
        "deployment.instance_count",
        "deployment.model",
        "deployment.egress_public_network_access",
        "deployment.data_collection.enabled",
        "deployment.data_collection.sampling_rate",
        "policy.traffic_steps",
        "policy.gate.enabled",
    ),
    "azure-native:network:VirtualNetwork": ("addressSpace.addressPrefixes",),
    "azure-native:network:Subnet": ("addressPrefix",),
    "azure-native:network:PrivateEndpoint": ("privateLinkServiceConnections.0.groupIds",),
    "azure-native:authorization:RoleAssignment": ("role", "principalType"),
}


def prop(props: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted camelCase path (`properties.authMode`, `profiles.0.capacity`), or None."""
    value: Any = props
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _role_label(props: Mapping[str, Any]) -> str:
    from infra import roles

    guid = str(props.get("roleDefinitionId", "")).rsplit("/", 1)[-1]
    labels = {**roles.SHORT_NAMES, **{g: n.lower() for g, n in roles.FORBIDDEN_ROLES.items()}}
    return labels.get(guid, "custom")


def key_properties(resource: PlannedResource) -> dict[str, Any]:
    """The few properties worth showing for a resource (physical name first)."""
    shown: dict[str, Any] = {}
    name_key = _NAME_KEYS.get(resource.type)
    if name_key and name_key in resource.props:
        shown["name"] = resource.props[name_key]
    for path in KEY_PROPS.get(resource.type, ()):
        value = _role_label(resource.props) if path == "role" else prop(resource.props, path)
        if value is not None:
            shown[path] = _whole(value)
    return shown


def _whole(value: Any) -> Any:
    # The wire turns ints into floats; show 100 rather than 100.0.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def _format_props(props: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in props.items()
    )


def render_tree(p: Plan) -> str:
    """Resources as an indented tree under their parents."""
    children: dict[str | None, list[PlannedResource]] = {}
    urns = {r.urn for r in p.resources}
    for r in p.resources:
        parent = r.parent_urn if r.parent_urn in urns else None
        children.setdefault(parent, []).append(r)
    lines = [f"stack {p.stack}"]

    def walk(parent: str | None, indent: str) -> None:
        items = sorted(children.get(parent, []), key=lambda r: (r.custom, r.type, r.name))
        for i, r in enumerate(items):
            last = i == len(items) - 1
            shown = _format_props(key_properties(r))
            lines.append(f"{indent}{'└─' if last else '├─'} {r.type}  {r.name}  {shown}".rstrip())
            walk(r.urn, indent + ("   " if last else "│  "))

    walk(None, "")
    return "\n".join(lines)


def summary(resources: Iterable[PlannedResource]) -> str:
    """Counts of cloud resources by type, one per line."""
    counts = Counter(r.type for r in resources if r.custom)
    width = max((len(t) for t in counts), default=0)
    lines = [f"  {t:<{width}}  {c:>3}" for t, c in sorted(counts.items())]
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>3}")
    return "\n".join(lines)


def compare_rows(left: Plan, right: Plan) -> list[tuple[str, str, str]]:
    """Differences between two stacks: (what, left value, right value) for resource counts by
    type, protected resources, and each key property of resources both declare."""
    lmap = {(r.type, r.name): r for r in left.resources if r.custom}
    rmap = {(r.type, r.name): r for r in right.resources if r.custom}
    rows: list[tuple[str, str, str]] = []
    lcount, rcount = Counter(t for t, _ in lmap), Counter(t for t, _ in rmap)
    for t in sorted(set(lcount) | set(rcount)):
        if lcount[t] != rcount[t]:
            rows.append((f"count {t.split(':', 1)[-1]}", str(lcount[t]), str(rcount[t])))
    for key in sorted(set(lmap) & set(rmap)):
        lp, rp = key_properties(lmap[key]), key_properties(rmap[key])
        for path in KEY_PROPS.get(key[0], ()):
            if lp.get(path) != rp.get(path):
                rows.append(
                    (f"{key[1]} {path}", json.dumps(lp.get(path)), json.dumps(rp.get(path)))
                )
    protected = [sum(r.protect for r in p.resources) for p in (left, right)]
    if protected[0] != protected[1]:
        rows.append(("protected resources (`protect`)", str(protected[0]), str(protected[1])))
    return rows


def compare(left: Plan, right: Plan) -> str:
    """Side-by-side differences between two stacks: resources on one side only, key properties."""
    rows = compare_rows(left, right)
    if not rows:
        return f"  {left.stack} and {right.stack} declare the same resources and key properties"
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(left.stack), *(len(r[1]) for r in rows))
    lines = [f"  {'':<{w0}}  {left.stack:<{w1}}  {right.stack}"]
    lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def _jsonable(p: Plan) -> dict[str, Any]:
    return {
        "stack": p.stack,
        "offline": True,
        "resources": [asdict(r) for r in p.resources],
        "outputs": p.outputs,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.plan",
        description="Offline plan: run the Pulumi program under mocks (no Azure, no Pulumi CLI).",
    )
    parser.add_argument("--stack", choices=STACKS, default="dev")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print resources and outputs as JSON")
    mode.add_argument("--summary", action="store_true", help="print resource counts by type")
    parser.add_argument(
        "--release",
        action="store_true",
        help="plan as after a release of the example assets (rollouts, autoscale, grants)",
    )
    args = parser.parse_args(argv)

    from infra.config import ConfigError

    try:
        result = plan(args.stack, release=args.release)
        findings = [] if args.json else check_rules(args.stack)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = (
        f"Offline plan for stack '{args.stack}' (Pulumi mocks; not a cloud preview: "
        f"nothing was sent to Azure, ids are invented)"
    )
    if args.json:
        print(json.dumps(_jsonable(result), indent=2, sort_keys=True, default=str))
    elif args.summary:
        print(header)
        print(summary(result.resources))
    else:
        print(header)
        print(render_tree(result))
        print("\noutputs:")
        for key, value in sorted(result.outputs.items()):
            print(f"  {key} = {json.dumps(value, default=str)}")
        print(f"\nresources by type:\n{summary(result.resources)}")
        other = "prod" if args.stack == "dev" else "dev"
        others = plan(other, release=args.release)
        dev, prod = (result, others) if args.stack == "dev" else (others, result)
        print(f"\nhow prod differs from dev (key properties):\n{compare(dev, prod)}")
    if not args.json:
        print(
            "\nAzure rules (names, tenant-unique names, create-only properties across the next "
            "release, identity -> operation -> role), as committed and after a release: "
            + (f"{len(findings)} finding(s)" if findings else "ok")
        )
        for finding in findings:
            print(f"  {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    # A fresh event loop keeps `python -m infra.plan` independent of any caller's loop.
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
