"""Rules Azure enforces that Pulumi's mocks do not know, checked on offline plans.

`pulumi preview` only checks property names and types; Azure refuses more at `pulumi up`. Each
rule here refuses a plan the way Azure would refuse the deployment:

- **names**: length and characters per resource type;
- **tenant-unique names**: role assignment names are unique in the whole Entra tenant, so each is
  `guid(scope, principal, role)` (as Bicep's `guid()`), and custom role ids derive from their
  assignable scope; across plans (stacks, adopters) none may repeat;
- **create-only properties**: `create_only_changes(before, after)` compares two plans (before and
  after a release flips the live slot, or a config change) and fails when a property Azure cannot
  change in place would change on a resource that Pulumi would update rather than replace;
- **access**: every data-plane operation the release and the endpoints perform has a principal
  with a role that allows it at that scope (`OPERATIONS`, the identity -> operation -> role table).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from infra import roles
from infra.config import StackConfig
from infra.offline.mocks import NAME_KEYS
from infra.plan import Plan, PlannedResource, prop

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
ML_WORKSPACE = "azure-native:machinelearningservices:Workspace"
COMPUTE = "azure-native:machinelearningservices:Compute"
ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
STORAGE = "azure-native:storage:StorageAccount"
VAULT = "azure-native:keyvault:Vault"
REGISTRY = "azure-native:containerregistry:Registry"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"

_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass(frozen=True)
class Finding:
    """One plan breaking one Azure rule."""

    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.resource}: {self.message}"


@dataclass(frozen=True)
class NameRule:
    """Azure's rule for a type's name: the input holding it, a pattern, and what it means."""

    key: str
    pattern: str
    means: str


# Azure's naming rules (resource-name-rules reference; ML REST specs for the ML types).
NAME_RULES: Mapping[str, NameRule] = {
    RESOURCE_GROUP: NameRule(
        "resourceGroupName", r"[-\w.()]{0,89}[-\w()]", "1-90 letters, digits, -_.(), no final ."
    ),
    STORAGE: NameRule("accountName", r"[a-z0-9]{3,24}", "3-24 lowercase letters and digits"),
    VAULT: NameRule(
        "vaultName",
        r"(?!.*--)[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]",
        "3-24 letters, digits, single hyphens; starts with a letter",
    ),
    REGISTRY: NameRule("registryName", r"[a-zA-Z0-9]{5,50}", "5-50 letters and digits"),
    "azure-native:operationalinsights:Workspace": NameRule(
        "workspaceName", r"[a-zA-Z0-9][a-zA-Z0-9-]{2,61}[a-zA-Z0-9]", "4-63 letters/digits/-"
    ),
    ML_WORKSPACE: NameRule(
        "workspaceName", r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}", "3-33 letters, digits, - and _"
    ),
    ENDPOINT: NameRule(
        "endpointName",
        r"[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]",
        "3-32 letters, digits, hyphens; starts with a letter (unique per region)",
    ),
    IDENTITY: NameRule(
        "resourceName", r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}", "3-128 letters, digits, - and _"
    ),
    "azure-native:network:PrivateEndpoint": NameRule(
        "privateEndpointName", r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9_]", "2-64 characters"
    ),
    "azure-native:authorization:ManagementLockAtResourceGroupLevel": NameRule(
        "lockName", r"[^<>%&:\\?/\x00-\x1f]{1,260}", "1-260 characters, none of <>%&:\\?/"
    ),
    ROLE_ASSIGNMENT: NameRule("roleAssignmentName", _GUID, "a GUID"),
    ROLE_DEFINITION: NameRule("roleDefinitionId", _GUID, "a GUID"),
}
# Compute names depend on the kind: instances are unique per region and shorter.
COMPUTE_NAME_RULES = {
    "ComputeInstance": NameRule(
        "computeName", r"[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]", "3-24 letters, digits, hyphens"
    ),
    "AmlCompute": NameRule(
        "computeName", r"[a-zA-Z][a-zA-Z0-9-]{0,14}[a-zA-Z0-9]", "2-16 letters, digits, hyphens"
    ),
}


def _name_rule(resource: PlannedResource) -> NameRule | None:
    if resource.type == COMPUTE:
        return COMPUTE_NAME_RULES.get(str(prop(resource.props, "properties.computeType")))
    return NAME_RULES.get(resource.type)


def check_names(plan: Plan) -> list[Finding]:
    """Every name fits its type's length and character rules."""
    findings = []
    for r in plan.resources:
        rule = _name_rule(r)
        if rule is None:
            continue
        name = r.props.get(rule.key)
        if not isinstance(name, str) or not re.fullmatch(rule.pattern, name):
            findings.append(Finding("names", r.name, f"{rule.key} {name!r}: {rule.means}"))
    return findings


