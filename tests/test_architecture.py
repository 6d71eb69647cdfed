"""The tree's architecture rules, checked on the source with ``ast``.

- No import cycle among ``uqbench`` modules, counting imports inside functions (they run
  too, only later); imports under ``if TYPE_CHECKING:`` never run and are not counted.
- No module imports another module's underscore names: neither ``from m import _name``
  nor a private module (``pkg._mod``) from outside the package that owns it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "uqbench"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    out.update(id(n) for n in ast.walk(sub))
    return out


def _imports(name: str, path: Path) -> list[tuple[str, list[str], bool]]:
    """(absolute module, imported names, runs at run time) for each import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _type_checking_nodes(tree)
    package = name if _is_package(path) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, [], id(node) not in skipped))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], id(node) not in skipped))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names, runs in _imports(name, path):
            if not runs or not target.startswith(PACKAGE):
                continue
            # `from pkg import sub` imports the submodule when there is one.
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            plain = [n for n in names if f"{target}.{n}" not in modules]
            edges = subs + ([target] if plain or not names else [])
            graph[name].update(e for e in edges if e in modules and e != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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


def _private_owner(target: str) -> str | None:
    """The package that owns the first private component of ``target``, if any."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _violations() -> list[str]:
    modules = _modules()
    out = []
    for name, path in modules.items():
        package = name if _is_package(path) else name.rpartition(".")[0]
        for target, names, _ in _imports(name, path):
            if not target.startswith(PACKAGE):
                continue
            owner = _private_owner(target)
            if owner is not None and not (package + ".").startswith(owner + "."):
                out.append(f"{name} imports private module {target}")
            for imported in names:
                full = f"{target}.{imported}"
                if full in modules:
                    owner = _private_owner(full)
                    if owner is not None and not (package + ".").startswith(owner + "."):
                        out.append(f"{name} imports private module {full}")
                elif imported.startswith("_") and not imported.startswith("__"):
                    if target != name:
                        out.append(f"{name} imports {target}.{imported}")
    return sorted(set(out))


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_foreign_underscore_imports():
    violations = _violations()
    assert not violations, "\n".join(violations)


# -- the checker itself ------------------------------------------------------------------


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    ("target", "owner"),
    [("uqbench.metrics._registry", "uqbench.metrics"), ("uqbench.store", None), ("uqbench.__init__", None)],
)
def test_private_owner(target, owner):
    assert _private_owner(target) == owner


def test_the_graph_sees_function_level_imports(tmp_path, monkeypatch):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from uqbench import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from uqbench.c import X\nfrom uqbench.a import f\n"
    )
    (pkg / "c.py").write_text("from uqbench.b import _hidden\nfrom uqbench.d import _x\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    graph = _graph()
    assert graph["uqbench.a"] == {"uqbench.b"}
    assert graph["uqbench.b"] == {"uqbench.a"}  # the TYPE_CHECKING import does not count
    assert _cycles(graph) == [["uqbench.a", "uqbench.b"]]
    assert _violations() == ["uqbench.c imports uqbench.b._hidden", "uqbench.c imports uqbench.d._x"]
