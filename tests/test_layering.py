"""The package layering of README's Architecture section, read from the source with ``ast``.

Every package of ``bench/`` (and ``methods/``) sits in one layer; its ``__init__`` docstring names what it may
import (``May import: ...``). A package may import packages of lower layers, and of its own layer only those
listed before it there. The checks fail on an import that the docstring does not allow, a declaration that
runs against the layer order, an import cycle between modules, a private name taken from another module, one
CLI command importing another, and a module outside every package.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: bottom to top; inside a layer a package may import the ones listed before it (when its docstring says so)
LAYERS = (
    ("core",),
    ("data", "models", "methods"),
    ("evaluation", "training", "analysis", "report", "perf"),
    ("runs", "testing"),
    ("grid",),
    ("cli", "api"),
)
TOP_PACKAGES = ("bench", "methods")


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the project below ``root``, by dotted name (packages by their own name)."""
    modules = {}
    for top in TOP_PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a project module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported project module, imported name or "", line) of every import in ``path``, at any depth
    (inside functions and ``if TYPE_CHECKING`` blocks too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(t, "", node.lineno) for alias in node.names if (t := _target(alias.name, modules))]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: reported by ``violations``
                found.append((".", "", node.lineno))
                continue
            base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.append((sub, "", node.lineno))
                elif (t := _target(base, modules)) is not None:
                    found.append((t, alias.name, node.lineno))
    return found


def package_of(module: str) -> str | None:
    """``bench.training.loop`` -> ``training``; ``methods.reat`` -> ``methods``; None for ``bench`` itself."""
    parts = module.split(".")
    if parts[0] == "methods":
        return "methods"
    if parts[1:] == ["__main__"]:
        return "cli"
    return parts[1] if len(parts) > 1 else None


def declared(root: Path, package: str) -> set[str] | None:
    """The packages that ``package``'s docstring allows (``May import: bench.core, methods.``), or None."""
    init = root / ("methods" if package == "methods" else f"bench/{package}") / "__init__.py"
    doc = (ast.get_docstring(ast.parse(init.read_text())) or "") if init.exists() else ""
    match = re.search(r"^May import:(.*?)(?:\.\s*$|\Z)", doc, re.MULTILINE | re.DOTALL)
    if match is None:
        return None
    names = {n.strip() for n in match.group(1).replace("\n", " ").split(",")} - {"", "nothing"}
    return {package_of(n) or n for n in names}


def rank(package: str) -> tuple[int, int]:
    return next((layer, LAYERS[layer].index(package)) for layer in range(len(LAYERS)) if package in LAYERS[layer])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                component.append(stack.pop())
                if component[-1] == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(root: Path) -> list[str]:
    """Every breach of the layering below ``root``, one line each."""
    modules = module_files(root)
    known = {p for layer in LAYERS for p in layer}
    problems = []
    allowed = {}
    for package in sorted(known):
        allowed[package] = declared(root, package)
        if allowed[package] is None:
            problems.append(f"{package}: its __init__ docstring has no 'May import: ...' line")
            allowed[package] = set()
        for dep in sorted(allowed[package]):
            if dep not in known:
                problems.append(f"{package}: declares unknown package {dep}")
            elif rank(dep) >= rank(package):
                problems.append(f"{package}: may not import {dep}, which is not below it in the layer order")
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = package_of(module)
        where = path.relative_to(root)
        if package is not None and package not in known:
            problems.append(f"{where}: module outside every package of the layer order")
            continue
        for target, name, line in imports(module, path, modules):
            if target == ".":
                problems.append(f"{where}:{line}: relative import; name the module (from bench.x import y)")
                continue
            graph[module].add(target)
            dep = package_of(target)
            if package is None:
                problems.append(f"{where}:{line}: bench/__init__.py imports {target}; it must import nothing")
            elif dep is not None and dep != package and dep in known and dep not in allowed[package]:
                problems.append(f"{where}:{line}: {package} imports {target}; its docstring allows "
                                f"{', '.join(sorted(allowed[package])) or 'nothing'}")
            if name.startswith("_") and not name.startswith("__") and target != module:
                problems.append(f"{where}:{line}: imports the private {target}.{name}")
            if re.fullmatch(r"bench\.cli\.\w+_cmd", module) and re.fullmatch(r"bench\.cli\.\w+_cmd", target) \
                    and target != module:
                problems.append(f"{where}:{line}: command {module} imports command {target}; share code "
                                "through a module that is not a command")
    problems += [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    return problems


def test_the_layering_holds():
    assert violations(ROOT) == []


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in (ROOT / "bench").glob("*/__init__.py")} | {"methods"}
    assert packages == {p for layer in LAYERS for p in layer}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _layered_tree(root: Path, extra: dict[str, str]) -> Path:
    inits = {f"bench/{p}/__init__.py": f'"""{p}.\n\nMay import: {"bench.core" if p != "core" else "nothing"}.\n"""\n'
             for layer in LAYERS for p in layer if p != "methods"}
    inits["methods/__init__.py"] = '"""Methods.\n\nMay import: bench.core, bench.models.\n"""\n'
    return _tree(root, {"bench/__init__.py": "", **inits, **extra})


def test_the_checker_finds_each_kind_of_breach(tmp_path):
    assert violations(_layered_tree(tmp_path / "clean", {"bench/data/a.py": "from bench.core import b\n",
                                                         "bench/core/b.py": ""})) == []
    found = violations(_layered_tree(tmp_path / "bad", {
        "bench/core/up.py": "def f():\n    from bench.grid import spec\n",  # upward, inside a function
        "bench/grid/spec.py": "from bench.data.x import _helper\n",  # private name; data not declared
        "bench/data/x.py": "from bench.data import y\n_helper = 1\n",
        "bench/data/y.py": "import bench.data.x\n",  # cycle x <-> y
        "bench/cli/a_cmd.py": "from bench.cli.b_cmd import run\n",
        "bench/cli/b_cmd.py": "run = 1\n",
        "bench/loose.py": "",
        "bench/models/__init__.py": '"""Models.\n\nMay import: bench.core, bench.runs.\n"""\n',
    }))
    expected = ["models: may not import runs", "core imports bench.grid.spec", "grid imports bench.data.x",
                "imports the private bench.data.x._helper", "command bench.cli.a_cmd imports command",
                "bench/loose.py: module outside", "import cycle: bench.data.x <-> bench.data.y"]
    for text in expected:
        assert any(text in line for line in found), (text, found)
    assert len(found) == len(expected)


#: imported in this order in one fresh interpreter: the modules that must not have been loaded yet
LAZY = [
    ("bench.training.config", ["bench.evaluation.suite", "pyautoattack"]),  # the run config needs no evaluator
    ("bench.training.loop", ["bench.evaluation.suite", "pyautoattack"]),  # validation comes in as a callable
    ("bench.runs.runner", ["pyautoattack"]),  # AutoAttack loads only when it runs
]


@pytest.mark.parametrize("layers", [LAZY, [("bench.models", ["methods"])]])  # Output lives with the models
def test_heavy_modules_load_only_when_needed(layers):
    code = (f"import importlib, sys\nfor module, absent in {layers!r}:\n    importlib.import_module(module)\n"
            "    print([m for m in absent if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]"] * len(layers)
