"""Every public function and class of the library's layers documents its arguments and return value.

Google style, as pdoc renders it (``make docs``): a function that takes arguments has an ``Args:`` section, one
that returns something (a return annotation other than ``None``) a ``Returns:`` (or, for a generator, ``Yields:``)
section; a class whose constructor takes arguments documents them under ``Args:`` (a dataclass or named tuple, whose
fields are its constructor's arguments, may list them under ``Attributes:``). The walk is static (``ast``): nothing is
imported.

Checked: top-level functions and classes whose names do not start with ``_``, and the public methods of public
classes, except dunder methods and the hooks a framework calls (Lightning's ``forward``, ``training_step``,
``on_*``, ``setup``, ``*_dataloader``, ...), which the framework documents, and the overrides of
``InterpretationCallback.interpret`` and ``.validate``, which inherit the base's documentation. A ``@property`` needs
a docstring only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = REPO / "src" / "interp"
CHECKED = ("optvis", "models", "data", "steps", "callbacks")

# Files exempted while their Args:/Returns: sections are being written; empty now that every file is documented.
# A file added here must be documented, and dropped from the set, by the next session.
NOT_YET_CHECKED: set[str] = set()

# Methods a framework calls and documents (Lightning, torch.nn.Module, torch.utils.data).
HOOKS = {
    "forward",
    "training_step",
    "validation_step",
    "test_step",
    "predict_step",
    "setup",
    "teardown",
    "prepare_data",
    "configure_optimizers",
    "configure_callbacks",
    "state_dict",
    "load_state_dict",
    "state_key",
    "extra_repr",
    "reset_parameters",
}
HOOK_PREFIXES = ("on_",)
HOOK_SUFFIXES = ("_dataloader",)

# Methods a subclass overrides whose documentation it inherits (pdoc shows the base's docstring):
# ``InterpretationCallback.interpret`` and ``.validate``, checked on the base class itself.
INHERITED = {"interpret", "validate"}
BASES = {"InterpretationCallback"}


@dataclass(frozen=True)
class Definition:
    """One public function, method or class, as the checker sees it.

    Attributes:
        where: ``path:line``, relative to ``src/interp``.
        name: qualified name (``Class.method`` for a method).
        node: the ``ast`` node.
        in_class: the class of a method, else ``None``.
    """

    where: str
    name: str
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    in_class: ast.ClassDef | None = None


def checked_files() -> list[Path]:
    files = []
    for package in CHECKED:
        for path in sorted((PACKAGE / package).rglob("*.py")):
            if path.relative_to(PACKAGE).as_posix() not in NOT_YET_CHECKED:
                files.append(path)
    return files


def is_hook(name: str) -> bool:
    return name in HOOKS or name.startswith(HOOK_PREFIXES) or name.endswith(HOOK_SUFFIXES)


def decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    names = set()
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


def definitions(path: Path) -> Iterator[Definition]:
    return definitions_in(path.read_text(), path.relative_to(PACKAGE).as_posix())


def definitions_in(source: str, rel: str) -> Iterator[Definition]:
    """The checked definitions of ``source``, the text of the file ``rel`` (relative to ``src/interp``)."""
    for node in ast.parse(source, filename=rel).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        if "overload" in decorator_names(node):
            continue
        yield Definition(f"{rel}:{node.lineno}", node.name, node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                skipped = {"overload", "setter", "deleter"}  # a property's setter shares its getter's docstring
                if item.name.startswith("_") or is_hook(item.name) or skipped & decorator_names(item):
                    continue
                if item.name in INHERITED and node.name not in BASES:
                    continue
                yield Definition(f"{rel}:{item.lineno}", f"{node.name}.{item.name}", item, node)


def arguments(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    args = fn.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    static = "staticmethod" in decorator_names(fn)
    if method and not static and names:
        names = names[1:]  # self or cls
    return names


def returns_something(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A return annotation other than ``None``/``NoReturn``; without one, a ``return <value>`` in the body."""
    if fn.returns is not None:
        text = ast.unparse(fn.returns).strip("'\"")
        return text not in ("None", "NoReturn", "Never", "typing.NoReturn")
    nested = {id(n) for n in ast.walk(fn) if n is not fn and isinstance(n, (ast.FunctionDef, ast.Lambda))}
    inner = {id(c) for n in ast.walk(fn) if id(n) in nested for c in ast.walk(n) if c is not n}
    return any(
        isinstance(n, ast.Return) and n.value is not None and id(n) not in inner
        for n in ast.walk(fn)
        if id(n) not in nested
    )


