"""Grid files (TOML) and their expansion into validated RunConfigs."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bench.core.errors import InputError
from bench.evaluation.settings import EvalSettings, check_count, check_suite, eval_settings, radii
from bench.training.config import DEFAULTS, PRESETS, SETTABLE, RunConfig, build_config, check_preset
from methods import get_method

AXES = ("datasets", "archs", "urs", "methods", "seeds")
KEYS = (*AXES, "preset", "suite", "eval_n", "eval_eps", "set", "sweep", "exclude", "slurm")
#: run fields an ``exclude`` rule may name, besides METHOD.PARAM
RULE_FIELDS = ("dataset", "arch", "ur", "method", "seed")
SLURM_KEYS = ("partition", "time", "gpus", "cpus", "array_parallelism", "mem", "account", "qos", "constraint",
              "options", "max_retries")


@dataclass(frozen=True)
class GridSpec:
    """A parsed grid file; ``expand`` turns it into runs."""

    source: str
    datasets: tuple[str, ...]
    archs: tuple[str, ...]
    urs: tuple[float, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    suite: str | None
    settings: dict[str, Any]  # [set]: field or METHOD.PARAM -> value
    sweeps: dict[str, dict[str, list[Any]]]  # method -> param or config field -> values
    exclude: tuple[dict[str, Any], ...]  # flat rules: field or METHOD.PARAM -> value or list of values
    slurm: dict[str, Any]
    eval_n: int | str | None = None  # test images of the final evaluation ("all"); None: the preset's
    eval_eps: tuple[float, ...] = ()  # radii besides each run's own eps at which the suite runs too

    def evaluation(self, preset: str | None = None, suite: str | None = None, n: Any = None) -> EvalSettings:
        """The final evaluation's settings: the preset's, then the file's, then ``suite``/``n`` (the flags)."""
        base = check_preset(preset or self.preset).eval_settings()
        settings = eval_settings(base.to_dict(), suite=self.suite, n=self.eval_n)
        return eval_settings(settings.to_dict(), suite=suite, n=n)


def shipped_grids() -> list[str]:
    """Names of the grids shipped in ``bench/grids``."""
    folder = resources.files("bench") / "grids"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def shipped_grid_text(name: str) -> str:
    """The text of the shipped grid file ``name`` (``paper-main``)."""
    return (resources.files("bench") / "grids" / f"{name}.toml").read_text()


def load_grid(name_or_path: str) -> GridSpec:
    """A grid file by path, or a shipped grid by name (``paper-main``)."""
    path = Path(name_or_path)
    if path.is_file():
        return parse_grid(path.read_text(), str(path))
    name = name_or_path.removesuffix(".toml")
    if name in shipped_grids():
        return parse_grid(shipped_grid_text(name), name)
    raise InputError(f"no grid file {name_or_path!r} and no shipped grid of that name; "
                     f"shipped grids: {', '.join(shipped_grids())}")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"reat": {"lambda": x}}`` and ``{"reat.lambda": x}`` both become ``{"reat.lambda": x}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _table(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise InputError(f"{source}: {key} must be a table, e.g. [{key}]")
    return dict(value)


def _axis(data: Mapping[str, Any], key: str, source: str, kind: type) -> tuple[Any, ...]:
    if key not in data:
        if key == "seeds":
            return (DEFAULTS.seed,)
        raise InputError(f"{source}: missing {key} = [...]")
    values = data[key]
    if not isinstance(values, list) or not values:
        example = values if not isinstance(values, list) else ('"..."' if kind is str else 1)
        raise InputError(f"{source}: {key} must be a non-empty list, e.g. {key} = [{example!r}]")
    if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        what = "strings" if kind is str else "numbers"
        raise InputError(f"{source}: {key} must hold {what}, got {values}")
    return tuple(values)


def _method_param(key: str, methods: Sequence[str], where: str, fields: bool = False) -> tuple[str, str]:
    """Split METHOD.PARAM, checking that the grid runs METHOD and that METHOD has PARAM
    (or, with ``fields``, that PARAM is a settable config field such as ``augment``)."""
    method, _, param = key.partition(".")
    if method not in methods:
        raise InputError(f"{where} names method {method!r}, which is not in methods = {list(methods)}")
    names = [p.name for p in get_method(method).params]
    if param not in names and not (fields and param in SETTABLE):
        also = " or a config field" if fields else ""
        raise InputError(f"{where}: method {method!r} has no parameter {param!r}{also}; its parameters: "
                         f"{', '.join(names) or '(none)'}")
    return method, param


def _is_field(method: str, name: str) -> bool:
    """A swept name is a config field unless the method has a parameter of that name."""
    return name not in {p.name for p in get_method(method).params}


def _sweeps(data: Mapping[str, Any], methods: Sequence[str], source: str) -> dict[str, dict[str, list[Any]]]:
    sweeps: dict[str, dict[str, list[Any]]] = {}
    for key, values in _flatten(_table(data, "sweep", source)).items():
        method, param = _method_param(key, methods, f"{source}: [sweep] {key}", fields=True)
        if not isinstance(values, list) or not values:
            raise InputError(f"{source}: [sweep] {key} must be a non-empty list of values")
        sweeps.setdefault(method, {})[param] = values
    return sweeps


def _rules(data: Mapping[str, Any], methods: Sequence[str], source: str) -> tuple[dict[str, Any], ...]:
    rules = data.get("exclude", [])
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) and r for r in rules):
        raise InputError(f'{source}: exclude must be a list of non-empty tables, e.g. '
                         f'exclude = [{{ method = "robal", dataset = "cifar100" }}]')
    flat = [_flatten(rule) for rule in rules]
    for rule in flat:
        for key in rule:
            if "." in key:
                _method_param(key, methods, f"{source}: exclude rule {rule}", fields=True)
            elif key not in RULE_FIELDS:
                raise InputError(f"{source}: exclude rule key {key!r} is unknown; valid keys: "
                                 f"{', '.join(RULE_FIELDS)} and METHOD.PARAM")
    return tuple(flat)


