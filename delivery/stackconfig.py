"""The delivery keys in `Pulumi.<stack>.yaml`: which model and environment a stack deploys.

    config:
      byom:model:
        name: "smollm2-135m-instruct"
        version: "3f2a9c0d1b4e5f67"
        contentHash: "sha256:3f2a9c0d1b4e5f67..."
        registry: "byom-registry"        # only when promoted through an Azure ML registry
      byom:environment:
        name: "byom-inference-gpu"
        version: "9a8b7c6d5e4f3a2b"
      byom:serverEnvironment:            # the OpenAI-compatible server's image (server: openai)
        name: "byom-openai-server"
        version: "150a171e851fad01"

The CLIs write these blocks and leave every other line (and comment) of the file as it was.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from delivery.packaging import model_asset_id, version_from_hash
from delivery.workspace import WorkspaceRef

MODEL_KEY = "byom:model"
ENVIRONMENT_KEY = "byom:environment"
SERVER_ENVIRONMENT_KEY = "byom:serverEnvironment"
WORKSPACE_OUTPUT = "workspaceId"


class StackConfigError(ValueError):
    """A stack file is missing or holds inconsistent delivery keys."""


@dataclass(frozen=True)
class ModelConfig:
    """`byom:model`: the exact model version a stack deploys."""

    name: str
    version: str
    content_hash: str
    registry: str | None = None

    def __post_init__(self) -> None:
        if version_from_hash(self.content_hash) != self.version:
            raise StackConfigError(
                f"{MODEL_KEY}: version {self.version!r} does not match contentHash "
                f"{self.content_hash!r} (expected {version_from_hash(self.content_hash)!r})"
            )

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


@dataclass(frozen=True)
class EnvironmentConfig:
    """`byom:environment`: the environment version a stack deploys."""

    name: str
    version: str

    @property
    def asset_id(self) -> str:
        """The workspace asset reference a deployment names."""
        return f"azureml:{self.name}:{self.version}"

    def to_yaml(self) -> dict[str, str]:
        """The block as written to the stack file."""
        return {"name": self.name, "version": self.version}


def stack_file(project_dir: Path, stack: str) -> Path:
    """`<project>/Pulumi.<stack>.yaml`."""
    return Path(project_dir, f"Pulumi.{stack}.yaml")


def read_stack_config(path: Path) -> tuple[ModelConfig | None, EnvironmentConfig | None]:
    """The delivery blocks of a stack file (None for a block it lacks)."""
    if not path.is_file():
        raise StackConfigError(f"{path} does not exist")
    config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    model = environment = None
    try:
        if MODEL_KEY in config:
            block = config[MODEL_KEY]
            model = ModelConfig(
                name=str(block["name"]),
                version=str(block["version"]),
                content_hash=str(block["contentHash"]),
                registry=block.get("registry"),
            )
        if ENVIRONMENT_KEY in config:
            block = config[ENVIRONMENT_KEY]
            environment = EnvironmentConfig(str(block["name"]), str(block["version"]))
    except (KeyError, TypeError) as exc:
        raise StackConfigError(f"{path}: delivery block is missing {exc}") from exc
    return model, environment


def read_server_environment(path: Path) -> EnvironmentConfig | None:
    """`byom:serverEnvironment` of a stack file, if it has one."""
    if not path.is_file():
        raise StackConfigError(f"{path} does not exist")
    config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    block = config.get(SERVER_ENVIRONMENT_KEY)
    if block is None:
        return None
    try:
        return EnvironmentConfig(str(block["name"]), str(block["version"]))
    except (KeyError, TypeError) as exc:
        raise StackConfigError(f"{path}: {SERVER_ENVIRONMENT_KEY} is missing {exc}") from exc


def write_stack_config(
    path: Path,
    model: ModelConfig | None = None,
    environment: EnvironmentConfig | None = None,
    server_environment: EnvironmentConfig | None = None,
) -> None:
    """Set the delivery blocks in a stack file, creating the file or `config:` if needed."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    blocks = (
        (MODEL_KEY, model),
        (ENVIRONMENT_KEY, environment),
        (SERVER_ENVIRONMENT_KEY, server_environment),
    )
    for key, block in blocks:
        if block is not None:
            text = _set_block(text, key, block.to_yaml())
    parsed = (yaml.safe_load(text) or {}).get("config", {})
    for key, block in blocks:
        if block is not None and parsed.get(key) != block.to_yaml():
            raise StackConfigError(f"could not write {key} into {path}: unexpected layout")
    path.write_text(text, encoding="utf-8")


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


def _set_block(text: str, key: str, values: dict[str, str]) -> str:
    # Pulumi writes stack files with two-space indentation; the block keeps that layout.
    block = [f"  {key}:"] + [f"    {k}: {json.dumps(v)}" for k, v in values.items()]
    lines = text.splitlines()
    try:
        config_at = lines.index("config:")
    except ValueError:
        return "\n".join([*lines, "config:", *block]) + "\n"
    end = len(lines)
    for i in range(config_at + 1, len(lines)):
        line = lines[i]
        if line and not line.startswith((" ", "#")):
            end = i
            break
    start = next((i for i in range(config_at + 1, end) if lines[i].startswith(f"  {key}:")), None)
    if start is None:
        insert_at = end
        while insert_at > config_at + 1 and not lines[insert_at - 1].strip():
            insert_at -= 1  # keep trailing blank lines after the config section
        lines[insert_at:insert_at] = block
    else:
        stop = start + 1
        while stop < end and (lines[stop].startswith("    ") or not lines[stop].strip()):
            stop += 1
        while stop > start + 1 and not lines[stop - 1].strip():
            stop -= 1
        lines[start:stop] = block
    return "\n".join(lines) + "\n"
