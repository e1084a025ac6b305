"""Dependencies point inward: parse every module's imports and enforce the layers.

gateway/api → services → ports → domain; adapters → ports; only ``chatsphere.app``
sees both sides (DESIGN.md, "Rules of the house").
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import chatsphere

PACKAGE_DIR = Path(chatsphere.__file__).parent
STDLIB = frozenset(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module the source of module ``name`` imports, anywhere in it.

    Function bodies and ``TYPE_CHECKING`` blocks count too. ``from pkg import name``
    counts as importing both ``pkg`` and ``pkg.name``, since ``name`` may be a submodule.
    """
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


MODULES: dict[str, set[str]] = {
    module_name(path): imports_of(path) for path in sorted(PACKAGE_DIR.rglob("*.py"))
}


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def modules_in(*packages: str) -> list[str]:
    return [m for m in MODULES if within(m, *packages)]


def violations(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{m} imports {i}"
        for m in modules
        for i in sorted(MODULES[m])
        if within(i, *forbidden) and not within(m, *forbidden)
    ]


def test_the_walk_sees_the_whole_package() -> None:
    for expected in (
        "chatsphere.app",
        "chatsphere.domain.rooms",
        "chatsphere.protocol.codec",
        "chatsphere.services.messages",
        "chatsphere.adapters.sql.store",
        "chatsphere.gateway.hub",
    ):
        assert expected in MODULES
    # relative imports are resolved against the importing module's package
    assert "chatsphere.errors" in MODULES["chatsphere.domain.rooms"]
    assert "chatsphere.adapters.sql.schema" in MODULES["chatsphere.adapters.sql.store"]


def test_domain_imports_only_stdlib_and_the_core() -> None:
    allowed = ("chatsphere.errors", "chatsphere.ids", "chatsphere.clock", "chatsphere.domain")
    bad = [
        f"{m} imports {i}"
        for m in modules_in("chatsphere.domain")
        for i in sorted(MODULES[m])
        if i.split(".")[0] not in STDLIB and not within(i, *allowed)
    ]
    assert bad == []


def test_protocol_does_not_import_the_outer_layers() -> None:
    forbidden = (
        "chatsphere.services",
        "chatsphere.adapters",
        "chatsphere.gateway",
        "chatsphere.api",
        "chatsphere.app",
        "chatsphere.server",
    )
    assert violations(modules_in("chatsphere.protocol"), forbidden) == []


def test_ports_import_only_inward() -> None:
    forbidden = (
        "chatsphere.services",
        "chatsphere.adapters",
        "chatsphere.gateway",
        "chatsphere.api",
        "chatsphere.app",
        "chatsphere.server",
    )
    assert violations(modules_in("chatsphere.ports"), forbidden) == []


def test_services_do_not_import_adapters_or_the_edge() -> None:
    forbidden = (
        "chatsphere.adapters",
        "chatsphere.gateway",
        "chatsphere.api",
        "chatsphere.app",
        "chatsphere.server",
    )
    assert violations(modules_in("chatsphere.services"), forbidden) == []


def test_only_the_composition_root_imports_adapters() -> None:
    outside = [m for m in MODULES if not within(m, "chatsphere.adapters", "chatsphere.app")]
    assert violations(outside, ("chatsphere.adapters",)) == []


@pytest.mark.parametrize("edge", ["chatsphere.gateway", "chatsphere.api"])
def test_the_edge_never_imports_adapters(edge: str) -> None:
    assert violations(modules_in(edge), ("chatsphere.adapters",)) == []


def test_the_checker_resolves_relative_and_absolute_imports() -> None:
    source = (
        "from ..adapters.sql.store import SqlStore\n"
        "import chatsphere.gateway.hub\n"
        "from . import access\n"
        "def f():\n"
        "    from ...chatsphere_outside import x\n"
    )
    found = imports_in(source, "chatsphere.services.probe")
    assert {"chatsphere.adapters.sql.store", "chatsphere.gateway.hub"} <= found
    assert "chatsphere.services.access" in found
    assert "chatsphere_outside" in found  # level 3 from chatsphere.services: the top level
    assert within("chatsphere.adapters.sql.store", "chatsphere.adapters")
    assert not within("chatsphere.adaptersx", "chatsphere.adapters")
    package_init = imports_in("from .rooms import Room\n", "chatsphere.domain", is_package=True)
    assert "chatsphere.domain.rooms" in package_init
