"""The scoring code a deployment uploads: its entry script and the package modules it imports.

The code folder also holds what the server never imports (the client, CLI, HTML report and
demo tools). Those stay out of the upload and out of the content hash that goes into the
deployment fingerprint, so editing the report's colours does not roll out a new GPU slot. The
list is not kept by hand: it follows the entry script's imports, so a module the server starts
using is uploaded (and hashed) from the next rollout on.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from delivery.packaging import tree_hash


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
