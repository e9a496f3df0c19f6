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

from infra import azure_rules, roles
from infra.azure_rules import RESOURCE_GROUP, ROLE_ASSIGNMENT, ROLE_DEFINITION
from infra.config import StackConfig
from infra.plan import REPO_ROOT, STACKS, Plan, compare_rows, plan, settings_for, stack_config

DOC = REPO_ROOT / "docs" / "infrastructure.md"
_SECTION = re.compile(
    r"(<!-- BEGIN generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)"
    r"(<!-- END generated: (?P=name) -->)",
    re.DOTALL,
)
LOCK = "azure-native:authorization:ManagementLockAtResourceGroupLevel"


def _cell(value: str) -> str:
    return value.replace("|", "\\|").strip('"') if value != "null" else "—"


def dev_prod_table(plans: Mapping[str, Plan]) -> str:
    """Markdown table of every difference between the dev and prod plans."""
    rows = compare_rows(plans["dev"], plans["prod"])
    lines = ["| | dev | prod |", "|---|---|---|"]
    lines += [f"| {what} | {_cell(dev)} | {_cell(prod)} |" for what, dev, prod in rows]
    return "\n".join(lines) + "\n"


def _role_label(
    role_definition_id: str, custom: Mapping[str, str], out_of_band: Mapping[str, str]
) -> str:
    guid = roles.role_guid(role_definition_id)
    if guid in roles.BUILT_IN_PERMISSIONS:
        return f"{roles.BUILT_IN_PERMISSIONS[guid].name} (`{guid}`)"
    if guid in custom:
        return f"{custom[guid]}, declared by the stack (`{guid}`)"
    return f"{out_of_band.get(guid, 'a custom role')}, created once out of band (`{guid}`)"


def out_of_band_roles(settings: StackConfig) -> dict[str, str]:
    """The custom roles the stack file names instead of declaring them, by GUID."""
    return {
        guid: f"the {role.title} role"
        for guid, role in azure_rules.out_of_band_roles(settings).items()
    }


def _custom_role_name(props: Mapping[str, object]) -> str:
    # "AzureML online endpoint invoker (<rg>)" -> "the AzureML online endpoint invoker role"
    return f"the {str(props.get('roleName', 'custom')).split(' (', 1)[0]} role"


def deployer_rights(p: Plan, out_of_band: Mapping[str, str]) -> str:
    """What the principal running `pulumi up` for this plan needs, derived from what it declares
    (`out_of_band`: the custom roles it uses without declaring them, GUID to name)."""
    types = {r.type for r in p.resources}
    custom = {
        str(r.props.get("roleDefinitionId")): _custom_role_name(r.props)
        for r in p.resources
        if r.type == ROLE_DEFINITION
    }
    assigned = sorted(
        {
            _role_label(str(r.props.get("roleDefinitionId")), custom, out_of_band)
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
        declared = " and ".join(sorted(set(custom.values())))
        lines.append(
            "- `Microsoft.Authorization/roleDefinitions/write` and `/delete` on the resource "
            f"group: the stack declares {declared} (neither role above includes it; grant "
            "it with a small custom role, or set `identity.invokerRoleId` and "
            "`releaseRunner.autoscalerRoleId`)"
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
    configs = {stack: stack_config(stack, release=True)[1] for stack in STACKS}
    plans = {stack: plan(stack, config=configs[stack]) for stack in STACKS}
    sections = {"dev-prod": dev_prod_table(plans)}
    rights = {
        stack: deployer_rights(plans[stack], out_of_band_roles(settings_for(stack, configs[stack])))
        for stack in STACKS
    }
    sections["deployer-rights"] = (
        "".join(f"**{stack}**\n\n{rights[stack]}\n" for stack in STACKS).rstrip("\n") + "\n"
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
