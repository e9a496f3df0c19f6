"""The seam between delivery logic and Azure ML: a narrow protocol and its MLClient implementation.

Everything in `delivery/` talks to a workspace through `WorkspaceClient`; tests pass the in-memory
`delivery.fake.FakeWorkspace`. Inputs are real azure-ai-ml entities; what comes back is a small
frozen state object holding only what the delivery logic reads. The real client authenticates with
`delivery.credential` (managed identity, a fresh GitHub assertion per token, or
DefaultAzureCredential): no keys, connection strings or tokens pass through here.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import ResourceNotFoundError

from delivery.assets import ImageRef

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import (
        DataCollector,
        Environment,
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
        Model,
        ProbeSettings,
        Workspace,
    )
    from azure.core.credentials import TokenCredential

    from delivery.spec import DataCollectionSpec, DeploymentSpec, ProbeSpec

# Provisioning states of an online deployment, as the service reports them.
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELED = "Canceled"
TERMINAL_FAILURES = frozenset({FAILED, CANCELED})

_WORKSPACE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WorkspaceRef:
    """Where a workspace lives."""

    subscription_id: str
    resource_group: str
    workspace_name: str

    @classmethod
    def parse(cls, arm_id: str) -> WorkspaceRef:
        """Parse a workspace ARM id (`/subscriptions/.../workspaces/<name>`)."""
        match = _WORKSPACE_ID.match(arm_id.strip())
        if match is None:
            raise ValueError(
                f"{arm_id!r} is not a workspace id: expected /subscriptions/<id>/resourceGroups/"
                "<rg>/providers/Microsoft.MachineLearningServices/workspaces/<name>"
            )
        return cls(match["sub"], match["rg"], match["ws"])

    @property
    def arm_id(self) -> str:
        """The workspace's ARM resource id."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )


@dataclass(frozen=True)
class EndpointState:
    """An online endpoint's routing as the service holds it."""

    name: str
    traffic: Mapping[str, int] = field(default_factory=dict)
    mirror_traffic: Mapping[str, int] = field(default_factory=dict)
    scoring_uri: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    """The endpoint's tags; `byom-release` is the release record (`delivery.stages`)."""

    @property
    def live(self) -> str | None:
        """The deployment holding the most live traffic, or None when nothing has traffic."""
        positive = {name: share for name, share in self.traffic.items() if share > 0}
        if not positive:
            return None
        return max(sorted(positive), key=lambda name: positive[name])


@dataclass(frozen=True)
class DeploymentState:
    """An online deployment as the service reports it."""

    name: str
    endpoint_name: str
    provisioning_state: str
    tags: Mapping[str, str] = field(default_factory=dict)
    instance_count: int | None = None
    id: str | None = None


