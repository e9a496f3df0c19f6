"""Delivery CLI: `python -m delivery {hash,register,rollback,abort} ...` (see delivery.promote).

python -m delivery hash --source ~/models/my-llm
python -m delivery register --stack dev --name my-llm --source hf:<org>/<name>@<commit sha>
python -m delivery rollback --stack prod --endpoint byom-generate-prod
python -m delivery abort --stack prod --endpoint byom-generate-prod   # after a killed release
python -m delivery release --stack prod        # run the releases `pulumi up` declared (stage)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from delivery.autoscale import AutoscaleClient, AzureAutoscale
from delivery.environment import EnvironmentSpec, ServerImageSpec, register_environment
from delivery.packaging import (
    AssetConflictError,
    ModelValidationError,
    package_model,
    parse_source,
    register_model,
)
from delivery.rollout import RolloutError, abort, rollback
from delivery.stackconfig import (
    EnvironmentConfig,
    ModelConfig,
    StackConfigError,
    resolve_workspace,
    stack_file,
    stack_outputs,
    write_stack_config,
)
from delivery.workspace import AzureMLWorkspace, WorkspaceClient, WorkspaceRef

WorkspaceFactory = Callable[[WorkspaceRef], WorkspaceClient]
RELEASES_OUTPUT = "releases"
AutoscaleFactory = Callable[[WorkspaceRef], AutoscaleClient]


def main(
    argv: Sequence[str] | None = None,
    workspace_factory: WorkspaceFactory = AzureMLWorkspace.connect,
    out: TextIO = sys.stdout,
    autoscale_factory: AutoscaleFactory = AzureAutoscale.connect,
    outputs_reader: Callable[[str], Mapping[str, Any]] = stack_outputs,
) -> int:
    """CLI entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "hash":
            packaged = package_model(args.name, parse_source(args.source))
            print(f"{packaged.name}:{packaged.version} {packaged.content_hash}", file=out)
            print(f"{len(packaged.files)} files: {', '.join(packaged.files)}", file=out)
            return 0
        if args.command == "release":
            return _release(
                outputs_reader(args.stack), args, workspace_factory, autoscale_factory, out
            )
        ref = resolve_workspace(args.workspace_id, args.stack)
        workspace = workspace_factory(ref)
        if args.command == "register":
            return _register(args, workspace, out)
        if args.command == "abort":
            return _abort(args.endpoint, workspace, out)
        result = rollback(workspace, args.endpoint, autoscale=autoscale_factory(ref))
        print(f"{args.endpoint}: all traffic on {result.live} (was {result.previous})", file=out)
        print(
            "the stack still names the rolled-back model: revert byom:model in "
            f"Pulumi.{args.stack}.yaml before the next `pulumi up`",
            file=out,
        )
        return 0
    except (
        AssetConflictError,
        ModelValidationError,
        RolloutError,
        StackConfigError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _release(
    outputs: Mapping[str, Any],
    args: argparse.Namespace,
    workspace_factory: WorkspaceFactory,
    autoscale_factory: AutoscaleFactory,
    out: TextIO,
) -> int:
    from delivery.release import connect_alerts, release_from_outputs

    releases = outputs.get(RELEASES_OUTPUT) or {}
    if not releases:
        raise StackConfigError(f"stack {args.stack!r} declares no releases ({RELEASES_OUTPUT!r})")
    for pattern, declared in sorted(releases.items()):
        if args.pattern and pattern not in args.pattern:
            continue
        result = release_from_outputs(
            declared,
            workspace_factory,
            connect_alerts,
            autoscale_factory,
            base_dir=Path(args.project_dir),
        )
        state = "released" if result.changed else "already serving"
        print(f"{pattern}: {state} on {result.live}; traffic {dict(result.traffic)}", file=out)
    return 0


def _abort(endpoints: Sequence[str], workspace: WorkspaceClient, out: TextIO) -> int:
    for endpoint in endpoints:
        result = abort(workspace, endpoint)
        if result is None:
            print(f"{endpoint}: no unfinished release; traffic left as it is", file=out)
        else:
            traffic = dict(result.traffic)
            print(
                f"{endpoint}: release of {result.previous} cancelled; traffic {traffic}", file=out
            )
    return 0


def _register(args: argparse.Namespace, workspace: WorkspaceClient, out: TextIO) -> int:
    packaged = package_model(args.name, parse_source(args.source))
    model = register_model(workspace, packaged)
    environment = register_environment(workspace, EnvironmentSpec())
    # The OpenAI-compatible server's image, for deployments with `server: openai`.
    server = register_environment(workspace, ServerImageSpec())
    for label, asset, created in (
        ("model", model.asset_id, model.created),
        ("environment", environment.asset_id, environment.created),
        ("server environment", server.asset_id, server.created),
    ):
        print(f"{label}: {asset} ({'registered' if created else 'already registered'})", file=out)
    print(f"content hash: {model.content_hash}", file=out)
    path = stack_file(Path(args.project_dir), args.stack)
    write_stack_config(
        path,
        ModelConfig(model.name, model.version, model.content_hash),
        EnvironmentConfig(environment.name, environment.version),
        EnvironmentConfig(server.name, server.version),
    )
    print(f"{path.name}: byom:model, byom:environment and byom:serverEnvironment updated", file=out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m delivery", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    release = commands.add_parser(
        "release", help="run the releases the stack declares (stack output `releases`)"
    )
    release.add_argument("--stack", required=True, help="Pulumi stack, e.g. prod")
    release.add_argument("--pattern", action="append", help="only this pattern (repeatable)")
    release.add_argument("--project-dir", default=".", help="repository root (scoring code)")

    hashing = commands.add_parser("hash", help="validate a model source and print its version")
    hashing.add_argument("--source", required=True, help="folder, or hf:<org>/<name>@<commit>")
    hashing.add_argument("--name", default="model", help="asset name to print the version under")

    for name, help_text in (
        ("register", "register model + environment, record them in Pulumi.<stack>.yaml"),
        ("rollback", "send all of an endpoint's traffic back to the previous slot"),
        ("abort", "after a killed release: traffic back to its previous slot, recorded"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--stack", required=True, help="Pulumi stack, e.g. dev")
        command.add_argument("--workspace-id", help="workspace ARM id (default: stack output)")
        command.add_argument("--project-dir", default=".", help="directory of Pulumi.<stack>.yaml")
        if name == "register":
            command.add_argument("--name", required=True, help="model asset name")
            command.add_argument("--source", required=True, help="folder, or hf:<org>/<name>@<sha>")
        elif name == "rollback":
            command.add_argument("--endpoint", required=True, help="online endpoint name")
        else:
            command.add_argument(
                "--endpoint", required=True, action="append", help="endpoint name (repeatable)"
            )
    return parser


if __name__ == "__main__":
    sys.exit(main())
