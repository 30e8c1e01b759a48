"""MART's loss against a hand computation, and ltbench's invariants for plugin methods."""

import math

import torch
from ltbench_mart import MART

from bench.models.net import Output
from bench.testing import check_method


def test_loss_matches_a_hand_computation() -> None:
    clean = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    y = torch.tensor([0, 1])
    method = MART({"beta": 6.0}, [10, 5, 1])
    loss = method.train_loss(Output(adv, adv), y, Output(clean, clean))

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    total = 0.0
    for z, zc, t in zip(adv.tolist(), clean.tolist(), y.tolist(), strict=True):
        p, q = softmax(z), softmax(zc)
        wrong = max((k for k in range(3) if k != t), key=lambda k: p[k])
        bce = -math.log(p[t]) - math.log(1.0001 - p[wrong] + 1e-12)
        kl = sum(qk * (math.log(qk) - math.log(pk + 1e-12)) for qk, pk in zip(q, p, strict=True))
        total += bce + 6.0 * kl * (1.0000001 - q[t])
    assert math.isclose(loss.item(), total / 2, rel_tol=1e-5)


def test_ltbench_invariants(tmp_path) -> None:
    check_method(MART, tmp_path)
