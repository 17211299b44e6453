"""Imports run one way: ``loreg`` (clients) <- ``registry`` <- ``workers``.

Every module's AST is walked, so imports inside functions and under
``TYPE_CHECKING`` count too:

* ``registry`` never imports ``workers``, except in its composition root
  ``registry/serve.py`` (it starts the embedded server and hands it the local executor);
* ``loreg`` never imports ``registry`` or ``workers``. Its server commands
  (``serve``, ``db upgrade``, ``fsck``, ``worker``) reach server code through the one
  string indirection ``_import_server(module, attribute)`` of ``loreg/cli/server.py``;
  the modules it may name are listed here, and nothing else in ``loreg`` imports by name
  (but the package's lazy ``__getattr__`` and the CLI's command loader ``_setup``, which
  load their own ``loreg.*`` modules);
* the modules of ``loreg`` import each other without a circle: their import graph
  (lazy, ``TYPE_CHECKING`` and the imports by name of the two loaders included) is a DAG.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"registry": REPO_ROOT / "registry", "workers": REPO_ROOT / "workers"}
PACKAGES["loreg"] = REPO_ROOT / "clients" / "loreg"
COMPOSITION_ROOTS = {"registry.serve"}
FORBIDDEN = {"registry": {"workers"}, "loreg": {"registry", "workers"}}
SERVER_COMMAND_MODULES = {
    "registry.serve",
    "registry.migrate",
    "registry.services.fsck",
    "registry.services.tokens",
    "registry.settings",
    "workers.main",
}
# functions of loreg allowed to call importlib.import_module
DYNAMIC_IMPORTERS = {
    "loreg.cli.server": {"_import_server"},
    "loreg.cli.main": {"_setup"},
    "loreg": {"__getattr__"},
    # imports httpx (a third-party package) with its optional CLI module blocked
    "loreg._httpx": {"import_without"},
}


def modules(package: str) -> Iterator[tuple[str, Path]]:
    """``(dotted module name, path)`` of every module of ``package``."""
    root = PACKAGES[package]
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _from_base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
    return ".".join([*base, node.module] if node.module else base)


def imported_names(module: str, path: Path, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import statement in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, _from_base(module, path, node)


def offending_imports() -> list[tuple[str, int, str]]:
    """``(module, line, imported module)`` for every import against the arrows."""
    found = []
    for package, forbidden in FORBIDDEN.items():
        for module, path in modules(package):
            if module in COMPOSITION_ROOTS:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, name in imported_names(module, path, tree):
                if name.split(".", 1)[0] in forbidden:
                    found.append((module, line, name))
    return found


def test_imports_run_one_way():
    offending = offending_imports()
    listing = "\n".join(f"  {module}:{line} imports {name}" for module, line, name in offending)
    assert not offending, f"imports against clients <- registry <- workers:\n{listing}"


def _calls(tree: ast.AST, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == name:
                yield node


def test_the_cli_reaches_server_code_through_one_indirection():
    names, strays = set(), []
    for module, path in modules("loreg"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _calls(tree, "_import_server"):
            first = call.args[0] if call.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                strays.append(f"{module}:{call.lineno} _import_server without a literal module")
            else:
                names.add(first.value)
        owners = {
            function.name
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef)
            for _ in _calls(function, "import_module")
        }
        if owners - DYNAMIC_IMPORTERS.get(module, set()):
            strays.append(f"{module}: import_module called in {sorted(owners)}")
        for call in _calls(tree, "__import__"):
            strays.append(f"{module}:{call.lineno} __import__")
    assert not strays, strays
    assert names - SERVER_COMMAND_MODULES == set(), "server modules the CLI may not name"
    assert {"registry.serve", "workers.main"} <= names  # the check looks at real calls


def test_the_package_loads_lazily_only_its_own_modules():
    import loreg
    from loreg.cli.main import COMMANDS

    assert loreg._LAZY and all(name.startswith("loreg.") for name in loreg._LAZY.values())
    known = {module for module, _ in modules("loreg")}
    assert {target.partition(":")[0] for _, target, _ in COMMANDS} <= known - {"loreg.cli"}


def _own_module(name: str, known: set[str]) -> str | None:
    """The module of ``known`` that ``name`` (a module, or a name inside one) is, if any."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def module_graph(package: str) -> dict[str, set[str]]:
    """``module -> the modules of package it imports``, from every import statement.

    ``from loreg.cli import output`` is an arrow to ``loreg.cli.output`` (a module),
    ``from loreg import __version__`` one to ``loreg`` itself (a name of the package).
    The package's lazy attributes (``loreg._LAZY``) count as imports of ``loreg``, the
    command modules the CLI loads by name (``loreg.cli.main.COMMANDS``) as imports of
    ``loreg.cli.main``.
    """
    found = dict(modules(package))
    known = set(found)
    graph: dict[str, set[str]] = {module: set() for module in known}
    for module, path in found.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(module, path, node)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                hit = _own_module(target, known)
                if hit is not None and hit != module:
                    graph[module].add(hit)
    if package == "loreg":
        import loreg
        from loreg.cli.main import COMMANDS

        graph["loreg"] |= set(loreg._LAZY.values())
        graph["loreg.cli.main"] |= {target.partition(":")[0] for _, target, _ in COMMANDS}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of ``graph`` as ``[a, b, ..., a]``, or ``[]`` when it is a DAG."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return []


def test_the_client_modules_import_each_other_without_a_circle():
    graph = module_graph("loreg")
    # the graph holds the arrows that are really there: by module, by name, lazy, TYPE_CHECKING
    assert {"loreg.cli.jobs", "loreg.cli.output", "loreg.constants"} <= graph["loreg.cli.main"]
    assert {"loreg.jobs", "loreg.vocabulary", "loreg.client"} <= graph["loreg.cli.jobs"]
    assert "loreg.client" in graph["loreg"]
    cycle = find_cycle(graph)
    assert not cycle, "loreg modules import each other in a circle: " + " -> ".join(cycle)


def test_find_cycle_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