def is_record(cls: ast.ClassDef) -> bool:
    """A dataclass or a named tuple: its fields are its constructor's arguments."""
    bases = {ast.unparse(b) for b in cls.bases}
    return "dataclass" in decorator_names(cls) or bool(bases & {"NamedTuple", "typing.NamedTuple"})


def problems_of(d: Definition) -> list[str]:
    doc = ast.get_docstring(d.node) or ""
    if not doc.strip():
        return ["no docstring"]
    found = []
    if isinstance(d.node, ast.ClassDef):
        init = next(
            (n for n in d.node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "__init__"),
            None,
        )
        if init is not None and arguments(init, method=True) and "Args:" not in doc:
            found.append("constructor: no Args:")
        if init is None and is_record(d.node):
            has_fields = any(isinstance(n, ast.AnnAssign) for n in d.node.body)
            if has_fields and "Args:" not in doc and "Attributes:" not in doc:
                found.append("fields: no Args: or Attributes:")
        return found
    if "property" in decorator_names(d.node) or "cached_property" in decorator_names(d.node):
        return found  # documented as an attribute
    if arguments(d.node, method=d.in_class is not None) and "Args:" not in doc:
        found.append("no Args: section")
    if returns_something(d.node) and "Returns:" not in doc and "Yields:" not in doc:
        found.append("no Returns: section")
    return found


def all_definitions() -> list[Definition]:
    return [d for path in checked_files() for d in definitions(path)]


def report() -> list[str]:
    return [f"{d.where} {d.name}: {', '.join(p)}" for d in all_definitions() if (p := problems_of(d))]


def test_the_checked_packages_are_there():
    assert all((PACKAGE / p).is_dir() for p in CHECKED)
    missing = [f for f in NOT_YET_CHECKED if not (PACKAGE / f).is_file()]
    assert not missing, f"allow-listed files that no longer exist (drop them from NOT_YET_CHECKED): {missing}"
    assert len(all_definitions()) > 100


def test_every_public_function_and_class_documents_its_arguments_and_return_value():
    problems = report()
    assert not problems, f"{len(problems)} public definitions lack documentation:\n" + "\n".join(problems)


def _parse(source: str) -> Definition:
    node = ast.parse(source).body[0]
    assert isinstance(node, (ast.FunctionDef, ast.ClassDef))
    return Definition("x.py:1", node.name, node)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(x):\n    return x\n", ["no docstring"]),
        ('def f(x) -> int:\n    """Doc."""\n', ["no Args: section", "no Returns: section"]),
        ('def f(x) -> None:\n    """Doc.\n\n    Args:\n        x: y.\n    """\n', []),
        ('def f():\n    """Doc."""\n    return 1\n', ["no Returns: section"]),
        ('def f():\n    """Doc."""\n    def g():\n        return 1\n', []),
        ('def f(*a, **k) -> "int":\n    """Doc.\n\n    Args:\n        a: x.\n\n    Returns:\n        y."""\n', []),
        ('class C:\n    """Doc."""\n\n    def __init__(self, x):\n        x\n', ["constructor: no Args:"]),
        ('class C:\n    """Doc."""\n\n    def __init__(self):\n        pass\n', []),
        ('@dataclass\nclass C:\n    """Doc."""\n\n    x: int\n', ["fields: no Args: or Attributes:"]),
        ('@dataclass\nclass C:\n    """Doc.\n\n    Attributes:\n        x: y.\n    """\n\n    x: int\n', []),
    ],
)
def test_the_checker_flags_what_is_missing(source, expected):
    assert problems_of(_parse(source)) == expected


def test_the_checker_walks_methods_but_not_hooks_or_private_names():
    source = (
        'class Net:\n    """Doc."""\n\n'
        "    def forward(self, x):\n        return x\n\n"
        "    def on_train_end(self, trainer):\n        pass\n\n"
        "    def train_dataloader(self):\n        return []\n\n"
        "    def _helper(self, x):\n        return x\n\n"
        "    def __len__(self):\n        return 0\n\n"
        "    def public(self, x):\n        return x\n\n"
        "def _private(x):\n    return x\n\n"
        "def helper(x):\n    return x\n"
    )
    found = list(definitions_in(source, "optvis/probe.py"))
    assert [d.name for d in found] == ["Net", "Net.public", "helper"]
    assert problems_of(found[1]) == ["no docstring"]
