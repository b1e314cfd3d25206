"""The package's import graph: layers that only import downwards, no cycles, nothing from the simulator.

Every `import` in every module counts, at module level or inside a function, under TYPE_CHECKING or not:
an import inside a function is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "assistant_forget"

# Lowest first. A module may import its own subpackage and the subpackages below it, never one above.
LAYERS = ["core", "device", "export", "families", "methods", "runner", "verify", "build", "<top>", "dashboard"]
CORE_THIRD_PARTY = {"torch", "numpy", "safetensors"}  # all core/ may import besides the standard library
OPTIONAL = {"core.ray_executor": {"ray"}}  # optional extras ([fleet]), each imported lazily by one module only


def layer(module: str) -> str:
    """The subpackage of `module` (dotted, without the package name); `<top>` for api, cli and __init__."""
    head = module.split(".")[0]
    return head if head in LAYERS else "<top>"


def modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name or "__init__"] = path
    return out


def imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(modules of this package that `name` imports, top-level names of other packages it imports)."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if name != "__init__" else []
    inside, outside = set(), set()
    known = modules()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("assistant_forget"):
                    targets.append(a.name.removeprefix("assistant_forget").lstrip("."))
                else:
                    outside.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_pkg else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("assistant_forget"):
                mod = node.module.removeprefix("assistant_forget").lstrip(".")
            else:
                outside.add((node.module or "").split(".")[0])
                continue
            for a in node.names:  # `from pkg import module` names a module, `from module import name` a name
                sub = f"{mod}.{a.name}" if mod else a.name
                targets.append(sub if sub in known else mod)
        inside.update(t or "__init__" for t in targets)
    return inside - {name}, outside


GRAPH = {name: imports(name, path) for name, path in modules().items()}


def test_every_module_is_in_a_layer():
    stray = sorted(n for n in GRAPH if layer(n) == "<top>" and n not in ("__init__", "api", "cli", "__main__"))
    assert not stray, f"modules outside the layers: {stray}"


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_only_go_down(name):
    rank = LAYERS.index(layer(name))
    up = sorted(t for t in GRAPH[name][0]
                if t not in ("__init__",) and LAYERS.index(layer(t)) >= rank and layer(t) != layer(name))
    assert not up, f"{name} ({layer(name)}) imports from its own level or above: {up}"


def test_no_cycles():
    graph = {n: {t for t in deps if t in GRAPH} for n, (deps, _) in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_library_never_imports_the_simulator():
    users = sorted(n for n, (_, outside) in GRAPH.items() if "device_sim" in outside)
    assert not users, f"the library imports device_sim in {users}"


def test_core_needs_only_torch():
    import sys

    extra = {n: sorted(o - CORE_THIRD_PARTY - OPTIONAL.get(n, set()) - set(sys.stdlib_module_names)
                       - {"__future__", ""})
             for n, (_, o) in GRAPH.items() if layer(n) == "core"}
    assert not any(extra.values()), f"core imports more than torch: {extra}"


def test_the_check_sees_a_violation(tmp_path):
    """The walker itself: a relative import upwards and a cycle are both found."""
    (tmp_path / "x.py").write_text("from ..runner.forget import forget\nfrom . import y\n")
    deps, _ = imports("core.x", tmp_path / "x.py")
    assert "runner.forget" in deps
