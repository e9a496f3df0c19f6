"""The stack file, `Pulumi.<stack>.yaml`: the one module that reads and writes it.

    config:
      byom:model:
        name: "smollm2-135m-instruct"
        version: "3f2a9c0d1b4e5f67"
        contentHash: "sha256:3f2a9c0d1b4e5f67..."
        registry: "byom-registry"        # only when promoted through an Azure ML registry
      byom:environment:
        name: "byom-inference-gpu"
        version: "9a8b7c6d5e4f3a2b"
        # only in a stack promoted to: the image dev built, imported into this stack's registry
        image: "crbyomprod.azurecr.io/byom/byom-inference-gpu@sha256:4f1d..."
      byom:serverEnvironment:            # the OpenAI-compatible server's image (server: openai)
        name: "byom-openai-server"
        version: "150a171e851fad01"

`pulumi_config()` hands the whole file to the Pulumi runtime (the offline plan, the policy
check); `ModelConfig`/`EnvironmentConfig` are the one parser of the delivery blocks (infra's
config uses them too); the CLIs write those blocks with a round-trip YAML editor (ruamel.yaml)
that leaves every other line and comment of the file as it was.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from delivery.assets import ImageRef, environment_asset_id, model_asset_id, version_from_hash
from delivery.fields import SPEC_CONFIG, Spec, Text, first_error
from delivery.workspace import WorkspaceRef

DELIVERY_NAMESPACE = "byom"
MODEL_KEY = f"{DELIVERY_NAMESPACE}:model"
ENVIRONMENT_KEY = f"{DELIVERY_NAMESPACE}:environment"
SERVER_ENVIRONMENT_KEY = f"{DELIVERY_NAMESPACE}:serverEnvironment"
WORKSPACE_OUTPUT = "workspaceId"
# Validation context under which a model block's version is not checked against its hash: infra
# reads what the delivery CLI wrote and checked.
UNCHECKED_VERSION = "unchecked_version"


class StackConfigError(Exception):
    """A stack file is missing or holds inconsistent delivery keys."""


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class ModelConfig(Spec):
    """`byom:model`: the exact model version a stack deploys."""

    name: Text
    version: Text
    content_hash: Text
    registry: Text | None = None

    @model_validator(mode="after")
    def _version_matches_hash(self, info: ValidationInfo) -> ModelConfig:
        if (info.context or {}).get(UNCHECKED_VERSION):
            return self
        # Not a ValueError: it reaches the caller as itself, not as a pydantic error.
        if version_from_hash(self.content_hash) != self.version:
            raise StackConfigError(
                f"{MODEL_KEY}: version {self.version!r} does not match contentHash "
                f"{self.content_hash!r} (expected {version_from_hash(self.content_hash)!r})"
            )
        return self

    @property
    def asset_id(self) -> str:
        """The reference a deployment names (registry or workspace asset)."""
        return model_asset_id(self.name, self.version, self.registry)

    def to_yaml(self) -> dict[str, str]:
        """The block as written to the stack file."""
        block = {"name": self.name, "version": self.version, "contentHash": self.content_hash}
        if self.registry:
            block["registry"] = self.registry
        return block


@pydantic_dataclass(frozen=True, config=SPEC_CONFIG)
class EnvironmentConfig(Spec):
    """`byom:environment`: the environment version a stack deploys."""

    name: Text
    version: Text
    image: Text | None = None
    """The image by digest the environment was registered from in this stack (written by
    `delivery.promote`); None: the workspace builds it from the spec in `environments/`."""

    @field_validator("image")
    @classmethod
    def _image_by_digest(cls, image: str | None) -> str | None:
        if image is not None:
            ImageRef.parse(image)  # its ValueError says what an image by digest looks like
        return image

    @property
    def asset_id(self) -> str:
        """The workspace asset reference a deployment names."""
        return environment_asset_id(self.name, self.version)

    def to_yaml(self) -> dict[str, str]:
        """The block as written to the stack file."""
        block = {"name": self.name, "version": self.version}
        if self.image:
            block["image"] = self.image
        return block


def stack_file(project_dir: Path, stack: str) -> Path:
    """`<project>/Pulumi.<stack>.yaml`."""
    return Path(project_dir, f"Pulumi.{stack}.yaml")


def read_config(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file, as plain values."""
    if not path.is_file():
        raise StackConfigError(f"{path} does not exist")
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}


