"""Promotion dev -> prod, the register CLI, and the stack-file writer they share."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from delivery import __main__ as delivery_cli
from delivery import promote
from delivery.assets import ImageRef
from delivery.environment import EnvironmentSpec, register_environment
from delivery.fake import FakeRegistry, FakeWorkspace, ImageBuildError
from delivery.spec import DeploymentSpec
from delivery.stackconfig import (
    EnvironmentConfig,
    ModelConfig,
    StackConfigError,
    read_server_environment,
    read_stack_config,
    write_stack_config,
)
from delivery.workspace import WorkspaceRef, deployment_entity

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
    """Dev and prod workspaces, keyed by workspace name, with their registries in one tenant.

    Prod is locked down as Pulumi.prod.yaml declares it: managed network with approved outbound
    only and no package host, registry without public access or export."""
    tenant: dict[str, FakeRegistry] = {}
    dev, prod = WorkspaceRef.parse(DEV_ID), WorkspaceRef.parse(PROD_ID)
    return {
        "mlw-byom-dev": FakeWorkspace(
            dev,
            storage=tmp_path / "dev-store",
            isolation_mode="AllowInternetOutbound",
            acr=FakeRegistry(
                "crbyomdev", dev.resource_group, dev.subscription_id, directory=tenant
            ),
        ),
        "mlw-byom-prod": FakeWorkspace(
            prod,
            storage=tmp_path / "prod-store",
            isolation_mode="AllowOnlyApprovedOutbound",
            acr=FakeRegistry(
                "crbyomprod",
                prod.resource_group,
                prod.subscription_id,
                public_network_access="Disabled",
                export_enabled=False,
                directory=tenant,
            ),
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


@pytest.fixture
def built(project: Path, workspaces: dict[str, FakeWorkspace]) -> dict[str, ImageRef]:
    """Dev's release has used both environments, so Azure ML has built their images."""
    dev = workspaces["mlw-byom-dev"]
    _, environment = read_stack_config(project / "Pulumi.dev.yaml")
    server = read_server_environment(project / "Pulumi.dev.yaml")
    assert environment is not None
    assert server is not None
    return {e.name: dev.build_environment(e.name, e.version) for e in (environment, server)}


