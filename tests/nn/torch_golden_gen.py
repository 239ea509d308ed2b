#!/usr/bin/env python3
"""Prints the PyTorch 1.13 reference values in tests/nn/{activations,global_avg_pool}_test.cc.

Run with Debian's python3-torch (1.13.1, CPU capability AVX2, one thread):
  /usr/bin/python3 tests/nn/torch_golden_gen.py
Inputs are made from sin() in double so that the C++ tests rebuild them exactly.
"""
import math
import struct

import torch

torch.set_num_threads(1)


def hexf(v):
    """C++ float literal with the exact bits (hex float; nan/inf spelled out)."""
    if math.isnan(v):
        return "kNaN"
    if math.isinf(v):
        return "kInf" if v > 0 else "-kInf"
    return float.hex(struct.unpack("f", struct.pack("f", v))[0]) + "f"


def wave(n, scale, offset, freq):
    return torch.tensor([math.sin(i * freq) * scale + offset for i in range(n)], dtype=torch.float32)


def dump(name, t):
    vals = [hexf(v) for v in t.flatten().tolist()]
    print(f"// {name}")
    for i in range(0, len(vals), 4):
        print("    " + ", ".join(vals[i:i + 4]) + ",")


ACT_X = [-5, -4, -3.0001, -3, -2.9999, -2, -1.5, -1, -0.5, -0.0, 0.0, 0.5, 1, 1.5, 2, 2.9999,
         3, 3.0001, 4, 5, 1e-8, -1e-8, 100, -100, float("nan"), float("inf"), float("-inf"),
         0.1, -0.1, 2.75, -2.75, 1.0 / 3]
x = torch.tensor(ACT_X, dtype=torch.float32)
g = wave(32, 1.0, 0.25, 0.7)
for name, f in (("hardswish", torch.nn.functional.hardswish), ("sigmoid", torch.sigmoid),
                ("tanh", torch.tanh)):
    xi = x.clone().requires_grad_()
    y = f(xi)
    y.backward(g)
    dump(f"{name} y", y.detach())
    dump(f"{name} dx", xi.grad)

for shape in ((2, 3, 7, 7), (1, 2, 2, 3), (1, 2, 64, 64), (1, 1, 1, 1)):
    n = math.prod(shape)
    xi = wave(n, 3.0, 0.5, 0.37).reshape(shape).requires_grad_()
    y = torch.nn.AdaptiveAvgPool2d(1)(xi).flatten(1)
    gy = wave(y.numel(), 1.0, 0.0, 1.3).reshape(y.shape)
    y.backward(gy)
    dump(f"gap {shape} y", y.detach())
    dump(f"gap {shape} dx[c, 0, 0]", xi.grad[:, :, 0, 0])
