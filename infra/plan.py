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
from pathlib import Path

from delivery.stackconfig import pulumi_config
from infra.offline.harness import Plan, PlannedResource, run
from infra.offline.render import compare, jsonable, prop, render_tree, summary

__all__ = ["STACKS", "Plan", "PlannedResource", "collect", "main", "plan", "prop", "run"]

REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")


def plan(stack: str) -> Plan:
    """Run the real program (`infra.stack.main`) for `stack` with its stack file's config."""
    from infra import stack as program  # imported late: pulumi_azure_native loads slowly

    if stack not in STACKS:
        raise FileNotFoundError(f"no stack {stack!r}; stacks here: {', '.join(STACKS)}")
    project, config = pulumi_config(REPO_ROOT, stack)
    return run(program.main, stack=stack, config=config, project=project)


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
    args = parser.parse_args(argv)

    from infra.config import ConfigError

    try:
        result = plan(args.stack)
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
        others = plan(other)
        dev, prod = (result, others) if args.stack == "dev" else (others, result)
        print(f"\nhow prod differs from dev (key properties):\n{compare(dev, prod)}")
    return 0


if __name__ == "__main__":
    # A fresh event loop keeps `python -m infra.plan` independent of any caller's loop.
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
