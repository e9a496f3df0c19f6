"""Promote the exact model validated in one stack (dev) to another (prod).

    python -m delivery.promote --from dev --to prod [--dry-run] [--via copy|registry:<name>]

Reads `byom:model` / `byom:environment` from `Pulumi.<from>.yaml`, checks that the source
workspace holds that model version with that content hash and has built the environment's image,
then either copies the bytes into the target workspace (re-hashed after download, so the version
there is the same) or shares the version through an Azure ML registry. The image the source built
is imported by digest into the target's registry (ACR `importImage`) and the target environment is
registered from that digest, with no conda file: the target builds nothing, so it needs no
outbound rule for packages, and it runs the bytes the source validated (`delivery.images`). The
blocks, the image reference included, go into `Pulumi.<to>.yaml`; the release then rolls it out.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from azure.core.exceptions import HttpResponseError

from delivery.assets import ImageRef
from delivery.environment import (
    INFERENCE_CONFIG,
    TAG_SPEC_HASH,
    EnvironmentSpec,
    ServerImageSpec,
    Spec,
)
from delivery.images import AzureContainerRegistry, RegistryClient, register_image_environment
from delivery.packaging import (
    TAG_CONTENT_HASH,
    TAG_REVISION,
    TAG_SOURCE,
    AssetConflictError,
    PackagedModel,
    register_model,
    tree_hash,
    validate_model_folder,
)
from delivery.stackconfig import (
    EnvironmentConfig,
    ModelConfig,
    StackConfigError,
    read_server_environment,
    read_stack_config,
    resolve_workspace,
    stack_file,
    write_stack_config,
)
from delivery.workspace import AzureMLWorkspace, WorkspaceClient, WorkspaceRef

log = logging.getLogger(__name__)

WorkspaceFactory = Callable[[WorkspaceRef], WorkspaceClient]
RegistryFactory = Callable[[str], RegistryClient]
# Where promoted images live in the target registry: byom/<environment>:<version>.
IMAGE_REPOSITORY_PREFIX = "byom/"


class PromotionError(RuntimeError):
    """The source stack's model cannot be promoted as it is."""


@dataclass(frozen=True)
class PromotionPlan:
    """What moves from one stack to the other."""

    source_stack: str
    target_stack: str
    model: ModelConfig
    environment: EnvironmentConfig
    source_description: str
    via: str
    server_environment: EnvironmentConfig | None = None
    images: Mapping[str, ImageRef] = field(default_factory=dict)
    """The image the source built, by digest, for each environment (by name)."""
    spec_hashes: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The plan as the CLI prints it."""
        return "\n".join(
            [
                f"promote {self.source_stack} -> {self.target_stack} (via {self.via})",
                f"  model:       {self.model.name}",
                f"  version:     {self.model.version}",
                f"  hash:        {self.model.content_hash}",
                f"  source:      {self.source_description}",
                f"  environment: {self.environment.name}:{self.environment.version}",
            ]
            + (
                [f"  server:      {s.name}:{s.version}"]
                if (s := self.server_environment) is not None
                else []
            )
            + [f"  image:       {image} (imported by digest)" for image in self.images.values()]
        )


def plan_promotion(
    project_dir: Path, source: str, target: str, source_workspace: WorkspaceClient, via: str
) -> PromotionPlan:
    """Read what the source stack deploys and verify it against the source workspace."""
    model, environment = read_stack_config(stack_file(project_dir, source))
    if model is None or environment is None:
        raise PromotionError(
            f"Pulumi.{source}.yaml lacks byom:model or byom:environment: register a model for "
            f"{source} first (`python -m delivery register --stack {source} ...`)"
        )
    registered = source_workspace.get_model(model.name, model.version)
    if registered is None:
        raise PromotionError(
            f"{source} workspace has no model {model.name}:{model.version}, which "
            f"Pulumi.{source}.yaml deploys"
        )
    tags = registered.tags or {}
    if tags.get(TAG_CONTENT_HASH) != model.content_hash:
        raise PromotionError(
            f"{model.name}:{model.version} in {source} has content hash "
            f"{tags.get(TAG_CONTENT_HASH)!r}, Pulumi.{source}.yaml says {model.content_hash}"
        )
    if source_workspace.get_environment(environment.name, environment.version) is None:
        raise PromotionError(
            f"{source} workspace has no environment {environment.name}:{environment.version}"
        )
    server = read_server_environment(stack_file(project_dir, source))
    specs: list[tuple[EnvironmentConfig, Spec]] = [
        (environment, EnvironmentSpec(name=environment.name))
    ]
    if server is not None:
        specs.append((server, ServerImageSpec(name=server.name)))
        if source_workspace.get_environment(server.name, server.version) is None:
            raise PromotionError(
                f"{source} workspace has no environment {server.name}:{server.version}"
            )
    images: dict[str, ImageRef] = {}
    for recorded, local in specs:
        if local.version != recorded.version:
            raise PromotionError(
                f"environments/ now hashes to {recorded.name}:{local.version}, but {source} "
                f"runs {recorded.version}: deploy the changed environment to {source} first"
            )
        built = source_workspace.built_image(recorded.name, recorded.version)
        if built is None:
            raise PromotionError(
                f"{source} has no built image for environment {recorded.name}:{recorded.version}"
                f" (Azure ML builds it on its first deployment): release it in {source} first; "
                "promotion moves the image that was validated there, it never builds one"
            )
        images[recorded.name] = built
    source_description = " ".join(
        part for part in (tags.get(TAG_SOURCE, "?"), tags.get(TAG_REVISION, "")) if part
    )
    hashes = {recorded.name: local.spec_hash for recorded, local in specs}
    return PromotionPlan(
        source, target, model, environment, source_description, via, server, images, hashes
    )


def promote(
    plan: PromotionPlan,
    source_workspace: WorkspaceClient,
    target_workspace: WorkspaceClient,
    project_dir: Path,
    registry_factory: RegistryFactory = AzureContainerRegistry.connect,
) -> ModelConfig:
    """Make the model and the images available to the target stack and record them there."""
    model = plan.model
    if plan.via == "copy":
        if target_workspace.get_model(model.name, model.version) is None:
            _copy_model(plan, source_workspace, target_workspace)
        else:
            _verify_registered(target_workspace, model)
        promoted = ModelConfig(model.name, model.version, model.content_hash)
    else:
        registry = plan.via.removeprefix("registry:")
        source_workspace.share_model(model.name, model.version, registry)
        promoted = ModelConfig(model.name, model.version, model.content_hash, registry=registry)
    registry = registry_factory(target_workspace.container_registry())
    source_registry = source_workspace.container_registry()

    def promote_image(
        recorded: EnvironmentConfig, inference_config: Mapping[str, Any] | None
    ) -> EnvironmentConfig:
        built = plan.images[recorded.name]
        target_tag = f"{IMAGE_REPOSITORY_PREFIX}{recorded.name}:{recorded.version}"
        imported = registry.import_image(source_registry, built, target_tag)
        if imported.digest != built.digest:
            raise PromotionError(
                f"{target_tag} was imported as {imported.digest}, not {built.digest}: refusing "
                "to deploy an image other than the one validated"
            )
        register_image_environment(
            target_workspace,
            recorded.name,
            recorded.version,
            imported,
            inference_config=inference_config,
            tags={TAG_SPEC_HASH: plan.spec_hashes.get(recorded.name, ""), "source": str(built)},
        )
        log.info("imported %s as %s", built, imported)
        return EnvironmentConfig(recorded.name, recorded.version, image=str(imported))

    environment = promote_image(plan.environment, None)
    server = None
    if plan.server_environment is not None:
        server = promote_image(plan.server_environment, INFERENCE_CONFIG)
    write_stack_config(stack_file(project_dir, plan.target_stack), promoted, environment, server)
    return promoted


def main(
    argv: Sequence[str] | None = None,
    workspace_factory: WorkspaceFactory = AzureMLWorkspace.connect,
    out: TextIO = sys.stdout,
    registry_factory: RegistryFactory = AzureContainerRegistry.connect,
) -> int:
    """CLI entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    project_dir = Path(args.project_dir)
    try:
        source_ws = workspace_factory(resolve_workspace(args.from_workspace_id, args.source))
        plan = plan_promotion(project_dir, args.source, args.target, source_ws, args.via)
        print(plan.describe(), file=out)
        if args.dry_run:
            print(f"dry run: nothing copied, Pulumi.{args.target}.yaml unchanged", file=out)
            return 0
        target_ws = workspace_factory(resolve_workspace(args.to_workspace_id, args.target))
        promoted = promote(plan, source_ws, target_ws, project_dir, registry_factory)
    except (PromotionError, StackConfigError, AssetConflictError, HttpResponseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Pulumi.{args.target}.yaml now deploys {promoted.asset_id}; "
        f"run `pulumi up --stack {args.target}`",
        file=out,
    )
    return 0