def _same_id(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def check_tenant_unique_names(plan: Plan) -> list[Finding]:
    """Role assignment names are guid(scope, principal, role); custom role ids are per scope."""
    findings = []
    for r in plan.resources:
        if r.type == ROLE_ASSIGNMENT:
            p = r.props
            expected = roles.assignment_guid(
                str(p.get("scope")), str(p.get("principalId")), str(p.get("roleDefinitionId"))
            )
            if p.get("roleAssignmentName") != expected:
                findings.append(
                    Finding(
                        "tenant-unique-names",
                        r.name,
                        f"roleAssignmentName {p.get('roleAssignmentName')!r} is not derived from "
                        "scope, principal and role; names are unique in the whole tenant, so "
                        f"another stack or team would collide (expected {expected})",
                    )
                )
        if r.type == ROLE_DEFINITION:
            scopes = r.props.get("assignableScopes") or []
            expected_ids = {
                roles.custom_role_guid(str(s), c.key) for s in scopes for c in roles.CUSTOM_ROLES
            }
            if r.props.get("roleDefinitionId") not in expected_ids:
                findings.append(
                    Finding(
                        "tenant-unique-names",
                        r.name,
                        f"roleDefinitionId {r.props.get('roleDefinitionId')!r} is not derived "
                        "from its assignable scope; custom role ids are unique in the tenant",
                    )
                )
    findings += [
        Finding("tenant-unique-names", name, "the name is used twice in this plan")
        for name in _duplicates(_tenant_names(plan))
    ]
    return findings


# Names Azure keeps unique beyond one resource group: in the tenant, globally, or per region.
GLOBAL_NAME_KEYS = {
    ROLE_ASSIGNMENT: "roleAssignmentName",
    ROLE_DEFINITION: "roleDefinitionId",
    STORAGE: "accountName",
    VAULT: "vaultName",
    REGISTRY: "registryName",
    ENDPOINT: "endpointName",
}


def _tenant_names(plan: Plan) -> list[str]:
    return [
        f"{r.type.rsplit(':', 1)[-1]} {str(r.props.get(key)).lower()}"
        for r in plan.resources
        if (key := GLOBAL_NAME_KEYS.get(r.type)) and r.props.get(key) is not None
    ]


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dupes = []
    for name in names:
        if name in seen:
            dupes.append(name)
        seen.add(name)
    return dupes


def collisions(plans: Sequence[Plan]) -> list[Finding]:
    """Globally or tenant-unique names that two plans (stacks, adopters) would both claim."""
    owners: dict[str, str] = {}
    findings = []
    for p in plans:
        for name in set(_tenant_names(p)):
            if name in owners and owners[name] != p.stack:
                findings.append(
                    Finding("tenant-unique-names", name, f"claimed by {owners[name]} and {p.stack}")
                )
            owners.setdefault(name, p.stack)
    return findings


# --- create-only properties -------------------------------------------------------------------

_ZONE_REDUNDANT = {"standard_zrs", "standard_gzrs", "standard_ragzrs", "premium_zrs"}


def _changed(before: Any, after: Any) -> bool:
    return before != after


def _zone_change(before: Any, after: Any) -> bool:
    # LRS <-> GRS is an update; into or out of zone redundancy is a migration, not a PUT.
    return (str(before).lower() in _ZONE_REDUNDANT) != (str(after).lower() in _ZONE_REDUNDANT)


def _leaves_managed_network(before: Any, after: Any) -> bool:
    # Disabled -> a managed network is allowed; a managed network cannot be disabled again.
    return before not in (None, "Disabled") and before != after


def _purge_protection_off(before: Any, after: Any) -> bool:
    return before is True and after is not True


# Per type: property path -> whether a change from `before` to `after` is refused in place.
CREATE_ONLY: Mapping[str, Mapping[str, Callable[[Any, Any], bool]]] = {
    AUTOSCALE: {"targetResourceUri": _changed},  # TargetResourceIdIsImmutable
    REGISTRY: {"zoneRedundancy": _changed},
    ML_WORKSPACE: {
        "hbiWorkspace": _changed,
        "storageAccount": _changed,
        "keyVault": _changed,
        "managedNetwork.isolationMode": _leaves_managed_network,
    },
    STORAGE: {"kind": _changed, "isHnsEnabled": _changed, "sku.name": _zone_change},
    VAULT: {"properties.enablePurgeProtection": _purge_protection_off},
    ROLE_ASSIGNMENT: {  # RoleAssignmentUpdateNotPermitted
        "principalId": _changed,
        "roleDefinitionId": _changed,
        "scope": _changed,
    },
}


def _name_of(resource: PlannedResource) -> Any:
    return resource.props.get(NAME_KEYS.get(resource.type, ""))


def _replaced_by(resource: PlannedResource, path: str) -> bool:
    return any(
        path == p or path.startswith(p + ".") or p == "*" for p in resource.replace_on_changes
    )


def create_only_changes(before: Plan, after: Plan) -> list[Finding]:
    """Create-only properties that `after` would change in place on resources of `before`."""
    old = {r.urn: r for r in before.resources}
    findings = []
    for r in after.resources:
        prior = old.get(r.urn)
        rules = CREATE_ONLY.get(r.type)
        if prior is None or rules is None or _name_of(prior) != _name_of(r):
            continue  # new, or a new physical name: Pulumi creates a new resource
        for path, refused in rules.items():
            was, now = prop(prior.props, path), prop(r.props, path)
            if was != now and refused(was, now) and not _replaced_by(r, path):
                findings.append(
                    Finding(
                        "create-only",
                        r.name,
                        f"{path} would change from {was!r} to {now!r} in place; Azure cannot "
                        "change it on an existing resource (give the resource a new name, or "
                        "replace it)",
                    )
                )
    return findings


# --- identity -> operation -> role ------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """A data-plane (or approval) call the platform makes, by whom, needing which permission."""

    who: str
    """`deployer`, `endpoint`, `compute`, `workspace`, `data-scientists`, `invokers`,
    `release-runner` (the private stack's release identity), `promoters`."""
    what: str
    action: str
    data: bool
    """Whether `action` is a dataAction (blob, file) rather than an action."""
    scope: str
    """`storage`, `registry`, `vault`, `workspace`, `endpoints`, `capture-container`,
    `resource-group`."""
    when: str = "always"
    """`always`, `capture` (data collection on), `image-build` (a cluster builds images),
    `managed-network` (the workspace has one), `release-runner` (the stack has one)."""


_PULL = f"{roles.REGISTRIES}/pull/read"
OPERATIONS: tuple[Operation, ...] = (
    Operation("deployer", "upload code and model", f"{roles.BLOBS}/write", True, "storage"),
    Operation(
        "deployer",
        "create deployments",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write",
        False,
        "workspace",
    ),
    Operation("deployer", "smoke-test and gate", roles.SCORE_ACTION, False, "endpoints"),
    Operation("endpoint", "read model", f"{roles.BLOBS}/read", True, "storage"),
    Operation("endpoint", "pull image", _PULL, False, "registry"),
    Operation(
        "endpoint",
        "write metrics",
        "Microsoft.MachineLearningServices/workspaces/metrics/resource/write",
        False,
        "workspace",
    ),
    Operation(
        "endpoint", "write capture", f"{roles.BLOBS}/write", True, "capture-container", "capture"
    ),
    Operation("invokers", "invoke", roles.SCORE_ACTION, False, "endpoints"),
    Operation("compute", "pull image", _PULL, False, "registry"),
    Operation(
        "compute",
        "push built image",
        f"{roles.REGISTRIES}/push/write",
        False,
        "registry",
        "image-build",
    ),
    Operation(
        "release-runner",
        "import promoted images by digest",
        f"{roles.REGISTRIES}/importImage/action",
        False,
        "registry",
        "release-runner",
    ),
    # The release job (stage mode) gives each slot its own autoscale setting and watches the
    # endpoint's fired alerts: both are ARM calls in the resource group, by the runner.
    Operation(
        "release-runner",
        "create per-slot autoscale settings",
        "Microsoft.Insights/autoscalesettings/write",
        False,
        "resource-group",
        "release-runner",
    ),
    Operation(
        "release-runner",
        "delete the old slot's autoscale setting",
        "Microsoft.Insights/autoscalesettings/delete",
        False,
        "resource-group",
        "release-runner",
    ),
    Operation(
        "release-runner",
        "read fired alerts",
        "Microsoft.AlertsManagement/alerts/read",
        False,
        "resource-group",
        "release-runner",
    ),
    Operation(
        "promoters",
        "read the images they promote",
        f"{roles.REGISTRIES}/repositories/content/read",
        True,
        "registry",
    ),
    Operation("compute", "write job outputs", f"{roles.BLOBS}/write", True, "storage"),
    Operation("compute", "use the file share", f"{roles.FILES}/write", True, "storage"),
    Operation("data-scientists", "use the file share", f"{roles.FILES}/write", True, "storage"),
    Operation("data-scientists", "use datastores", f"{roles.BLOBS}/write", True, "storage"),
    *(
        Operation(
            "workspace",
            f"approve managed network endpoint to {scope}",
            f"{provider}/privateEndpointConnections/write",
            False,
            scope,
            "managed-network",
        )
        for scope, provider in (
            ("storage", "Microsoft.Storage/storageAccounts"),
            ("vault", "Microsoft.KeyVault/vaults"),
            ("registry", "Microsoft.ContainerRegistry/registries"),
        )
    ),
)


@cache
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(map(re.escape, pattern.split("*"))), re.IGNORECASE)


