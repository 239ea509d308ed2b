"""Makes the PyTorch-exported test models of tests/onnx (Debian python3-torch 1.13, CPU).

usage: /usr/bin/python3 tests/onnx/testdata/make_testdata.py

For each model (cnn: quantlab's `cnn` architecture; resnet: a small residual network with
BatchNorm), seed 0: one epoch of SGD (lr 0.05, momentum 0.9, batch 128) on Fashion-MNIST
normalised as quantlab does ((p / 255 - 0.2860) / 0.3530), then
  <model>.onnx             torch.onnx.export, opset 13, input 'x' [N, 1, 28, 28], output 'logits'
  <model>_logits_100.bin   PyTorch's float32 logits of the first 100 test images, row-major [100, 10]
  <model>.json             float test accuracy, and PyTorch's own static int8 PTQ accuracy on the
                           same weights (eager mode, qnnpack engine, MinMax observers: activations
                           quint8 per-tensor affine, weights qint8 per-tensor symmetric,
                           reduce_range False; calibration: the first 1024 training images)
The files are checked in; run again only to change them.
"""
import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn
from torch.ao.quantization import QConfig, MinMaxObserver

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def images(name):
    a = read_idx(name).astype(np.float32) / np.float32(255.0)
    a = (a - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(np.ascontiguousarray(a[:, None, :, :]))


class Cnn(nn.Module):
    """quantlab's `cnn`: 2x [Conv3x3(pad 1)-ReLU-MaxPool2] (16, 32) - Linear(1568,128)-ReLU - Linear(128,10)."""

    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(1568, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.dequant(self.fc2(x))

    fuse_groups = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]


class Resnet(nn.Module):
    """stem Conv(1,8,3,p1)-BN-ReLU, a basic block (Conv-BN-ReLU-Conv-BN + skip, ReLU), MaxPool2,
    Conv(8,16,3,p1)-BN-ReLU, global average pool, Linear(16,10)."""

    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.stem_relu = nn.ReLU()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.add = nn.quantized.FloatFunctional()
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.c3 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(16, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        s = self.stem_relu(self.stem_bn(self.stem(x)))
        y = self.relu1(self.bn1(self.c1(s)))
        y = self.bn2(self.c2(y))
        x = self.pool(self.relu2(self.add.add(y, s)))
        x = self.relu3(self.bn3(self.c3(x)))
        x = self.flatten(self.gap(x))
        return self.dequant(self.fc(x))

    fuse_groups = [["stem", "stem_bn", "stem_relu"], ["c1", "bn1", "relu1"], ["c2", "bn2"],
                   ["c3", "bn3", "relu3"]]


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], 500):
        correct += (model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item()
    return correct / x.shape[0]


def main():
    torch.set_num_threads(1)
    xtr, xte = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    ytr = torch.from_numpy(read_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    yte = torch.from_numpy(read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    for name, cls in [("cnn", Cnn), ("resnet", Resnet)]:
        torch.manual_seed(0)
        model = cls()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        perm = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(0))
        model.train()
        for i in range(0, xtr.shape[0], 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        model.eval()
        float_acc = accuracy(model, xte, yte)
        torch.onnx.export(model, xte[:1], os.path.join(HERE, name + ".onnx"), opset_version=13,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
        with torch.no_grad():
            model(xte[:100]).numpy().astype(np.float32).tofile(os.path.join(HERE, name + "_logits_100.bin"))
        # PyTorch's own static int8 PTQ of the same weights.
        torch.backends.quantized.engine = "qnnpack"
        q = cls()
        q.load_state_dict(model.state_dict())
        q.eval()
        q = torch.ao.quantization.fuse_modules(q, cls.fuse_groups)
        q.qconfig = QConfig(
            activation=MinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                                                reduce_range=False),
            weight=MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                                            reduce_range=False))
        torch.ao.quantization.prepare(q, inplace=True)
        with torch.no_grad():
            q(xtr[:1024])
        torch.ao.quantization.convert(q, inplace=True)
        int8_acc = accuracy(q, xte, yte)
        summary = {"model": name, "float_test_accuracy": float_acc, "torch_int8_static_test_accuracy": int8_acc,
                   "torch": torch.__version__, "engine": "qnnpack", "calibration_images": 1024}
        with open(os.path.join(HERE, name + ".json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(summary)


if __name__ == "__main__":
    main()
