"""docs/infrastructure.md's generated sections (dev/prod table, deployer rights) are current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import docs, roles


def test_generated_sections_of_the_infrastructure_doc_are_current() -> None:
    """Regenerate with `python -m infra.docs` after a change to the program or the stacks."""
    assert docs.main(["--check"]) == 0, "run: python -m infra.docs"


def test_the_check_fails_on_a_hand_edited_table(tmp_path: Path) -> None:
    stale = tmp_path / "infrastructure.md"
    stale.write_text(
        docs.DOC.read_text().replace("| workspace-storage sku.name |", "| storage SKU |")
    )
    assert docs.main(["--check"], doc=stale) == 1
    assert docs.main([], doc=stale) == 0
    assert stale.read_text() == docs.DOC.read_text()


def test_a_document_without_the_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="dev-prod"):
        docs.render("no markers here", {"dev-prod": "x"})


def test_deployer_rights_name_what_the_plan_declares() -> None:
    text = docs.DOC.read_text()
    # prod declares the lock and takes the invoker role from config; dev declares the role.
    prod = text.split("**prod**", 1)[1].split("<!-- END", 1)[0]
    dev = text.split("**dev**", 1)[1].split("**prod**", 1)[0]
    assert "locks/write" in prod
    assert "roleDefinitions/write" not in prod
    assert "roleDefinitions/write" in dev
    assert "locks/write" not in dev


def test_the_documented_autoscaler_role_is_the_one_the_code_checks() -> None:
    """The administrator's `az role definition create` for releaseRunner.autoscalerRoleId grants
    exactly what the access table expects of the role."""
    text = docs.DOC.read_text()
    block = text.split('"Name": "AzureML release autoscaler', 1)[1].split("}'", 1)[0]
    actions = json.loads("[" + block.split('"Actions": [', 1)[1].split("]", 1)[0] + "]")
    assert tuple(actions) == roles.RELEASE_AUTOSCALER_ACTIONS


def test_out_of_band_roles_are_named_in_the_deployer_rights() -> None:
    prod = docs.DOC.read_text().split("**prod**", 1)[1].split("<!-- END", 1)[0]
    assert "the AzureML release autoscaler role, created once out of band" in prod
    assert "the AzureML online endpoint invoker role, created once out of band" in prod
