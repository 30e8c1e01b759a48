"""Static-shape PGD (bench/evaluation/graphed.py) equals eager PGD bit for bit; the run field cuda_graph.

On a CPU the static runners run their body on the static buffers without capture, so these tests prove that
the static path computes exactly what eager ``pgd`` computes. The CUDA tests at the end check the captured
graphs against eager PGD on a GPU.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from bench.core import store
from bench.core.progress import Progress
from bench.evaluation.attacks import ce_loss, pgd
from bench.evaluation.graphed import PGDGraphs, StaticPGD
from bench.evaluation.settings import eval_settings
from bench.evaluation.suite import adversarial_images, attack_params, run_attack
from bench.models.inference import InferenceModel
from bench.perf.benchmark import synthetic_data
from bench.runs.runner import run_one
from bench.training.config import build_config
from bench.training.layout import memory_format
from bench.training.loop import EpochStats, attack_graphs, build_trainee, craft, outer_loss, train_step
from methods.trades import kl_per_sample

C = 5
EPS, STEP = 0.1, 0.025


class Lines(Progress):
    """Keeps the log lines."""

    def __init__(self) -> None:
        super().__init__(False)
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 8 * 8, C))
    model[1].running_mean.uniform_(-0.2, 0.2)
    model[1].running_var.uniform_(0.5, 2.0)
    return model.to(memory_format=torch.channels_last)


def batch(n: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, C, (n,), generator=gen)


def eager_and_static(net: nn.Module, graphs: PGDGraphs, x: Tensor, y: Tensor, seed: int, **attack
                     ) -> tuple[Tensor, Tensor]:
    """Eager ``pgd`` and the static path on the same batch, each with a generator seeded by ``seed``."""
    reads = attack.pop("reads", {})
    eager_loss = functools.partial(attack["loss_fn"], **reads)
    eager = pgd(net, x, y, **{**attack, "loss_fn": eager_loss}, generator=torch.Generator().manual_seed(seed))
    static = graphs.pgd(net, x, y, **attack, reads=reads, generator=torch.Generator().manual_seed(seed))
    return eager, static


def test_scalar_budget_with_ce_equals_eager_pgd(net):
    graphs = PGDGraphs(print)
    for seed in range(2):
        eager, static = eager_and_static(net, graphs, *batch(16, seed), seed, eps=EPS, step_size=STEP, steps=5,
                                         loss_fn=ce_loss)
        assert torch.equal(eager, static) and not torch.equal(eager, batch(16, seed)[0])
    assert len(graphs.runners) == 1


def test_per_sample_budgets_equal_eager_pgd(net):
    graphs = PGDGraphs(print)
    for seed in range(2):
        x, y = batch(16, seed)
        factor = torch.linspace(0.5, 1.5, 16).view(-1, 1, 1, 1) * (1 + seed)
        eager, static = eager_and_static(net, graphs, x, y, seed, eps=factor * EPS, step_size=factor * STEP,
                                         steps=5, loss_fn=ce_loss, start_eps=EPS)
        assert torch.equal(eager, static)
        assert ((eager - x).abs() <= factor * EPS + 1e-6).all()
    assert len(graphs.runners) == 1


def kl_attack_loss(logits: Tensor, y: Tensor, clean_logits: Tensor) -> Tensor:
    """TRADES' attack loss: it reads the clean logits."""
    return kl_per_sample(clean_logits, logits)


def test_a_loss_that_reads_the_clean_logits_equals_eager_pgd(net):
    graphs = PGDGraphs(print)
    for seed in range(2):  # the second batch's clean logits replace the first's in the static buffer
        x, y = batch(16, seed)
        with torch.no_grad():
            clean = net.eval()(x)
        eager, static = eager_and_static(net, graphs, x, y, seed, eps=EPS, step_size=STEP, steps=5,
                                         loss_fn=kl_attack_loss, start="normal", reads={"clean_logits": clean})
        assert torch.equal(eager, static)
    assert len(graphs.runners) == 1


def test_a_last_partial_batch_gets_its_own_runner(net):
    graphs = PGDGraphs(print)
    for seed, size in enumerate((16, 16, 5)):
        eager, static = eager_and_static(net, graphs, *batch(size, seed), seed, eps=EPS, step_size=STEP,
                                         steps=3, loss_fn=ce_loss)
        assert torch.equal(eager, static) and static.shape[0] == size
    assert len(graphs.runners) == 2


def test_a_result_is_not_overwritten_by_the_next_batch(net):
    graphs = PGDGraphs(print)
    attack = {"eps": EPS, "step_size": STEP, "steps": 3, "loss_fn": ce_loss}
    first = graphs.pgd(net, *batch(16, 0), **attack, generator=torch.Generator().manual_seed(0))
    kept = first.clone()
    second = graphs.pgd(net, *batch(16, 1), **attack, generator=torch.Generator().manual_seed(1))
    (runner,) = graphs.runners.values()
    assert torch.equal(first, kept) and not torch.equal(first, second)
    assert runner.out is not None and first.data_ptr() != runner.out.data_ptr() != second.data_ptr()