def allows(permissions: roles.Permissions, action: str, data: bool) -> bool:
    """Whether a role's permissions allow `action` (Azure's wildcard and NotActions rules)."""
    granted, excluded = (
        (permissions.data_actions, permissions.not_data_actions)
        if data
        else (permissions.actions, permissions.not_actions)
    )

    def match(patterns: Sequence[str]) -> bool:
        return any(_wildcard(p).fullmatch(action) for p in patterns)

    return match(granted) and not match(excluded)


def _within(scope: str, target: str) -> bool:
    scope, target = scope.lower().rstrip("/"), target.lower().rstrip("/")
    return target == scope or target.startswith(scope + "/")


def out_of_band_roles(settings: StackConfig) -> dict[str, roles.CustomRole]:
    """The custom roles the stack file names by GUID instead of declaring them."""
    runner = settings.release_runner
    named = {
        settings.identity.invoker_role_id: roles.ENDPOINT_INVOKER,
        runner and runner.autoscaler_role_id: roles.RELEASE_AUTOSCALER,
    }
    return {guid: role for guid, role in named.items() if guid}


@dataclass(frozen=True)
class _View:
    """What the access check needs from a plan: principals, scopes, role contents."""

    principals: dict[str, list[str]]
    scopes: dict[str, list[str]]
    conditions: dict[str, bool]
    custom_roles: dict[str, roles.Permissions]


