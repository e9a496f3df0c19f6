"""An in-memory Azure ML workspace that enforces the service rules delivery depends on.

Rules kept from the real service: asset versions are immutable; deployments need their endpoint
and registered assets, and pass through a provisioning state before they can be invoked; traffic
sums to 100 or 0 and may only name existing deployments (the rule behind the endpoint/deployment
cycle); mirror traffic goes to one deployment with no live traffic, at most 50%; a deployment with
traffic cannot be deleted; invoke reaches a named deployment whatever its traffic share.

Where a call comes from matters, as in Azure: with `public_network_access="Disabled"` (prod), the
data-plane calls (uploads to and downloads from the workspace storage account, requests to the
scoring URI) are refused unless the caller is inside the VNet (`origin=VNET`, the release runner);
control-plane calls through ARM work from anywhere. With `credential` and `entra` set, every call
first gets a token for its audience (ARM, `https://ml.azure.com` for invoke, storage for uploads)
and the fake Entra checks it is still valid at that moment.

Images follow Azure ML and ACR: an environment registered from a conda spec or a build context is
built on its first deployment (or `build_environment`) and pushed to the workspace's registry
(`delivery.fake_registry.FakeRegistry`), the digest differing per workspace as a rebuild's
unpinned transitive packages would; a managed network `AllowOnlyApprovedOutbound` without the
package hosts the spec downloads from fails that build, naming the environment and the hosts. An
environment registered from an image by digest is not built, only pulled: the image must be in
the workspace's registry (a locked-down network reaches no other).

Scoring answers come from a responder per deployment (default: a valid answer for the request's
pattern); failures of any operation can be injected with `fail_next`. Metric alerts can be fired
and resolved per rule and deployment (`fire_alert`), which makes the fake an `AlertSource` too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.ai.ml.entities import Environment, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from delivery.alerts import FiredAlert
from delivery.assets import ImageRef
from delivery.autoscale import TargetResourceIdIsImmutableError
from delivery.credential import AML_SCOPE, ARM_SCOPE, STORAGE_SCOPE
from delivery.fake_registry import FakeRegistry
from delivery.images import build_hosts
from delivery.workspace import (
    CANCELED,
    FAILED,
    SUCCEEDED,
    DeploymentState,
    EndpointState,
    WorkspaceRef,
)
from scoring.schemas import PATTERNS

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from delivery.fake_identity import FakeEntra

# Where a caller runs: the public internet (a GitHub-hosted runner, a laptop) or the VNet.
INTERNET = "internet"
VNET = "vnet"


class PublicAccessDisabledError(HttpResponseError):
    """A data-plane call from outside the network to a resource with public access disabled."""


class ImageBuildError(HttpResponseError):
    """Azure ML could not build or pull an environment's image."""


APPROVED_OUTBOUND_ONLY = "AllowOnlyApprovedOutbound"


# (endpoint, deployment, request body) -> response body
Responder = Callable[[str, str, str], str]

# Each pattern's example answer from the scoring contract, so rollouts exercise real shapes.
CANNED_RESPONSES: Mapping[str, Mapping[str, Any]] = {
    pattern: contract.example_response for pattern, contract in PATTERNS.items()
}


@dataclass
class _Deployment:
    entity: ManagedOnlineDeployment
    state: str
    polls_left: int
    outcome: str = SUCCEEDED