def pulumi_config(project_dir: Path, stack: str) -> tuple[str, dict[str, str]]:
    """Project name and the stack file's config, encoded as the Pulumi runtime expects."""
    project = yaml.safe_load((Path(project_dir) / "Pulumi.yaml").read_text())["name"]
    path = stack_file(project_dir, stack)
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.name} in {project_dir}")
    config: dict[str, str] = {}
    for key, value in read_config(path).items():
        full = key if ":" in key else f"{project}:{key}"
        # Structured values travel as JSON strings, exactly as the CLI passes them.
        config[full] = value if isinstance(value, str) else json.dumps(value)
    return project, config


def read_stack_config(path: Path) -> tuple[ModelConfig | None, EnvironmentConfig | None]:
    """The delivery blocks of a stack file (None for a block it lacks)."""
    config = read_config(path)
    return (
        _read_block(path, config, MODEL_KEY, ModelConfig),
        _read_block(path, config, ENVIRONMENT_KEY, EnvironmentConfig),
    )


def _read_block(path: Path, config: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    block = config.get(key)
    if block is None:
        return None
    try:
        return TypeAdapter(kind).validate_python(block)
    except ValidationError as exc:
        where, value, allowed = first_error(exc)
        raise StackConfigError(
            f"{path}: {key}.{where} = {value!r} is invalid; allowed: {allowed}"
        ) from None


def read_server_environment(path: Path) -> EnvironmentConfig | None:
    """`byom:serverEnvironment` of a stack file, if it has one."""
    return _read_block(path, read_config(path), SERVER_ENVIRONMENT_KEY, EnvironmentConfig)


def write_stack_config(
    path: Path,
    model: ModelConfig | None = None,
    environment: EnvironmentConfig | None = None,
    server_environment: EnvironmentConfig | None = None,
) -> None:
    """Set the delivery blocks in a stack file, creating the file or `config:` if needed."""
    editor = YAML()
    editor.preserve_quotes = True
    # Pulumi writes stack files with two-space indentation; lists indented under their key.
    editor.indent(mapping=2, sequence=4, offset=2)
    editor.width = 4096
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    document = (editor.load(text) if text.strip() else None) or CommentedMap()
    if document.get("config") is None:
        document["config"] = CommentedMap()
    blocks = (
        (MODEL_KEY, model),
        (ENVIRONMENT_KEY, environment),
        (SERVER_ENVIRONMENT_KEY, server_environment),
    )
    for key, block in blocks:
        if block is not None:
            values = {k: DoubleQuotedScalarString(v) for k, v in block.to_yaml().items()}
            document["config"][key] = CommentedMap(values)
    out = io.StringIO()
    editor.dump(document, out)
    path.write_text(out.getvalue(), encoding="utf-8")


def stack_outputs(stack: str) -> dict[str, Any]:
    """The stack's outputs, read with the pulumi CLI (no lock is taken)."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise StackConfigError(
            f"the pulumi CLI must be on PATH to read the outputs of stack {stack!r}"
        )
    completed = subprocess.run(
        [pulumi, "stack", "output", "--json", "--stack", stack],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise StackConfigError(f"pulumi stack output --stack {stack} failed: {completed.stderr}")
    return json.loads(completed.stdout or "{}")


def resolve_workspace(workspace_id: str | None, stack: str) -> WorkspaceRef:
    """The workspace from an explicit ARM id, else from the stack output `workspaceId`."""
    if workspace_id:
        return WorkspaceRef.parse(workspace_id)
    if shutil.which("pulumi") is None:
        raise StackConfigError(
            f"no workspace id for stack {stack!r}: pass --workspace-id (or the pulumi CLI must be "
            f"on PATH to read the stack output {WORKSPACE_OUTPUT!r})"
        )
    outputs = stack_outputs(stack)
    if WORKSPACE_OUTPUT not in outputs:
        raise StackConfigError(f"stack {stack!r} exports no {WORKSPACE_OUTPUT!r} output")
    return WorkspaceRef.parse(outputs[WORKSPACE_OUTPUT])
