"""Promotion dev -> prod, the register CLI, and the stack-file writer they share."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from delivery import __main__ as delivery_cli
from delivery import promote
from delivery.environment import EnvironmentSpec
from delivery.fake import FakeWorkspace
from delivery.stackconfig import (
    EnvironmentConfig,
    ModelConfig,
    StackConfigError,
    read_server_environment,
    read_stack_config,
    write_stack_config,
)
from delivery.workspace import WorkspaceRef

DEV_ID = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-byom-dev"
    "/providers/Microsoft.MachineLearningServices/workspaces/mlw-byom-dev"
)
PROD_ID = DEV_ID.replace("dev", "prod")
PROD_STACK = """\
# Production: comments and other keys must survive promotion.
config:
  azure-native:location: swedencentral
  azureml-byom:location: swedencentral  # EU only
  azureml-byom:tags:
    owner: ml-platform@example.com
"""


@pytest.fixture
def workspaces(tmp_path: Path) -> dict[str, FakeWorkspace]:
    """Dev and prod workspaces, keyed by workspace name."""
    return {
        "mlw-byom-dev": FakeWorkspace(WorkspaceRef.parse(DEV_ID), storage=tmp_path / "dev-store"),
        "mlw-byom-prod": FakeWorkspace(
            WorkspaceRef.parse(PROD_ID), storage=tmp_path / "prod-store"
        ),
    }


@pytest.fixture
def project(tmp_path: Path, tiny_model: Path, workspaces: dict[str, FakeWorkspace]) -> Path:
    """A project whose dev stack has registered the tiny model with the register CLI."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.dev.yaml").write_text("config:\n  azureml-byom:location: swedencentral\n")
    (project / "Pulumi.prod.yaml").write_text(PROD_STACK)
    out = io.StringIO()
    status = delivery_cli.main(
        [
            "register",
            "--stack",
            "dev",
            "--workspace-id",
            DEV_ID,
            "--project-dir",
            str(project),
            "--name",
            "tiny-llm",
            "--source",
            str(tiny_model),
        ],
        workspace_factory=lambda ref: workspaces[ref.workspace_name],
        out=out,
    )
    assert status == 0, out.getvalue()
    return project


