"""Inference images by digest: built once in dev, imported into prod's registry, deployed by digest.

Azure ML builds an environment registered from a conda spec or a build context on its first use,
downloading packages through the workspace's managed network, and pushes the image to the
workspace's container registry. A locked-down workspace (managed network `AllowOnlyApprovedOutbound`
without the package hosts) cannot build, and a second build elsewhere is not the same image: the
conda spec pins the top-level packages, not everything pip resolves under them. So prod never
builds. Promotion takes the image dev built (by digest), imports it into prod's registry with ACR's
`importImage` (a server-side copy: the manifest and its digest stay as they are), and registers
the prod environment from that digest, with no conda file. Prod needs no outbound rule for
packages.

`package_hosts` names the hosts a build from a spec reaches (the fake workspace refuses a build its
network blocks, naming them); `RegistryClient` is the seam to ACR (`AzureContainerRegistry` over
azure-mgmt-containerregistry; `delivery.fake.FakeRegistry` in tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import yaml

from delivery.assets import ImageRef
from delivery.packaging import AssetConflictError
from delivery.workspace import WorkspaceClient

if TYPE_CHECKING:
    from azure.ai.ml.entities import Environment

__all__ = [
    "PYPI_HOSTS",
    "AzureContainerRegistry",
    "ImageRef",
    "RegistryClient",
    "build_hosts",
    "package_hosts",
    "register_image_environment",
]

# pip downloads the index from pypi.org and the files from files.pythonhosted.org.
PYPI_HOSTS = ("pypi.org", "files.pythonhosted.org")
# conda resolves a named channel (conda-forge, pytorch, ...) on anaconda.org's channel host;
# the commercial `defaults` channel lives on repo.anaconda.com.
CONDA_CHANNEL_HOST = "conda.anaconda.org"
CONDA_DEFAULTS_HOST = "repo.anaconda.com"
TAG_IMAGE_DIGEST = "imageDigest"
_INDEX_OPTION = re.compile(r"^(?:--(?:extra-)?index-url|-i|--find-links|-f)[\s=]+(\S+)")
_REGISTRY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)


def _pip_hosts(lines: Iterable[str]) -> set[str]:
    hosts: set[str] = set()
    for raw in lines:
        line = str(raw).split("#", 1)[0].strip()
        if not line:
            continue
        index = _INDEX_OPTION.match(line)
        if index is not None:
            hosts.add(urlparse(index[1]).hostname or index[1])
        elif not line.startswith("-"):
            hosts.update(PYPI_HOSTS)  # a requirement: resolved on PyPI (and any extra index)
    return hosts


def package_hosts(conda_spec: Mapping[str, Any], requirements: Iterable[str] = ()) -> set[str]:
    """Hosts a build of this conda spec (and pip requirements file) downloads packages from."""
    hosts: set[str] = set()
    channels = [str(c) for c in conda_spec.get("channels") or []]
    for channel in channels:
        if channel == "nodefaults":
            continue
        if "://" in channel:
            hosts.add(urlparse(channel).hostname or channel)
        else:
            hosts.add(CONDA_DEFAULTS_HOST if channel == "defaults" else CONDA_CHANNEL_HOST)
    if "nodefaults" not in channels and not channels:
        hosts.add(CONDA_DEFAULTS_HOST)  # conda's implicit channel
    for dependency in conda_spec.get("dependencies") or []:
        if isinstance(dependency, Mapping):
            hosts |= _pip_hosts(dependency.get("pip") or [])
    return hosts | _pip_hosts(requirements)


def build_hosts(environment: Environment) -> set[str] | None:
    """The package hosts Azure ML's build of this environment reaches; None: nothing to build
    (an environment registered from an image reference is pulled as it is)."""
    if environment.build is not None:
        context = Path(str(environment.build.path))
        hosts: set[str] = set()
        for conda_file in sorted(context.glob("*.conda.y*ml")):
            hosts |= package_hosts(yaml.safe_load(conda_file.read_text(encoding="utf-8")) or {})
        requirements = context / "requirements.txt"
        if requirements.is_file():
            hosts |= _pip_hosts(requirements.read_text(encoding="utf-8").splitlines())
        return hosts
    conda = environment.conda_file
    if conda:
        # azure-ai-ml loads a conda file path into a dict on construction.
        spec = conda if isinstance(conda, Mapping) else yaml.safe_load(Path(conda).read_text())
        return package_hosts(spec or {})
    return None


def _parse_registry_id(registry_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, name) of a container registry ARM id."""
    match = _REGISTRY_ID.match(registry_id)
    if match is None:
        raise ValueError(f"{registry_id!r} is not a container registry ARM id")
    return match["sub"], match["rg"], match["name"]