class WorkspaceClient(Protocol):
    """The Azure ML operations model delivery needs, and nothing more."""

    def get_model(self, name: str, version: str) -> Model | None:
        """The model version, or None when it is not registered."""
        ...

    def create_model(self, model: Model) -> Model:
        """Register a new model version (uploading its folder)."""
        ...

    def download_model(self, name: str, version: str, destination: Path) -> Path:
        """Download a model version's files; return the folder that holds them."""
        ...

    def share_model(self, name: str, version: str, registry_name: str) -> str:
        """Copy a model version into an Azure ML registry; return its registry asset id."""
        ...

    def get_environment(self, name: str, version: str) -> Environment | None:
        """The environment version, or None when it is not registered."""
        ...

    def create_environment(self, environment: Environment) -> Environment:
        """Register a new environment version."""
        ...

    def built_image(self, name: str, version: str) -> ImageRef | None:
        """The image this environment version runs, by digest: the one Azure ML built into the
        workspace registry (on the environment's first use), or the digest it was registered
        from. None while nothing is built."""
        ...

    def container_registry(self) -> str:
        """ARM id of the workspace's container registry (where Azure ML pushes built images)."""
        ...

    def get_endpoint(self, name: str) -> EndpointState | None:
        """The endpoint's routing, or None when the endpoint does not exist."""
        ...

    def begin_create_or_update_endpoint(self, endpoint: ManagedOnlineEndpoint) -> None:
        """Create or update an endpoint and wait for it."""
        ...

    def set_traffic(
        self,
        endpoint: str,
        traffic: Mapping[str, int],
        mirror_traffic: Mapping[str, int],
        record: Mapping[str, str] | None = None,
    ) -> None:
        """Replace the endpoint's live and mirror traffic and wait for it to apply.

        `record` tags go onto the endpoint in the same update, so the split and the release
        record that explains it never disagree."""
        ...

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        """Every deployment behind the endpoint."""
        ...

    def get_deployment(self, endpoint: str, name: str) -> DeploymentState | None:
        """One deployment, or None when it does not exist."""
        ...

    def begin_create_or_update_deployment(self, deployment: ManagedOnlineDeployment) -> None:
        """Start creating or updating a deployment; poll `get_deployment` for the outcome."""
        ...

    def delete_deployment(self, endpoint: str, name: str) -> None:
        """Delete a deployment (it must hold no traffic) and wait for it."""
        ...

    def scale_deployment(self, endpoint: str, name: str, instance_count: int) -> None:
        """Start changing a deployment's instance count in place; poll `get_deployment`."""
        ...

    def invoke(self, endpoint: str, deployment: str, request_json: str) -> str:
        """Score one request on one deployment, whatever its traffic share; return the body."""
        ...


