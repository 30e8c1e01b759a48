"""RobustLT: the class-wise budget by hand, the warm-up, the wrapper around other methods, the core's use of it."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.core.errors import InputError
from bench.training.config import build_config
from bench.training.loop import build_trainee, craft
from methods import get_method
from methods.robustlt import budget_factors, warmup_scale

COUNTS = [16, 4, 1]


def make(name: str, counts: list[int] = COUNTS, **overrides: object):
    cls = get_method(name)
    return cls(cls.resolve_params(overrides, "fashion-mnist"), counts)


def test_budget_of_a_hand_computed_count_vector() -> None:
    """n = (16, 4, 1), alpha 0.3: r = (0, sqrt(ln 4), sqrt(ln 16)) = (0, 1.177410, 1.665109),
    sum_c (n_c / N) r_c = (4 * 1.177410 + 1.665109) / 21 = 0.303554, tau = 0.3 / 0.303554 = 0.988291,
    eps_c_max / eps = 0.7 + tau r_c = (0.7, 1.863604, 2.345584)."""
    factors = budget_factors(torch.tensor(COUNTS, dtype=torch.float32), 0.3)
    assert factors.tolist() == pytest.approx([0.7, 1.863604, 2.345584], abs=1e-6)
    n = torch.tensor(COUNTS, dtype=torch.float64)
    assert float((n * factors).sum() / n.sum()) == pytest.approx(1.0, abs=1e-12)  # weighted mean: eps
    assert factors[0] == pytest.approx(1 - 0.3)  # the head class: (1 - alpha) eps
    assert torch.all(factors.diff() > 0)  # fewer images, larger budget


def test_budget_on_balanced_data_is_eps_everywhere() -> None:
    assert budget_factors(torch.tensor([5.0, 5.0, 5.0]), 0.3).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(("epoch", "expected"), [(0, 0.0), (4, 0.5), (8, 1.0), (9, 1.0)])
def test_warmup_is_linear_over_beta_epochs(epoch: int, expected: float) -> None:
    """E = 10, beta = 0.8: s = 0 at e0 = 0, 1/2 at beta E / 2 = 4, 1 from beta E = 8 on."""
    assert warmup_scale(epoch, 10, 0.8) == pytest.approx(expected)


def test_no_warmup_when_beta_is_zero() -> None:
    assert warmup_scale(0, 10, 0.0) == 1.0


def test_wrapper_gives_each_sample_its_class_budget_and_step() -> None:
    method = make("robustlt+at-bsl")
    method.begin_epoch(4, 10)  # s = 0.5
    eps, step = method.attack_budget(torch.tensor([0, 2, 1, 2]), 0.1, 0.025)
    expected = 0.5 * torch.tensor([0.7, 2.345584, 1.863604, 2.345584]).view(-1, 1, 1, 1)
    assert eps.shape == (4, 1, 1, 1) and torch.allclose(eps, 0.1 * expected)
    assert torch.allclose(step, 0.025 * expected)
    method.begin_epoch(0, 10)
    assert torch.equal(method.attack_budget(torch.tensor([0, 2]), 0.1, 0.025)[0], torch.zeros(2, 1, 1, 1))


def test_wrapper_keeps_the_base_method() -> None:
    """Start, head, attack steps per epoch (TAET's clean stage), clean pass and inference are the base's."""
    taet = make("robustlt+taet")
    assert taet.attack_start == "normal"
    taet.begin_epoch(0, 10)
    assert taet.attack_steps == 0 and not taet.needs_clean_output
    taet.begin_epoch(5, 10)
    assert taet.attack_steps is None and taet.needs_clean_output
    robal = make("robustlt+robal")
    assert type(robal.build_head(8)).__name__ == "CosPlus" and robal.attack_start == "uniform-positive"
    logits = torch.randn(2, 3)
    assert torch.equal(robal.predict(logits), make("robal").predict(logits))
    reat = make("robustlt+reat")
    reat.end_epoch(torch.tensor([5, 3, 0]))
    assert reat.state_dict()["ae_counts"].tolist() == [5, 3, 0]


def test_parameters_defaults_and_errors() -> None:
    cls = get_method("robustlt+taet")
    assert cls.resolve_params({}, "cifar100")["robustlt_alpha"] == 0.4
    assert cls.resolve_params({}, "cifar10")["robustlt_beta"] == 0.8
    params = cls.resolve_params({"alpha": 0.5, "robustlt_alpha": 0.2}, "cifar10")
    assert params["alpha"] == 0.5 and params["robustlt_alpha"] == 0.2  # TAET's alpha is not RobustLT's
    with pytest.raises(InputError, match="robustlt_alpha"):
        cls.resolve_params({"robustlt_alpha": 1.5}, "cifar10")
    with pytest.raises(InputError, match="no parameter 'nope'"):
        cls.resolve_params({"nope": 1}, "cifar10")
    with pytest.raises(InputError, match="unknown method for robustlt"):
        get_method("robustlt+nope")
    with pytest.raises(InputError, match="robustlt\\+METHOD"):
        get_method("robustlt")


def test_core_crafts_within_each_class_budget(tiny_data) -> None:
    """At full budget each AE stays in its class's eps_c ball (and reaches it); at e0 = 0 the AEs are clean."""
    cfg = build_config(method="robustlt+pgd-at", dataset="cifar10", ur=10, preset="smoke",
                       overrides={"steps": 3, "precision": "fp32", "step_size": 0.05})
    t = build_trainee(cfg, tiny_data, torch.device("cpu"))
    x = tiny_data.x_train[:40].float() / 255
    y = tiny_data.y_train[:40]
    t.method.begin_epoch(cfg.epochs, cfg.epochs)
    x_adv, _ = craft(cfg, t, x, y, torch.Generator().manual_seed(0))
    eps_c = t.method.factors * cfg.eps
    reach = (x_adv - x).abs().flatten(1).amax(1)
    assert torch.all(reach <= eps_c[y] + 1e-6) and torch.allclose(reach, eps_c[y], atol=1e-6)
    t.method.begin_epoch(0, 10)
    assert torch.equal(craft(cfg, t, x, y, torch.Generator().manual_seed(0))[0], x)


@pytest.mark.slow
def test_run_logs_each_epochs_class_budgets(tmp_path, tiny_args) -> None:
    args = ["run", "--methods", "robustlt+at-bsl", "--set", "epochs=2", "--set", "robustlt+at-bsl.robustlt_beta=0.5",
            "--out", str(tmp_path), *tiny_args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = list(tmp_path.iterdir())
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    counts = json.loads((run_dir / "config.json").read_text())["class_counts"]
    assert lines[0]["attack_eps_c"] == [0.0] * len(counts)  # warm-up: the first epoch is clean training
    expected = budget_factors(torch.tensor(counts, dtype=torch.float32), 0.3) * (8 / 255)
    assert lines[1]["attack_eps_c"] == pytest.approx(expected.tolist(), rel=1e-5)  # s = 1 / (0.5 * 2) = 1
