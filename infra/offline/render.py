"""Presentation of an offline plan: a resource tree, counts by type, and how two stacks differ."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from infra.offline.harness import Plan, PlannedResource
from infra.offline.mocks import NAME_KEYS
from scoring.settings import ScoringSettings

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
        f"properties.environmentVariables.{ScoringSettings.env_name('patterns')}",
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

    guid = roles.role_guid(str(props.get("roleDefinitionId", "")))
    labels = {**roles.SHORT_NAMES, **{g: n.lower() for g, n in roles.FORBIDDEN_ROLES.items()}}
    return labels.get(guid, "custom")


def key_properties(resource: PlannedResource) -> dict[str, Any]:
    """The few properties worth showing for a resource (physical name first)."""
    shown: dict[str, Any] = {}
    name_key = NAME_KEYS.get(resource.type)
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


def jsonable(p: Plan) -> dict[str, Any]:
    """The plan as `--json` prints it."""
    return {
        "stack": p.stack,
        "offline": True,
        "resources": [asdict(r) for r in p.resources],
        "outputs": p.outputs,
    }
