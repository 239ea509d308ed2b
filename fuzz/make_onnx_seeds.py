#!/usr/bin/python3
"""Writes the float ONNX seeds of //fuzz:onnx_fuzzer with PyTorch 1.13 (Debian python3-torch):
a small cnn (Conv-BN-ReLU, MaxPool, Flatten, Gemm) and a residual net (skip Add, ReLU6 as Clip,
HardSwish, GlobalAveragePool, Concat), 1x8x8 inputs, 10 classes, a few KiB each.

    /usr/bin/python3 fuzz/make_onnx_seeds.py fuzz/corpus/onnx
"""
import os
import sys

import torch
from torch import nn


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.b = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = nn.functional.relu6(self.stem(x))
        y = nn.functional.hardswish(self.b(self.a(x))) + x
        z = torch.cat([nn.functional.adaptive_avg_pool2d(y, 1), nn.functional.adaptive_avg_pool2d(x, 1)], 1)
        return self.fc(torch.flatten(z, 1))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for name, net in (("cnn", Cnn()), ("residual", Residual())):
        net.eval()
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), os.path.join(out, name + ".float.onnx"), opset_version=14,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}})


if __name__ == "__main__":
    main()
