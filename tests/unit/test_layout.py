"""The package's layout stays true: three floors, imports pointing down, no import circle.

Floors (exchange/__init__.py has the map):

* core: ``errors``, ``config``, ``model/``, ``signing/``, ``policy/``, ``audit/``,
  ``storage/``; imports only the core.
* node: ``node/``; imports the core and itself.
* member: ``member/``; imports the core and itself (a member's tools run without a node).
* doors: ``taxii/``, ``cli/`` and the adapters to come (``misp/``, ``feeds/``,
  ``scheduler``, ``web/``); import the core and the node. Only ``cli/`` calls into
  ``member/`` and the other doors.

The import graph is read from the source with :mod:`ast` (nothing is imported), function
bodies included: an import hidden in a function is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "exchange"

CORE = ("exchange.errors", "exchange.config", "exchange.model", "exchange.signing",
        "exchange.policy", "exchange.audit", "exchange.storage")
NODE = ("exchange.node",)
MEMBER = ("exchange.member",)
DOORS = ("exchange.taxii", "exchange.cli", "exchange.misp", "exchange.feeds",
         "exchange.scheduler", "exchange.web")


@dataclass(frozen=True)
class Import:
    """One import statement of one module."""

    importer: str
    imported: str
    line: int
    type_checking_only: bool


def floor_of(module: str) -> str:
    """The floor a module stands on, by the package it lives in."""
    if module == "exchange":
        return "core"
    if module == "exchange.__main__":
        return "door:exchange.cli"  # ``python -m exchange`` is the command
    for floor, prefixes in (("core", CORE), ("node", NODE), ("member", MEMBER)):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return floor
    for door in DOORS:
        if module == door or module.startswith(door + "."):
            return f"door:{door}"
    raise AssertionError(f"{module} is on no floor: add it to a floor in {__file__}")


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None when it may."""
    source, target = floor_of(importer), floor_of(imported)
    if target == "core" or source == target:
        return None
    if source == "core":
        return f"the core may not import {target}"
    if source in ("node", "member"):
        return f"{source}/ may not import {target}"
    # A door: the node is below it; only the command line calls into the rest.
    if target == "node" or source == "door:exchange.cli":
        return None
    return f"{source.removeprefix('door:')} may not import {target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, source: str, modules: frozenset[str]) -> Iterator[Import]:
    """The project modules ``module`` imports (``from pkg import sub`` names the submodule)."""
    is_package = module + ".__init__" in modules or any(
        m.startswith(module + ".") for m in modules)
    tree = ast.parse(source)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                guarded.update(id(n) for n in ast.walk(inner))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            for alias in node.names:
                candidate = f"{parent}.{alias.name}"
                names.append(candidate if candidate in modules else parent)
        for name in names:
            if name == "exchange" or name.startswith("exchange."):
                yield Import(module, name, node.lineno, id(node) in guarded)


def package_imports() -> list[Import]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = frozenset(module_name(p) for p in paths)
    found: list[Import] = []
    for path in paths:
        found.extend(imports_of(module_name(path), path.read_text(encoding="utf-8"), modules))
    return found


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The import circles of a graph (one path per strongly connected component)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the graph is a few hundred edges
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# -- the rules themselves, so that the checks below can fail --------------------------
@pytest.mark.parametrize(("importer", "imported", "allowed"), [
    ("exchange.model.stix", "exchange.errors", True),
    ("exchange.storage.sql", "exchange.config", True),
    ("exchange.node.service", "exchange.storage.base", True),
    ("exchange.member.signer", "exchange.signing.cxsig", True),
    ("exchange.taxii.app", "exchange.node.service", True),
    ("exchange.cli.main", "exchange.member.client", True),
    ("exchange.cli.main", "exchange.taxii.serve", True),
    ("exchange.__main__", "exchange.cli.main", True),
    ("exchange.policy.engine", "exchange.node.derive", False),
    ("exchange.storage.sql", "exchange.taxii.http", False),
    ("exchange.node.keyring", "exchange.member.verification", False),
    ("exchange.node.service", "exchange.taxii.app", False),
    ("exchange.member.client", "exchange.node.service", False),
    ("exchange.taxii.backend", "exchange.member.client", False),
    ("exchange.taxii.app", "exchange.cli.main", False),
    ("exchange.misp.sync", "exchange.feeds.taxii", False),
], ids=str)
def test_the_floor_rules(importer: str, imported: str, allowed: bool) -> None:
    assert (violation(importer, imported) is None) is allowed


def test_the_reader_sees_relative_function_level_and_submodule_imports() -> None:
    modules = frozenset({"exchange.node", "exchange.node.service", "exchange.node.base",
                         "exchange.member", "exchange.member.client"})
    source = ("from typing import TYPE_CHECKING\n"
              "from . import base\n"
              "if TYPE_CHECKING:\n"
              "    from exchange.member import client\n"
              "def f():\n"
              "    import exchange.member.client\n")
    got = {(i.imported, i.type_checking_only)
           for i in imports_of("exchange.node.service", source, modules)}
    assert got == {("exchange.node.base", False), ("exchange.member.client", True),
                   ("exchange.member.client", False)}


def test_cycles_are_found() -> None:
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]
    assert cycles([("a", "b"), ("b", "c")]) == []


# -- the package ------------------------------------------------------------------------
def test_every_import_points_down_or_sideways_as_allowed() -> None:
    found = package_imports()
    assert len(found) > 200, "the reader found too few imports to be reading the package"
    wrong = [f"{i.importer} (line {i.line}) imports {i.imported}: {why}"
             for i in found if (why := violation(i.importer, i.imported))]
    assert wrong == []


def test_no_import_circle() -> None:
    edges = [(i.importer, i.imported) for i in package_imports()
             if not i.type_checking_only
             # a package's __init__ importing its own submodules is not a circle
             and not i.imported.startswith(i.importer + ".")]
    assert cycles(edges) == []


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if "migrations" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        where = init.relative_to(PACKAGE.parent)
        assert doc, f"{where} has no docstring"
        assert "import" in doc.lower(), f"{where} does not say what it may import"
