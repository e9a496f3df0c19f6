"""Sections of docs/infrastructure.md generated from the offline plans, never written by hand.

    python -m infra.docs          # rewrite the generated sections
    python -m infra.docs --check  # exit 1 when the file is not current (the tests do this)

Each section sits between `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->`:
`dev-prod` (how the stacks differ, from both plans after a release) and `deployer-rights` (what
the principal running `pulumi up` needs, from the resources each plan declares).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from infra import roles
from infra.plan import REPO_ROOT, STACKS, Plan, compare_rows, plan

DOC = REPO_ROOT / "docs" / "infrastructure.md"
_SECTION = re.compile(
    r"(<!-- BEGIN generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)"
    r"(<!-- END generated: (?P=name) -->)",
    re.DOTALL,
)
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
LOCK = "azure-native:authorization:ManagementLockAtResourceGroupLevel"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"


def _cell(value: str) -> str:
    return value.replace("|", "\\|").strip('"') if value != "null" else "—"


def dev_prod_table(plans: Mapping[str, Plan]) -> str:
    """Markdown table of every difference between the dev and prod plans."""
    rows = compare_rows(plans["dev"], plans["prod"])
    lines = ["| | dev | prod |", "|---|---|---|"]
    lines += [f"| {what} | {_cell(dev)} | {_cell(prod)} |" for what, dev, prod in rows]
    return "\n".join(lines) + "\n"


def _role_label(role_definition_id: str, custom: set[str]) -> str:
    guid = role_definition_id.rstrip("/").rsplit("/", 1)[-1]
    if guid in roles.BUILT_IN_PERMISSIONS:
        return f"{roles.BUILT_IN_PERMISSIONS[guid].name} (`{guid}`)"
    where = "declared by the stack" if guid in custom else "created once out of band"
    return f"the endpoint invoker role, {where} (`{guid}`)"


def deployer_rights(p: Plan) -> str:
    """What the principal running `pulumi up` for this plan needs, derived from what it declares."""
    types = {r.type for r in p.resources}
    custom = {
        str(r.props.get("roleDefinitionId")) for r in p.resources if r.type == ROLE_DEFINITION
    }
    assigned = sorted(
        {
            _role_label(str(r.props.get("roleDefinitionId")), custom)
            for r in p.resources
            if r.type == ROLE_ASSIGNMENT
        }
    )
    scope = "the subscription" if RESOURCE_GROUP in types else "the resource group"
    lines = [
        f"- **Contributor** on {scope} (creates the resource group and the resources"
        + (")" if RESOURCE_GROUP in types else " in it)"),
        "- **Role Based Access Control Administrator** on the resource group, with a condition "
        "that allows assigning only these roles: " + "; ".join(assigned),
    ]
    if ROLE_DEFINITION in types:
        lines.append(
            "- `Microsoft.Authorization/roleDefinitions/write` and `/delete` on the resource "
            "group: the stack declares the invoker role (neither role above includes it; grant "
            "it with a small custom role, or set `identity.invokerRoleId`)"
        )
    if LOCK in types:
        lines.append(
            "- `Microsoft.Authorization/locks/write` and `/delete` on the resource group: the "
            "stack declares the CanNotDelete lock (Contributor excludes `Microsoft.Authorization/"
            "*/Write`; Owner or User Access Administrator include it, or a small custom role)"
        )
    lines.append(
        "- nothing on the data plane: the release's upload and deploy rights are the "
        "`identity.deployer` grants this stack makes itself"
    )
    return "\n".join(lines) + "\n"


@cache  # the plans are deterministic: one computation per process
def generated_sections() -> dict[str, str]:
    """Every generated section's content, by name."""
    plans = {stack: plan(stack, release=True) for stack in STACKS}
    sections = {"dev-prod": dev_prod_table(plans)}
    sections["deployer-rights"] = (
        "".join(f"**{stack}**\n\n{deployer_rights(plans[stack])}\n" for stack in STACKS).rstrip(
            "\n"
        )
        + "\n"
    )
    return sections


def render(text: str, sections: Mapping[str, str]) -> str:
    """`text` with each generated section's body replaced."""
    names = {m.group("name") for m in _SECTION.finditer(text)}
    missing = sorted(set(sections) - names)
    if missing:
        raise ValueError(f"{DOC.name} has no markers for section {missing[0]!r}")
    return _SECTION.sub(lambda m: m.group(1) + sections[m.group("name")] + m.group(4), text)


def main(argv: list[str] | None = None, doc: Path = DOC) -> int:
    """CLI entry point; with --check, 1 when the document is not current."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.docs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="only check, do not write")
    args = parser.parse_args(argv)
    text = doc.read_text()
    current = render(text, dict(generated_sections()))
    if args.check:
        if current != text:
            print(f"{doc} is not current: run python -m infra.docs", file=sys.stderr)
            return 1
        return 0
    doc.write_text(current)
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
