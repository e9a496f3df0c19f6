"""Evaluate the policy pack's rules over the offline plan of a stack.

    python -m policy.check --stack prod [--config-override network.private=false ...]

Runs the real Pulumi program under mocks (`infra.plan`), applies every rule of `policy.rules`
to every planned resource with the stack's policy config (`policy/config.<stack>.json`, the same
file `pulumi preview --policy-pack-config` reads) and exits 1 when a mandatory policy is violated.
Like the offline plan, this checks the inputs the program would send; it is not a cloud preview.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from policy.rules import POLICIES, POLICY_NAMES, PolicySpec, StackResource

POLICY_DIR = Path(__file__).resolve().parent
ENFORCEMENT_LEVELS = ("advisory", "mandatory", "disabled")
# What the pack enforces when a config names no level: the strictest (see __main__.py).
DEFAULT_ENFORCEMENT = "mandatory"


class PolicyConfigError(ValueError):
    """A policy config file names an unknown policy, setting or enforcement level."""


@dataclass(frozen=True)
class Violation:
    """One resource breaking one policy, with the reason."""

    policy: str
    enforcement: str
    resource_type: str
    resource_name: str
    urn: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.resource_type} '{self.resource_name}'"
        return f"[{self.enforcement}] {self.policy}: {where}: {self.reason}"


@dataclass(frozen=True)
class ResolvedPolicy:
    """A policy with the enforcement level and settings a config gives it."""

    spec: PolicySpec
    enforcement: str
    config: Mapping[str, Any]


def config_path(stack: str) -> Path:
    """The policy config file of a stack."""
    return POLICY_DIR / f"config.{stack}.json"


def load_config(path: Path | None) -> dict[str, Any]:
    """A policy config file's content; {} (every policy mandatory, defaults) when there is none."""
    if path is None or not path.exists():
        return {}
    return json.loads(path.read_text())


def resolve(config: Mapping[str, Any]) -> list[ResolvedPolicy]:
    """Each policy's enforcement level and settings from a CrossGuard policy config mapping."""
    unknown = sorted(set(config) - set(POLICY_NAMES) - {"all"})
    if unknown:
        raise PolicyConfigError(
            f"unknown policy {unknown[0]!r}; known: all, {', '.join(POLICY_NAMES)}"
        )
    default = _level("all", config.get("all", DEFAULT_ENFORCEMENT))
    resolved = []
    for spec in POLICIES:
        entry = config.get(spec.name, {})
        if isinstance(entry, str):
            entry = {"enforcementLevel": entry}
        settings = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        extra = sorted(set(settings) - set(spec.schema))
        if extra:
            raise PolicyConfigError(
                f"policy {spec.name!r} has no setting {extra[0]!r}; "
                f"settings: {', '.join(spec.schema) or 'none'}"
            )
        level = _level(spec.name, entry.get("enforcementLevel", default))
        resolved.append(ResolvedPolicy(spec, level, settings))
    return resolved


def _level(name: str, value: Any) -> str:
    if value not in ENFORCEMENT_LEVELS:
        raise PolicyConfigError(
            f"policy {name!r} enforcementLevel {value!r}; allowed: {', '.join(ENFORCEMENT_LEVELS)}"
        )
    return value


def evaluate(resources: Iterable[StackResource], config: Mapping[str, Any]) -> list[Violation]:
    """Every violation of every enabled policy by the given resources."""
    policies = [p for p in resolve(config) if p.enforcement != "disabled"]
    resources = list(resources)
    violations = []
    for policy in policies:
        for found, reason in policy.spec.check_stack(resources, policy.config):
            violations.append(
                Violation(
                    policy=policy.spec.name,
                    enforcement=policy.enforcement,
                    resource_type=found.type if found else "stack",
                    resource_name=found.name if found else "(stack)",
                    urn=found.urn if found else "",
                    reason=reason,
                )
            )
    for resource in resources:
        for policy in policies:
            for reason in policy.spec.check(resource.type, resource.props, policy.config):
                violations.append(
                    Violation(
                        policy=policy.spec.name,
                        enforcement=policy.enforcement,
                        resource_type=resource.type,
                        resource_name=resource.name,
                        urn=resource.urn,
                        reason=reason,
                    )
                )
    return violations


def apply_overrides(
    config: Mapping[str, str], overrides: Sequence[str], project: str
) -> dict[str, str]:
    """Stack config with `key.path=value` overrides; values are YAML (`false`, `[10, 100]`)."""
    result = dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config-override {item!r}: expected key=value")
        top, _, path = key.partition(".")
        full = top if ":" in top else f"{project}:{top}"
        value = yaml.safe_load(text)
        if not path:
            result[full] = value if isinstance(value, str) else json.dumps(value)
            continue
        document = json.loads(result.get(full, "{}"))
        node = document
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--config-override {item!r}: {part} is not an object")
        node[leaf] = value
        result[full] = json.dumps(document)
    return result


def plan_resources(
    stack: str, overrides: Sequence[str] = (), *, release: bool = False
) -> list[Any]:
    """The offline plan's resources for `stack`, after config overrides; with `release`, as
    after a release of the example assets (rollouts, autoscale, the release's grants)."""
    from infra import plan
    from infra import stack as program  # imported late: pulumi_azure_native loads slowly

    project, config = plan.stack_config(stack, release=release)
    config = apply_overrides(config, overrides, project)
    return plan.run(program.main, stack=stack, config=config, project=project).resources


def report(
    stack: str, resources: Sequence[StackResource], config: Mapping[str, Any], out: TextIO
) -> int:
    """Print each policy's result and the violations; 1 if any mandatory policy is violated."""
    violations = evaluate(resources, config)
    print(
        f"Policy check of the offline plan for stack '{stack}' "
        f"({len(resources)} resources, {len(POLICIES)} policies; "
        "Pulumi mocks, not a cloud preview)",
        file=out,
    )
    width = max(len(name) for name in POLICY_NAMES)
    for policy in resolve(config):
        count = sum(v.policy == policy.spec.name for v in violations)
        result = (
            "skipped"
            if policy.enforcement == "disabled"
            else (f"{count} violation{'s' * (count != 1)}" if count else "ok")
        )
        print(f"  {policy.enforcement:<9}  {policy.spec.name:<{width}}  {result}", file=out)
    for violation in violations:
        print(str(violation), file=out)
    mandatory = [v for v in violations if v.enforcement == "mandatory"]
    if mandatory:
        print(f"FAILED: {len(mandatory)} mandatory policy violation(s)", file=out)
        return 1
    advisory = len(violations)
    print("passed" + (f" with {advisory} advisory violation(s)" if advisory else ""), file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """CLI entry point; returns the exit status (0 pass, 1 mandatory violations, 2 bad input)."""
    from infra.plan import STACKS

    parser = argparse.ArgumentParser(
        prog="python -m policy.check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", choices=STACKS, required=True)
    parser.add_argument(
        "--config-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stack config value, e.g. network.private=false (repeatable)",
    )
    parser.add_argument(
        "--release",
        action="store_true",
        help="check the plan as after a release (example model and environment)",
    )
    parser.add_argument(
        "--policy-config",
        type=Path,
        help="policy config JSON (default: policy/config.<stack>.json)",
    )
    args = parser.parse_args(argv)

    from infra.config import ConfigError

    try:
        config = load_config(args.policy_config or config_path(args.stack))
        resolve(config)
        resources = plan_resources(args.stack, args.config_override, release=args.release)
    except (ConfigError, PolicyConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return report(args.stack, resources, config, out)


if __name__ == "__main__":
    # A fresh event loop keeps `python -m policy.check` independent of any caller's loop.
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
