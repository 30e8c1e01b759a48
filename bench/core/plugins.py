"""Plugins: methods, architectures and datasets from other packages or modules.

Three sources, loaded once, on the first use of a registry (and by ``bench list``):

* entry points of installed distributions in the groups ``ltbench.methods``, ``ltbench.archs`` and
  ``ltbench.datasets``: the entry point's name is the registry name, its object the Method subclass, the
  model factory or the ``DatasetLoader``;
* modules named in ``$LTBENCH_PLUGINS`` (``mod1,mod2``; a module name or a ``.py`` file), which register
  themselves when imported (``methods.register``, ``bench.models.register_arch``,
  ``bench.data.datasets.register_dataset``);
* ``--plugin MODULE`` on the command line, which adds to ``$LTBENCH_PLUGINS`` so that worker processes and
  SLURM jobs, which inherit the environment, load the same modules.

A plugin that fails to import, or a name that is already taken, is an ``InputError`` (one line, exit 2).

This module knows no registry: each registry (methods, architectures, datasets) adds itself with
``add_registry`` when it is imported, calls ``load(kind)`` before its first look-up and ``registered`` for every
name it adds, which records the plugin that was importing at the time.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.core.errors import BenchError, InputError

ENV = "LTBENCH_PLUGINS"
#: registry kind -> entry-point group
GROUPS = {"method": "ltbench.methods", "arch": "ltbench.archs", "dataset": "ltbench.datasets"}


@dataclass(frozen=True)
class Registry:
    """What the loader needs of a registry: its names, how to add an entry point's object, and whether a
    name already refers to that object (a module that registered itself on import)."""

    names: Callable[[], Iterable[str]]
    add: Callable[[str, Any], None]
    holds: Callable[[str, Any], bool]


#: kind -> registry, added by the registries' own modules
_registries: dict[str, Registry] = {}
#: (kind, registry name) -> where it came from, as config.json records it
_origins: dict[tuple[str, str], dict[str, str]] = {}
_imported: set[str] = set()
#: ``modules``: $LTBENCH_PLUGINS imported; ``kinds``: kinds whose entry points are loaded
_state: dict[str, Any] = {"modules": False, "kinds": set()}
#: the origin of the plugin module being imported (None: no plugin import under way)
_importing: list[dict[str, str]] = []


def add_registry(kind: str, registry: Registry) -> None:
    """Called once by each registry's module (``method``, ``arch``, ``dataset``)."""
    _registries[kind] = registry


def taken(kind: str, name: str) -> None:
    """Refuse a name that the ``kind`` registry already holds (built-ins win)."""
    registry = _registries.get(kind)
    if registry is not None and name in registry.names():
        raise InputError(f"{kind} {name!r} is already registered; give the plugin's {kind} another name")


def registered(kind: str, name: str) -> None:
    """Record that ``name`` was just added to the ``kind`` registry (by a plugin module, if one is importing)."""
    if _importing:
        _origins[(kind, name)] = _importing[-1]


def requested() -> list[str]:
    """The plugin modules of ``$LTBENCH_PLUGINS``, in order."""
    return [spec.strip() for spec in os.environ.get(ENV, "").split(",") if spec.strip()]


def request(specs: Iterable[str]) -> None:
    """Import the ``--plugin`` modules now and add them to ``$LTBENCH_PLUGINS`` for worker processes.

    A ``.py`` file is recorded with its absolute path; a module name is also searched in the current folder.
    """
    specs = [str(Path(s).resolve()) if s.endswith(".py") else s for s in specs]
    os.environ[ENV] = ",".join(dict.fromkeys(requested() + specs))
    for spec in specs:
        _import_module(spec)