class Identity:
    def predict(self, logits: Tensor) -> Tensor:
        return logits


def test_the_evaluator_s_attacks_through_runners_equal_eager(net):
    model = InferenceModel(net, Identity()).eval()
    graphs = PGDGraphs(print)
    for key in ("fgsm", "pgd20", "cw100"):
        params = attack_params(key, EPS, STEP, C, seed=0)
        for seed, size in enumerate((16, 16, 7)):
            x, y = batch(size, seed)
            generators = [torch.Generator().manual_seed(seed) for _ in range(2)]
            eager = adversarial_images(model, key, params, x, y, generators[0])
            assert torch.equal(eager, adversarial_images(model, key, params, x, y, generators[1], graphs))
        assert len(graphs.runners) == 2
        graphs.clear()


def count_static_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at every static run."""
    runs: list[int] = []
    original = StaticPGD.run

    def run(self: StaticPGD) -> Tensor:
        runs.append(1)
        return original(self)

    monkeypatch.setattr(StaticPGD, "run", run)
    return runs


def run_files(run_dir: Path) -> tuple[list[dict], dict, dict[str, Tensor]]:
    """metrics.jsonl without the timings, each final attack's accuracy and per-image results, the last weights."""
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    attacks = json.loads((run_dir / "eval.json").read_text())["attacks"]
    weights = store.load_checkpoint(run_dir / store.CKPT_DIR / "last.pt")["model"]
    return metrics, {key: (a["acc"], a["correct_bits"]) for key, a in attacks.items()}, weights


@pytest.mark.slow
@pytest.mark.parametrize("method", ["reat", "robustlt+trades"])
def test_a_run_with_cuda_graph_gives_the_same_numbers(tmp_path, cifar_root, monkeypatch, method):
    evaluation = eval_settings(attacks=("clean", "fgsm", "pgd20", "cw100"), n=20)
    runs = count_static_runs(monkeypatch)
    files, static_runs = {}, {}
    for graphed in (False, True):
        cfg = build_config(method=method, dataset="cifar10", ur=10, preset="smoke",
                           overrides={"epochs": 2, "steps": 2, "batch_size": 32, "epoch_eval_n": 20,
                                      "precision": "fp32", "cuda_graph": graphed})
        run_dir = tmp_path / str(graphed)
        run_one(cfg, evaluation, run_dir, data_root=str(cifar_root), device=torch.device("cpu"),
                progress=Progress(False))
        files[graphed] = run_files(run_dir)
        static_runs[graphed] = len(runs)
    (metrics, attacks, weights), (eager_metrics, eager_attacks, eager_weights) = files[True], files[False]
    assert metrics == eager_metrics and attacks == eager_attacks
    assert weights.keys() == eager_weights.keys() and all(torch.equal(weights[k], eager_weights[k]) for k in weights)
    n_train = sum(json.loads((run_dir / "config.json").read_text())["class_counts"])
    # per epoch each training batch and the one test batch; the final fgsm, pgd20 and cw100: one batch each
    assert static_runs == {False: 0, True: 2 * (math.ceil(n_train / 32) + 1) + 3}
    assert len(metrics) == 2 and set(attacks) == {"clean", "fgsm", "pgd20", "cw100"}


def test_the_field_stays_out_of_the_run_id_at_its_default():
    plain = build_config(method="pgd-at")
    assert "cuda_graph" not in plain.identity()
    assert build_config(method="pgd-at", overrides={"cuda_graph": True}).run_id != plain.run_id


@pytest.mark.parametrize(("fields", "precision", "reason"), [
    ({"precision": "bf16"}, "bf16", "precision bf16"),
    ({"attack_bn": "train"}, "fp32", "attack_bn=train"),
    ({"compile": True}, "fp32", "compile=true"),
])
def test_graphs_are_off_with_one_line_where_they_do_not_apply(fields, precision, reason):
    lines = Lines()
    cfg = build_config(method="pgd-at", overrides={**fields, "cuda_graph": True})
    assert attack_graphs(cfg, precision, "the training attack", lines.log) is None
    assert len(lines.lines) == 1 and reason in lines.lines[0] and "eager PGD" in lines.lines[0]
    assert attack_graphs(build_config(method="pgd-at", overrides=fields), precision, "it", lines.log) is None
    assert len(lines.lines) == 1  # the field off: nothing to say


@pytest.mark.slow
@pytest.mark.parametrize(("fields", "reason"), [({"attack_bn": "train", "precision": "fp32"}, "attack_bn=train"),
                                                ({"precision": "bf16"}, "precision bf16")])
