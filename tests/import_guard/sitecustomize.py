"""Make this interpreter see only what one dependency group installs.

Put this folder first on ``PYTHONPATH`` and name the group's requirement files in
``BYOM_IMPORT_GROUP`` (``os.pathsep``-separated): every module that only distributions outside the
group's closure (the named packages, the extras asked for, and everything they require, as pip
would install it) provide is then *not installed* for this interpreter. ``import torch`` raises
``ModuleNotFoundError`` and ``importlib.util.find_spec("torch")`` returns ``None``, as in a virtual
environment built from the group alone, without the minutes and the disk space that building one
takes. Each refusal is reported on stderr with the distribution it belongs to.

Used by tests/test_requirements.py; the project's own modules and the standard library are never
refused (no distribution owns them). One gap errs towards failing: the importlib_metadata backport,
once imported, adds a finder that still sees every distribution's metadata; code that trusts it
and imports a refused module then fails, as it would not in a real group venv.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from importlib import metadata
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType
from typing import ClassVar

GROUP_ENV = "BYOM_IMPORT_GROUP"
# `-r other.txt` includes; options such as `--extra-index-url` name no package.
INCLUDE = re.compile(r"^-r\s+(\S+)")
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def canonical(name: str) -> str:
    """PEP 503 name: `ruamel.yaml`, `Ruamel_YAML` and `ruamel-yaml` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def group_requirements(path: Path) -> Iterator[tuple[str, frozenset[str]]]:
    """(name, extras) of each package a requirements file (and the files it includes) names."""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if include := INCLUDE.match(line):
            yield from group_requirements(path.parent / include.group(1))
        elif match := NAME.match(line):
            extras = frozenset(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
            yield match.group(1), extras


def closure(roots: Iterable[tuple[str, frozenset[str]]]) -> set[str]:
    """Every installed distribution pip would install for ``roots``: their requirements, with
    environment markers (and the extras asked for) evaluated here."""
    from packaging.requirements import Requirement

    installed: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(canonical(name), extras) for name, extras in roots]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement that does not apply on this platform or is not installed
        installed.add(name)
        for spec in dist.requires or ():
            requirement = Requirement(spec)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""}):
                todo.append((canonical(requirement.name), frozenset(requirement.extras)))
    return installed


def provided_modules(dist: metadata.Distribution) -> Iterator[str]:
    """Dotted names of the modules and packages a distribution's files make importable."""
    for file in dist.files or ():
        parts = file.parts
        if not parts or parts[0] == ".." or "__pycache__" in parts:
            continue
        if parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        leaf = parts[-1]
        if leaf.endswith(".py"):
            stem = leaf[: -len(".py")]
        elif leaf.endswith((".so", ".pyd")):
            stem = leaf.split(".", 1)[0]  # _C.cpython-311-x86_64-linux-gnu.so -> _C
        else:
            continue
        module = parts[:-1] if stem == "__init__" else (*parts[:-1], stem)
        if module and all(part.isidentifier() for part in module):
            yield ".".join(module)


def refused_modules(allowed: set[str]) -> tuple[dict[str, str], set[str]]:
    """Module name -> distribution, for modules only distributions outside ``allowed`` provide;
    and which of them are mere folders for the group (a refused package's ``__init__.py`` around
    an allowed subpackage: ``azure.monitor.opentelemetry`` around ``...opentelemetry.exporter``)."""
    owners: dict[str, str] = {}
    kept: set[str] = set()
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"] or "")
        modules = provided_modules(dist)
        if name in allowed:
            kept.update(modules)
        else:
            owners.update((module, name) for module in modules)
    refused = {module: owner for module, owner in owners.items() if module not in kept}
    parents = {module.rsplit(".", i)[0] for module in kept for i in range(1, module.count(".") + 1)}
    return refused, parents & refused.keys()


class GroupFinder:
    """Stands in for ``PathFinder`` on ``sys.meta_path``: finds what it finds, less the refused
    modules (``None``, so the import system reports them as not installed)."""

    refused: ClassVar[dict[str, str]] = {}
    namespaces: ClassVar[set[str]] = set()
    allowed: ClassVar[frozenset[str]] = frozenset()
    group: ClassVar[str] = ""

    @classmethod
    def find_spec(
        cls, fullname: str, path: list[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname in cls.namespaces:
            # Without the refused distribution its folder is a namespace package.
            found = PathFinder.find_spec(fullname, path, target)
            spec = ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = list(found.submodule_search_locations or [])
            return spec
        owner = cls.refused.get(fullname)
        if owner is not None:
            print(
                f"import guard: {fullname} is not installed in {cls.group} "
                f"(it comes with {owner}, which the group does not require)",
                file=sys.stderr,
            )
            return None
        return PathFinder.find_spec(fullname, path, target)

    @classmethod
    def find_distributions(
        cls, context: metadata.DistributionFinder.Context | None = None
    ) -> Iterator[metadata.Distribution]:
        """importlib.metadata sees the group's distributions only (``version("torch")`` fails)."""
        context = context or metadata.DistributionFinder.Context()
        for dist in PathFinder.find_distributions(context):
            if canonical(dist.metadata["Name"] or "") in cls.allowed:
                yield dist

    @classmethod
    def invalidate_caches(cls) -> None:
        PathFinder.invalidate_caches()


def install(files: list[Path]) -> None:
    before = set(sys.modules)
    allowed = closure(req for path in files for req in group_requirements(path))
    GroupFinder.refused, GroupFinder.namespaces = refused_modules(allowed)
    GroupFinder.allowed = frozenset(allowed)
    GroupFinder.group = " + ".join(path.name for path in files)
    # What the guard itself imported (packaging) must not stay importable for free.
    for name in set(sys.modules) - before:
        if name in GroupFinder.refused or name.split(".")[0] in GroupFinder.refused:
            del sys.modules[name]
    sys.meta_path[:] = [GroupFinder if f is PathFinder else f for f in sys.meta_path]


if os.environ.get(GROUP_ENV):
    install([Path(p) for p in os.environ[GROUP_ENV].split(os.pathsep)])
