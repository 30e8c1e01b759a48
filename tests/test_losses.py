"""Every method's loss against a small example whose expected value is computed with plain Python floats."""

from __future__ import annotations

import math

import pytest
import torch

from methods import get_method
from methods.base import Output
from methods.rebalancing import RBLAttack, effective_number_weights
from methods.robal import CosPlus
from methods.tail_loss import balanced_softmax_loss, tail_official, tail_paper

LOGITS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [-0.3, 0.2, 0.9]]
LABELS = [0, 2, 1]


def make(name: str, counts: list[int], dataset: str = "cifar10", **overrides: object):
    cls = get_method(name)
    return cls(cls.resolve_params(overrides, dataset), counts)


def out(logits: list[list[float]], features: list[list[float]] | None = None) -> Output:
    feats = torch.tensor(features) if features is not None else torch.zeros(len(logits), 2)
    return Output(feats, torch.tensor(logits))


def ce(z: list[float], y: int) -> float:
    return -z[y] + math.log(sum(math.exp(v) for v in z))


def softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def kl(p: list[float], q: list[float], eps: float = 0.0) -> float:
    return sum(a * (math.log(a + eps) - math.log(b + eps)) for a, b in zip(p, q, strict=True))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_pgd_at_is_mean_ce() -> None:
    loss = make("pgd-at", [3, 2, 1]).train_loss(out(LOGITS), torch.tensor(LABELS))
    expected = mean([ce(z, y) for z, y in zip(LOGITS, LABELS, strict=True)])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_trades_outer_and_attack_loss() -> None:
    clean = [[1.0, 0.0, 0.5], [0.0, 2.0, -1.0], [0.3, 0.3, 0.3]]
    method = make("trades", [3, 2, 1])
    loss = method.train_loss(out(LOGITS), torch.tensor(LABELS), out_clean=out(clean))
    kls = [kl(softmax(c), softmax(a)) for c, a in zip(clean, LOGITS, strict=True)]
    expected = mean([ce(z, y) for z, y in zip(clean, LABELS, strict=True)]) + 6.0 * mean(kls)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    per_sample = method.attack_loss(torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(clean))
    assert per_sample.tolist() == pytest.approx(kls, rel=1e-5, abs=1e-7)


def test_robal_margin_prior_and_kl_regulariser() -> None:
    counts = [4, 2, 1]
    cos_adv = [[0.9, 0.1, -0.2], [0.3, 0.5, 0.4], [-0.1, 0.6, 0.2]]
    cos_clean = [[0.8, 0.0, 0.1], [0.2, 0.6, 0.1], [0.0, 0.7, 0.3]]
    m, s, tau_m, tau_b, beta_reg = 0.1, 10.0, 0.3, 1.2, 6.0
    method = make("robal", counts, tau_m=tau_m)
    loss = method.train_loss(out(cos_adv), torch.tensor(LABELS), out_clean=out(cos_clean))

    total = sum(counts)
    margins = [m + tau_m * math.log(n / 1) / s for n in counts]
    terms = []
    for cos, y in zip(cos_adv, LABELS, strict=True):
        z = [
            s * (cos[c] - (margins[y] if c == y else 0.0)) + tau_b * math.log(counts[c] / total)
            for c in range(3)
        ]
        terms.append(ce(z, y))
    reg = mean([kl(softmax(c), softmax(a), eps=1e-12) for c, a in zip(cos_clean, cos_adv, strict=True)])
    assert loss.item() == pytest.approx(mean(terms) + beta_reg * reg, rel=1e-5)


def test_cosplus_head() -> None:
    head = CosPlus(2, 2, gamma=1 / 32)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    cos = head(torch.tensor([[3.0, 4.0]]))[0].tolist()
    assert cos == pytest.approx([0.6 / (1 + 1 / 32), 0.8 * 2 / (2 + 1 / 32)], rel=1e-6)