def test_training_falls_back_to_eager(tmp_path, tiny_data, monkeypatch, fields, reason):
    from conftest import train_with_validation

    runs = count_static_runs(monkeypatch)
    cfg = build_config(method="pgd-at", dataset="cifar10", ur=10, preset="smoke",
                       overrides={"epochs": 1, "steps": 1, "batch_size": 32, "epoch_eval_n": 20, "cuda_graph": True,
                                  **fields})
    lines = Lines()
    trainee = train_with_validation(cfg, tiny_data, tmp_path, torch.device("cpu"), lines)
    assert trainee.graphs is None and runs == []
    assert sum("eager PGD" in line for line in lines.lines) == 1 and reason in lines.lines[0]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def deterministic_cudnn(monkeypatch):
    """The same convolution algorithms for eager and captured runs."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


def cuda_batches(sizes: tuple[int, ...], device: torch.device) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.rand(n, 3, 32, 32, generator=gen).to(device), torch.randint(0, 10, (n,), generator=gen).to(device))
            for n in sizes]


@cuda
@pytest.mark.usefixtures("deterministic_cudnn")
@pytest.mark.parametrize("arch", ["cnn-small", "resnet18"])
@pytest.mark.parametrize("method", ["reat", "robustlt+trades"])
def test_captured_training_attack_equals_eager_on_the_gpu(arch, method):
    device = torch.device("cuda")
    cfg = build_config(method=method, dataset="cifar10", arch=arch, ur=10, preset="smoke",
                       overrides={"precision": "fp32", "batch_size": 64, "steps": 5, "cuda_graph": True})
    data = synthetic_data("cifar10", 10, device)
    trainee = build_trainee(cfg, data, device)
    lines = Lines()
    graphs = PGDGraphs(lines.log)
    stats = EpochStats(data.num_classes, device)
    for b, (x, y) in enumerate(cuda_batches((64, 64, 64, 23), device)):
        x = x.contiguous(memory_format=memory_format(arch))
        trainee.graphs = None
        eager, clean = craft(cfg, trainee, x, y, torch.Generator(device).manual_seed(b))
        trainee.graphs = graphs
        captured, clean_g = craft(cfg, trainee, x, y, torch.Generator(device).manual_seed(b))
        assert torch.equal(eager, captured) and torch.equal(clean, clean_g), b
        losses = [outer_loss(trainee.precision, trainee.method, trainee.net, a, x, y)[0] for a in (eager, captured)]
        assert torch.equal(*losses), b
        trainee.graphs = None
        train_step(cfg, trainee, x, y, torch.Generator(device).manual_seed(100 + b), stats, b)  # new weights
    assert len(graphs.runners) == 2 and lines.lines == []


@cuda
@pytest.mark.usefixtures("deterministic_cudnn")
@pytest.mark.parametrize("arch", ["cnn-small", "resnet18"])
def test_captured_evaluation_equals_eager_on_the_gpu(arch):
    device = torch.device("cuda")
    cfg = build_config(method="reat", dataset="cifar10", arch=arch, ur=10, preset="smoke")
    data = synthetic_data("cifar10", 10, device, n_test=300)
    trainee = build_trainee(cfg, data, device)
    model = InferenceModel(trainee.net, trainee.method).eval()
    x, y = data.x_test[:300], data.y_test[:300]
    graphs = PGDGraphs(print)
    for key in ("fgsm", "pgd20", "cw100"):
        params = attack_params(key, cfg.eps, cfg.step_size, data.num_classes, seed=0)
        eager = run_attack(model, key, params, x, y, seed=0, batch_size=128, progress=Progress(False))
        captured = run_attack(model, key, params, x, y, seed=0, batch_size=128, progress=Progress(False),
                              graphs=graphs)
        assert torch.equal(eager, captured), key
        assert len(graphs.runners) == 2
        graphs.clear()
    xb, yb = cuda_batches((64,), device)[0]
    params = attack_params("pgd20", cfg.eps, cfg.step_size, data.num_classes, seed=0)
    generators = [torch.Generator(device).manual_seed(0) for _ in range(2)]
    assert torch.equal(adversarial_images(model, "pgd20", params, xb, yb, generators[0]),
                       adversarial_images(model, "pgd20", params, xb, yb, generators[1], graphs))


def host_synchronising_loss(logits: Tensor, y: Tensor) -> Tensor:
    """CE scaled by a number read on the host: cannot be captured."""
    return ce_loss(logits, y) * (1.0 + 0.0 * logits.sum().item())


@cuda
@pytest.mark.usefixtures("deterministic_cudnn")
def test_a_failed_capture_logs_one_line_and_runs_eagerly():
    device = torch.device("cuda")
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, C)).to(device)
    lines = Lines()
    graphs = PGDGraphs(lines.log)
    for seed in range(2):
        x, y = (t.to(device) for t in batch(16, seed))
        attack = {"eps": EPS, "step_size": STEP, "steps": 3, "loss_fn": host_synchronising_loss}
        generators = [torch.Generator(device).manual_seed(seed) for _ in range(2)]
        eager = pgd(model, x, y, **attack, generator=generators[0])
        assert torch.equal(eager, graphs.pgd(model, x, y, **attack, generator=generators[1]))
    assert graphs.eager and graphs.runners == {}
    assert len(lines.lines) == 1 and "capturing PGD failed" in lines.lines[0]
