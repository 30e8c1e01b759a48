"""Methods against the training-core contract, TAIL against loop references, finding F1, parameters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import InputError
from bench.evaluation.attacks import pgd
from bench.models.net import Net
from bench.testing import state_round_trip, training_step
from methods import REGISTRY, get_method
from methods.base import Method
from methods.rebalancing import RBLAttack
from methods.tail_loss import tail_mask, tail_official, tail_paper

COUNTS = [40, 20, 10, 6, 3]  # C = 5, TAIL's tail set 2 * (5 // 3) + 1 .. 4 = {3, 4}
EPS, STEP = 8 / 255, 2 / 255
#: every registered method and RobustLT around a few of them (each base's own start, head and state)
NAMES = sorted(REGISTRY) + [f"robustlt+{base}" for base in ("pgd-at", "trades", "robal", "reat", "taet", "awp")]


def make(name: str, counts: list[int] = COUNTS, dataset: str = "cifar10", **overrides: object) -> Method:
    cls = get_method(name)
    return cls(cls.resolve_params(overrides, dataset), counts)


def tiny_net(method: Method, seed: int = 0) -> Net:
    """Conv-BN-ReLU x2, global average pooling (8-d features) and the method's head; BN stats warmed up."""
    torch.manual_seed(seed)
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    net = Net(backbone, method.build_head(8))
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(16, 3, 8, 8))
    return net


def test_registry_names() -> None:
    assert set(REGISTRY) == {"pgd-at", "trades", "robal", "at-bsl", "rbl", "tail", "reat", "taet", "awp"}


@pytest.mark.parametrize("name", NAMES)
def test_summary_and_param_help(name: str) -> None:
    cls = get_method(name)
    assert cls.name == name and cls.summary
    for param in cls.params:
        assert param.help and "\n" not in param.help
    for dataset in ("cifar10", "cifar100", "fashion-mnist"):
        assert set(cls.resolve_params({}, dataset)) == {p.name for p in cls.params}


@pytest.mark.parametrize("name", NAMES)
def test_training_step_contract(name: str) -> None:
    """Every built-in method passes the checks ``bench.testing`` gives plugin authors: one batch as the training
    core runs it (finite loss and gradients, the attack inside the ball, ``predict``), and the state round trip."""
    training_step(get_method(name))
    state_round_trip(get_method(name))


@pytest.mark.parametrize("name", ["pgd-at", "trades", "at-bsl", "rbl", "tail", "reat", "taet", "awp"])
def test_predict_is_identity(name: str) -> None:
    logits = torch.randn(3, len(COUNTS))
    assert torch.equal(make(name).predict(logits), logits)


def test_robal_predict_n_and_r() -> None:
    cos = torch.rand(4, len(COUNTS)) * 2 - 1
    log_pi = torch.tensor(COUNTS, dtype=torch.float32).log() - torch.tensor(float(sum(COUNTS))).log()
    expected = 10 * cos - 0.1 * log_pi
    assert torch.allclose(make("robal").predict(cos), expected)
    assert torch.allclose(make("robal", tau_p=1.5, test_scale=5.0).predict(cos), 5 * cos - 1.5 * log_pi)
    assert torch.equal(make("robal", variant="R").predict(cos), cos)


def test_attack_starts_and_clean_output() -> None:
    starts = {name: make(name).attack_start for name in REGISTRY}
    assert starts == {
        "pgd-at": "uniform",
        "trades": "normal",
        "robal": "uniform-positive",
        "at-bsl": "normal",
        "rbl": "uniform",
        "tail": "uniform",
        "reat": "uniform",
        "taet": "normal",
        "awp": "uniform",
    }
    assert {name for name in REGISTRY if REGISTRY[name].needs_clean_output} == {"trades", "robal"}


# --- TAIL against loop references -------------------------------------------------------------------


