"""Plugins: the example package installed into a fresh venv (entry points), LTBENCH_PLUGINS / --plugin modules,
worker processes, config.json records, and the one-line errors for a broken or clashing plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY

from bench import models
from bench.cli import main
from bench.core import plugins
from bench.data import datasets
from methods import REGISTRY

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin-method"

PLUGIN_MODULE = '''
"""A plugin module: a method, an architecture and a dataset, registered on import."""
import torch
from torch import nn

import methods
from bench.data.datasets import DatasetInfo, DatasetLoader
from bench.data.images import ImageData
from bench.data.datasets import register_dataset
from bench.models import register_arch


@methods.register("flat-ce")
class FlatCE(methods.Method):
    summary = "CE with label smoothing (a test plugin)"
    params = (methods.Param("smoothing", 0.1, "label smoothing"),)

    def train_loss(self, out_adv, y, out_clean=None):
        return nn.functional.cross_entropy(out_adv.logits, y, label_smoothing=self.p["smoothing"])


def tiny_mlp(in_channels):
    """Flatten + one hidden layer of 16 units"""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, 16), nn.ReLU()), 16


def load_blobs(root):
    g = torch.Generator().manual_seed(0)
    y_train, y_test = torch.arange(4).repeat_interleave(30), torch.arange(4).repeat(10)
    images = lambda n: torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    return ImageData("blobs", ("a", "b", "c", "d"), images(120), y_train, images(40), y_test)


register_arch("tiny-mlp", tiny_mlp)
register_dataset("blobs", DatasetLoader(DatasetInfo("blobs", 4, 8, 1, "none", "random 8x8 blobs", 30), load_blobs))
'''


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registries and plugin state as they were before the test (plugins add to process-wide dicts)."""
    saved = (dict(REGISTRY), dict(models.ARCHS), dict(datasets.DATASETS), dict(datasets.LOADERS),
             dict(plugins._origins), set(plugins._imported), dict(plugins._state, kinds=set(plugins._state["kinds"])))
    monkeypatch.setenv(plugins.ENV, "")  # recorded, so that what --plugin adds to it is undone afterwards
    monkeypatch.delenv(plugins.ENV)
    plugins._state.update(modules=False, kinds=set())  # earlier tests loaded the plugins of an empty environment
    yield
    for registry, before in zip((REGISTRY, models.ARCHS, datasets.DATASETS, datasets.LOADERS, plugins._origins),
                                saved, strict=False):
        registry.clear()
        registry.update(before)
    plugins._imported.clear()
    plugins._imported.update(saved[5])
    plugins._state.update(saved[6])
    for name in ("my_plugin", "bad_plugin"):
        sys.modules.pop(name, None)


