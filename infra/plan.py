"""Offline plan: run the real Pulumi program under Pulumi's mocks and list what it would declare.

    python -m infra.plan --stack dev [--json | --summary]

This is not `pulumi preview`: nothing talks to Azure, and values Azure would compute (ids,
principal ids) are invented by the mocks. It shows the resources, their parents and the inputs
the program sends, which is what policies and tests check. `collect(stack)` is the stable entry
point for other code (the policy pack): it returns `PlannedResource` records. The parts live in
`infra.offline`: mocks, the runtime harness (Pulumi private APIs) and rendering.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from delivery.stackconfig import pulumi_config
from infra.offline.harness import Plan, PlannedResource, run
from infra.offline.mocks import MOCK_ORGANIZATION, MOCK_SUBSCRIPTION_ID
from infra.offline.render import compare, compare_rows, jsonable, prop, render_tree, summary

__all__ = [
    "STACKS",
    "Plan",
    "PlannedResource",
    "collect",
    "compare_rows",
    "main",
    "plan",
    "prop",
    "run",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")
# What the delivery CLI writes after registering a model (the stack files carry none): plans
# "after a release" use it to show the rollout, autoscale and the grants a release needs.
EXAMPLE_RELEASE = {
    "byom:model": {
        "name": "smollm2-135m-instruct",
        "version": "3f2a9c0d1b4e5f67",
        "contentHash": "sha256:3f2a9c0d1b4e5f67a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1",
    },
    "byom:environment": {"name": "byom-inference-gpu", "version": "9a8b7c6d5e4f3a2b"},
}
# What `delivery.promote` adds in a stack promoted to: the image dev built, imported by digest.
EXAMPLE_PROMOTED_IMAGE = (
    "crbyomprod.azurecr.io/byom/byom-inference-gpu"
    "@sha256:7d3f9a1c5e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d3f"
)
PROMOTED_STACKS = ("prod",)


def stack_config(stack: str, *, release: bool = False) -> tuple[str, dict[str, str]]:
    """The stack file's runtime config (`delivery.stackconfig.pulumi_config`), plus the example
    release's asset keys when `release`."""
    if stack not in STACKS:
        raise FileNotFoundError(f"no stack {stack!r}; stacks here: {', '.join(STACKS)}")
    project, config = pulumi_config(REPO_ROOT, stack)
    if release:
        example = dict(EXAMPLE_RELEASE)
        if stack in PROMOTED_STACKS:
            image = {"image": EXAMPLE_PROMOTED_IMAGE}
            example["byom:environment"] = {**example["byom:environment"], **image}
        config.update({k: json.dumps(v) for k, v in example.items()})
    return project, config


def plan(
    stack: str,
    *,
    release: bool = False,
    live_slot: str = "blue",
    subscription_id: str = MOCK_SUBSCRIPTION_ID,
    config: Mapping[str, str] | None = None,
) -> Plan:
    """Run the real program (`infra.stack.main`) for `stack` with its stack file's config.

    `release`: as after the first release (the example assets); `live_slot`: the slot that
    release left live; `config`: a full config to use instead of the stack file's.
    """
    from infra import stack as program  # imported late: pulumi_azure_native loads slowly

    project, file_config = stack_config(stack, release=release)
    return run(
        program.main,
        stack=stack,
        config=file_config if config is None else config,
        project=project,
        subscription_id=subscription_id,
        live_slot=live_slot,
    )


def settings_for(
    stack: str,
    config: Mapping[str, str],
    project: str = "azureml-byom",
    subscription_id: str = MOCK_SUBSCRIPTION_ID,
) -> Any:
    """The validated settings the program sees for `config` (as `plan` runs it)."""
    from infra.config import DELIVERY_NAMESPACE, parse_settings

    def value(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    ours = {k.split(":", 1)[1]: value(v) for k, v in config.items() if k.startswith(f"{project}:")}
    delivery = {
        k.split(":", 1)[1]: value(v)
        for k, v in config.items()
        if k.startswith(f"{DELIVERY_NAMESPACE}:")
    }
    return parse_settings(
        ours,
        stack=stack,
        organization=MOCK_ORGANIZATION,
        project=project,
        delivery=delivery,
        subscription_id=subscription_id,
    )


def check_rules(stack: str, config: Mapping[str, str] | None = None) -> list[Any]:
    """The Azure rule set (`infra.azure_rules`) on `stack`: its plan as committed, its plan after
    a release, and the create-only properties between that release and the next one (the live
    slot flips from blue to green)."""
    from infra import azure_rules

    project, released = stack_config(stack, release=True)
    if config is not None:
        released = dict(config)
    fresh = {k: v for k, v in released.items() if k not in EXAMPLE_RELEASE}
    # The released plan is checked as it stands (blue live) and then against the next release.
    blue = plan(stack, config=released, live_slot="blue")
    green = plan(stack, config=released, live_slot="green")
    return [
        *azure_rules.check(plan(stack, config=fresh), settings_for(stack, fresh, project)),
        *azure_rules.check(blue, settings_for(stack, released, project)),
        *azure_rules.create_only_changes(blue, green),
    ]


def collect(stack: str) -> list[PlannedResource]:
    """Resources the program declares for `stack`, as simple records (for tests and policies)."""
    return plan(stack).resources


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.plan",
        description="Offline plan: run the Pulumi program under mocks (no Azure, no Pulumi CLI).",
    )
    parser.add_argument("--stack", choices=STACKS, default="dev")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print resources and outputs as JSON")
    mode.add_argument("--summary", action="store_true", help="print resource counts by type")
    parser.add_argument(
        "--release",
        action="store_true",
        help="plan as after a release of the example assets (rollouts, autoscale, grants)",
    )
    args = parser.parse_args(argv)

    from infra.config import ConfigError

    try:
        result = plan(args.stack, release=args.release)
        findings = [] if args.json else check_rules(args.stack)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = (
        f"Offline plan for stack '{args.stack}' (Pulumi mocks; not a cloud preview: "
        f"nothing was sent to Azure, ids are invented)"
    )
    if args.json:
        print(json.dumps(jsonable(result), indent=2, sort_keys=True, default=str))
    elif args.summary:
        print(header)
        print(summary(result.resources))
    else:
        print(header)
        print(render_tree(result))
        print("\noutputs:")
        for key, value in sorted(result.outputs.items()):
            print(f"  {key} = {json.dumps(value, default=str)}")
        print(f"\nresources by type:\n{summary(result.resources)}")
        other = "prod" if args.stack == "dev" else "dev"
        others = plan(other, release=args.release)
        dev, prod = (result, others) if args.stack == "dev" else (others, result)
        print(f"\nhow prod differs from dev (key properties):\n{compare(dev, prod)}")
    if not args.json:
        print(
            "\nAzure rules (names, tenant-unique names, create-only properties across the next "
            "release, identity -> operation -> role), as committed and after a release: "
            + (f"{len(findings)} finding(s)" if findings else "ok")
        )
        for finding in findings:
            print(f"  {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    # A fresh event loop keeps `python -m infra.plan` independent of any caller's loop.
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
