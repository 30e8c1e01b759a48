"""cnn-small: a compact CNN for 28x28 and 32x32 inputs, fast enough for CPU runs."""

from torch import nn


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def cnn_small(in_channels: int) -> tuple[nn.Module, int]:
    """Three stride-2 conv blocks (32-64-128 channels) and global average pooling; 128-d features."""
    layers = _block(in_channels, 32) + _block(32, 64) + _block(64, 128)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 128