def _first(plan: Plan, token: str) -> PlannedResource | None:
    return next((r for r in plan.resources if r.type == token), None)


def _view(plan: Plan, settings: StackConfig) -> _View:
    ids = {r.urn: str(r.outputs.get("id", "")) for r in plan.resources}
    uais = {r.name.rsplit("-", 1)[-1]: r for r in plan.resources if r.type == IDENTITY}
    ws = _first(plan, ML_WORKSPACE)
    st = _first(plan, STORAGE)
    ident = settings.identity
    principals: dict[str, list[str]] = {
        key: [str(uais[key].outputs.get("principalId"))] for key in ("endpoint", "compute")
    }
    principals["deployer"] = [ident.deployer.object_id] if ident.deployer else []
    principals["data-scientists"] = (
        [ident.data_scientists.object_id] if ident.data_scientists else []
    )
    principals["invokers"] = [i.object_id for i in ident.invokers]
    principals["promoters"] = [p.object_id for p in ident.promoters]
    runner = next(
        (r for r in plan.resources if r.type == IDENTITY and r.name.startswith("release-")), None
    )
    principals["release-runner"] = [str(runner.outputs.get("principalId"))] if runner else []
    principals["workspace"] = [str(prop(ws.outputs, "identity.principalId"))] if ws else []
    scopes: dict[str, list[str]] = {
        key: [ids[r.urn] for r in plan.resources if r.type == token]
        for key, token in (
            ("storage", STORAGE),
            ("registry", REGISTRY),
            ("vault", VAULT),
            ("workspace", ML_WORKSPACE),
            ("endpoints", ENDPOINT),
        )
    }
    if ws:
        # Everything the stack declares lives in one resource group: the workspace's.
        scopes["resource-group"] = [ids[ws.urn].split("/providers/", 1)[0]]
    if st and ws:
        scopes["capture-container"] = [
            f"{ids[st.urn]}/blobServices/default/containers/azureml-blobstore-"
            f"{ws.outputs.get('workspaceId')}"
        ]
    conditions = {
        "always": True,
        "capture": settings.request_capture,
        "image-build": bool(ws and ws.props.get("imageBuildCompute")),
        "managed-network": settings.workspace.managed_network,
        "release-runner": runner is not None,
    }
    custom: dict[str, roles.Permissions] = {}
    for r in plan.resources:
        if r.type == ROLE_DEFINITION:
            custom[str(r.props.get("roleDefinitionId")).lower()] = roles.Permissions(
                str(r.props.get("roleName")),
                actions=tuple(a for p in r.props.get("permissions") or [] for a in p["actions"]),
            )
    for guid, role in out_of_band_roles(settings).items():
        # Created out of band exactly as docs/infrastructure.md defines it.
        custom[guid.lower()] = roles.Permissions(f"{role.title} (out of band)", role.actions)
    return _View(principals, scopes, conditions, custom)


