"""Asset identity, shared by delivery and infra without azure-ai-ml: versions derived from content
hashes, and the references a deployment names."""

from __future__ import annotations

import re
from dataclasses import dataclass

HASH_PREFIX = "sha256:"
# 16 hex digits = 64 bits: a collision needs ~4e9 versions of one model. The full hash is a tag,
# and registration refuses an existing version whose tag disagrees.
VERSION_HEX_DIGITS = 16


def version_from_hash(content_hash: str) -> str:
    """Derive an asset version from a `sha256:<hex>` content hash."""
    if not content_hash.startswith(HASH_PREFIX):
        raise ValueError(f"content hash {content_hash!r} does not start with {HASH_PREFIX!r}")
    return content_hash.removeprefix(HASH_PREFIX)[:VERSION_HEX_DIGITS]


def model_asset_id(name: str, version: str, registry: str | None = None) -> str:
    """Reference a model version in a workspace, or in an Azure ML registry when one is given."""
    if registry:
        return f"azureml://registries/{registry}/models/{name}/versions/{version}"
    return f"azureml:{name}:{version}"


def environment_asset_id(name: str, version: str) -> str:
    """Reference an environment version in the workspace."""
    return f"azureml:{name}:{version}"


# `<registry host>/<repository>@sha256:<64 hex>`: an image named by the digest of its manifest,
# which names exactly one set of bytes (a tag can be moved; a digest cannot).
_IMAGE_BY_DIGEST = re.compile(
    r"^(?P<registry>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]+)?)"
    r"/(?P<repository>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class ImageRef:
    """A container image by digest: registry login server, repository and manifest digest."""

    registry: str
    repository: str
    digest: str

    @classmethod
    def parse(cls, reference: str) -> ImageRef:
        """Parse `<registry>/<repository>@sha256:<digest>`; a tag-only reference is refused."""
        match = _IMAGE_BY_DIGEST.match(reference.strip())
        if match is None:
            raise ValueError(
                f"{reference!r} is not an image by digest: expected "
                "<registry>/<repository>@sha256:<64 hex digits>"
            )
        return cls(match["registry"], match["repository"], match["digest"])

    @property
    def source(self) -> str:
        """`<repository>@<digest>`: how ACR import names an image in a source registry."""
        return f"{self.repository}@{self.digest}"

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"