def _promote(project: Path, workspaces: dict[str, FakeWorkspace], *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    status = promote.main(
        [
            "--from",
            "dev",
            "--to",
            "prod",
            "--project-dir",
            str(project),
            "--from-workspace-id",
            DEV_ID,
            "--to-workspace-id",
            PROD_ID,
            *extra,
        ],
        workspace_factory=lambda ref: workspaces[ref.workspace_name],
        out=out,
    )
    return status, out.getvalue()


def test_register_records_model_and_environment_in_the_dev_stack(
    project: Path, workspaces: dict[str, FakeWorkspace]
) -> None:
    """The register CLI registers both assets and writes byom:model / byom:environment."""
    model, environment = read_stack_config(project / "Pulumi.dev.yaml")
    assert model is not None
    assert environment == EnvironmentConfig("byom-inference-gpu", EnvironmentSpec().version)
    dev = workspaces["mlw-byom-dev"]
    assert (model.name, model.version) in dev.models
    assert dev.models[(model.name, model.version)].tags["contentHash"] == model.content_hash


def test_dry_run_prints_the_plan_and_changes_nothing(
    project: Path, workspaces: dict[str, FakeWorkspace]
) -> None:
    """--dry-run names model, version, hash and environment; prod and its stack file stay as is."""
    model, environment = read_stack_config(project / "Pulumi.dev.yaml")
    status, output = _promote(project, workspaces, "--dry-run")
    assert status == 0
    assert "promote dev -> prod (via copy)" in output
    assert f"model:       {model.name}" in output
    assert f"version:     {model.version}" in output
    assert f"hash:        {model.content_hash}" in output
    assert f"environment: {environment.name}:{environment.version}" in output
    assert "dry run: nothing copied, Pulumi.prod.yaml unchanged" in output
    assert (project / "Pulumi.prod.yaml").read_text() == PROD_STACK
    assert workspaces["mlw-byom-prod"].mutations == []


def test_promotion_copies_the_same_bytes_to_the_same_version(
    project: Path, workspaces: dict[str, FakeWorkspace]
) -> None:
    """Prod gets the model under dev's version and hash, and Pulumi.prod.yaml names it."""
    status, output = _promote(project, workspaces)
    assert status == 0, output
    model, environment = read_stack_config(project / "Pulumi.dev.yaml")
    prod = workspaces["mlw-byom-prod"]
    assert list(prod.models) == [(model.name, model.version)]
    assert prod.models[(model.name, model.version)].tags["contentHash"] == model.content_hash
    server = read_server_environment(project / "Pulumi.dev.yaml")
    assert server is not None  # `register` records the OpenAI server's image too
    assert list(prod.environments) == [
        (environment.name, environment.version),
        (server.name, server.version),
    ]
    assert read_stack_config(project / "Pulumi.prod.yaml") == (model, environment)
    assert read_server_environment(project / "Pulumi.prod.yaml") == server
    text = (project / "Pulumi.prod.yaml").read_text()
    assert text.startswith(PROD_STACK)  # comments and other keys kept
    # promoting again is a no-op for prod's assets
    prod.mutations.clear()
    assert _promote(project, workspaces)[0] == 0
    assert prod.mutations == []


def test_promotion_through_a_registry_records_the_registry(
    project: Path, workspaces: dict[str, FakeWorkspace]
) -> None:
    """--via registry:<name> shares the version and prod deploys the registry asset."""
    status, output = _promote(project, workspaces, "--via", "registry:byom-registry")
    assert status == 0, output
    model, _ = read_stack_config(project / "Pulumi.prod.yaml")
    assert model.registry == "byom-registry"
    assert model.asset_id == (
        f"azureml://registries/byom-registry/models/{model.name}/versions/{model.version}"
    )
    assert ("byom-registry", model.name, model.version) in workspaces["mlw-byom-dev"].registry
    assert workspaces["mlw-byom-prod"].models == {}


def test_a_hash_mismatch_in_dev_stops_promotion(
    project: Path, workspaces: dict[str, FakeWorkspace]
) -> None:
    """If dev's asset does not carry the hash the stack file names, nothing is promoted."""
    model, _ = read_stack_config(project / "Pulumi.dev.yaml")
    workspaces["mlw-byom-dev"].models[(model.name, model.version)].tags["contentHash"] = "sha256:0"
    status, _ = _promote(project, workspaces)
    assert status == 1
    assert (project / "Pulumi.prod.yaml").read_text() == PROD_STACK


def test_altered_bytes_are_not_promoted(
    project: Path, workspaces: dict[str, FakeWorkspace]
) -> None:
    """The downloaded copy is re-hashed; bytes that changed in storage are refused."""
    model, _ = read_stack_config(project / "Pulumi.dev.yaml")
    stored = Path(workspaces["mlw-byom-dev"].models[(model.name, model.version)].path)
    (stored / "config.json").write_text('{"model_type": "tampered"}')
    status, _ = _promote(project, workspaces)
    assert status == 1
    assert workspaces["mlw-byom-prod"].models == {}


def test_the_writer_replaces_blocks_in_place(tmp_path: Path) -> None:
    """Writing twice replaces the blocks (no duplicates) and leaves other lines alone."""
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(PROD_STACK + "  azureml-byom:network:\n    private: true\n")
    first = ModelConfig("m", "0123456789abcdef", "sha256:0123456789abcdef" + "0" * 48)
    second = ModelConfig("m", "fedcba9876543210", "sha256:fedcba9876543210" + "0" * 48, "reg")
    write_stack_config(path, first, EnvironmentConfig("e", "1"))
    write_stack_config(path, second, EnvironmentConfig("e", "2"))
    text = path.read_text()
    assert text.count("byom:model:") == 1
    assert "  azureml-byom:network:\n    private: true\n" in text
    assert read_stack_config(path) == (second, EnvironmentConfig("e", "2"))


def test_a_version_that_does_not_match_its_hash_is_rejected() -> None:
    """byom:model's version must be the prefix of its contentHash."""
    with pytest.raises(StackConfigError, match="does not match contentHash"):
        ModelConfig("m", "1", "sha256:" + "a" * 64)