def load(kind: str | None = None) -> None:
    """Load the plugins once: the ``$LTBENCH_PLUGINS`` modules, then the entry points of ``kind`` (every
    registry added so far for None)."""
    if not _state["modules"]:
        _state["modules"] = True  # before loading: a plugin that reads a registry must not recurse
        try:
            for spec in requested():
                _import_module(spec)
        except BaseException:
            _state["modules"] = False
            raise
    for name in [kind] if kind is not None else list(_registries):
        if name in _state["kinds"] or name not in _registries:
            continue
        _state["kinds"].add(name)
        try:
            for ep in sorted(entry_points(group=GROUPS[name]), key=lambda e: e.name):
                _load_entry_point(name, ep)
        except BaseException:
            _state["kinds"].discard(name)
            raise


def _import_module(spec: str) -> None:
    if spec in _imported:
        return
    origin = {"module": Path(spec).stem if spec.endswith(".py") else spec}
    _importing.append(origin)
    try:
        module = import_module(spec)
    except BenchError as err:
        raise InputError(f"plugin {spec}: {err}") from None
    except Exception as err:
        missing = isinstance(err, ModuleNotFoundError) and err.name and f"{spec}.".startswith(f"{err.name}.")
        hint = " (install it, or pass its .py file)" if missing else ""
        raise InputError(f"plugin {spec} failed to import: {_describe(err)}{hint}") from None
    finally:
        _importing.pop()
    _imported.add(spec)
    origin.update(module=module.__name__, sha256=_sha256(module))


def import_module(spec: str) -> ModuleType:
    """Import a module by name or a ``.py`` file by path (as ``--plugin`` does)."""
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"no file {spec}")
        name = path.stem
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # like `python -m`: a module in the current folder is found (last)
    return importlib.import_module(spec)


def _describe(err: Exception) -> str:
    """An import error in one line; a syntax error with its file's full path."""
    if isinstance(err, SyntaxError):
        return f"SyntaxError: {err.msg} ({err.filename}, line {err.lineno})"
    return f"{type(err).__name__}: {err}"


def _sha256(module: ModuleType) -> str:
    path = getattr(module, "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else "unknown"


def _load_entry_point(kind: str, ep: EntryPoint) -> None:
    dist = ep.dist.name if ep.dist else "unknown"
    where = f"entry point {ep.name!r} of {dist} ({ep.group})"
    fix = f"fix it, or `pip uninstall {dist}`" if ep.dist else "fix it, or uninstall the package that declares it"
    try:
        obj = ep.load()
    except Exception as err:
        raise InputError(f"plugin {where} failed to import: {_describe(err)}; {fix}") from None
    registry = _registries[kind]
    if not registry.holds(ep.name, obj):  # else the module registered it itself on import
        try:
            registry.add(ep.name, obj)
        except BenchError as err:
            raise InputError(f"plugin {where}: {err}; {fix}") from None
    _origins[(kind, ep.name)] = {"distribution": dist, "version": ep.dist.version if ep.dist else "unknown",
                                 "entry_point": ep.value}


def used_by(kinds_and_names: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The plugins among ``(kind, name)`` pairs, e.g. a run's method, arch and dataset, with their origin."""
    load()
    return [{"kind": kind, "name": name, **_origins[(kind, name)]}
            for kind, name in kinds_and_names if (kind, name) in _origins]


def require(used: Sequence[dict[str, str]], where: str) -> None:
    """Refuse, naming the fix, when a plugin that ``where`` was made with (config.json's ``plugins``) is not
    loaded now."""
    load()
    for plugin in used:
        registry = _registries.get(plugin.get("kind", ""))
        if registry is None or plugin.get("name") in registry.names():
            continue
        fix = (f"install {plugin['distribution']}" if "distribution" in plugin
               else f"pass --plugin {plugin.get('module')} (its module name or .py file)")
        raise InputError(f"{where} was made with the plugin {plugin['kind']} {plugin['name']!r}, which is not "
                         f"loaded; {fix}")


def run_plugins(config: Any) -> list[dict[str, str]]:
    """The plugins a RunConfig uses: its method, arch and dataset when they come from a plugin."""
    return used_by([("method", config.method), ("arch", config.arch), ("dataset", config.dataset)])