class AzureMLWorkspace:
    """WorkspaceClient over `azure.ai.ml.MLClient`, authenticated with the release credential."""

    def __init__(self, ml_client: MLClient, credential: TokenCredential | None = None) -> None:
        self._ml = ml_client
        self._credential = credential
        # Pollers of create/update calls still running, by (endpoint, deployment).
        self._pending: dict[tuple[str, str], Any] = {}

    @classmethod
    def connect(cls, ref: WorkspaceRef) -> AzureMLWorkspace:
        """Connect with the credential for where this runs (`delivery.credential`)."""
        from azure.ai.ml import MLClient

        from delivery.credential import credential

        token_source = credential()
        return cls(
            MLClient(
                token_source,
                subscription_id=ref.subscription_id,
                resource_group_name=ref.resource_group,
                workspace_name=ref.workspace_name,
            ),
            token_source,
        )

    def get_model(self, name: str, version: str) -> Model | None:
        try:
            return self._ml.models.get(name=name, version=version)
        except ResourceNotFoundError:
            return None

    def create_model(self, model: Model) -> Model:
        return self._ml.models.create_or_update(model)

    def download_model(self, name: str, version: str, destination: Path) -> Path:
        # The SDK writes to <destination>/<name>/<last segment of the asset path>/.
        self._ml.models.download(name=name, version=version, download_path=str(destination))
        configs = sorted(Path(destination, name).rglob("config.json"))
        if not configs:
            raise FileNotFoundError(f"model {name}:{version} downloaded without a config.json")
        return configs[0].parent

    def share_model(self, name: str, version: str, registry_name: str) -> str:
        shared = self._ml.models.share(
            name=name,
            version=version,
            share_with_name=name,
            share_with_version=version,
            registry_name=registry_name,
        )
        return shared.id

    def get_environment(self, name: str, version: str) -> Environment | None:
        try:
            return self._ml.environments.get(name=name, version=version)
        except ResourceNotFoundError:
            return None

    def create_environment(self, environment: Environment) -> Environment:
        return self._ml.environments.create_or_update(environment)

    def built_image(self, name: str, version: str) -> ImageRef | None:
        environment = self.get_environment(name, version)
        if environment is None:
            return None
        if environment.image and not (environment.conda_file or environment.build):
            try:
                return ImageRef.parse(environment.image)  # registered from a digest: as it is
            except ValueError:
                return None  # a tag can move: not an image promotion can pin
        details = self._image_details(name, version)
        if not details.get("imageExistsInRegistry"):
            return None
        image = details["dockerImage"]
        registry = image["registry"]["address"]
        repository, _, tag = str(image["name"]).partition(":")
        return ImageRef(registry, repository, self._digest(registry, repository, tag or "latest"))

    def container_registry(self) -> str:
        return str(self._workspace.container_registry)

    @cached_property
    def _workspace(self) -> Workspace:
        # Read once: its registry and discovery URL stay as they are while this client lives,
        # and a promotion asks for them once per environment and once per registry.
        return self._ml.workspaces.get(self._ml.workspace_name)

    def _image_details(self, name: str, version: str) -> dict[str, Any]:
        # azure-ai-ml has no call for an environment's built image. Azure ML's environment API
        # answers it (the route azureml-core's `Environment.get_image_details` calls) at the
        # workspace's regional API host, which the workspace's discovery document names.
        from urllib.parse import quote

        from azure.core import PipelineClient
        from azure.core.pipeline.policies import BearerTokenCredentialPolicy

        from delivery.credential import ARM_SCOPE

        auth = BearerTokenCredentialPolicy(self._token_source(), ARM_SCOPE)
        with PipelineClient(base_url="", policies=[auth]) as client:
            discovery = client.send_request(_get(str(self._workspace.discovery_url)))
            discovery.raise_for_status()
            scope = WorkspaceRef(
                self._ml.subscription_id, self._ml.resource_group_name, self._ml.workspace_name
            ).arm_id
            url = (
                f"{discovery.json()['api'].rstrip('/')}/environment/v1.0{scope}"
                f"/environments/{quote(name, safe='')}/versions/{quote(version, safe='')}/image"
            )
            response = client.send_request(_get(url))
            response.raise_for_status()
            return response.json()

    def _digest(self, registry: str, repository: str, tag: str) -> str:
        # The registry's data plane (Entra auth): the manifest digest the tag points at now.
        from azure.containerregistry import ContainerRegistryClient

        with ContainerRegistryClient(f"https://{registry}", self._token_source()) as client:
            return str(client.get_manifest_properties(repository, tag).digest)

    def _token_source(self) -> TokenCredential:
        if self._credential is None:
            from delivery.credential import credential

            self._credential = credential()
        return self._credential

    def get_endpoint(self, name: str) -> EndpointState | None:
        try:
            endpoint = self._ml.online_endpoints.get(name=name)
        except ResourceNotFoundError:
            return None
        return EndpointState(
            name=endpoint.name,
            traffic=dict(endpoint.traffic or {}),
            mirror_traffic=dict(endpoint.mirror_traffic or {}),
            scoring_uri=endpoint.scoring_uri,
            tags=dict(endpoint.tags or {}),
        )

    def begin_create_or_update_endpoint(self, endpoint: ManagedOnlineEndpoint) -> None:
        self._ml.online_endpoints.begin_create_or_update(endpoint).result()

    def set_traffic(
        self,
        endpoint: str,
        traffic: Mapping[str, int],
        mirror_traffic: Mapping[str, int],
        record: Mapping[str, str] | None = None,
    ) -> None:
        current = self._ml.online_endpoints.get(name=endpoint)
        current.traffic = dict(traffic)
        current.mirror_traffic = dict(mirror_traffic)
        if record:
            current.tags = {**(current.tags or {}), **record}
        self._ml.online_endpoints.begin_create_or_update(current).result()

    def list_deployments(self, endpoint: str) -> list[DeploymentState]:
        return [_state(d) for d in self._ml.online_deployments.list(endpoint_name=endpoint)]

    def get_deployment(self, endpoint: str, name: str) -> DeploymentState | None:
        try:
            state = _state(self._ml.online_deployments.get(name=name, endpoint_name=endpoint))
        except ResourceNotFoundError:
            return None
        poller = self._pending.get((endpoint, name))
        if poller is not None and not poller.done() and state.provisioning_state == SUCCEEDED:
            # The service may still report the previous operation's state; trust the poller.
            return replace(state, provisioning_state="Updating")
        return state

    def begin_create_or_update_deployment(self, deployment: ManagedOnlineDeployment) -> None:
        # Uploads the code folder and sends the PUT; rollout polls the provisioning state.
        poller = self._ml.online_deployments.begin_create_or_update(deployment)
        self._pending[(deployment.endpoint_name, deployment.name)] = poller

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self._ml.online_deployments.begin_delete(name=name, endpoint_name=endpoint).result()

    def scale_deployment(self, endpoint: str, name: str, instance_count: int) -> None:
        # The deployment read back names its code and assets by id: nothing is uploaded again.
        deployment = self._ml.online_deployments.get(name=name, endpoint_name=endpoint)
        deployment.instance_count = instance_count
        poller = self._ml.online_deployments.begin_create_or_update(deployment)
        self._pending[(endpoint, name)] = poller

    def invoke(self, endpoint: str, deployment: str, request_json: str) -> str:
        # The SDK reads requests from a file; the deployment name becomes the routing header
        # (`azureml-model-deployment`), which reaches a deployment even at 0% traffic.
        with tempfile.TemporaryDirectory() as tmp:
            request_file = Path(tmp, "request.json")
            request_file.write_text(request_json, encoding="utf-8")
            return self._ml.online_endpoints.invoke(
                endpoint_name=endpoint, deployment_name=deployment, request_file=str(request_file)
            )


