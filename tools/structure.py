"""Measure the source tree's structure: import cycles, long modules, dicts across packages.

Usage: python tools/structure.py [--src src/pdefm]

Prints
- import cycles between modules (every ``import pdefm...``, also those inside functions);
- modules over the line limit (400);
- public functions annotated to return a bare ``dict`` (``dict`` or ``dict[str, Any|object]``)
  that another subpackage imports;
- modules that read card / record / row fields by string key (``card["x"]``,
  ``record.get("x")``).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

LINE_LIMIT = 400
CONTRACT_NAMES = ("card", "record", "row")


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse_tree(src: Path) -> dict[str, ast.Module]:
    return {
        module_name(p, src): ast.parse(p.read_text(), str(p)) for p in sorted(src.rglob("*.py"))
    }


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The pdefm modules ``name`` imports (``from pdefm.x import y`` counts pdefm.x.y when
    that is a module, else pdefm.x)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    out.add(full)
                elif node.module in known:
                    out.add(node.module)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def import_graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    known = set(trees)
    # importing pdefm.x.y also runs pdefm.x/__init__; package inits are not counted as edges
    # to keep cycles about code, not about re-exports
    return {
        name: {m for m in imports_of(name, tree, known) if not _is_package(m, known)}
        for name, tree in trees.items()
    }


def _is_package(module: str, known: set[str]) -> bool:
    return any(k.startswith(module + ".") for k in known)


def long_modules(src: Path) -> list[tuple[str, int]]:
    out = []
    for p in sorted(src.rglob("*.py")):
        n = len(p.read_text().splitlines())
        if n > LINE_LIMIT:
            out.append((str(p.relative_to(src.parent)), n))
    return sorted(out, key=lambda t: -t[1])


def _bare_dict(annotation: ast.expr | None) -> bool:
    if annotation is None:
        return False
    text = ast.unparse(annotation)
    return text in ("dict", "dict[str, Any]", "dict[str, object]", "Dict")


def dict_functions(trees: dict[str, ast.Module]) -> list[tuple[str, str, list[str]]]:
    """(module, function, importing subpackages) for public bare-dict functions used across
    a subpackage boundary."""
    defined: dict[tuple[str, str], bool] = {}
    for name, tree in trees.items():
        for node in tree.body:
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not node.name.startswith("_")
                and _bare_dict(node.returns)
            ):
                defined[(name, node.name)] = True
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    key = (node.module, alias.name)
                    if key in defined and package_of(node.module) != package_of(name):
                        users[key].add(package_of(name))
    return sorted((m, f, sorted(u)) for (m, f), u in users.items())


def string_key_readers(trees: dict[str, ast.Module]) -> dict[str, int]:
    """Modules reading ``<card|record|row>["key"]`` or ``.get("key")``, with counts."""
    counts: dict[str, int] = defaultdict(int)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                if isinstance(node.slice.value, str):
                    target = node.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                target = node.func.value
            if target is not None and _is_contract_name(target):
                counts[name] += 1
    return dict(sorted(counts.items(), key=lambda t: -t[1]))


def _is_contract_name(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        text = node.id
    elif isinstance(node, ast.Attribute):
        text = node.attr
    else:
        return False
    return any(text == c or text.endswith("_" + c) for c in CONTRACT_NAMES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(Path(__file__).parents[1] / "src" / "pdefm"))
    args = parser.parse_args(argv)
    src = Path(args.src)
    trees = parse_tree(src)
    found = cycles(import_graph(trees))
    print(f"import cycles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    longs = long_modules(src)
    print(f"modules over {LINE_LIMIT} lines: {len(longs)}")
    for path, n in longs:
        print(f"  {n:5d}  {path}")
    dicts = dict_functions(trees)
    print(f"public functions returning a bare dict, used from another subpackage: {len(dicts)}")
    for module, func, users in dicts:
        print(f"  {module}.{func}  <- {', '.join(users)}")
    readers = string_key_readers(trees)
    print(f"modules reading card/record/row keys by string: {len(readers)}")
    for module, n in readers.items():
        print(f"  {n:4d}  {module}")
    print(f"command: python tools/structure.py --src {args.src}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