def _promote(project: Path, workspaces: dict[str, FakeWorkspace], *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    registries = workspaces["mlw-byom-prod"].acr.directory
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
        registry_factory=lambda registry_id: registries[registry_id.lower()],
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
    project: Path, workspaces: dict[str, FakeWorkspace], built: dict[str, ImageRef]
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
    for image in built.values():
        assert f"image:       {image} (imported by digest)" in output
    assert (project / "Pulumi.prod.yaml").read_text() == PROD_STACK
    assert workspaces["mlw-byom-prod"].mutations == []


def test_promotion_copies_the_same_bytes_to_the_same_version(
    project: Path, workspaces: dict[str, FakeWorkspace], built: dict[str, ImageRef]
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
    promoted_model, promoted_environment = read_stack_config(project / "Pulumi.prod.yaml")
    promoted_server = read_server_environment(project / "Pulumi.prod.yaml")
    assert promoted_model == model
    for dev_record, prod_record in ((environment, promoted_environment), (server, promoted_server)):
        assert prod_record is not None
        assert (prod_record.name, prod_record.version) == (dev_record.name, dev_record.version)
        assert prod_record.image is not None  # the digest is recorded with the model
    text = (project / "Pulumi.prod.yaml").read_text()
    assert text.startswith(PROD_STACK)  # comments and other keys kept
    # promoting again is a no-op for prod's assets
    prod.mutations.clear()
    assert _promote(project, workspaces)[0] == 0
    assert prod.mutations == []


def test_promotion_through_a_registry_records_the_registry(
    project: Path, workspaces: dict[str, FakeWorkspace], built: dict[str, ImageRef]
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
    project: Path, workspaces: dict[str, FakeWorkspace], built: dict[str, ImageRef]
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


def test_prod_runs_the_image_dev_built_by_digest(
    project: Path, workspaces: dict[str, FakeWorkspace], built: dict[str, ImageRef]
) -> None:
    """Build in dev, promote: prod's environments name dev's digests in prod's own registry, have
    no conda spec to build, and deploy in the locked-down prod workspace without a build."""
    status, output = _promote(project, workspaces)
    assert status == 0, output
    dev, prod = workspaces["mlw-byom-dev"], workspaces["mlw-byom-prod"]
    _, recorded = read_stack_config(project / "Pulumi.prod.yaml")
    server = read_server_environment(project / "Pulumi.prod.yaml")
    for record in (recorded, server):
        assert record is not None
        assert record.image is not None
        image = ImageRef.parse(record.image)
        assert image.digest == built[record.name].digest  # the same bytes as dev's build
        assert image.registry == prod.acr.login_server
        assert prod.acr.holds(image)
        registered = prod.environments[(record.name, record.version)]
        assert registered.image == record.image
        assert registered.conda_file is None
        assert registered.build is None
        assert prod.built_image(record.name, record.version) == image
    assert [(source, image) for source, image, _ in prod.acr.imports] == [
        (dev.acr.registry_id, built[record.name].source) for record in (recorded, server)
    ]
    # The OpenAI server's image keeps its probes and scoring route (a custom container).
    assert prod.environments[(server.name, server.version)].inference_config is not None
    assert prod.environments[(recorded.name, recorded.version)].inference_config is None
    # Prod deploys it: pulled from its registry, nothing built, no package host needed.
    prod.add_endpoint("byom-generate")
    model, _ = read_stack_config(project / "Pulumi.prod.yaml")
    spec = DeploymentSpec(
        pattern="generate",
        model=model.asset_id,
        environment=recorded.asset_id,
        instance_type="Standard_NC24ads_A100_v4",
    )
    prod.begin_create_or_update_deployment(deployment_entity(spec, "byom-generate", "blue"))
    assert not any(m[0] == "build_environment" for m in prod.mutations)


def test_prod_cannot_build_the_environment_from_its_spec(
    project: Path, workspaces: dict[str, FakeWorkspace]
) -> None:
    """The old path: registering the conda environment in prod and deploying it fails to build,
    naming the environment and the package hosts prod's network does not allow."""
    prod = workspaces["mlw-byom-prod"]
    registered = register_environment(prod, EnvironmentSpec())
    with pytest.raises(ImageBuildError) as failure:
        prod.build_environment(registered.name, registered.version)
    assert f"{registered.name}:{registered.version}" in str(failure.value)
    assert "download.pytorch.org" in str(failure.value)


def test_promotion_needs_the_image_dev_built(
    project: Path, workspaces: dict[str, FakeWorkspace], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before dev's first deployment there is no image: promotion says so and changes nothing."""
    status, _ = _promote(project, workspaces, "--dry-run")
    assert status == 1
    assert "dev has no built image for environment byom-inference-gpu:" in capsys.readouterr().err
    assert (project / "Pulumi.prod.yaml").read_text() == PROD_STACK
    assert workspaces["mlw-byom-prod"].mutations == []


def test_a_digest_dev_no_longer_holds_is_not_promoted(
    project: Path,
    workspaces: dict[str, FakeWorkspace],
    built: dict[str, ImageRef],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Import by a digest the source registry does not hold fails; prod's stack file is unchanged
    and no prod environment names an image prod does not have."""
    image = built["byom-inference-gpu"]
    del workspaces["mlw-byom-dev"].acr.manifests[image.repository][image.digest]
    status, _ = _promote(project, workspaces)
    assert status == 1
    assert f"manifest unknown: crbyomdev.azurecr.io/{image.source}" in capsys.readouterr().err
    assert "byom:environment" not in (project / "Pulumi.prod.yaml").read_text()
    assert workspaces["mlw-byom-prod"].environments == {}