def parse_grid(text: str, source: str) -> GridSpec:
    """Validate a grid file's text (``source`` names it in error messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{source} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InputError(f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(KEYS)}")
    methods = _axis(data, "methods", source, str)
    for name in methods:
        get_method(name)
    slurm = _table(data, "slurm", source)
    if set(slurm) - set(SLURM_KEYS):
        raise InputError(f"{source}: unknown [slurm] key(s) {sorted(set(slurm) - set(SLURM_KEYS))}; "
                         f"valid keys: {', '.join(SLURM_KEYS)}")
    settings = _flatten(_table(data, "set", source))
    for key in settings:
        if "." in key:
            _method_param(key, methods, f"{source}: [set] {key}")
    for key, example in (("preset", DEFAULTS.preset), ("suite", "fast")):
        if not isinstance(data.get(key, ""), str):
            raise InputError(f"{source}: {key} must be a string, e.g. {key} = \"{example}\"")
    if "preset" in data and data["preset"] not in PRESETS:
        raise InputError(f"{source}: unknown preset {data['preset']!r}; choose one of: {', '.join(PRESETS)}")
    if "suite" in data:
        check_suite(data["suite"])
    if "eval_n" in data:
        check_count(data["eval_n"], f"{source}: eval_n")
    if not isinstance(data.get("eval_eps", []), list):
        raise InputError(f"{source}: eval_eps must be a list of radii, e.g. eval_eps = [0.05, 0.1, \"8/255\"]")
    eval_eps = radii(data["eval_eps"], f"{source}: eval_eps") if "eval_eps" in data else ()
    return GridSpec(
        source=source, datasets=_axis(data, "datasets", source, str), archs=_axis(data, "archs", source, str),
        urs=tuple(float(u) for u in _axis(data, "urs", source, int | float)), methods=methods,
        seeds=_axis(data, "seeds", source, int), preset=data.get("preset", DEFAULTS.preset),
        suite=data.get("suite"), settings=settings, sweeps=_sweeps(data, methods, source),
        exclude=_rules(data, methods, source), slurm=slurm, eval_n=data.get("eval_n"), eval_eps=eval_eps,
    )


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Config-field overrides and per-method parameters from flat keys (``[set]`` or ``--set``)."""
    fields: dict[str, Any] = {}
    per_method: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        method, dot, param = key.partition(".")
        if dot:
            per_method.setdefault(method, {})[param] = value
        else:
            fields[key] = value
    return fields, per_method


def _points(sweep: Mapping[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of a method's swept parameters (one empty point without a sweep)."""
    for values in itertools.product(*sweep.values()):
        yield dict(zip(sweep, values, strict=True))


def run_value(cfg: RunConfig, key: str) -> Any:
    """The value a rule key takes for ``cfg`` (None for another method's parameter)."""
    method, dot, param = key.partition(".")
    if dot:
        if cfg.method != method:
            return None
        return getattr(cfg, param) if _is_field(method, param) else cfg.method_params.get(param)
    return getattr(cfg, key)


def matches(rule: Mapping[str, Any], cfg: RunConfig) -> bool:
    """True when ``cfg`` matches every key of ``rule`` (a list value matches any of its items)."""
    for key, want in rule.items():
        value = run_value(cfg, key)
        if value is None or value not in (want if isinstance(want, list) else [want]):
            return False
    return True


def expand(
    spec: GridSpec, *, preset: str | None = None, fields: Mapping[str, Any] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RunConfig]:
    """The grid's runs in file order, without duplicates.

    ``preset``, config-field overrides ``fields`` and per-method parameters ``params`` (what ``--set`` gives)
    override the file for every run.
    """
    file_fields, file_params = split_settings(spec.settings)
    cli_fields, cli_params = dict(fields or {}), dict(params or {})
    stray = sorted(set(cli_params) - set(spec.methods))
    if stray:
        raise InputError(f"--set names method(s) {stray} that are not run here (methods: "
                         f"{', '.join(spec.methods)}); add them to the methods or drop that --set")
    overrides = file_fields | cli_fields
    runs: dict[str, RunConfig] = {}
    for dataset, arch, ur, method, seed in itertools.product(
        spec.datasets, spec.archs, spec.urs, spec.methods, spec.seeds
    ):
        for point in _points(spec.sweeps.get(method, {})):
            swept_fields = {k: v for k, v in point.items() if _is_field(method, k)}
            swept_params = {k: v for k, v in point.items() if k not in swept_fields}
            params = file_params.get(method, {}) | swept_params | cli_params.get(method, {})
            cfg = build_config(method=method, dataset=dataset, ur=ur, arch=arch, preset=preset or spec.preset,
                               seed=seed, overrides=overrides | swept_fields | cli_fields,
                               method_params=params)
            if not any(matches(rule, cfg) for rule in spec.exclude):
                runs.setdefault(cfg.run_id, cfg)
    if not runs:
        raise InputError(f"{spec.source}: the grid expands to no runs (every run is excluded)")
    return list(runs.values())


def changed_params(cfg: RunConfig) -> dict[str, Any]:
    """The run's method parameters that differ from the method's defaults."""
    defaults = get_method(cfg.method).defaults(cfg.dataset)
    return {k: v for k, v in cfg.method_params.items() if defaults.get(k) != v}