def _get(url: str) -> Any:
    from azure.core.rest import HttpRequest

    return HttpRequest("GET", url)


def _state(deployment: ManagedOnlineDeployment) -> DeploymentState:
    return DeploymentState(
        name=deployment.name,
        endpoint_name=deployment.endpoint_name,
        provisioning_state=deployment.provisioning_state or "",
        tags=dict(deployment.tags or {}),
        instance_count=deployment.instance_count,
        id=deployment.id,
    )


def deployment_entity(
    spec: DeploymentSpec,
    endpoint: str,
    slot: str,
    base_dir: Path | None = None,
    *,
    code_folder: Path | None = None,
) -> ManagedOnlineDeployment:
    """The azure-ai-ml deployment entity for a slot of `spec`, tagged with what it runs.

    `code_folder` is what to upload (a staged copy, see `delivery.codeasset.staged`); by default
    `spec.code_dir` below `base_dir` (or the working directory)."""
    from azure.ai.ml.entities import (
        CodeConfiguration,
        ManagedOnlineDeployment,
        OnlineRequestSettings,
    )

    return ManagedOnlineDeployment(
        name=slot,
        endpoint_name=endpoint,
        model=spec.model,
        environment=spec.environment,
        # server openai: the custom container's image carries the code and runs the server.
        code_configuration=None
        if spec.server == "openai"
        else CodeConfiguration(
            code=str(code_folder or Path(base_dir or Path.cwd(), spec.code_dir)),
            scoring_script=spec.scoring_script,
        ),
        instance_type=spec.instance_type,
        instance_count=spec.instance_count,
        request_settings=OnlineRequestSettings(
            max_concurrent_requests_per_instance=spec.max_concurrent_requests_per_instance,
            request_timeout_ms=spec.request_timeout_ms,
        ),
        liveness_probe=_probe_settings(spec.liveness_probe),
        readiness_probe=_probe_settings(spec.readiness_probe),
        environment_variables=dict(spec.environment_variables),
        egress_public_network_access=spec.egress_public_network_access,
        app_insights_enabled=spec.app_insights_enabled,
        data_collector=_collector(spec.data_collection),
        tags=spec.tags(),
    )


def _probe_settings(probe: ProbeSpec) -> ProbeSettings:
    from azure.ai.ml.entities import ProbeSettings

    return ProbeSettings(
        initial_delay=probe.initial_delay_s,
        period=probe.period_s,
        timeout=probe.timeout_s,
        failure_threshold=probe.failure_threshold,
        success_threshold=probe.success_threshold,
    )


def _collector(capture: DataCollectionSpec) -> DataCollector | None:
    # None, not a disabled collector: Azure disables collection when the collector is null.
    if not capture.enabled:
        return None
    from azure.ai.ml.entities import DataCollector, DeploymentCollection

    return DataCollector(
        collections={name: DeploymentCollection(enabled="true") for name in capture.collections},
        sampling_rate=capture.sampling_rate,
        rolling_rate=capture.rolling_rate,
    )
