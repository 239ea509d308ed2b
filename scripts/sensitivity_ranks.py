#!/usr/bin/env python3
"""Rank stability of a sensitivity table across runs (e.g. analysis seeds 0-2).

  python3 scripts/sensitivity_ranks.py runs/resnet_mini_sensitivity_seeds__seed=*/result.json

For every (metric, target, bits) present in every record it prints Spearman's rho of the
layers' values between each pair of runs, and their mean; then, within each run, rho
between the Hessian ranking (hawq_omega, hessian_trace) and the measured one-layer loss
increase. Pure Python: reads the records' `sensitivity` entries.
"""
import itertools
import json
import sys


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    saa = sum((x - ma) ** 2 for x in ra)
    sbb = sum((y - mb) ** 2 for y in rb)
    return float("nan") if saa == 0 or sbb == 0 else sab / (saa * sbb) ** 0.5


def table(path):
    with open(path) as f:
        record = json.load(f)
    out = {}
    for e in record.get("sensitivity", []):
        key = (e["metric"], e.get("target", ""), int(e.get("bits", 0)))
        out.setdefault(key, {})[e["layer"]] = float(e["value"])
    return record.get("name", path), out


def main(paths):
    if len(paths) < 1:
        sys.exit(__doc__)
    runs = [table(p) for p in paths]
    keys = set(runs[0][1])
    for _, t in runs[1:]:
        keys &= set(t)
    if len(runs) > 1:
        pairs = list(itertools.combinations(range(len(runs)), 2))
        print("| metric | target | bits | " + " | ".join(f"rho({a},{b})" for a, b in pairs) + " | mean |")
        print("|---|---|---:|" + "---:|" * (len(pairs) + 1))
        for key in sorted(keys):
            layers = sorted(runs[0][1][key])
            rhos = [spearman([runs[a][1][key][l] for l in layers], [runs[b][1][key][l] for l in layers])
                    for a, b in pairs]
            print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(f"{r:.3f}" for r in rhos) +
                  f" | {sum(rhos) / len(rhos):.3f} |")
    print()
    print("| run | bits | rho(hawq_omega, one_layer_loss_increase) | rho(hessian_trace, one_layer_loss_increase) |")
    print("|---|---:|---:|---:|")
    for name, t in runs:
        trace = t.get(("hessian_trace", "", 0))
        for (metric, target, bits), measured in sorted(t.items()):
            if metric != "one_layer_loss_increase" or target != "weights":
                continue
            omega = t.get(("hawq_omega", "weights", bits))
            if omega is None or trace is None:
                continue
            layers = sorted(measured)
            r1 = spearman([omega[l] for l in layers], [measured[l] for l in layers])
            r2 = spearman([trace[l] for l in layers], [measured[l] for l in layers])
            print(f"| {name} | {bits} | {r1:.3f} | {r2:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