@dataclass
class _Endpoint:
    traffic: dict[str, int] = field(default_factory=dict)
    mirror_traffic: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class FakeWorkspace:
    """WorkspaceClient in memory; `mutations` records every state-changing call in order."""

    def __init__(
        self,
        ref: WorkspaceRef | None = None,
        *,
        polls_until_ready: int = 2,
        storage: Path | None = None,
        public_network_access: str = "Enabled",
        origin: str = INTERNET,
        storage_account: str = "stbyom",
        credential: TokenCredential | None = None,
        entra: FakeEntra | None = None,
        isolation_mode: str = "Disabled",
        outbound_fqdns: Sequence[str] = (),
        acr: FakeRegistry | None = None,
    ) -> None:
        self.ref = ref or WorkspaceRef(
            "00000000-0000-0000-0000-000000000000", "rg-byom", "mlw-byom"
        )
        self.polls_until_ready = polls_until_ready
        self.models: dict[tuple[str, str], Model] = {}
        self.environments: dict[tuple[str, str], Environment] = {}
        self.endpoints: dict[str, _Endpoint] = {}
        self.deployments: dict[tuple[str, str], _Deployment] = {}
        self.registry: dict[tuple[str, str, str], Model] = {}
        self.responders: dict[tuple[str, str], Responder] = {}
        self.mutations: list[tuple[str, ...]] = []
        self.invocations: list[tuple[str, str, str]] = []
        self._storage = storage
        self._failures: dict[str, list[Exception]] = {}
        self._pending_outcomes: dict[tuple[str, str], str] = {}
        self._alerts: dict[tuple[str, str, str | None], FiredAlert] = {}
        self.autoscale: dict[str, dict] = {}
        self.public_network_access = public_network_access
        self.origin = origin
        self.storage_account = storage_account
        self.credential = credential
        self.entra = entra
        self.isolation_mode = isolation_mode
        self.outbound_fqdns = tuple(outbound_fqdns)
        self.acr = acr or FakeRegistry(
            "cr" + self.ref.workspace_name.replace("-", "").replace("_", "")[:40],
            resource_group=self.ref.resource_group,
            subscription_id=self.ref.subscription_id,
        )
        self.built_images: dict[tuple[str, str], ImageRef] = {}
        # What each environment's build needs: the package hosts and the spec's bytes.
        self._build_inputs: dict[tuple[str, str], tuple[set[str], bytes]] = {}

    # -- test controls ---------------------------------------------------------------------------

    def add_endpoint(self, name: str) -> None:
        """Create an endpoint with no traffic, as the infrastructure stack does."""
        self.endpoints[name] = _Endpoint()

    def respond(self, endpoint: str, deployment: str, responder: Responder) -> None:
        """Answer invokes of one deployment with `responder`."""
        self.responders[(endpoint, deployment)] = responder

    def fail_next(self, operation: str, error: Exception) -> None:
        """Make the next call of `operation` (a method name) raise `error`."""
        self._failures.setdefault(operation, []).append(error)

    def fail_provisioning(self, endpoint: str, deployment: str, state: str = FAILED) -> None:
        """Make the next create/update of this deployment end in `state` (Failed or Canceled)."""
        self._pending_outcomes[(endpoint, deployment)] = state

    def fire_alert(self, endpoint: str, rule: str, deployment: str | None = None) -> None:
        """Put a metric alert rule in the Fired condition (for one deployment, or endpoint-wide)."""
        self._alerts[(endpoint, rule, deployment)] = FiredAlert(rule, deployment, "Sev2")

    def resolve_alert(self, endpoint: str, rule: str, deployment: str | None = None) -> None:
        """Resolve a fired alert."""
        self._alerts.pop((endpoint, rule, deployment), None)

    def build_environment(self, name: str, version: str) -> ImageRef:
        """Build an environment's image as Azure ML does on its first use; return it by digest."""
        key = (name, version)
        if key in self.built_images:
            return self.built_images[key]
        if key not in self.environments:
            raise ResourceNotFoundError(f"environment {name}:{version} is not registered")
        hosts, spec = self._build_inputs[key]
        allowed = {h.lower() for h in self.outbound_fqdns}
        missing = sorted(h for h in hosts if h.lower() not in allowed)
        if self.isolation_mode == APPROVED_OUTBOUND_ONLY and missing:
            raise ImageBuildError(
                f"image build for environment {name}:{version} failed: the managed network "
                f"({APPROVED_OUTBOUND_ONLY}) has no outbound rule for {', '.join(missing)}, "
                "which its spec downloads packages from. Deploy the image dev built, imported "
                "by digest (python -m delivery.promote), instead of building here"
            )
        # The same spec built in another workspace resolves its unpinned transitive packages
        # again: another image, another digest.
        content = self.ref.arm_id.lower().encode() + b"\0" + spec
        tag = hashlib.sha256(content).hexdigest()[:32]
        image = self.acr.push(f"azureml/azureml_{tag}", "latest", content)
        self.built_images[key] = image
        self.mutations.append(("build_environment", name, version))
        return image

    def traffic(self, endpoint: str) -> dict[str, int]:
        """The endpoint's live traffic, as a plain dict."""
        return dict(self.endpoints[endpoint].traffic)

    # -- assets ----------------------------------------------------------------------------------

    def get_model(self, name: str, version: str) -> Model | None:
        self._maybe_fail("get_model")
        model = self.models.get((name, version))
        return copy.deepcopy(model) if model else None

    def create_model(self, model: Model) -> Model:
        self._maybe_fail("create_model", STORAGE_SCOPE, self._blob)
        key = (model.name, model.version)
        if key in self.models:
            raise ResourceExistsError(f"model {model.name}:{model.version} already exists")
        stored = copy.deepcopy(model)
        if self._storage is not None:
            # The service keeps its own copy of the uploaded bytes.
            target = self._storage / "models" / model.name / model.version
            shutil.copytree(model.path, target)
            stored.path = str(target)
        self.models[key] = stored
        self.mutations.append(("create_model", model.name, model.version))
        return copy.deepcopy(stored)

    def download_model(self, name: str, version: str, destination: Path) -> Path:
        self._maybe_fail("download_model", STORAGE_SCOPE, self._blob)
        model = self.models.get((name, version))
        if model is None:
            raise ResourceNotFoundError(f"model {name}:{version} not found")
        target = Path(destination, name, Path(model.path).name)
        shutil.copytree(model.path, target)
        return target

    def share_model(self, name: str, version: str, registry_name: str) -> str:
        self._maybe_fail("share_model")
        model = self.models.get((name, version))
        if model is None:
            raise ResourceNotFoundError(f"model {name}:{version} not found")
        key = (registry_name, name, version)
        if key not in self.registry:
            self.registry[key] = copy.deepcopy(model)
            self.mutations.append(("share_model", registry_name, name, version))
        return f"azureml://registries/{registry_name}/models/{name}/versions/{version}"

    def get_environment(self, name: str, version: str) -> Environment | None:
        self._maybe_fail("get_environment")
        environment = self.environments.get((name, version))
        return copy.deepcopy(environment) if environment else None

    def create_environment(self, environment: Environment) -> Environment:
        self._maybe_fail("create_environment")
        key = (environment.name, environment.version)
        if key in self.environments:
            raise ResourceExistsError(f"environment {key[0]}:{key[1]} already exists")
        hosts = build_hosts(environment)  # read now: a build context is a temporary folder
        if hosts is not None:
            inputs = [environment.image, environment.conda_file, sorted(hosts)]
            spec = json.dumps(
                [*inputs, dict(environment.tags or {})],
                sort_keys=True,
                default=str,
            )
            self._build_inputs[key] = (hosts, spec.encode())
        self.environments[key] = copy.deepcopy(environment)
        self.mutations.append(("create_environment", *key))
        return copy.deepcopy(environment)

    def built_image(self, name: str, version: str) -> ImageRef | None:
        self._maybe_fail("built_image")
        if (name, version) in self.built_images:
            return self.built_images[(name, version)]
        environment = self.environments.get((name, version))
        if environment is not None and (name, version) not in self._build_inputs:
            try:
                return ImageRef.parse(str(environment.image))
            except ValueError:
                return None
        return None

    def container_registry(self) -> str:
        self._maybe_fail("container_registry")
        return self.acr.registry_id

    # -- endpoints and deployments -----------------------------------------------------------------

    def get_endpoint(self, name: str) -> EndpointState | None:
        self._maybe_fail("get_endpoint")
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return None
        return EndpointState(
            name=name,
            traffic=dict(endpoint.traffic),
            mirror_traffic=dict(endpoint.mirror_traffic),
            scoring_uri=self._scoring_uri(name),
            tags=dict(endpoint.tags),
        )

    def begin_create_or_update_endpoint(self, endpoint: ManagedOnlineEndpoint) -> None:
        self._maybe_fail("begin_create_or_update_endpoint")
        existing = self.endpoints.get(endpoint.name)
        if existing is None:
            existing = self.endpoints[endpoint.name] = _Endpoint()
        self._check_traffic(endpoint.name, endpoint.traffic or {}, endpoint.mirror_traffic or {})
        existing.traffic = dict(endpoint.traffic or {})
        existing.mirror_traffic = dict(endpoint.mirror_traffic or {})
        self.mutations.append(("create_or_update_endpoint", endpoint.name))

    def set_traffic(
        self,
        endpoint: str,
        traffic: Mapping[str, int],
        mirror_traffic: Mapping[str, int],
        record: Mapping[str, str] | None = None,
    ) -> None:
        self._maybe_fail("set_traffic")
        if endpoint not in self.endpoints:
            raise ResourceNotFoundError(f"endpoint {endpoint} not found")
        self._check_traffic(endpoint, traffic, mirror_traffic)
        for key, value in (record or {}).items():
            if len(value) > 256:
                raise HttpResponseError(f"tag {key} is {len(value)} characters (Azure max 256)")
        routing = self.endpoints[endpoint]
        routing.tags.update(record or {})
        if routing.traffic == dict(traffic) and routing.mirror_traffic == dict(mirror_traffic):
            # Same split: the update only changes the endpoint's tags (the release record).
            self.mutations.append(("tag_endpoint", endpoint, json.dumps(dict(record or {}))))
            return
        routing.traffic = dict(traffic)
        routing.mirror_traffic = dict(mirror_traffic)
        self.mutations.append(
            (
                "set_traffic",
                endpoint,
                json.dumps(dict(traffic), sort_keys=True),
                json.dumps(dict(mirror_traffic), sort_keys=True),
            )
        )

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        self._maybe_fail("list_deployments")
        return [self._state(d) for (ep, _), d in sorted(self.deployments.items()) if ep == endpoint]

    def get_deployment(self, endpoint: str, name: str) -> DeploymentState | None:
        self._maybe_fail("get_deployment")
        deployment = self.deployments.get((endpoint, name))
        if deployment is None:
            return None
        if deployment.state in ("Creating", "Updating"):
            deployment.polls_left -= 1
            if deployment.polls_left <= 0:
                deployment.state = deployment.outcome
        return self._state(deployment)

    def begin_create_or_update_deployment(self, deployment: ManagedOnlineDeployment) -> None:
        # The SDK uploads the code folder to the workspace storage before the PUT.
        self._maybe_fail("begin_create_or_update_deployment", STORAGE_SCOPE, self._blob)
        endpoint = deployment.endpoint_name
        if endpoint not in self.endpoints:
            raise ResourceNotFoundError(f"endpoint {endpoint} not found")
        for kind, reference, registered in (
            ("model", deployment.model, self.models),
            ("environment", deployment.environment, self.environments),
        ):
            self._check_reference(kind, reference, registered)
        self._check_server(deployment)
        self._check_image(deployment)
        key = (endpoint, deployment.name)
        existing = self.deployments.get(key)
        outcome = self._pending_outcomes.pop(key, SUCCEEDED)
        self.deployments[key] = _Deployment(
            entity=copy.deepcopy(deployment),
            state="Updating" if existing else "Creating",
            polls_left=self.polls_until_ready,
            outcome=outcome,
        )
        self.mutations.append(("create_or_update_deployment", endpoint, deployment.name))

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self._maybe_fail("delete_deployment")
        routing = self.endpoints[endpoint]
        if routing.traffic.get(name, 0) > 0 or routing.mirror_traffic.get(name, 0) > 0:
            raise HttpResponseError(
                f"deployment {name} has traffic on {endpoint}; set its traffic to 0 before deleting"
            )
        if self.deployments.pop((endpoint, name), None) is None:
            raise ResourceNotFoundError(f"deployment {endpoint}/{name} not found")
        routing.traffic.pop(name, None)
        routing.mirror_traffic.pop(name, None)
        self.mutations.append(("delete_deployment", endpoint, name))

    def scale_deployment(self, endpoint: str, name: str, instance_count: int) -> None:
        self._maybe_fail("scale_deployment")
        found = self.deployments.get((endpoint, name))
        if found is None:
            raise ResourceNotFoundError(f"deployment {endpoint}/{name} not found")
        self._check_idle(endpoint, name, found)
        found.entity.instance_count = instance_count
        found.state, found.polls_left, found.outcome = "Updating", self.polls_until_ready, SUCCEEDED
        self.mutations.append(("scale_deployment", endpoint, name, str(instance_count)))

    def invoke(self, endpoint: str, deployment: str, request_json: str) -> str:
        self._maybe_fail("invoke", AML_SCOPE, self._scoring_uri(endpoint))
        found = self.deployments.get((endpoint, deployment))
        if found is None:
            raise ResourceNotFoundError(f"deployment {endpoint}/{deployment} not found")
        if found.state != SUCCEEDED:
            raise HttpResponseError(f"deployment {endpoint}/{deployment} is {found.state}")
        self.invocations.append((endpoint, deployment, request_json))
        responder = self.responders.get((endpoint, deployment), _canned)
        return responder(endpoint, deployment, request_json)

    # -- autoscale settings (AutoscaleClient) --------------------------------------------------

    def get_autoscale(self, name: str) -> dict | None:
        self._maybe_fail("get_autoscale")
        found = self.autoscale.get(name)
        return copy.deepcopy(found) if found else None

    def put_autoscale(self, name: str, setting: Mapping) -> None:
        self._maybe_fail("put_autoscale")
        target = setting["properties"]["targetResourceUri"]
        existing = self.autoscale.get(name)
        if existing and existing["properties"]["targetResourceUri"].lower() != target.lower():
            raise TargetResourceIdIsImmutableError(
                f"TargetResourceIdIsImmutable: autoscale setting {name} targets "
                f"{existing['properties']['targetResourceUri']}; it cannot be changed to {target}"
            )
        if not any(state.id.lower() == target.lower() for state in self._all_states()):
            raise ResourceNotFoundError(f"autoscale target {target} does not exist")
        self.autoscale[name] = copy.deepcopy(dict(setting))
        self.mutations.append(("put_autoscale", name, target))

    def delete_autoscale(self, name: str) -> None:
        self._maybe_fail("delete_autoscale")
        if self.autoscale.pop(name, None) is not None:
            self.mutations.append(("delete_autoscale", name))

    def autoscaled(self, endpoint: str, slot: str) -> bool:
        """Whether a setting targets this slot (test helper)."""
        target = self._state(self.deployments[(endpoint, slot)]).id
        return any(s["properties"]["targetResourceUri"] == target for s in self.autoscale.values())

    def fired(self, endpoint: str, rules: Sequence[str]) -> list[FiredAlert]:
        """AlertSource: the fired alerts of `rules` on `endpoint`."""
        self._maybe_fail("fired")
        return [a for (ep, rule, _), a in self._alerts.items() if ep == endpoint and rule in rules]

    # -- rules -----------------------------------------------------------------------------------

    def _check_traffic(
        self, endpoint: str, traffic: Mapping[str, int], mirror: Mapping[str, int]
    ) -> None:
        for name in (*traffic, *mirror):
            if (endpoint, name) not in self.deployments:
                raise HttpResponseError(
                    f"traffic names deployment {name!r}, which does not exist on {endpoint}"
                )
        if any(not isinstance(v, int) or not 0 <= v <= 100 for v in traffic.values()):
            raise HttpResponseError(f"traffic values must be integers 0..100: {dict(traffic)}")
        if traffic and sum(traffic.values()) not in (0, 100):
            raise HttpResponseError(f"traffic must sum to 100 or 0, got {dict(traffic)}")
        mirrored = {n: v for n, v in mirror.items() if v > 0}
        if len(mirrored) > 1 or any(not 0 <= v <= 50 for v in mirror.values()):
            raise HttpResponseError(f"mirror one deployment at most 50%: {dict(mirror)}")
        if any(traffic.get(name, 0) > 0 for name in mirrored):
            raise HttpResponseError("a deployment cannot receive both live and mirror traffic")

    def _check_server(self, deployment: ManagedOnlineDeployment) -> None:
        """Azure's rule: an environment without ``inference_config`` is served by Azure ML's
        inference server, which needs a scoring script; a custom container (with
        ``inference_config``) needs none, its image runs the server."""
        reference = deployment.environment
        if not isinstance(reference, str) or not reference.startswith("azureml:"):
            return
        _, name, version = reference.split(":")
        environment = self.environments.get((name, version))
        custom = environment is not None and environment.inference_config is not None
        if not custom and deployment.code_configuration is None:
            raise HttpResponseError(
                f"deployment {deployment.name}: environment {name}:{version} has no "
                "inference_config, so it needs code_configuration with a scoring_script"
            )

    def _check_image(self, deployment: ManagedOnlineDeployment) -> None:
        """Build the environment on first use, or check its image can be pulled."""
        reference = deployment.environment
        if not isinstance(reference, str) or not reference.startswith("azureml:"):
            return
        _, name, version = reference.split(":")
        if (name, version) in self._build_inputs:
            self.build_environment(name, version)
            return
        environment = self.environments[(name, version)]
        try:
            image = ImageRef.parse(str(environment.image))
        except ValueError:
            return  # a public image by tag: pulled as it is
        if self.acr.holds(image):
            return
        if image.registry == self.acr.login_server or (
            self.isolation_mode == APPROVED_OUTBOUND_ONLY
        ):
            raise ImageBuildError(
                f"deployment {deployment.name}: environment {name}:{version} names {image}, "
                f"which the workspace registry {self.acr.login_server} does not hold"
                + (
                    " (the managed network reaches no other registry: import it first)"
                    if image.registry != self.acr.login_server
                    else ""
                )
            )

    def _check_reference(self, kind: str, reference: object, registered: Mapping) -> None:
        if not isinstance(reference, str) or not reference.startswith("azureml:"):
            return
        if reference.startswith("azureml://registries/"):
            parts = reference.removeprefix("azureml://registries/").split("/")
            if kind == "model" and (parts[0], parts[2], parts[4]) not in self.registry:
                raise ResourceNotFoundError(f"{kind} {reference} not found")
            return
        _, name, version = reference.split(":")
        if (name, version) not in registered:
            raise ResourceNotFoundError(f"{kind} {name}:{version} is not registered")

    def _all_states(self) -> list[DeploymentState]:
        return [self._state(d) for d in self.deployments.values()]

    def _check_idle(self, endpoint: str, name: str, found: _Deployment) -> None:
        # The service refuses a second operation while one runs (409 Conflict).
        if found.state in ("Creating", "Updating"):
            raise ResourceExistsError(
                f"409: another operation on {endpoint}/{name} is already running ({found.state})"
            )

    def _state(self, deployment: _Deployment) -> DeploymentState:
        entity = deployment.entity
        return DeploymentState(
            name=entity.name,
            endpoint_name=entity.endpoint_name,
            provisioning_state=deployment.state,
            tags=dict(entity.tags or {}),
            instance_count=entity.instance_count,
            id=(
                f"{self.ref.arm_id}/onlineEndpoints/{entity.endpoint_name}"
                f"/deployments/{entity.name}"
            ),
        )

    def _maybe_fail(
        self, operation: str, scope: str = ARM_SCOPE, data_plane: str | None = None
    ) -> None:
        # Every SDK call starts at ARM (invoke too: it reads the endpoint and its deployments).
        self._authorize(operation, ARM_SCOPE)
        if data_plane is not None:
            self._authorize(operation, scope)
            self._reach(operation, data_plane)
        queued = self._failures.get(operation)
        if queued:
            raise queued.pop(0)

    def _authorize(self, operation: str, scope: str) -> None:
        if self.credential is None or self.entra is None:
            return
        token = self.credential.get_token(scope)
        self.entra.authorize(token.token, scope, operation)

    def _reach(self, operation: str, target: str) -> None:
        if self.public_network_access == "Enabled" or self.origin == VNET:
            return
        raise PublicAccessDisabledError(
            f"{operation}: {target} refused a call from {self.origin} (403: public network "
            "access is disabled; it resolves to a private endpoint). Run this step on the "
            "release runner inside the VNet"
        )

    @property
    def _blob(self) -> str:
        return f"https://{self.storage_account}.blob.core.windows.net"

    def _scoring_uri(self, endpoint: str) -> str:
        return f"https://{endpoint}.westeurope.inference.ml.azure.com/score"


def _canned(endpoint: str, deployment: str, request_json: str) -> str:
    # Without a responder, answer like the scoring package would for the request's pattern.
    request = json.loads(request_json)
    pattern = request.get("task") or ("generate" if "prompt" in request else "analyze")
    return json.dumps(CANNED_RESPONSES[pattern])


__all__ = [
    "CANCELED",
    "CANNED_RESPONSES",
    "FAILED",
    "INTERNET",
    "VNET",
    "FakeRegistry",
    "FakeWorkspace",
    "ImageBuildError",
    "PublicAccessDisabledError",
    "Responder",
]
