"""Print the repository's structure figures: import arrows and the largest code.

    python scripts/structure_report.py [ROOT]

For ``clients/loreg``, ``registry`` and ``workers`` it walks every module's AST
(imports inside functions and ``TYPE_CHECKING`` blocks included) and prints:

* the arrows between the three packages: how many modules of one import the
  other, and which modules they are;
* import cycles between modules of one package (strongly connected components);
* the five largest modules (lines) and the five largest functions (lines).

Standard library only, so it runs on any checkout, old or new.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = {"loreg": "clients/loreg", "registry": "registry", "workers": "workers"}


def module_files(root: Path) -> dict[str, Path]:
    """Map each dotted module name of the three packages to its file."""
    found: dict[str, Path] = {}
    for top, rel in PACKAGES.items():
        base = root / rel
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([top, *parts])] = path
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Known modules that module ``name`` imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                full = f"{prefix}.{alias.name}"
                add(full if full in known else prefix)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def largest_functions(files: dict[str, Path], n: int = 5) -> list[tuple[int, str]]:
    """The ``n`` longest functions or methods as (lines, "module:qualname")."""
    sizes: list[tuple[int, str]] = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def walk(node: ast.AST, prefix: str, module: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    qual = f"{prefix}{child.name}"
                    lines = (child.end_lineno or child.lineno) - child.lineno + 1
                    sizes.append((lines, f"{module}:{qual}"))
                    walk(child, qual + ".", module)
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.", module)

        walk(tree, "", name)
    return sorted(sizes, reverse=True)[:n]


def main(argv: list[str]) -> int:
    """Print the report for the checkout at ``argv[0]`` (default: this repository)."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    files = module_files(root)
    known = set(files)
    graph = {name: imported_modules(name, path, known) for name, path in files.items()}

    print("## Import arrows between packages (importing modules)")
    arrows: dict[tuple[str, str], set[str]] = defaultdict(set)
    for src, targets in graph.items():
        for dst in targets:
            a, b = src.split(".")[0], dst.split(".")[0]
            if a != b:
                arrows[(a, b)].add(src)
    for a in PACKAGES:
        for b in PACKAGES:
            if a != b:
                mods = sorted(arrows.get((a, b), ()))
                shown = ", ".join(mods) if len(mods) <= 6 else ", ".join(mods[:6]) + ", ..."
                print(f"{a} -> {b}: {len(mods)}" + (f"  ({shown})" if mods else ""))

    print("\n## Import cycles inside a package")
    for top in PACKAGES:
        sub = {k: {t for t in v if t.split(".")[0] == top} for k, v in graph.items()}
        sub = {k: v for k, v in sub.items() if k.split(".")[0] == top}
        comps = cycles(sub)
        print(f"{top}: {len(comps)}" + "".join(f"\n  {' <-> '.join(c)}" for c in comps))

    print("\n## Five largest modules (lines)")
    sizes = sorted(
        ((len(p.read_text(encoding="utf-8").splitlines()), n) for n, p in files.items()),
        reverse=True,
    )
    for lines, name in sizes[:5]:
        print(f"{lines:5d}  {name}")

    print("\n## Five largest functions (lines)")
    for lines, name in largest_functions(files):
        print(f"{lines:5d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
