"""Policy rules as plain functions over a resource's type and inputs.

A rule is `rule(resource_type, props, settings) -> list[str]`: the reasons the resource breaks the
policy, empty when it complies. `props` are Pulumi inputs with camelCase wire names, the shape
CrossGuard receives during `pulumi preview`/`up` and the offline plan (`infra.plan`) records, so
the same function runs in both. Dynamic resources (delivery's Rollout) keep their Python names.

This module imports nothing from the project: the policy pack runs in its own analyzer process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Resource type tokens (azure-native v3).
ML_WORKSPACE = "azure-native:machinelearningservices:Workspace"
ML_REGISTRY = "azure-native:machinelearningservices:Registry"
ML_COMPUTE = "azure-native:machinelearningservices:Compute"
ONLINE_ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
ONLINE_DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
KEY_VAULT = "azure-native:keyvault:Vault"
CONTAINER_REGISTRY = "azure-native:containerregistry:Registry"
AUTOSCALE_SETTING = "azure-native:monitor:AutoscaleSetting"
DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
LOG_ANALYTICS = "azure-native:operationalinsights:Workspace"
APP_INSIGHTS = "azure-native:applicationinsights:Component"
PRIVATE_LINK_SCOPE = "azure-native:monitor:PrivateLinkScope"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
RESOURCE_GROUP_LOCK = "azure-native:authorization:ManagementLockAtResourceGroupLevel"
# delivery's dynamic provider: creates the deployments and shifts traffic.
ROLLOUT = "pulumi-python:dynamic/byom:Rollout"

# Built-in roles never granted (the GUIDs are the same in every tenant).
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
# Can grant any role (unless condition-limited): the program never needs to hand it out.
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
PRIVILEGED_ROLES = {
    OWNER: "Owner",
    CONTRIBUTOR: "Contributor",
    USER_ACCESS_ADMINISTRATOR: "User Access Administrator",
    RBAC_ADMINISTRATOR: "Role Based Access Control Administrator",
}
# Actions that let a principal hand out access: a custom role allowing one is privileged.
ROLE_WRITING_ACTIONS = (
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleDefinitions/write",
)
# Custom-role actions that amount to the roles above.
PRIVILEGED_ACTIONS = (
    "*",
    "*/write",
    "Microsoft.Authorization/*",
    "Microsoft.Authorization/*/write",
    "Microsoft.Authorization/roleAssignments/write",
)

# Data residency: EU regions that offer the GPU SKUs below (infra.config.ALLOWED_REGIONS).
ALLOWED_REGIONS = (
    "swedencentral",
    "westeurope",
    "northeurope",
    "francecentral",
    "germanywestcentral",
)
# Private DNS zones and their VNet links are global resources.
GLOBAL_LOCATIONS = ("global",)

# Managed online endpoint GPU SKUs (Azure ML's managed endpoint SKU list).
GPU_INSTANCE_TYPES = (
    "Standard_NC4as_T4_v3",
    "Standard_NC8as_T4_v3",
    "Standard_NC16as_T4_v3",
    "Standard_NC64as_T4_v3",
    "Standard_NV36ads_A10_v5",
    "Standard_NV72ads_A10_v5",
    "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4",
    "Standard_NC96ads_A100_v4",
    "Standard_NC40ads_H100_v5",
    "Standard_NC80adis_H100_v5",
)

REQUIRED_TAGS = ("environment", "owner", "costCenter", "dataClassification")
# azure-native types without a top-level `tags` input (extension and child resources).
NOT_TAGGABLE = frozenset(
    {
        ROLE_ASSIGNMENT,
        ROLE_DEFINITION,
        "azure-native:authorization:ManagementLockAtResourceLevel",
        RESOURCE_GROUP_LOCK,
        "azure-native:monitor:PrivateLinkScopedResource",
        "azure-native:monitor:DiagnosticSetting",
        "azure-native:network:Subnet",
        "azure-native:network:SecurityRule",
        "azure-native:network:PrivateDnsZoneGroup",
        "azure-native:privatedns:PrivateRecordSet",
        "azure-native:storage:BlobContainer",
        "azure-native:storage:BlobServiceProperties",
        "azure-native:storage:FileServiceProperties",
        "azure-native:machinelearningservices:CodeVersion",
        "azure-native:machinelearningservices:ModelVersion",
        "azure-native:machinelearningservices:EnvironmentVersion",
        "azure-native:machinelearningservices:Connection",
    }
)

# Azure accepts 15 minutes to 3 days; the policy caps what a forgotten VM may cost.
MAX_IDLE_SHUTDOWN_MINUTES = 120
# Instances a deployment may keep running at its quietest (GPU hours are the bill).
MAX_MIN_INSTANCES = 1

Rule = Callable[[str, Mapping[str, Any], Mapping[str, Any]], list[str]]


class StackResource(Protocol):
    """What policies read of each resource: `infra.plan.PlannedResource` in the offline check,
    CrossGuard's `PolicyResource` adapted to it in the pack."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    protect: bool


