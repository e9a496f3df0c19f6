"""Only what the server runs is uploaded and hashed: editing the report or client rolls nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from delivery.codeasset import code_hash, server_files, staged

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scoring(tmp_path: Path) -> Path:
    """A copy of the real scoring package."""
    target = tmp_path / "scoring"
    shutil.copytree(REPO / "scoring", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_the_server_files_are_the_entry_script_and_what_it_imports(scoring: Path) -> None:
    """score.py and the modules it reaches; the client, CLI, report and demo tools stay out."""
    files = server_files(scoring, "score.py")
    assert {"score.py", "service.py", "schemas.py", "settings.py", "__init__.py"} <= set(files)
    assert not {"client.py", "cli.py", "report.py", "demo.py", "local_server.py"} & set(files)


@pytest.mark.parametrize("module", ["report.py", "client.py", "cli.py", "demo.py"])
def test_editing_a_module_the_server_does_not_import_keeps_the_hash(
    scoring: Path, module: str
) -> None:
    """A colour change in the HTML report must not start a GPU rollout."""
    before = code_hash(scoring, "score.py")
    _append(scoring / module, "\n# a comment that changes the bytes\n")
    assert code_hash(scoring, "score.py") == before


def test_editing_server_code_changes_the_hash(scoring: Path) -> None:
    """A change to any module the server imports is a new deployment."""
    before = code_hash(scoring, "score.py")
    _append(scoring / "service.py", "\n# changed\n")
    assert code_hash(scoring, "score.py") != before


def test_a_module_the_server_starts_importing_is_uploaded(scoring: Path) -> None:
    """The list follows the imports: no allowlist to forget when the server grows."""
    (scoring / "extra.py").write_text("VALUE = 1\n", encoding="utf-8")
    assert "extra.py" not in server_files(scoring, "score.py")
    _append(scoring / "service.py", "\nfrom scoring.extra import VALUE  # noqa: E402\n")
    assert "extra.py" in server_files(scoring, "score.py")


def test_the_staged_upload_holds_exactly_the_hashed_files(scoring: Path) -> None:
    """What is uploaded is what the fingerprint covers."""
    with staged(scoring, "score.py") as folder:
        assert folder.name == "scoring"  # score.py imports the package by that name
        uploaded = sorted(
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
        )
        assert tuple(sorted(uploaded)) == server_files(scoring, "score.py")
        assert code_hash(folder, "score.py") == code_hash(scoring, "score.py")
    assert not folder.exists()
