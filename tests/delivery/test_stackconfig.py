"""The stack file module: one reader, one parser of the delivery blocks, a round-trip writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from delivery.stackconfig import (
    EnvironmentConfig,
    ModelConfig,
    StackConfigError,
    pulumi_config,
    read_stack_config,
    write_stack_config,
)

REPO = Path(__file__).resolve().parents[2]
# The blocks an earlier release wrote (a comment above them must survive too).
RELEASED = """\
  # Written by the delivery CLI.
  byom:model:
    name: "smollm2-135m-instruct"
    version: "3f2a9c0d1b4e5f67"
    contentHash: "sha256:3f2a9c0d1b4e5f67a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1"
  byom:environment:
    name: "byom-inference-gpu"
    version: "9a8b7c6d5e4f3a2b"
"""
NEW_MODEL = ModelConfig("m", "fedcba9876543210", "sha256:fedcba9876543210" + "0" * 48, "reg")


def test_writing_the_delivery_blocks_changes_nothing_else(tmp_path: Path) -> None:
    """Comments, quoting, lists and every other key of a real stack file survive a write."""
    path = tmp_path / "Pulumi.prod.yaml"
    shutil.copy(REPO / "Pulumi.prod.yaml", path)
    with path.open("a") as stack:
        stack.write(RELEASED)
    before = path.read_text().splitlines()
    write_stack_config(path, NEW_MODEL, EnvironmentConfig("e", "2"))
    after = path.read_text().splitlines()
    changed = [line for line in after if line not in before]
    assert changed == [
        '    name: "m"',
        '    version: "fedcba9876543210"',
        f'    contentHash: "{NEW_MODEL.content_hash}"',
        '    registry: "reg"',
        '    name: "e"',
        '    version: "2"',
    ]
    assert [line for line in before if line.lstrip().startswith("#")] == [
        line for line in after if line.lstrip().startswith("#")
    ]
    assert read_stack_config(path) == (NEW_MODEL, EnvironmentConfig("e", "2"))


def test_a_new_file_gets_a_config_section(tmp_path: Path) -> None:
    """Writing into a missing file creates `config:` with the blocks in block style."""
    path = tmp_path / "Pulumi.dev.yaml"
    write_stack_config(path, NEW_MODEL)
    assert path.read_text().startswith('config:\n  byom:model:\n    name: "m"\n')
    assert read_stack_config(path) == (NEW_MODEL, None)


def test_a_block_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    """A typo in a delivery block is an error naming the block, not a silent default."""
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text('config:\n  byom:environment:\n    name: "e"\n    versoin: "1"\n')
    with pytest.raises(
        StackConfigError,
        match=r"byom:environment.versoin = '1' is invalid; allowed: one of the known keys",
    ):
        read_stack_config(path)


def test_the_runtime_config_encodes_objects_as_json() -> None:
    """The offline plan gets the file as the Pulumi CLI passes it: objects as JSON strings."""
    project, config = pulumi_config(REPO, "dev")
    assert project == "azureml-byom"
    assert config["azureml-byom:location"] == "swedencentral"
    assert json.loads(config["azureml-byom:tags"])["costCenter"]
