"""In-memory Azure container registries that keep ACR's rules for images and `importImage`.

Rules kept from the real service: an image is a manifest named by its digest (sha256 of its
bytes); a tag points at one digest and can be moved; `importImage` copies a manifest from another
registry server-side, so the digest stays the same; importing a digest the source does not hold
fails (`manifest unknown`); a source whose export policy is disabled refuses to be imported from;
a registry with public access off is reachable by import only when it allows trusted Azure
services. Registries find one another by ARM id through a shared `directory` (one "tenant").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from delivery.assets import ImageRef

Directory = dict[str, "FakeRegistry"]


@dataclass
class FakeRegistry:
    """RegistryClient in memory: manifests by digest, tags by `repository:tag`."""

    name: str
    resource_group: str = "rg-byom"
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    public_network_access: str = "Enabled"
    trusted_services: bool = True
    """`networkRuleBypassOptions: AzureServices`: import passes the registry's network rules."""
    export_enabled: bool = True
    """The export policy: off, nothing can be imported *from* this registry."""
    directory: Directory = field(default_factory=dict)
    manifests: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """Repository -> digest -> manifest bytes."""
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    imports: list[tuple[str, str, str]] = field(default_factory=list)
    """(source registry id, source image, target tag) of every import, in order."""

    def __post_init__(self) -> None:
        self.directory[self.registry_id.lower()] = self

    @property
    def registry_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.name}"
        )

    @property
    def login_server(self) -> str:
        return f"{self.name}.azurecr.io"

    # -- what Azure ML's image build and `docker push` do ---------------------------------------

    def push(self, repository: str, tag: str, content: bytes) -> ImageRef:
        """Store a manifest and point `repository:tag` at it; return the image by digest."""
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        self.manifests.setdefault(repository, {})[digest] = content
        self.tags[(repository, tag)] = digest
        return ImageRef(self.login_server, repository, digest)

    def digest(self, repository: str, tag: str) -> str | None:
        """The digest `repository:tag` points at, or None."""
        return self.tags.get((repository, tag))

    def holds(self, image: ImageRef) -> bool:
        """Whether this registry serves `image` (its login server, repository and digest)."""
        return image.registry == self.login_server and image.digest in self.manifests.get(
            image.repository, {}
        )

    # -- RegistryClient ----------------------------------------------------------------------------

    def import_image(self, source_registry_id: str, source: ImageRef, target_tag: str) -> ImageRef:
        origin = self.directory.get(source_registry_id.lower())
        if origin is None:
            raise ResourceNotFoundError(
                f"importImage into {self.name}: source registry {source_registry_id} not found"
            )
        for registry in (origin, self):
            if registry.public_network_access == "Disabled" and not registry.trusted_services:
                raise HttpResponseError(
                    f"importImage into {self.name}: {registry.name} has public access disabled "
                    "and does not allow trusted Azure services, so import cannot reach it"
                )
        if not origin.export_enabled:
            raise HttpResponseError(
                f"importImage into {self.name}: {origin.name}'s export policy is disabled; "
                "nothing can be imported from it"
            )
        content = origin.manifests.get(source.repository, {}).get(source.digest)
        if content is None:
            raise ResourceNotFoundError(
                f"importImage into {self.name}: manifest unknown: {origin.login_server}/"
                f"{source.source} does not exist"
            )
        repository, _, tag = target_tag.partition(":")
        imported = self.push(repository, tag or "latest", content)
        self.imports.append((source_registry_id, source.source, target_tag))
        return imported