def test_at_bsl_tau() -> None:
    counts = [5, 3, 1]
    tau = 0.5
    loss = make("at-bsl", counts, tau=tau).train_loss(out(LOGITS), torch.tensor(LABELS))
    expected = mean(
        [
            ce([z[c] + tau * math.log(counts[c] / 9) for c in range(3)], y)
            for z, y in zip(LOGITS, LABELS, strict=True)
        ]
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bsl_equals_log_count_shift() -> None:
    counts = [6, 2, 1]
    loss = balanced_softmax_loss(torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(counts))
    expected = mean(
        [ce([z[c] + math.log(counts[c]) for c in range(3)], y) for z, y in zip(LOGITS, LABELS, strict=True)]
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def rbl_weights_by_hand(counts: list[int], ae_counts: list[int]) -> list[float]:
    v = []
    for n, a in zip(counts, ae_counts, strict=True):
        beta = (n - 1) / n
        effective = (1 - beta**a) / (1 - beta)
        v.append(1 / (effective + 1e-5))
    return [len(v) * x / sum(v) for x in v]


def test_rbl_weights_with_a_class_without_predicted_aes() -> None:
    counts, ae_counts = [4, 2, 3], [5, 2, 0]
    weights = effective_number_weights(torch.tensor(counts), torch.tensor(ae_counts))
    expected = rbl_weights_by_hand(counts, ae_counts)
    # E = [4 * (1 - 0.75^5), 1.5, 0]: the class without AEs gets v = 1e5 and almost all of the sum C = 3
    assert expected[2] > 2.9999
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx(expected, rel=1e-5)
    assert weights.sum().item() == pytest.approx(3.0, rel=1e-6)


def test_rbl_weights_single_image_class() -> None:
    # n_c = 1 gives beta = 0: E = 1 once any AE is predicted as c, E = 0 (v = 1e5) otherwise
    weights = effective_number_weights(torch.tensor([1, 1, 4]), torch.tensor([3, 0, 2]))
    assert weights.tolist() == pytest.approx(rbl_weights_by_hand([1, 1, 4], [3, 0, 2]), rel=1e-5)


def test_rbl_attack_losses() -> None:
    counts, ae_counts = [4, 2, 3], [5, 2, 1]
    w = rbl_weights_by_hand(counts, ae_counts)
    y = torch.tensor(LABELS)
    official = RBLAttack(torch.tensor(counts, dtype=torch.float32))
    official.end_epoch(torch.tensor(ae_counts))
    expected = sum(w[t] * ce(z, t) for z, t in zip(LOGITS, LABELS, strict=True)) / sum(w[t] for t in LABELS)
    assert official.loss(torch.tensor(LOGITS), y).sum().item() == pytest.approx(expected, rel=1e-5)

    logit = RBLAttack(torch.tensor(counts, dtype=torch.float32), mode="logit", tau=0.7)
    logit.end_epoch(torch.tensor(ae_counts))
    expected = [
        ce([z[c] + 0.7 * math.log(w[c]) for c in range(3)], t) for z, t in zip(LOGITS, LABELS, strict=True)
    ]
    assert logit.loss(torch.tensor(LOGITS), y).tolist() == pytest.approx(expected, rel=1e-5)


# TAIL example: C = 4 (official tail set 2 * (4 // 3) + 1 .. 3 = {3}), counts [6, 2, 1, 1] (N = 10),
# B = 4 samples, D = 2 feature dims.
TAIL_COUNTS = [6, 2, 1, 1]
TAIL_Y = [3, 0, 3, 1]
LN3 = math.log(3)
TAIL_FEATURES = [[0.0, LN3], [0.0, 0.0], [LN3, 0.0], [1.0, -1.0]]


def tail_by_hand(variant: str) -> float:
    probs = [softmax(f) for f in TAIL_FEATURES]  # [.25, .75], [.5, .5], [.75, .25], ...
    u = [math.sqrt(sum(TAIL_COUNTS) / n) for n in TAIL_COUNTS]
    batch, dims = 4, 2
    per_anchor = []
    for b in (0, 2):
        kls = [kl(probs[b], probs[j]) for j in range(batch)]
        pair_w = [u[TAIL_Y[b]] + u[TAIL_Y[j]] for j in range(batch)]
        same = [TAIL_Y[j] == TAIL_Y[b] for j in range(batch)]
        if variant == "official":
            kbar = sum(kls) / (batch * dims)
            omega = sum((-1 if s else 1) * w for s, w in zip(same, pair_w, strict=True)) / batch
            per_anchor.append(kbar * omega)
        else:
            per_anchor.append(
                sum((1 if s else -1) * w * k for s, w, k in zip(same, pair_w, kls, strict=True)) / batch
            )
    return mean(per_anchor)


@pytest.mark.parametrize("variant, fn", [("official", tail_official), ("paper", tail_paper)])
def test_tail_small_example(variant: str, fn) -> None:
    value = fn(torch.tensor(TAIL_FEATURES), torch.tensor(TAIL_Y), torch.tensor(TAIL_COUNTS))
    assert value.item() == pytest.approx(tail_by_hand(variant), rel=1e-5)


def test_tail_without_tail_anchors_is_zero() -> None:
    features = torch.tensor(TAIL_FEATURES, requires_grad=True)
    value = tail_official(features, torch.tensor([0, 1, 0, 1]), torch.tensor(TAIL_COUNTS))
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(features.grad, torch.zeros_like(features))


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_reat_and_tail_outer_loss_is_bsl_plus_lambda_tail(variant: str) -> None:
    logits = [z + [-0.4] for z in LOGITS] + [[0.1, 0.2, 0.3, 0.5]]
    bsl = mean(
        [
            ce([z[c] + math.log(TAIL_COUNTS[c]) for c in range(4)], y)
            for z, y in zip(logits, TAIL_Y, strict=True)
        ]
    )
    for name in ("reat", "tail"):
        method = make(name, TAIL_COUNTS, variant=variant, **{"lambda": 2.5})
        loss = method.train_loss(out(logits, TAIL_FEATURES), torch.tensor(TAIL_Y))
        assert loss.item() == pytest.approx(bsl + 2.5 * tail_by_hand(variant), rel=1e-5)
    rbl = make("rbl", TAIL_COUNTS).train_loss(out(logits, TAIL_FEATURES), torch.tensor(TAIL_Y))
    assert rbl.item() == pytest.approx(bsl, rel=1e-6)
