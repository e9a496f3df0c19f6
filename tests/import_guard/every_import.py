"""Import every module the given project files import anywhere, also inside functions.

    python tests/import_guard/every_import.py infra delivery/smoke.py ...

Run under the import guard (sitecustomize.py): a command's `--help` only proves its module-level
imports, while Azure clients and optional exporters are imported where they are used. Imports
under ``if TYPE_CHECKING:`` never run and are skipped, and so are imports inside a ``try`` that
handles ``ImportError`` (optional by design). Prints each import the group refuses with the file
and line that needs it, and exits 1 if there is any. A module missing from this machine
altogether (not refused by the guard) is not the group's fault and is not reported.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from sitecustomize import GroupFinder


def _handles_import_error(node: ast.Try) -> bool:
    names = {"ImportError", "ModuleNotFoundError", "Exception"}
    for handler in node.handlers:
        caught = handler.type
        parts = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if caught is None or any(isinstance(p, ast.Name) and p.id in names for p in parts):
            return True
    return False


class _Imports(ast.NodeVisitor):
    """(module, line) of every absolute import that can run."""

    def __init__(self) -> None:
        self.found: list[tuple[str, int]] = []

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        optional = _handles_import_error(node)
        for child in [*([] if optional else node.body), *node.handlers, *node.orelse]:
            self.visit(child)
        for child in node.finalbody:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, node.lineno) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.found.append((node.module, node.lineno))


def imports(tree: ast.AST) -> list[tuple[str, int]]:
    collector = _Imports()
    collector.visit(tree)
    return collector.found


def refused(module: str) -> str | None:
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        owner = GroupFinder.refused.get(".".join(parts[:i]))
        if owner:
            return owner
    return None


def main(paths: list[str]) -> int:
    files = [f for p in map(Path, paths) for f in ([p] if p.is_file() else sorted(p.rglob("*.py")))]
    problems = []
    for file in files:
        for module, line in imports(ast.parse(file.read_text(encoding="utf-8"))):
            try:
                importlib.import_module(module)
            except ImportError as error:
                owner = refused(module) or refused(getattr(error, "name", None) or "")
                if owner:
                    problems.append(f"{file}:{line}: {module} needs {owner}, outside the group")
    print("\n".join(problems) or f"{len(files)} files: every import is in the group")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
