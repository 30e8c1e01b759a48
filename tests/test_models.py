"""Architectures: output shapes, features, normalisation inside the model."""

import pytest
import torch
from torch import nn

from bench.models import ARCHS, build_model


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28)])
def test_logits_and_features(arch, channels, size):
    if arch.startswith("wrn") and size == 28:
        pytest.skip("one input size is enough for the wide (slow) nets")
    torch.manual_seed(0)
    net = build_model(arch, channels, lambda d: nn.Linear(d, 7)).eval()
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        out = net.forward_features(x)
        logits = net(x)
    expected_dim = {"cnn-small": 128, "resnet18": 512, "preact-resnet18": 512}.get(arch, 640)
    assert out.features.shape == (2, expected_dim)
    assert out.logits.shape == logits.shape == (2, 7)
    assert torch.allclose(out.logits, logits)


def test_normalisation_happens_inside_the_model():
    torch.manual_seed(0)
    plain = build_model("cnn-small", 3, lambda d: nn.Linear(d, 3)).eval()
    normed = build_model("cnn-small", 3, lambda d: nn.Linear(d, 3), mean=[0.5] * 3, std=[0.25] * 3).eval()
    normed.backbone.load_state_dict(plain.backbone.state_dict())
    normed.head.load_state_dict(plain.head.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(normed(x), plain((x - 0.5) / 0.25), atol=1e-5)
