"""The GPU inference environment: the pinned conda spec in `environments/` on a pinned base image.

The version is a hash of the spec file and the base image, so editing either registers a new
environment version and re-running with the same spec reuses the registered one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from azure.ai.ml.entities import Environment

from delivery.packaging import HASH_PREFIX, AssetConflictError, version_from_hash
from delivery.workspace import WorkspaceClient

# Azure ML's OpenMPI + CUDA 12.4 base image (Ubuntu 22.04), the base of the curated GPU
# environments in Azure/azureml-assets. A dated tag, never `latest`: same tag, same image.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-cuda12.4-ubuntu22.04:20260621.v1"
ENVIRONMENTS_DIR = Path(__file__).resolve().parent.parent / "environments"
CONDA_FILE = ENVIRONMENTS_DIR / "inference-gpu.conda.yaml"
ENVIRONMENT_NAME = "byom-inference-gpu"

TAG_SPEC_HASH = "specHash"


@dataclass(frozen=True)
class EnvironmentSpec:
    """A conda file on a base image, with the version both hash to."""

    name: str = ENVIRONMENT_NAME
    conda_file: Path = CONDA_FILE
    image: str = BASE_IMAGE

    @property
    def spec_hash(self) -> str:
        """sha256 over the base image reference and the conda file's bytes."""
        digest = hashlib.sha256()
        digest.update(self.image.encode("utf-8") + b"\0")
        digest.update(Path(self.conda_file).read_bytes())
        return HASH_PREFIX + digest.hexdigest()

    @property
    def version(self) -> str:
        """The environment version derived from the spec hash."""
        return version_from_hash(self.spec_hash)

    @property
    def asset_id(self) -> str:
        """The workspace asset reference a deployment names: `azureml:<name>:<version>`."""
        return f"azureml:{self.name}:{self.version}"

    def to_environment(self) -> Environment:
        """The azure-ai-ml environment entity (Azure ML builds the image on first use)."""
        return Environment(
            name=self.name,
            version=self.version,
            image=self.image,
            conda_file=str(self.conda_file),
            description="GPU inference image for the azureml-byom scoring package",
            tags={TAG_SPEC_HASH: self.spec_hash},
        )


@dataclass(frozen=True)
class RegisteredEnvironment:
    """The outcome of `register_environment`."""

    name: str
    version: str
    spec_hash: str
    created: bool

    @property
    def asset_id(self) -> str:
        """The workspace asset reference a deployment names."""
        return f"azureml:{self.name}:{self.version}"


def register_environment(
    workspace: WorkspaceClient, spec: EnvironmentSpec | None = None
) -> RegisteredEnvironment:
    """Register the environment unless this exact spec is already registered."""
    spec = spec or EnvironmentSpec()
    spec_hash = spec.spec_hash
    existing = workspace.get_environment(spec.name, spec.version)
    if existing is not None:
        registered = (existing.tags or {}).get(TAG_SPEC_HASH)
        if registered != spec_hash:
            raise AssetConflictError(
                f"environment {spec.name}:{spec.version} is registered with spec hash "
                f"{registered!r}, but {spec.conda_file} on {spec.image} hashes to {spec_hash}"
            )
        return RegisteredEnvironment(spec.name, spec.version, spec_hash, created=False)
    workspace.create_environment(spec.to_environment())
    return RegisteredEnvironment(spec.name, spec.version, spec_hash, created=True)
