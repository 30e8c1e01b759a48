"""Plugins: methods, architectures and datasets from other packages or modules.

Three sources, loaded once, on the first use of a registry (and by ``bench list``):

* entry points of installed distributions in the groups ``ltbench.methods``, ``ltbench.archs`` and
  ``ltbench.datasets``: the entry point's name is the registry name, its object the Method subclass, the
  model factory or the ``DatasetLoader``;
* modules named in ``$LTBENCH_PLUGINS`` (``mod1,mod2``; a module name or a ``.py`` file), which register
  themselves when imported (``methods.register``, ``bench.plugins.register_arch``, ``register_dataset``);
* ``--plugin MODULE`` on the command line, which adds to ``$LTBENCH_PLUGINS`` so that worker processes and
  SLURM jobs, which inherit the environment, load the same modules.

A plugin that fails to import, or a name that is already taken, is an ``InputError`` (one line, exit 2).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import reprlib
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from bench.errors import BenchError, InputError

ENV = "LTBENCH_PLUGINS"
#: registry kind -> entry-point group
GROUPS = {"method": "ltbench.methods", "arch": "ltbench.archs", "dataset": "ltbench.datasets"}

#: (kind, registry name) -> where it came from, as config.json records it
_origins: dict[tuple[str, str], dict[str, str]] = {}
_imported: set[str] = set()
_state = {"loaded": False}


def _registries() -> dict[str, dict[str, Any]]:
    import methods
    from bench import data, models

    return {"method": methods.REGISTRY, "arch": models.ARCHS, "dataset": data.DATASETS}


def _names() -> set[tuple[str, str]]:
    return {(kind, name) for kind, registry in _registries().items() for name in registry}


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


def load() -> None:
    """Load every plugin once: ``$LTBENCH_PLUGINS`` modules, then the entry points of installed packages."""
    if _state["loaded"]:
        return
    _state["loaded"] = True  # before loading: a plugin that reads a registry must not recurse
    try:
        for spec in requested():
            _import_module(spec)
        for kind, group in GROUPS.items():
            for ep in sorted(entry_points(group=group), key=lambda e: e.name):
                _load_entry_point(kind, ep)
    except BaseException:
        _state["loaded"] = False
        raise


def _import_module(spec: str) -> None:
    if spec in _imported:
        return
    before = _names()
    try:
        module = _import(spec)
    except BenchError as err:
        raise InputError(f"plugin {spec}: {err}") from None
    except Exception as err:
        missing = isinstance(err, ModuleNotFoundError) and err.name and f"{spec}.".startswith(f"{err.name}.")
        hint = " (install it, or pass its .py file)" if missing else ""
        raise InputError(f"plugin {spec} failed to import: {type(err).__name__}: {err}{hint}") from None
    _imported.add(spec)
    origin = {"module": module.__name__, "sha256": _sha256(module)}
    for key in sorted(_names() - before):
        _origins[key] = origin


def _import(spec: str) -> ModuleType:
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


def _sha256(module: ModuleType) -> str:
    path = getattr(module, "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else "unknown"


def _load_entry_point(kind: str, ep: EntryPoint) -> None:
    dist = ep.dist.name if ep.dist else "unknown"
    where = f"entry point {ep.name!r} of {dist} ({ep.group})"
    try:
        obj = ep.load()
    except Exception as err:
        raise InputError(f"plugin {where} failed to import: {type(err).__name__}: {err}") from None
    registry = _registries()[kind]
    if registry.get(ep.name) is obj or (kind == "arch" and registry.get(ep.name, (None,))[0] is obj):
        pass  # the module registered it itself on import
    else:
        try:
            {"method": _register_method, "arch": register_arch, "dataset": register_dataset}[kind](ep.name, obj)
        except BenchError as err:
            raise InputError(f"plugin {where}: {err}") from None
    _origins[(kind, ep.name)] = {"distribution": dist, "version": ep.dist.version if ep.dist else "unknown",
                                 "entry_point": ep.value}


def _register_method(name: str, cls: Any) -> None:
    from methods.base import Method, register

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise InputError(f"method {name!r} must be a subclass of methods.Method, got {reprlib.repr(cls)}")
    register(name)(cls)


def _taken(kind: str, name: str) -> None:
    if name in _registries()[kind]:
        raise InputError(f"{kind} {name!r} is already registered; give the plugin's {kind} another name")


def register_arch(name: str, factory: Callable[[int], tuple[nn.Module, int]], description: str = "") -> None:
    """Add an architecture: ``factory(in_channels)`` returns ``(backbone, feature_size)``."""
    from bench.models import ARCHS

    if not callable(factory):
        raise InputError(f"arch {name!r} must be a factory function, got {reprlib.repr(factory)}")
    _taken("arch", name)
    summary = description or (factory.__doc__ or "").strip().split("\n")[0] or "(plugin)"
    ARCHS[name] = (factory, summary)


def register_dataset(name: str, loader: Any) -> None:
    """Add a dataset: a ``bench.data.DatasetLoader`` (its ``info`` and its ``load(root)``)."""
    from bench.data import DATASETS, LOADERS, DatasetLoader

    if not isinstance(loader, DatasetLoader):
        raise InputError(f"dataset {name!r} must be a bench.data.DatasetLoader, got {reprlib.repr(loader)}")
    if loader.info.name != name:
        raise InputError(f"dataset {name!r}: its DatasetInfo is named {loader.info.name!r}; use the same name")
    _taken("dataset", name)
    DATASETS[name] = loader.info
    LOADERS[name] = lambda root: _checked(loader.info, loader.load(root))


def _checked(info: Any, data: Any) -> Any:
    """The ImageData a plugin loader returned, when it has the shapes and types its DatasetInfo promises."""
    from bench.data import ImageData

    shape = (info.channels, info.image_size, info.image_size)
    problem = None
    if not isinstance(data, ImageData):
        problem = f"returned {type(data).__name__}, not bench.data.ImageData"
    elif any(x.dtype != torch.uint8 or tuple(x.shape[1:]) != shape for x in (data.x_train, data.x_test)):
        problem = f"images must be uint8 tensors of shape (N, {', '.join(map(str, shape))})"
    elif any(y.dtype != torch.int64 or y.ndim != 1 for y in (data.y_train, data.y_test)):
        problem = "labels must be 1-d int64 tensors"
    elif len(data.classes) != info.num_classes:
        problem = f"has {len(data.classes)} class names, its DatasetInfo says {info.num_classes} classes"
    if problem:
        raise BenchError(f"dataset {info.name!r} (plugin) {problem}; fix its loader")
    return data


def used_by(kinds_and_names: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The plugins among ``(kind, name)`` pairs, e.g. a run's method, arch and dataset, with their origin."""
    load()
    return [{"kind": kind, "name": name, **_origins[(kind, name)]}
            for kind, name in kinds_and_names if (kind, name) in _origins]


def run_plugins(config: Any) -> list[dict[str, str]]:
    """The plugins a RunConfig uses: its method, arch and dataset when they come from a plugin."""
    return used_by([("method", config.method), ("arch", config.arch), ("dataset", config.dataset)])