def tail_features(seed: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor([500, 300, 200, 120, 80, 50, 30, 20, 12, 8])  # C = 10, tail = {7, 8, 9}
    features = torch.rand(16, 6, generator=gen) * 3
    y = torch.tensor([0, 7, 1, 9, 2, 2, 8, 7, 3, 0, 9, 5, 4, 6, 7, 1])
    return features, y, counts


def loop_official(features: Tensor, y: Tensor, counts: Tensor) -> Tensor:
    """The official code's structure: per anchor, KL reduced by a plain mean, then the pair vector."""
    batch = len(y)
    u = (counts.sum() / counts.float()).sqrt()
    terms = []
    for b in range(batch):
        if y[b] < 7:
            continue
        target = F.softmax(features[b], dim=0).detach().expand(batch, -1)
        kl = F.kl_div(F.log_softmax(features, dim=1), target, reduction="none").mean()  # legacy 'mean'
        pair = torch.stack([(-1.0 if y[j] == y[b] else 1.0) * (u[y[b]] + u[y[j]]) for j in range(batch)])
        terms.append((kl * pair).mean())
    return torch.stack(terms).mean()


def loop_paper(features: Tensor, y: Tensor, counts: Tensor) -> Tensor:
    """Per-pair KL summed over the feature dims, same-class pairs pulled (+), other classes pushed (-)."""
    batch = len(y)
    u = (counts.sum() / counts.float()).sqrt()
    terms = []
    for b in range(batch):
        if y[b] < 7:
            continue
        p = F.softmax(features[b], dim=0).detach()
        pairs = []
        for j in range(batch):
            kl = (p * (p.log() - F.log_softmax(features[j], dim=0))).sum()
            pairs.append((1.0 if y[j] == y[b] else -1.0) * (u[y[b]] + u[y[j]]) * kl)
        terms.append(torch.stack(pairs).mean())
    return torch.stack(terms).mean()


@pytest.mark.parametrize("fast, loop", [(tail_official, loop_official), (tail_paper, loop_paper)])
def test_tail_matches_loop_reference(fast, loop) -> None:
    features, y, counts = tail_features()
    f_fast = features.clone().requires_grad_(True)
    f_loop = features.clone().requires_grad_(True)
    value, reference = fast(f_fast, y, counts), loop(f_loop, y, counts)
    value.backward()
    reference.backward()
    assert torch.allclose(value, reference, rtol=1e-5, atol=1e-7)
    assert torch.allclose(f_fast.grad, f_loop.grad, rtol=1e-4, atol=1e-7)


def test_tail_classes_follow_the_official_rule() -> None:
    assert tail_mask(10).nonzero().flatten().tolist() == [7, 8, 9]
    assert tail_mask(100).nonzero().flatten().tolist() == list(range(67, 100))
    assert tail_mask(200).nonzero().flatten().tolist() == list(range(133, 200))  # 67 classes, not 66


def test_tail_official_sign_pulls_toward_tail_anchor() -> None:
    """Sec. 4.1: minimising the official TAIL moves a head sample's feature softmax toward a tail anchor."""
    features, y, counts = tail_features()
    features.requires_grad_(True)
    tail_official(features, y, counts).backward()
    step = features - 0.5 * features.grad
    anchor = F.softmax(features[1], dim=0)
    before = F.kl_div(F.log_softmax(features[0], dim=0), anchor, reduction="sum")
    after = F.kl_div(F.log_softmax(step[0], dim=0), anchor, reduction="sum")
    assert after < before


# --- RBL state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reat", "rbl"])
def test_rbl_counts_start_at_class_counts_and_follow_histogram(name: str) -> None:
    method = make(name)
    assert method.state_dict()["ae_counts"].tolist() == COUNTS
    method.end_epoch(torch.tensor([30, 25, 10, 4, 0]))
    assert method.state_dict()["ae_counts"].tolist() == [30, 25, 10, 4, 0]
    fresh = make(name, rbl_mode="logit")
    assert not torch.equal(fresh.attack_part.weights, method.attack_part.weights)
    fresh.load_state_dict(method.state_dict())
    assert fresh.state_dict()["ae_counts"].tolist() == [30, 25, 10, 4, 0]
    assert torch.equal(fresh.attack_part.weights, method.attack_part.weights)


def test_state_errors() -> None:
    with pytest.raises(ValueError):
        make("reat").load_state_dict({"counts": torch.zeros(5)})
    with pytest.raises(ValueError):
        make("reat").end_epoch(torch.zeros(3))
    with pytest.raises(ValueError):
        make("tail").load_state_dict({"ae_counts": torch.zeros(5)})
    assert make("tail").state_dict() == {}


# --- finding F1 and the logit extension -------------------------------------------------------------


def attack(net: nn.Module, x: Tensor, y: Tensor, loss_fn, eps: float = EPS, step: float = STEP) -> Tensor:
    return pgd(
        net,
        x,
        y,
        eps=eps,
        step_size=step,
        steps=10,
        loss_fn=loss_fn,
        generator=torch.Generator().manual_seed(7),
    )


def test_f1_official_rbl_equals_ce_pgd() -> None:
    """Eval-mode BN + sign-PGD: positive per-sample weights leave every perturbation unchanged."""
    counts = torch.tensor([50.0, 20, 8, 3])
    net = tiny_net(make("pgd-at", [50, 20, 8, 3]), seed=0)
    net.head = nn.Linear(8, 4)
    torch.manual_seed(5)
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 3])
    official, logit = RBLAttack(counts), RBLAttack(counts, mode="logit")
    for part in (official, logit):
        part.end_epoch(torch.tensor([70, 10, 0, 1]))
    assert (
        official.weights.max() / official.weights.min() > 1e5
    )  # strongly non-uniform, one class without AEs
    x_ce = attack(net, x, y, lambda z, t: F.cross_entropy(z, t, reduction="none"))
    assert torch.equal(attack(net, x, y, official.loss), x_ce)
    assert not torch.equal(attack(net, x, y, logit.loss), x_ce)