def invoke(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_plugin_module_registers_a_method_an_arch_and_a_dataset(tmp_path, isolated):
    module = write(tmp_path / "my_plugin.py", PLUGIN_MODULE)
    result = invoke("list", "--plugin", str(module))
    assert result.exit_code == 0, result.output
    assert "flat-ce" in result.output and "smoothing" in result.output and "tiny-mlp" in result.output
    assert "blobs" in result.output and "(plugin: my_plugin)" in result.output
    assert str(module) in os.environ[plugins.ENV]  # worker processes load it too


@pytest.mark.slow
def test_a_plugin_method_arch_and_dataset_train_with_two_workers(tmp_path, isolated, monkeypatch):
    """LTBENCH_PLUGINS names a module on PYTHONPATH; its method is swept in a grid run by 2 spawned workers."""
    write(tmp_path / "my_plugin.py", PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(plugins.ENV, "my_plugin")
    grid = write(tmp_path / "g.toml", 'datasets = ["blobs"]\narchs = ["tiny-mlp"]\nurs = [3]\nmethods = ["flat-ce"]\n'
                 'preset = "smoke"\n[sweep.flat-ce]\nsmoothing = [0.0, 0.2]\n')
    out = tmp_path / "results"
    result = invoke("grid", str(grid), "--workers", "2", "--out", str(out), "--eval-n", "8", "--no-progress",
                    "--set", "epoch_eval_n=8", "--set", "steps=1")
    assert result.exit_code == 0, result.output
    records = [json.loads((d / "config.json").read_text()) for d in out.iterdir() if d.is_dir()]
    assert sorted(r["config"]["method_params"]["smoothing"] for r in records) == [0.0, 0.2]
    sha = records[0]["plugins"][0]["sha256"]
    assert all(len(r["plugins"]) == 3 and {p["kind"] for p in r["plugins"]} == {"method", "arch", "dataset"}
               for r in records)
    assert all(p["module"] == "my_plugin" and p["sha256"] == sha for r in records for p in r["plugins"])
    bad = invoke("run", "--methods", "flat-ce", "--set", "flat-ce.smoothing=lots", "--dataset", "blobs",
                 "--out", str(out))
    assert bad.exit_code == 2 and "flat-ce.smoothing='lots' is not a valid float" in bad.output
    # without the plugin loaded, re-evaluating one of its runs names the plugin to pass
    monkeypatch.delenv(plugins.ENV)
    REGISTRY.pop("flat-ce")
    run_dir = next(d for d in out.iterdir() if d.is_dir())
    missing = invoke("eval", str(run_dir), "--attacks", "fgsm", "--no-progress")
    assert missing.exit_code == 2
    assert missing.output.strip() == (f"error: {run_dir} was made with the plugin method 'flat-ce', which is not "
                                      "loaded; pass --plugin my_plugin (its module name or .py file)")


def test_a_plugin_loss_that_is_not_a_scalar_names_the_method(tmp_path, tiny_args, isolated, monkeypatch):
    module = write(tmp_path / "bad_plugin.py", "import methods\nfrom torch import nn\n"
                   "@methods.register('per-sample-ce')\nclass PerSample(methods.Method):\n"
                   "    def train_loss(self, out_adv, y, out_clean=None):\n"
                   "        return nn.functional.cross_entropy(out_adv.logits, y, reduction='none')\n")
    monkeypatch.setenv(plugins.ENV, str(module))
    result = invoke("run", "--methods", "per-sample-ce", "--out", str(tmp_path / "r"), *tiny_args)
    assert result.exit_code == 1
    assert ("method 'per-sample-ce': train_loss returned a tensor of shape (32,), not a scalar tensor; reduce it "
            "(e.g. .mean()) and test the method with bench.testing.check_method") in result.output


@pytest.mark.slow
def test_a_plugin_option_reaches_slurm_jobs(tmp_path, isolated):
    """--plugin FILE: the job (submitit's local cluster: a new process, like a SLURM job) loads it as well."""
    module = write(tmp_path / "my_plugin.py", PLUGIN_MODULE)
    out = tmp_path / "results"
    result = invoke("run", "--plugin", str(module), "--methods", "flat-ce", "--dataset", "blobs", "--ur", "3",
                    "--arch", "tiny-mlp", "--preset", "smoke", "--out", str(out), "--eval-n", "8", "--no-report",
                    "--set", "epoch_eval_n=8", "--no-progress")
    assert result.exit_code == 0, result.output
    grid = write(tmp_path / "g.toml", 'datasets = ["blobs"]\narchs = ["tiny-mlp"]\nurs = [3]\nmethods = ["flat-ce"]\n'
                 'preset = "smoke"\n[sweep.flat-ce]\nsmoothing = [0.1, 0.3]\n')
    result = invoke("grid", str(grid), "--plugin", str(module), "--executor", "slurm", "--cluster", "local",
                    "--out", str(out), "--eval-n", "8", "--set", "epoch_eval_n=8", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "1 already done" in result.output and "running 1 (slurm)" in result.output
    assert all(json.loads((d / "config.json").read_text())["plugins"][0]["module"] == "my_plugin"
               for d in out.iterdir() if d.name != "_slurm")


@pytest.mark.parametrize(("source", "message"), [
    ("import no_such_package_xyz\n", "plugin {spec} failed to import: ModuleNotFoundError: No module named "
                                     "'no_such_package_xyz'"),
    ("raise RuntimeError('boom')\n", "plugin {spec} failed to import: RuntimeError: boom"),
    ("import methods\n@methods.register('trades')\nclass T(methods.Method):\n    pass\n",
     "plugin {spec}: method 'trades' is already registered; give the plugin's method another name"),
    ("from bench.models import register_arch\nregister_arch('resnet18', lambda c: None)\n",
     "plugin {spec}: arch 'resnet18' is already registered; give the plugin's arch another name"),
])
def test_a_broken_or_clashing_plugin_is_one_line(tmp_path, tiny_args, isolated, monkeypatch, source, message):
    module = write(tmp_path / "bad_plugin.py", source)
    monkeypatch.setenv(plugins.ENV, str(module))
    result = invoke("run", "--methods", "pgd-at", "--out", str(tmp_path / "r"), *tiny_args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message.format(spec=module)}"
    assert not (tmp_path / "r").exists()


def test_a_missing_plugin_module_names_the_fix(isolated):
    result = invoke("list", "--plugin", "no_such_plugin_xyz")
    assert result.exit_code == 2
    assert result.output.strip() == ("error: plugin no_such_plugin_xyz failed to import: ModuleNotFoundError: No "
                                     "module named 'no_such_plugin_xyz' (install it, or pass its .py file)")


# --- the example package, installed into a fresh virtual environment -------------------------------------------

@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv that sees this environment's packages (torch, ltbench) and has the example plugin installed
    with pip --no-deps --no-build-isolation (no network)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    parents = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(site, "parent_env.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
    source = shutil.copytree(EXAMPLE, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--no-index", str(source)], check=True, capture_output=True)
    return root


def bench_in(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != plugins.ENV}
    return subprocess.run([venv / "bin" / "python", "-m", "bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)


@pytest.mark.slow
def test_the_installed_example_plugin_is_listed_trained_and_reported(venv, tmp_path, cifar_root):
    listed = bench_in(venv, "list", "methods", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "│ mart " in listed.stdout and "ltbench-mart 0.1.0)" in listed.stdout
    out = tmp_path / "results"
    ran = bench_in(venv, "run", "--methods", "mart", "--out", str(out), "--data-root", str(cifar_root),
                   "--report-dir", str(tmp_path / "report"), *TINY, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    (run_dir,) = out.iterdir()
    record = json.loads((run_dir / "config.json").read_text())
    assert record["plugins"] == [{"kind": "method", "name": "mart", "distribution": "ltbench-mart",
                                  "version": "0.1.0", "entry_point": "ltbench_mart:MART"}]
    assert record["config"]["method_params"] == {"beta": 6.0}
    table = "".join(p.read_text() for p in (tmp_path / "report").rglob("accuracy_*.md"))
    assert "| mart " in table
    grid = write(tmp_path / "g.toml", 'datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["mart"]\n'
                 'preset = "smoke"\n'
                 "[sweep.mart]\nbeta = [1.0, 3.0, 6.0]\n")
    gridded = bench_in(venv, "grid", str(grid), "--workers", "2", "--out", str(out), "--data-root", str(cifar_root),
                       "--eval-n", "20", "--set", "steps=1", "--set", "epoch_eval_n=20", "--set", "batch_size=32",
                       "--no-progress", cwd=tmp_path)
    assert gridded.returncode == 0, gridded.stderr
    assert "1 already done" in gridded.stdout and "running 2" in gridded.stdout  # beta 6.0 is the run above


@pytest.mark.slow
def test_the_example_plugin_passes_its_own_tests(venv, tmp_path):
    tests = subprocess.run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(EXAMPLE / "tests")], cwd=tmp_path, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-3000:]


@pytest.mark.parametrize(("value", "message"), [
    ("no_such_module_xyz:Method", "plugin entry point 'boom' of unknown (ltbench.methods) failed to import: "
                                  "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ("methods.pgd_at:PGDAT", "plugin entry point 'trades' of unknown (ltbench.methods): method 'trades' is already "
                             "registered; give the plugin's method another name"),
    ("bench.data.datasets:DATASETS", "plugin entry point 'boom' of unknown (ltbench.methods): method 'boom' must be a "
                            "subclass of methods.Method"),
])
def test_a_broken_or_clashing_entry_point_is_one_line(isolated, monkeypatch, value, message):
    from importlib.metadata import EntryPoint

    name = "trades" if "pgd_at" in value else "boom"
    found = {"ltbench.methods": [EntryPoint(name, value, "ltbench.methods")]}
    monkeypatch.setattr(plugins, "entry_points", lambda group: found.get(group, []))
    result = invoke("list", "methods")
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: {message}")
    assert result.output.strip().endswith("; fix it, or uninstall the package that declares it")
    assert len(result.output.strip().splitlines()) == 1
