"""The files that serve: an entry script and the modules of its package that it imports.

This is the one rule for what ships to a server. The code asset an `azmlinfsrv` deployment
uploads is `server_files(code_dir, "score.py")`; the OpenAI-compatible server's image
(`delivery.environment.ServerImageSpec`) bakes in `server_files(SCORING_DIR, "serve.py")`.
The scoring folder also holds what no server imports (the client, CLI, HTML report and demo
tools). Those stay out of both, and out of the content hashes that version them, so editing the
report's colours neither rolls out a new GPU slot nor builds a new image. The list is not kept
by hand: it follows the entry's imports, so a module the server starts using ships (and is
hashed) from the next rollout on.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from delivery.packaging import tree_hash
from delivery.spec import DEFAULT_CODE_DIR

# The scoring package of this checkout: the server image's source, and the default code folder.
SCORING_DIR = Path(__file__).resolve().parent.parent / DEFAULT_CODE_DIR


def server_files(code_dir: str | Path, entry: str) -> tuple[str, ...]:
    """Relative paths of `entry` and every module of the code folder's package it imports,
    directly or through other modules (plus the package's `__init__.py`), sorted."""
    root = Path(code_dir)
    package = root.resolve().name
    seen: set[str] = set()
    todo = [entry, "__init__.py"]
    while todo:
        relative = todo.pop()
        if relative in seen or not (root / relative).is_file():
            continue
        seen.add(relative)
        tree = ast.parse((root / relative).read_text(encoding="utf-8"), filename=relative)
        todo.extend(_local_modules(tree, package, root))
    return tuple(sorted(seen))


def _local_modules(tree: ast.AST, package: str, root: Path) -> Iterator[str]:
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package if node.level else (node.module or "")
            if node.level and node.module:
                base = f"{package}.{node.module}"
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            if parts[0] == package and len(parts) > 1:
                path = Path(*parts[1:])
                for candidate in (f"{path.as_posix()}.py", f"{path.as_posix()}/__init__.py"):
                    if (root / candidate).is_file():
                        yield candidate


def code_hash(code_dir: str | Path, entry: str) -> str:
    """Content hash of the code as uploaded (`server_files` only)."""
    return tree_hash(Path(code_dir), server_files(code_dir, entry))


@contextmanager
def staged(code_dir: str | Path, entry: str) -> Iterator[Path]:
    """A temporary copy of the code folder holding only `server_files`: what to upload. It keeps
    the folder's name, which the entry script's package imports rely on."""
    source = Path(code_dir)
    with tempfile.TemporaryDirectory(prefix="byom-code-") as tmp:
        folder = Path(tmp, source.resolve().name)
        folder.mkdir()
        for relative in server_files(source, entry):
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, target)
        yield folder
