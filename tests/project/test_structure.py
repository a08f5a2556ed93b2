"""The shape of the code: no import circle among the project's modules, optvis stays pure torch,
and the README's Python examples run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO

SRC = REPO / "src"


def module_name(path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, object]:
    return {module_name(p): p for p in (SRC / "interp").rglob("*.py")}


def imports_of(path, name: str, modules) -> set[str]:
    """Every project module that ``path`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from interp.optvis import render` names the submodule when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        deps = imports_of(path, name, modules)
        # a package's own __init__ importing its submodules is how packages re-export; a submodule
        # importing its package's __init__ is what would close a circle, and that stays an edge
        graph[name] = {d for d in deps if not d.startswith(name + ".")} if path.name == "__init__.py" else deps
    return graph


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_the_project_modules():
    graph = import_graph()
    assert "interp.cli" in graph and "interp.config" in graph["interp.cli"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_layers_import_only_downwards():
    """optvis imports nothing of the project but itself and the error types; steps never import
    callbacks; nothing below the CLI imports the CLI."""
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("interp.optvis"):
            assert all(d.startswith("interp.optvis") or d == "interp.errors" for d in deps), (name, deps)
        if name.startswith("interp.steps"):
            assert not any(d.startswith(("interp.callbacks", "interp.cli", "interp.apps")) for d in deps), (name, deps)
        if name not in ("interp.cli", "interp.__main__"):
            assert "interp.cli" not in deps, name


MAX_MODULE_LINES = 600
# Modules still being split; drop them from here once they are short enough (none today).
LONG_MODULES_BEING_SPLIT: set[str] = set()


def test_no_module_is_longer_than_600_lines():
    """A module that grows past the limit is split into a package or sibling modules that re-export its names."""
    long = {
        path.relative_to(SRC).as_posix(): n
        for path in (SRC / "interp").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not {p: n for p, n in long.items() if p not in LONG_MODULES_BEING_SPLIT}, long


MAX_PARAMETERS = 8


def parameters_over(limit: int, tree: ast.AST) -> list[tuple[str, int]]:
    """(name, count) of every function in ``tree`` other than a constructor taking more than ``limit``
    parameters; ``self``/``cls`` and ``*args``/``**kwargs`` are not counted."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "__init__":
            names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
            count = len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)
            if count > limit:
                found.append((node.name, count))
    return found


def test_the_parameter_counter_counts():
    tree = ast.parse(
        "def f(a, b, *, c, **kw): pass\n"
        "class A:\n    def g(self, a, b, c): pass\n    def __init__(self, a, b, c, d): pass"
    )
    assert parameters_over(2, tree) == [("f", 3), ("g", 3)]


def test_no_function_above_optvis_takes_more_than_8_parameters():
    """Settings travel as one dataclass (``interp.settings``): no function outside ``interp.optvis`` takes more than
    8 parameters, constructors excepted. The public verbs of optvis keep their keyword arguments."""
    long = {
        f"{path.relative_to(SRC).as_posix()}:{name}": n
        for path in (SRC / "interp").rglob("*.py")
        if "optvis" not in path.relative_to(SRC / "interp").parts
        for name, n in parameters_over(MAX_PARAMETERS, ast.parse(path.read_text()))
    }
    assert not long, long


def readme_python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, mnist_root):
    """Every ```python block of the README runs, in order, in one fresh interpreter (small data)."""
    blocks = readme_python_blocks()
    assert blocks, "the README has no Python example"
    script = "\n\n".join(blocks)
    env_setup = textwrap.dedent(f"""
        import os
        os.environ["INTERP_DATA_DIR"] = {str(mnist_root)!r}
        os.environ["INTERP_README_FAST"] = "1"
    """)
    (tmp_path / "readme_examples.py").write_text(env_setup + script)
    proc = subprocess.run(
        [sys.executable, "readme_examples.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


FRAMEWORKS = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "tensorboard")


def test_optvis_imports_no_framework():
    """Every module of ``interp.optvis``, imported in a fresh interpreter, loads none of the frameworks the
    layers above it use: optvis stays usable alone, like Lucent's optvis or Captum's attr."""
    modules = sorted(
        "interp." + ".".join(p.relative_to(SRC / "interp").with_suffix("").parts).replace(".__init__", "")
        for p in (SRC / "interp" / "optvis").rglob("*.py")
    )
    assert "interp.optvis.render" in modules and "interp.optvis.scores.faithfulness" in modules
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r}))\n"
        "print(bad)\nsys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
