"""Fixtures: tiny safetensors model folders and an in-memory workspace with one endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from delivery.environment import EnvironmentSpec, register_environment
from delivery.fake import FakeWorkspace
from delivery.packaging import LocalFolder, package_model, register_model
from delivery.rollout import DeploymentSpec, RolloutPolicy, RolloutResult, rollout

ENDPOINT = "byom-generate-dev"


def write_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A complete, tiny Hugging Face folder: config, tokenizer, safetensors weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "hidden_size": 8, "vocab_size": 16}), encoding="utf-8"
    )
    (folder / "tokenizer.json").write_text(
        json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}),
        encoding="utf-8",
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": "{{ messages }}"}), encoding="utf-8"
    )
    generator = torch.Generator().manual_seed(seed)
    save_file(
        {"embed.weight": torch.randn(16, 8, generator=generator)},
        str(folder / "model.safetensors"),
    )
    return folder


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A fresh tiny model folder."""
    return write_tiny_model(tmp_path / "tiny-llm")


@pytest.fixture
def fake(tmp_path: Path) -> FakeWorkspace:
    """A workspace holding one endpoint with no deployments, like a fresh infrastructure stack."""
    workspace = FakeWorkspace(storage=tmp_path / "service-storage")
    workspace.add_endpoint(ENDPOINT)
    return workspace


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A stand-in scoring package folder (the rollout only uploads and hashes it)."""
    folder = tmp_path / "scoring"
    folder.mkdir()
    (folder / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return {}\n")
    return folder


@pytest.fixture
def fast_policy() -> RolloutPolicy:
    """Real steps, no waiting."""
    return RolloutPolicy(traffic_steps=(10, 100), step_wait_s=0, poll_interval_s=0)


def register_spec(
    workspace: FakeWorkspace, model_dir: Path, code_dir: Path, **overrides
) -> DeploymentSpec:
    """Register the folder and the environment, and describe a generate deployment of them."""
    model = register_model(workspace, package_model("tiny-llm", LocalFolder(model_dir)))
    environment = register_environment(workspace, EnvironmentSpec())
    values = {
        "pattern": "generate",
        "model": model.asset_id,
        "environment": environment.asset_id,
        "instance_type": "Standard_NC4as_T4_v3",
        "instance_count": 1,
        "code_dir": str(code_dir),
        "environment_variables": {"SCORING_PATTERNS": "generate", "WORKER_COUNT": "1"},
    }
    values.update(overrides)
    return DeploymentSpec(**values)


def deploy(
    workspace: FakeWorkspace, spec: DeploymentSpec, policy: RolloutPolicy, **kwargs: Any
) -> RolloutResult:
    """Roll ``spec`` out to the test endpoint without waiting between polls."""
    return rollout(workspace, ENDPOINT, spec, policy, sleep=lambda _: None, **kwargs)
