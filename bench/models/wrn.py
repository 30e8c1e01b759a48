"""Wide ResNets (Zagoruyko & Komodakis): WRN-28-10 and WRN-34-10, dropout 0."""

import torch.nn.functional as F
from torch import Tensor, nn


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, in_channels: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WRN depth must be 6n+4")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for cout, stride in zip(widths[1:], (1, 2, 2), strict=True):
            for i in range(n):
                blocks.append(WideBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.feat_dim = cin

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def wrn_28_10(in_channels: int) -> tuple[nn.Module, int]:
    net = WideResNet(28, 10, in_channels)
    return net, net.feat_dim


def wrn_34_10(in_channels: int) -> tuple[nn.Module, int]:
    net = WideResNet(34, 10, in_channels)
    return net, net.feat_dim