class RegistryClient(Protocol):
    """The container registry operations promotion needs: ACR import, and nothing more."""

    @property
    def registry_id(self) -> str:
        """The registry's ARM resource id."""
        ...

    @property
    def login_server(self) -> str:
        """`<name>.azurecr.io`."""
        ...

    def import_image(self, source_registry_id: str, source: ImageRef, target_tag: str) -> ImageRef:
        """Copy `source` (by digest) from another registry into this one as `target_tag`
        (`repository:tag`); return the image here, by the same digest."""
        ...


class AzureContainerRegistry:
    """RegistryClient over azure-mgmt-containerregistry (`registries.begin_import_image`).

    Import is a control-plane operation (`Microsoft.ContainerRegistry/registries/importImage/
    action` on the target): ACR itself pulls from the source, so the caller needs no network path
    to either registry's data endpoint, and a private registry imports as long as it allows
    trusted Azure services (the platform's registries do: `networkRuleBypassOptions`).
    """

    def __init__(self, client: Any, registry_id: str, login_server: str) -> None:
        _, self._group, self._name = _parse_registry_id(registry_id)
        self._client = client
        self._id = registry_id
        self._login_server = login_server

    @classmethod
    def connect(cls, registry_id: str) -> AzureContainerRegistry:
        """Connect with the release credential (`delivery.credential`)."""
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        from delivery.credential import credential

        subscription, group, name = _parse_registry_id(registry_id)
        client = ContainerRegistryManagementClient(credential(), subscription)
        return cls(client, registry_id, client.registries.get(group, name).login_server)

    @property
    def registry_id(self) -> str:
        return self._id

    @property
    def login_server(self) -> str:
        return self._login_server

    def import_image(self, source_registry_id: str, source: ImageRef, target_tag: str) -> ImageRef:
        from azure.mgmt.containerregistry.models import ImportImageParameters, ImportSource

        parameters = ImportImageParameters(
            # By resource id: works when the source's public access is off, with Entra auth.
            source=ImportSource(resource_id=source_registry_id, source_image=source.source),
            target_tags=[target_tag],
            # The tag names the environment version; re-running a promotion re-imports the same
            # digest under it. What prod deploys is the digest, never the tag.
            mode="Force",
        )
        self._client.registries.begin_import_image(self._group, self._name, parameters).result()
        return ImageRef(self._login_server, target_tag.split(":", 1)[0], source.digest)


def register_image_environment(
    workspace: WorkspaceClient,
    name: str,
    version: str,
    image: ImageRef,
    *,
    inference_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> bool:
    """Register `name:version` from an image by digest (nothing to build); return whether it was
    created. An existing version must name the same digest: versions are immutable."""
    from azure.ai.ml.entities import Environment

    existing = workspace.get_environment(name, version)
    if existing is not None:
        if existing.image != str(image) or existing.conda_file or existing.build:
            raise AssetConflictError(
                f"environment {name}:{version} is registered with image {existing.image!r}"
                f"{' and a conda spec' if existing.conda_file or existing.build else ''}, not "
                f"{image}: an environment version is immutable, so remove it or promote a new one"
            )
        return False
    workspace.create_environment(
        Environment(
            name=name,
            version=version,
            image=str(image),
            inference_config=dict(inference_config) if inference_config else None,
            description=f"Promoted by digest: the image Azure ML built for {name}:{version}",
            tags={**(tags or {}), TAG_IMAGE_DIGEST: image.digest},
        )
    )
    return True
