"""CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool) and PreAct ResNet-18 backbones."""

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class ResNetBackbone(nn.Module):
    """Stages of [2, 2, 2, 2] blocks, widths 64-128-256-512, global average pooling."""

    def __init__(self, block: type[nn.Module], in_channels: int, preact: bool):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.stem_bn = None if preact else nn.BatchNorm2d(64)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [block(cin, cout, stride), block(cout, cout, 1)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(512) if preact else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem(x)
        if self.stem_bn is not None:
            out = F.relu(self.stem_bn(out))
        out = self.stages(out)
        if self.final_bn is not None:
            out = F.relu(self.final_bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def resnet18(in_channels: int) -> tuple[nn.Module, int]:
    return ResNetBackbone(BasicBlock, in_channels, preact=False), 512


def preact_resnet18(in_channels: int) -> tuple[nn.Module, int]:
    return ResNetBackbone(PreActBlock, in_channels, preact=True), 512