def test_f1_does_not_hold_with_train_mode_batchnorm() -> None:
    """attack_bn=train: the batch statistics couple the samples, so the class weights of the official RBL reach
    other samples' gradients and change the AEs."""
    counts = torch.tensor([50.0, 20, 8, 3])
    net = tiny_net(make("pgd-at", [50, 20, 8, 3]), seed=0)
    net.head = nn.Linear(8, 4)
    torch.manual_seed(5)
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 3])
    official = RBLAttack(counts)
    official.end_epoch(torch.tensor([70, 10, 0, 1]))
    crafted = [pgd(net, x, y, eps=EPS, step_size=STEP, steps=10, loss_fn=loss, train_bn=True,
                   generator=torch.Generator().manual_seed(7))
               for loss in (official.loss, lambda z, t: F.cross_entropy(z, t, reduction="none"))]
    assert not torch.equal(*crafted)


def entropy(hist: Tensor) -> float:
    p = hist.float() / hist.sum()
    p = p[p > 0]
    return -(p * p.log()).sum().item()


def test_logit_mode_flattens_the_ae_prediction_histogram() -> None:
    """Adding tau * log w (rbl_mode=logit) raises the entropy of the AEs' predicted labels; subtracting
    lowers it."""
    torch.manual_seed(16)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    with torch.no_grad():
        net[1].weight.normal_()
        net[1].bias.copy_(torch.tensor([3.0, 1.5, 0.0, -1.5]))  # a model biased toward the first classes
    x, y = torch.rand(200, 3, 4, 4), torch.randint(0, 4, (200,))
    counts = torch.full((4,), 100.0)

    def histogram(part: RBLAttack) -> Tensor:
        x_adv = attack(net, x, y, part.loss, eps=0.1, step=0.025)
        with torch.no_grad():
            return torch.bincount(net(x_adv).argmax(1), minlength=4)

    official = RBLAttack(counts)
    hist = histogram(official)
    assert (hist > 0).all() and entropy(hist) < 0.9 * math.log(4)  # every class predicted, far from uniform
    added, subtracted = RBLAttack(counts, mode="logit"), RBLAttack(counts, mode="logit", tau=-1.0)
    for part in (official, added, subtracted):
        part.end_epoch(hist)
    assert entropy(histogram(added)) > entropy(histogram(official)) + 0.05
    assert entropy(histogram(subtracted)) < entropy(histogram(official))


# --- parameters -------------------------------------------------------------------------------------


def test_robal_defaults_per_dataset_and_variant() -> None:
    robal = get_method("robal")
    c10 = robal.resolve_params({}, "cifar10")
    assert c10 == {
        "variant": "N", "m": 0.1, "s": 10.0, "tau_m": 0.0, "tau_b": 1.2, "beta_reg": 6.0,
        "gamma": 0.03125, "tau_p": 0.1, "test_scale": 10.0,
    }  # fmt: skip
    assert robal.resolve_params({}, "fashion-mnist") == c10
    c100 = robal.resolve_params({}, "cifar100")
    assert (c100["m"], c100["tau_b"], c100["beta_reg"], c100["tau_p"]) == (0.2, 0.0, 3.0, 1.5)
    r10 = robal.resolve_params({"variant": "R"}, "cifar10")
    assert (r10["tau_m"], r10["tau_b"], r10["gamma"]) == (0.3, 1.5, 0.03125)
    r100 = robal.resolve_params({"variant": "R", "m": "0.25"}, "cifar100")
    assert (r100["m"], r100["beta_reg"], r100["gamma"]) == (0.25, 6.0, 0.0625)


def test_resolve_params_parses_cli_strings() -> None:
    params = get_method("reat").resolve_params(
        {"variant": "paper", "lambda": "0.5", "rbl_mode": "logit"}, "cifar10"
    )
    assert params == {"variant": "paper", "lambda": 0.5, "rbl_mode": "logit", "rbl_tau": 1.0}


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("robal", {"alpha": 1}),
        ("pgd-at", {"beta": 1}),
        ("reat", {"variant": "fancy"}),
        ("rbl", {"rbl_mode": "weights"}),
        ("robal", {"variant": "n"}),
        ("trades", {"beta": "six"}),
    ],
)
def test_bad_parameters_are_input_errors(name: str, overrides: dict[str, object]) -> None:
    with pytest.raises(InputError):
        get_method(name).resolve_params(overrides, "cifar10")