def _permissions(view: _View, role_definition_id: str) -> roles.Permissions | None:
    guid = roles.role_guid(role_definition_id).lower()
    return roles.BUILT_IN_PERMISSIONS.get(guid) or view.custom_roles.get(guid)


def check_access(plan: Plan, settings: StackConfig) -> list[Finding]:
    """Every operation of `OPERATIONS` that applies has a grant allowing it, for every target."""
    view = _view(plan, settings)
    grants = [r.props for r in plan.resources if r.type == ROLE_ASSIGNMENT]
    findings = []
    for op in OPERATIONS:
        if not view.conditions[op.when]:
            continue
        optional = ("deployer", "invokers", "data-scientists", "promoters")
        if op.who in optional and not view.principals[op.who]:
            continue  # nobody configured: the operation is not performed
        for principal in view.principals[op.who]:
            for target in view.scopes.get(op.scope, []):
                allowed = any(
                    str(g.get("principalId")).lower() == principal.lower()
                    and _within(str(g.get("scope")), target)
                    and (perms := _permissions(view, str(g.get("roleDefinitionId")))) is not None
                    and allows(perms, op.action, op.data)
                    for g in grants
                )
                if not allowed:
                    findings.append(
                        Finding(
                            "access",
                            f"{op.who} {op.what}",
                            f"no role of {principal} allows {op.action} at {target}",
                        )
                    )
    return findings


def check(plan: Plan, settings: StackConfig) -> list[Finding]:
    """Every single-plan rule."""
    return [
        *check_names(plan),
        *check_tenant_unique_names(plan),
        *check_access(plan, settings),
    ]
