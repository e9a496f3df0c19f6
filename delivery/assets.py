"""Asset identity, shared by delivery and infra without azure-ai-ml: versions derived from content
hashes, and the references a deployment names."""

from __future__ import annotations

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