# A stack rule sees every resource: the reasons, each with the resource it is about (None: the
# stack as a whole, e.g. a resource that should exist but does not).
StackRule = Callable[
    [Sequence[StackResource], Mapping[str, Any]], list[tuple[StackResource | None, str]]
]

_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def prop(props: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path (`properties.authMode`), or None where any part is missing."""
    value: Any = props
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _same(value: Any, expected: str) -> bool:
    # Azure compares enum values and SKU names case-insensitively (`disabled` == `Disabled`).
    return isinstance(value, str) and value.lower() == expected.lower()


def _shown(value: Any) -> str:
    return "not set" if value is None else repr(value)


# Where each type keeps its inbound public access switch; absent means Azure's default, Enabled.
PUBLIC_ACCESS_PATHS = {
    ML_WORKSPACE: "publicNetworkAccess",
    ML_REGISTRY: "publicNetworkAccess",
    STORAGE_ACCOUNT: "publicNetworkAccess",
    KEY_VAULT: "properties.publicNetworkAccess",
    CONTAINER_REGISTRY: "publicNetworkAccess",
    ONLINE_ENDPOINT: "properties.publicNetworkAccess",
}


def no_public_network_access(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Workspace, storage, key vault, registries and endpoints are reachable only privately."""
    reasons = []
    path = PUBLIC_ACCESS_PATHS.get(resource_type)
    if path is not None:
        value = prop(props, path)
        if value is None:
            reasons.append(f"{path} is not set (Azure's default is Enabled); set it to 'Disabled'")
        elif not _same(value, "Disabled"):
            reasons.append(f"{path} is {value!r}; set it to 'Disabled'")
    if resource_type == ML_WORKSPACE and prop(props, "allowPublicAccessWhenBehindVnet") is True:
        reasons.append("allowPublicAccessWhenBehindVnet is true; set it to false")
    if resource_type == STORAGE_ACCOUNT and prop(props, "allowBlobPublicAccess") is not False:
        value = prop(props, "allowBlobPublicAccess")
        reasons.append(f"allowBlobPublicAccess is {_shown(value)}; set it to false")
    # Outbound: a deployment that may reach the internet bypasses the workspace's isolation.
    egress = {
        ONLINE_DEPLOYMENT: "properties.egressPublicNetworkAccess",
        ROLLOUT: "deployment.egress_public_network_access",
    }.get(resource_type)
    if egress is not None and _same(prop(props, egress), "Enabled"):
        reasons.append(f"{egress} is {prop(props, egress)!r}; set it to 'Disabled'")
    return reasons


def endpoint_aad_token_auth(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Online endpoints authenticate callers with Entra ID tokens, never keys."""
    if resource_type != ONLINE_ENDPOINT:
        return []
    mode = prop(props, "properties.authMode")
    if _same(mode, "AADToken"):
        return []
    return [f"properties.authMode is {_shown(mode)}; set it to 'AADToken' (no keys)"]


def _role_guid(role_definition_id: Any) -> str:
    return str(role_definition_id or "").rstrip("/").rsplit("/", 1)[-1].lower()


def no_privileged_roles(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """No Owner, Contributor or User Access Administrator grants, nor custom roles like them."""
    if resource_type == ROLE_ASSIGNMENT:
        guid = _role_guid(prop(props, "roleDefinitionId"))
        if guid in PRIVILEGED_ROLES:
            return [
                f"grants {PRIVILEGED_ROLES[guid]} ({guid}) at {prop(props, 'scope')}; "
                "grant the narrowest built-in or custom role instead"
            ]
    if resource_type == ROLE_DEFINITION:
        actions = [
            action
            for permission in prop(props, "permissions") or []
            if isinstance(permission, Mapping)
            for action in permission.get("actions") or []
        ]
        broad = [a for a in actions if a in PRIVILEGED_ACTIONS]
        if broad:
            return [f"custom role allows {', '.join(broad)}; list the specific actions it needs"]
        writing = [
            a
            for a in actions
            if isinstance(a, str) and any(_wildcard(a).fullmatch(w) for w in ROLE_WRITING_ACTIONS)
        ]
        if writing:
            return [
                f"custom role allows {', '.join(writing)}, which writes roles or role "
                "assignments; it is as powerful as User Access Administrator"
            ]
    return []


def _wildcard(pattern: str) -> re.Pattern[str]:
    # Azure action patterns: `*` matches anything, case-insensitively.
    return re.compile(".*".join(map(re.escape, pattern.split("*"))), re.IGNORECASE)


def managed_network_ready(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """A managed network is provisioned with the workspace; no deprecated or inert switches."""
    reasons = []
    if resource_type == ML_WORKSPACE:
        if prop(props, "allowPublicAccessWhenBehindVnet") is not None:
            reasons.append(
                "allowPublicAccessWhenBehindVnet is set; it is deprecated (publicNetworkAccess "
                "decides), remove it"
            )
        mode = prop(props, "managedNetwork.isolationMode")
        if mode not in (None, "Disabled") and props.get("provisionNetworkNow") is not True:
            reasons.append(
                "provisionNetworkNow is not true with a managed network; endpoints and image "
                "builds would race its provisioning"
            )
    return reasons


# Public ingestion/query switches of the Azure Monitor resources.
MONITOR_ACCESS_PATHS = ("publicNetworkAccessForIngestion", "publicNetworkAccessForQuery")


def private_monitoring(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Logs and telemetry go in and out only through an Azure Monitor private link scope."""
    reasons = []
    if resource_type in (LOG_ANALYTICS, APP_INSIGHTS):
        for path in MONITOR_ACCESS_PATHS:
            if not _same(props.get(path), "Disabled"):
                reasons.append(f"{path} is {_shown(props.get(path))}; set it to 'Disabled'")
    if resource_type == PRIVATE_LINK_SCOPE:
        for path in (
            "accessModeSettings.ingestionAccessMode",
            "accessModeSettings.queryAccessMode",
        ):
            if not _same(prop(props, path), "PrivateOnly"):
                reasons.append(f"{path} is {_shown(prop(props, path))}; set it to 'PrivateOnly'")
    return reasons


GEO_ZONE_STORAGE_SKUS = ("Standard_GZRS", "Standard_RAGZRS")
MIN_SOFT_DELETE_DAYS = 7


def data_protection(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Stateful resources survive a delete, a zone or a region: soft delete, versioning, purge
    protection, redundancy, no image export, high business impact, a CanNotDelete lock."""
    reasons = []
    if resource_type == STORAGE_ACCOUNT:
        allowed = settings.get("allowedStorageSkus", GEO_ZONE_STORAGE_SKUS)
        sku = prop(props, "sku.name")
        if sku not in allowed:
            reasons.append(f"sku.name is {_shown(sku)}; allowed: {', '.join(allowed)}")
    if resource_type == BLOB_SERVICE:
        days = settings.get("minSoftDeleteDays", MIN_SOFT_DELETE_DAYS)
        for path in ("deleteRetentionPolicy", "containerDeleteRetentionPolicy"):
            policy = prop(props, path) or {}
            if policy.get("enabled") is not True or (_count(policy.get("days")) or 0) < days:
                reasons.append(f"{path} keeps deleted data under {days} days; keep it longer")
        if props.get("isVersioningEnabled") is not True:
            reasons.append("isVersioningEnabled is not true; turn blob versioning on")
    if resource_type == KEY_VAULT and prop(props, "properties.enablePurgeProtection") is not True:
        reasons.append("properties.enablePurgeProtection is not true")
    if resource_type == CONTAINER_REGISTRY:
        if not _same(props.get("zoneRedundancy"), "Enabled"):
            reasons.append(f"zoneRedundancy is {_shown(props.get('zoneRedundancy'))}; 'Enabled'")
        export = prop(props, "policies.exportPolicy.status")
        if not _same(export, "disabled"):
            reasons.append(f"policies.exportPolicy.status is {_shown(export)}; 'disabled'")
    if resource_type == ML_WORKSPACE and props.get("hbiWorkspace") is not True:
        reasons.append("hbiWorkspace is not true (create-only: decide before the first deploy)")
    if resource_type == RESOURCE_GROUP_LOCK and not _same(props.get("level"), "CanNotDelete"):
        reasons.append(f"level is {_shown(props.get('level'))}; 'CanNotDelete'")
    return reasons


GPU_AUTOSCALE_METRICS = ("GpuUtilizationPercentage", "GpuMemoryUtilizationPercentage")


def gpu_autoscale_metric(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """GPU deployments scale on GPU (or request) metrics: their CPU stays low under load."""
    allowed = settings.get("allowedMetrics", GPU_AUTOSCALE_METRICS)
    if resource_type == ROLLOUT and prop(props, "policy.autoscale") is True:
        # The rollout gives each slot its own setting with this metric (delivery.autoscale).
        metric = prop(props, "autoscale.metric")
        if metric not in allowed:
            return [f"autoscale scales on {_shown(metric)}; allowed: {', '.join(allowed)}"]
        return []
    if resource_type != AUTOSCALE_SETTING:
        return []
    reasons = []
    for profile in props.get("profiles") or []:
        for rule in profile.get("rules") or []:
            metric = prop(rule, "metricTrigger.metricName")
            if metric not in allowed:
                reasons.append(
                    f"profile {profile.get('name')!r} scales on {_shown(metric)}; "
                    f"allowed: {', '.join(allowed)}"
                )
    return sorted(set(reasons))


def _minutes(duration: Any) -> float | None:
    match = _ISO_DURATION.match(duration) if isinstance(duration, str) else None
    if match is None or duration in ("P", "PT"):
        return None
    d, h, m, s = (float(match.group(g) or 0) for g in "dhms")
    return d * 1440 + h * 60 + m + s / 60


def compute_instance_idle_shutdown(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Compute instances shut down when idle, within the allowed idle time."""
    if resource_type != ML_COMPUTE or not _same(
        prop(props, "properties.computeType"), "ComputeInstance"
    ):
        return []
    path = "properties.properties.idleTimeBeforeShutdown"
    value = prop(props, path)
    limit = settings.get("maxIdleMinutes", MAX_IDLE_SHUTDOWN_MINUTES)
    minutes = _minutes(value)
    if minutes is None:
        return [f"{path} is {_shown(value)}; set an ISO 8601 duration such as 'PT30M'"]
    if minutes > limit:
        return [f"{path} is {value!r} ({minutes:g} min); at most {limit} min allowed"]
    return []


def _count(value: Any) -> int | None:
    # Capacities arrive as strings (autoscale) or floats (the wire); both mean a whole number.
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def endpoint_min_instances(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Deployments keep no more instances running at their floor than the stack allows."""
    limit = settings.get("maxMinInstances", MAX_MIN_INSTANCES)
    reasons = []
    if resource_type == ROLLOUT and prop(props, "policy.autoscale") is not True:
        # Without autoscale the fixed count is the floor; with it, the autoscale minimum is.
        count = _count(prop(props, "deployment.instance_count"))
        if count is not None and count > limit:
            reasons.append(
                f"deployment.instance_count is {count} without autoscale; at most {limit} allowed "
                "(add autoscale to run more only under load)"
            )
    if resource_type == ROLLOUT and prop(props, "policy.autoscale") is True:
        # The rollout gives each live slot an autoscale setting with these profiles.
        reasons += [
            f"profile {name!r} keeps at least {minimum} instances; at most {limit} allowed"
            for name, minimum in _rollout_floors(props.get("autoscale") or {})
            if minimum is not None and minimum > limit
        ]
    if resource_type == AUTOSCALE_SETTING:
        for profile in props.get("profiles") or []:
            minimum = _count(prop(profile, "capacity.minimum"))
            if minimum is not None and minimum > limit:
                reasons.append(
                    f"profile {profile.get('name')!r} keeps at least {minimum} instances; "
                    f"at most {limit} allowed"
                )
    return reasons


def _rollout_floors(autoscale: Mapping[str, Any]) -> list[tuple[str, int | None]]:
    # Mirrors delivery.autoscale.AutoscaleSpec.setting: default (and working hours) share the
    # main floor; off hours has its own.
    floor = _count(autoscale.get("min_instances"))
    off = autoscale.get("off_hours")
    if not off:
        return [("default", floor)]
    return [
        ("default", floor),
        ("working-hours", floor),
        ("off-hours", _count(off.get("min_instances"))),
    ]


def _region(value: str) -> str:
    return value.replace(" ", "").lower()


def allowed_regions(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Resources live only in the allowed regions (data residency)."""
    location = props.get("location")
    if not isinstance(location, str):
        return []  # extension and child resources live where their parent does
    allowed = [_region(r) for r in settings.get("allowedRegions", ALLOWED_REGIONS)]
    if _region(location) in allowed or _region(location) in GLOBAL_LOCATIONS:
        return []
    return [f"location is {location!r}; allowed: {', '.join(allowed)}"]


# Where each type names the VM SKU that serves a deployment.
INSTANCE_TYPE_PATHS = {
    ONLINE_DEPLOYMENT: "properties.instanceType",
    ROLLOUT: "deployment.instance_type",
}


def allowed_deployment_skus(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Model deployments run on the approved (GPU) instance types only."""
    path = INSTANCE_TYPE_PATHS.get(resource_type)
    if path is None:
        return []
    value = prop(props, path)
    allowed = list(settings.get("allowedInstanceTypes", GPU_INSTANCE_TYPES))
    if isinstance(value, str) and value.lower() in {a.lower() for a in allowed}:
        return []
    return [f"{path} is {_shown(value)}; allowed: {', '.join(allowed)}"]


def required_tags(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    """Every taggable Azure resource carries the platform's tag set."""
    if not resource_type.startswith("azure-native:") or resource_type in NOT_TAGGABLE:
        return []
    tags = props.get("tags")
    tags = tags if isinstance(tags, Mapping) else {}
    required = settings.get("requiredTags", REQUIRED_TAGS)
    missing = [key for key in required if not tags.get(key)]
    reasons = [f"missing tags: {', '.join(missing)}"] if missing else []
    for key, expected in (settings.get("expectedTagValues") or {}).items():
        if tags.get(key) and tags.get(key) != expected:
            reasons.append(f"tag {key} is {tags.get(key)!r}; expected {expected!r}")
    return reasons


STATEFUL_TYPES = (
    "azure-native:resources:ResourceGroup",
    STORAGE_ACCOUNT,
    KEY_VAULT,
    CONTAINER_REGISTRY,
    ML_WORKSPACE,
    LOG_ANALYTICS,
)


def stateful_resources_protected(
    resources: Sequence[StackResource], settings: Mapping[str, Any]
) -> list[tuple[StackResource | None, str]]:
    """Stateful resources carry Pulumi `protect`; the resource group a CanNotDelete lock; every
    storage account blob service properties (soft delete, versioning: see data-protection)."""
    found: list[tuple[StackResource | None, str]] = [
        (
            r,
            "not protected; set `protect` (config workspace.protect) so a destroy or an "
            "unintended replace cannot delete it",
        )
        for r in resources
        if r.type in STATEFUL_TYPES and not r.protect
    ]
    types = {r.type for r in resources}
    if "azure-native:resources:ResourceGroup" in types and not any(
        r.type == RESOURCE_GROUP_LOCK and _same(r.props.get("level"), "CanNotDelete")
        for r in resources
    ):
        found.append((None, "no CanNotDelete lock on the resource group"))
    if STORAGE_ACCOUNT in types and BLOB_SERVICE not in types:
        found.append((None, "no blob service properties: soft delete and versioning stay off"))
    return found


# Input holding each type's physical name (the last segment of its ARM id).
NAME_KEYS = {
    ONLINE_ENDPOINT: "endpointName",
    ML_WORKSPACE: "workspaceName",
    KEY_VAULT: "vaultName",
    CONTAINER_REGISTRY: "registryName",
    STORAGE_ACCOUNT: "accountName",
}
# Logs every online endpoint sends: who called with which auth (traffic), container start and
# probe failures (console), deployment events.
ENDPOINT_LOG_CATEGORIES = (
    "AmlOnlineEndpointTrafficLog",
    "AmlOnlineEndpointConsoleLog",
    "AmlOnlineEndpointEventLog",
)


def diagnostic_settings(
    resources: Sequence[StackResource], settings: Mapping[str, Any]
) -> list[tuple[StackResource | None, str]]:
    """Online endpoints, workspace, key vault, registry and blob service send logs to Log
    Analytics; endpoints their traffic, console and event logs."""
    by_uri: dict[str, StackResource] = {}
    for r in resources:
        if r.type == DIAGNOSTIC_SETTING:
            uri = r.props.get("resourceUri")
            if not isinstance(uri, str):
                return []  # ids not known yet (first preview): nothing can be concluded
            by_uri[uri.lower().rstrip("/")] = r

    def setting(suffix: str) -> StackResource | None:
        return next((d for uri, d in by_uri.items() if uri.endswith(suffix.lower())), None)

    found: list[tuple[StackResource | None, str]] = []
    for r in resources:
        key = NAME_KEYS.get(r.type)
        if key is None or not isinstance(r.props.get(key), str):
            continue
        name = r.props[key]
        suffix = f"/{name}/blobServices/default" if r.type == STORAGE_ACCOUNT else f"/{name}"
        d = setting(suffix)
        if d is None:
            what = "its blob service has" if r.type == STORAGE_ACCOUNT else "it has"
            found.append((r, f"{what} no diagnostic setting to Log Analytics"))
        elif r.type == ONLINE_ENDPOINT:
            logs = {
                str(entry.get("category"))
                for entry in d.props.get("logs") or []
                if isinstance(entry, Mapping) and entry.get("enabled")
            }
            missing = [c for c in ENDPOINT_LOG_CATEGORIES if c not in logs]
            if missing:
                found.append((r, f"its diagnostic setting lacks {', '.join(missing)}"))
    return found


NETWORK_CONNECTION_APPROVER = "b556d68e-0be0-4f35-a333-ad7ee1ce17ea"


def managed_network_approval(
    resources: Sequence[StackResource], settings: Mapping[str, Any]
) -> list[tuple[StackResource | None, str]]:
    """With a managed network: its identity may approve the network's private endpoints, and no
    deployment sends the egress flag Microsoft says no longer applies."""
    managed = [
        r
        for r in resources
        if r.type == ML_WORKSPACE
        and prop(r.props, "managedNetwork.isolationMode") not in (None, "Disabled")
    ]
    if not managed:
        return []
    found: list[tuple[StackResource | None, str]] = []
    if not any(
        r.type == ROLE_ASSIGNMENT
        and _role_guid(prop(r.props, "roleDefinitionId")) == NETWORK_CONNECTION_APPROVER
        for r in resources
    ):
        found.append(
            (
                managed[0],
                "no Azure AI Enterprise Network Connection Approver grant for the workspace "
                "identity: the managed network's private endpoints stay pending",
            )
        )
    for r in resources:
        path = {
            ONLINE_DEPLOYMENT: "properties.egressPublicNetworkAccess",
            ROLLOUT: "deployment.egress_public_network_access",
        }.get(r.type)
        if path is not None and prop(r.props, path) is not None:
            found.append((r, f"{path} is set under a managed network, where it no longer applies"))
    return found


def monitor_private_link_scope(
    resources: Sequence[StackResource], settings: Mapping[str, Any]
) -> list[tuple[StackResource | None, str]]:
    """Log Analytics sits in an Azure Monitor private link scope reached by a private endpoint."""
    if not any(r.type == LOG_ANALYTICS for r in resources):
        return []
    found: list[tuple[StackResource | None, str]] = []
    if not any(r.type == PRIVATE_LINK_SCOPE for r in resources):
        found.append((None, "no Azure Monitor private link scope"))
    if not any(
        r.type == "azure-native:network:PrivateEndpoint"
        and "azuremonitor" in str(r.props.get("privateLinkServiceConnections"))
        for r in resources
    ):
        found.append((None, "no private endpoint to the Azure Monitor private link scope"))
    return found


def _no_resource_rule(
    resource_type: str, props: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[str]:
    return []


@dataclass(frozen=True)
class PolicySpec:
    """A rule with its name, description and configurable settings (JSON schema and defaults)."""

    name: str
    description: str
    rule: Rule
    remediation: str
    schema: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """JSON schema of each setting, as CrossGuard's `PolicyConfigSchema.properties`."""
    stack_rule: StackRule | None = None
    """Set for a stack policy (CrossGuard `StackValidationPolicy`): the rule sees every
    resource; `rule` then finds nothing per resource."""

    def settings(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Schema defaults overlaid with a policy config's settings (enforcementLevel dropped)."""
        settings = {key: spec["default"] for key, spec in self.schema.items()}
        settings.update({k: v for k, v in (config or {}).items() if k in self.schema})
        return settings

    def check(
        self, resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Reasons the resource breaks this policy under `config` (empty: compliant)."""
        return self.rule(resource_type, props, self.settings(config))

    def check_stack(
        self, resources: Sequence[StackResource], config: Mapping[str, Any] | None = None
    ) -> list[tuple[StackResource | None, str]]:
        """A stack policy's findings over every resource (empty for resource policies)."""
        if self.stack_rule is None:
            return []
        return self.stack_rule(resources, self.settings(config))


def _string_list(description: str, default: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string"},
        "description": description,
        "default": list(default),
    }


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        "no-public-network-access",
        "Workspace, storage, key vault, registries and online endpoints disable public network "
        "access; deployments have no public egress.",
        no_public_network_access,
        "Set publicNetworkAccess to Disabled (config: network.private = true) and reach the "
        "resources through their private endpoints.",
    ),
    PolicySpec(
        "endpoint-aad-token-auth",
        "Online endpoints use Entra ID (AADToken) authentication, never keys.",
        endpoint_aad_token_auth,
        "Set endpoints.authMode to AADToken and grant callers the endpoint invoker role.",
    ),
    PolicySpec(
        "no-privileged-roles",
        "No Owner, Contributor, User Access Administrator or RBAC Administrator role "
        "assignments, and no custom role that may write roles or role assignments.",
        no_privileged_roles,
        "Grant the narrowest role (AzureML Data Scientist, AcrPull, the invoker role).",
    ),
    PolicySpec(
        "managed-network-ready",
        "A workspace managed network is provisioned with the workspace; deprecated switches unset.",
        managed_network_ready,
        "Leave provisionNetworkNow on (infra/workspace.py); drop allowPublicAccessWhenBehindVnet.",
    ),
    PolicySpec(
        "private-monitoring",
        "Log Analytics and App Insights take ingestion and queries only through a private link "
        "scope.",
        private_monitoring,
        "Keep network.privateEndpoints with 'monitor' (the default when network.private).",
    ),
    PolicySpec(
        "data-protection",
        "Soft delete and versioning, purge protection, geo-zone storage, a zone-redundant "
        "registry without export, a high-business-impact workspace, a CanNotDelete lock.",
        data_protection,
        "Set workspace.storageSku, highBusinessImpact, registryZoneRedundancy, registryExport, "
        "keyVaultPurgeProtection, blobSoftDeleteDays, blobVersioning and protect.",
        {
            "allowedStorageSkus": _string_list("Storage SKUs allowed.", GEO_ZONE_STORAGE_SKUS),
            "minSoftDeleteDays": {
                "type": "integer",
                "minimum": 1,
                "maximum": 365,
                "description": "Shortest blob and container soft delete retention.",
                "default": MIN_SOFT_DELETE_DAYS,
            },
        },
    ),
    PolicySpec(
        "gpu-autoscale-metric",
        "Autoscale settings scale on GPU metrics (GPU deployments are GPU-bound).",
        gpu_autoscale_metric,
        "Set endpoints.deployments.<pattern>.autoscale.metric to GpuUtilizationPercentage.",
        {"allowedMetrics": _string_list("Autoscale metrics allowed.", GPU_AUTOSCALE_METRICS)},
    ),
    PolicySpec(
        "stateful-resources-protected",
        "Stateful resources are protected and the resource group has a CanNotDelete lock.",
        _no_resource_rule,
        "Set workspace.protect to true (the default).",
        stack_rule=stateful_resources_protected,
    ),
    PolicySpec(
        "diagnostic-settings",
        "Endpoints (traffic, console, event logs), workspace, key vault, registry and blob "
        "service send diagnostics to Log Analytics.",
        _no_resource_rule,
        "Declare a monitor.DiagnosticSetting per resource (infra/workspace.py, endpoints.py).",
        stack_rule=diagnostic_settings,
    ),
    PolicySpec(
        "managed-network-approval",
        "A managed network's identity may approve its private endpoints; no deployment sends "
        "the egress flag there.",
        _no_resource_rule,
        "Keep the workspace's network connection approver grant (infra/identity.py); leave "
        "endpoints.egressPublicNetworkAccess unset.",
        stack_rule=managed_network_approval,
    ),
    PolicySpec(
        "monitor-private-link-scope",
        "Log Analytics and App Insights are in an Azure Monitor private link scope with a "
        "private endpoint.",
        _no_resource_rule,
        "Keep 'monitor' in network.privateEndpoints (the default when network.private).",
        stack_rule=monitor_private_link_scope,
    ),
    PolicySpec(
        "compute-instance-idle-shutdown",
        "Compute instances shut down when idle.",
        compute_instance_idle_shutdown,
        "Set compute.instance.idleShutdownMinutes (15 min up to the allowed maximum).",
        {
            "maxIdleMinutes": {
                "type": "integer",
                "minimum": 15,
                "maximum": 4320,
                "description": "Longest idle time before a compute instance shuts down.",
                "default": MAX_IDLE_SHUTDOWN_MINUTES,
            }
        },
    ),
    PolicySpec(
        "endpoint-min-instances",
        "Online deployments keep at most the allowed number of instances running at their floor.",
        endpoint_min_instances,
        "Lower endpoints.deployments.<pattern>.instanceCount or autoscale.minInstances (and "
        "autoscale.offHours.minInstances); let autoscale add instances under load.",
        {
            "maxMinInstances": {
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "description": "Most instances a deployment may keep as its minimum.",
                "default": MAX_MIN_INSTANCES,
            }
        },
    ),
    PolicySpec(
        "allowed-regions",
        "Resources are deployed only to the allowed regions (data residency).",
        allowed_regions,
        "Set location to one of the allowed regions.",
        {"allowedRegions": _string_list("Azure region names.", ALLOWED_REGIONS)},
    ),
    PolicySpec(
        "allowed-deployment-skus",
        "Model deployments use approved GPU instance types only.",
        allowed_deployment_skus,
        "Set endpoints.deployments.<pattern>.instanceType to an approved SKU.",
        {"allowedInstanceTypes": _string_list("VM SKUs for deployments.", GPU_INSTANCE_TYPES)},
    ),
    PolicySpec(
        "required-tags",
        "Taggable resources carry environment, owner, costCenter and dataClassification tags.",
        required_tags,
        "Set the tags block in the stack config; components apply it to every resource.",
        {
            "requiredTags": _string_list("Tag keys every taggable resource has.", REQUIRED_TAGS),
            "expectedTagValues": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Tag values fixed per stack, e.g. environment.",
                "default": {},
            },
        },
    ),
)
"""The pack's policies, in the order they are reported."""

POLICY_NAMES = tuple(p.name for p in POLICIES)