def _copy_model(
    plan: PromotionPlan, source_workspace: WorkspaceClient, target_workspace: WorkspaceClient
) -> None:
    model = plan.model
    source_model = source_workspace.get_model(model.name, model.version)
    tags = (source_model.tags if source_model else None) or {}
    with tempfile.TemporaryDirectory(prefix="byom-promote-") as tmp:
        folder = source_workspace.download_model(model.name, model.version, Path(tmp))
        files = validate_model_folder(folder)
        content_hash = tree_hash(folder, files)
        if content_hash != model.content_hash:
            raise PromotionError(
                f"downloaded {model.name}:{model.version} hashes to {content_hash}, "
                f"not {model.content_hash}: refusing to promote altered bytes"
            )
        packaged = PackagedModel(
            name=model.name,
            folder=folder,
            files=files,
            content_hash=content_hash,
            source=tags.get(TAG_SOURCE, f"promoted:{plan.source_stack}"),
            revision=tags.get(TAG_REVISION, ""),
        )
        register_model(target_workspace, packaged)


def _verify_registered(workspace: WorkspaceClient, model: ModelConfig) -> None:
    existing = workspace.get_model(model.name, model.version)
    registered = ((existing.tags if existing else None) or {}).get(TAG_CONTENT_HASH)
    if registered != model.content_hash:
        raise AssetConflictError(
            f"target already has {model.name}:{model.version} with content hash {registered!r}, "
            f"not {model.content_hash}"
        )


def _via(text: str) -> str:
    if text == "copy" or (text.startswith("registry:") and len(text) > len("registry:")):
        return text
    raise argparse.ArgumentTypeError(f"--via must be 'copy' or 'registry:<name>', got {text!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m delivery.promote", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--from", dest="source", required=True, help="source stack, e.g. dev")
    parser.add_argument("--to", dest="target", required=True, help="target stack, e.g. prod")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--via",
        default="copy",
        type=_via,
        help="'copy' (download, re-hash, register in the target) or 'registry:<registry name>'",
    )
    parser.add_argument(
        "--from-workspace-id", help="source workspace ARM id (default: stack output)"
    )
    parser.add_argument("--to-workspace-id", help="target workspace ARM id (default: stack output)")
    parser.add_argument("--project-dir", default=".", help="directory holding Pulumi.<stack>.yaml")
    return parser


if __name__ == "__main__":
    sys.exit(main())
