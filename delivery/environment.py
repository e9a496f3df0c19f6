"""The GPU inference environments: the pinned conda spec in `environments/` on a pinned base image.

Two servers, two environments. `EnvironmentSpec`: the conda spec on the base image; Azure ML's
inference server runs `score.py` in it. `ServerImageSpec`: the OpenAI-compatible server
(`python -m scoring.serve`) as a custom container, built by Azure ML from
`environments/openai-server/` (the same conda spec and base image, the server's pins, and the
scoring files that serve, `delivery.codeasset.server_files`, baked in) with an
`inference_config` for its probes and scoring route.

Each version is a hash of everything its image is built from, so editing any of it registers a
new environment version and re-running with the same inputs reuses the registered one.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from azure.ai.ml.entities import BuildContext, Environment

from delivery.assets import environment_asset_id
from delivery.codeasset import SCORING_DIR, server_files
from delivery.packaging import HASH_PREFIX, AssetConflictError, version_from_hash
from delivery.workspace import WorkspaceClient

# Azure ML's OpenMPI + CUDA 12.4 base image (Ubuntu 22.04), the base of the curated GPU
# environments in Azure/azureml-assets. A dated tag, never `latest`: same tag, same image.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-cuda12.4-ubuntu22.04:20260621.v1"
ENVIRONMENTS_DIR = Path(__file__).resolve().parent.parent / "environments"
CONDA_FILE = ENVIRONMENTS_DIR / "inference-gpu.conda.yaml"
ENVIRONMENT_NAME = "byom-inference-gpu"

TAG_SPEC_HASH = "specHash"

SERVER_DIR = ENVIRONMENTS_DIR / "openai-server"
# The module the image's command runs (`python -m scoring.serve`, the Dockerfile's CMD).
SERVER_ENTRY = "serve.py"
SERVER_ENVIRONMENT_NAME = "byom-openai-server"
SERVER_PORT = 8000
# Custom-container routes (the vLLM / TGI pattern on managed online endpoints): with the scoring
# route at `/`, https://<endpoint>.<region>.inference.ml.azure.com/v1/chat/completions reaches
# the container's /v1/chat/completions unchanged.
INFERENCE_CONFIG: dict[str, dict[str, Any]] = {
    "liveness_route": {"port": SERVER_PORT, "path": "/health"},
    "readiness_route": {"port": SERVER_PORT, "path": "/ready"},
    "scoring_route": {"port": SERVER_PORT, "path": "/"},
}


class Spec(Protocol):
    """What `register_environment` needs of an environment spec."""

    name: str

    @property
    def spec_hash(self) -> str: ...

    @property
    def version(self) -> str: ...

    def staged(self) -> Any:
        """A context manager giving the azure-ai-ml Environment, valid inside it."""
        ...


class _HashVersioned:
    """Version and asset reference derived from a spec hash: one rule for every image spec."""

    name: str

    @property
    def spec_hash(self) -> str:
        raise NotImplementedError

    @property
    def version(self) -> str:
        """The environment version derived from the spec hash."""
        return version_from_hash(self.spec_hash)

    @property
    def asset_id(self) -> str:
        """The workspace asset reference a deployment names: `azureml:<name>:<version>`."""
        return environment_asset_id(self.name, self.version)


@dataclass(frozen=True)
class EnvironmentSpec(_HashVersioned):
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

    @contextmanager
    def staged(self) -> Iterator[Environment]:
        yield self.to_environment()


@dataclass(frozen=True)
class ServerImageSpec(_HashVersioned):
    """The OpenAI-compatible server's image: a Docker build context Azure ML builds."""

    name: str = SERVER_ENVIRONMENT_NAME
    image: str = BASE_IMAGE
    server_dir: Path = SERVER_DIR
    conda_file: Path = CONDA_FILE
    scoring_dir: Path = SCORING_DIR

    def _files(self) -> list[tuple[str, Path]]:
        """(path in the build context, source file), in a fixed order."""
        files = [
            ("Dockerfile", self.server_dir / "Dockerfile"),
            ("requirements.txt", self.server_dir / "requirements.txt"),
            (self.conda_file.name, self.conda_file),
        ]
        # Only what the server imports: the client, CLI, report and demo tools stay out.
        files += [
            (f"scoring/{relative}", self.scoring_dir / relative)
            for relative in server_files(self.scoring_dir, SERVER_ENTRY)
        ]
        return files

    @property
    def spec_hash(self) -> str:
        """sha256 over the base image and every file of the build context, names included."""
        digest = hashlib.sha256()
        digest.update(self.image.encode("utf-8") + b"\0")
        for name, path in self._files():
            digest.update(name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
        return HASH_PREFIX + digest.hexdigest()

    def stage(self, into: Path) -> Path:
        """Write the build context into ``into``: the Dockerfile with its base image filled in
        (Azure ML builds take no build arguments), the conda spec, pins and scoring package."""
        for name, source in self._files():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        dockerfile = into / "Dockerfile"
        text = dockerfile.read_text(encoding="utf-8")
        if "ARG BASE_IMAGE\n" not in text:
            raise ValueError(f"{self.server_dir / 'Dockerfile'} must declare 'ARG BASE_IMAGE'")
        dockerfile.write_text(text.replace("ARG BASE_IMAGE\n", f"ARG BASE_IMAGE={self.image}\n"))
        return into

    def to_environment(self, context: Path) -> Environment:
        return Environment(
            name=self.name,
            version=self.version,
            build=BuildContext(path=str(context)),
            inference_config=INFERENCE_CONFIG,
            description="OpenAI-compatible server (scoring.serve) for the azureml-byom model",
            tags={TAG_SPEC_HASH: self.spec_hash},
        )

    @contextmanager
    def staged(self) -> Iterator[Environment]:
        """The environment, its build context staged in a temporary folder for the upload."""
        with tempfile.TemporaryDirectory(prefix="byom-server-image-") as folder:
            yield self.to_environment(self.stage(Path(folder)))


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
        return environment_asset_id(self.name, self.version)


def register_environment(
    workspace: WorkspaceClient, spec: Spec | None = None
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
                f"{registered!r}, but the local spec hashes to {spec_hash}"
            )
        return RegisteredEnvironment(spec.name, spec.version, spec_hash, created=False)
    with spec.staged() as environment:  # a build context exists only while it is uploaded
        workspace.create_environment(environment)
    return RegisteredEnvironment(spec.name, spec.version, spec_hash, created=True)
