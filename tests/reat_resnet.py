"""ResNet-18 with the key layout of the official REAT code's checkpoints (the pytorch-cifar ResNet: conv1, bn1,
layer1-4, linear), written here as an outside model for `bench eval --model reat_resnet:ResNet18`."""

import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.resnet import BasicBlock  # the same block and key layout as the pytorch-cifar ResNet


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, layers = 64, []
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def from_ltbench(state: dict) -> dict:
    """An ltbench resnet18 run's ``model`` weights under the official key names."""
    renamed = {}
    for key, value in state.items():
        if key in ("mean", "std"):
            continue
        key = key.replace("backbone.stem_bn.", "bn1.").replace("backbone.stem.", "conv1.").replace("head.", "linear.")
        if key.startswith("backbone.stages."):
            index, rest = key[len("backbone.stages."):].split(".", 1)
            key = f"layer{int(index) // 2 + 1}.{int(index) % 2}.{rest}"
        renamed[key] = value
    return renamed
