#!/usr/bin/env python3
"""The accuracy / size / BOPs table of mixed-precision sweeps (configs/*_mixed_precision_*.yaml).

  python3 scripts/mixed_precision_table.py runs [sweep name prefix ...]

One row per member record found under the output dir whose name starts with a prefix
(default: every *_mp_ptq / *_mp_qat run): the weight-bit candidates, the budget (in bits per
weight and bytes), the allocation's predicted packed size and BOPs, the measured packed
size, and the reference backend's test accuracy. Uniform members (one candidate) are
marked; every allocation row says how it compares with the uniform row of the same size.
"""
import glob
import json
import os
import sys


def load(out_dir, prefixes):
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*", "result.json"))):
        if os.path.islink(os.path.dirname(path)):
            continue
        with open(path) as f:
            r = json.load(f)
        name = r.get("name", "")
        if not any(name.startswith(p) for p in prefixes) or r.get("status") != "OK":
            continue
        m = r.get("metrics", {})
        ref = [b for b in r.get("backends", []) if b.get("backend") == "reference"]
        bits = sorted({a.get("weight_bits", 0) for a in r.get("allocation", [])})
        over = [o for o in r.get("overrides", []) if o.startswith("analysis.allocate")]
        cands = next((o.split("=", 1)[1] for o in over if o.startswith("analysis.allocate.weights=")), "")
        budget_bits = next((o.split("=", 1)[1] for o in over if o.startswith("analysis.allocate.budget.size_bits=")), "")
        rows.append({
            "sweep": name.split("__")[0],
            "candidates": cands,
            "uniform": cands.count(",") == 0,
            "budget_bits": float(budget_bits) if budget_bits else float("nan"),
            "budget": m.get("mp_budget", float("nan")),
            "predicted": m.get("mp_predicted_size_bytes", float("nan")),
            "packed": m.get("ptq_packed_model_bytes", float("nan")),
            "bops": m.get("mp_predicted_bops", float("nan")),
            "accuracy": ref[0].get("test_accuracy", 0.0) if ref else m.get("ptq_test_accuracy", 0.0),
            "bits_used": bits,
            "layers": {a["layer"]: a.get("weight_bits", 0) for a in r.get("allocation", [])},
        })
    return rows


def main(argv):
    out_dir = argv[0] if argv else "runs"
    prefixes = argv[1:] or [""]
    rows = [r for r in load(out_dir, prefixes) if "_mp_" in r["sweep"] or argv[1:]]
    for sweep in sorted({r["sweep"] for r in rows}):
        sel = sorted((r for r in rows if r["sweep"] == sweep), key=lambda r: (r["budget_bits"], not r["uniform"]))
        uniform = {r["budget_bits"]: r for r in sel if r["uniform"]}
        print(f"\n### {sweep}\n")
        print("| weights | budget (bits/weight) | budget bytes | predicted bytes | packed bytes | MBOPs | reference acc | vs uniform at that size |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in sel:
            kind = "uniform W%s" % r["candidates"].strip("[]") if r["uniform"] else "ILP " + r["candidates"]
            vs = ""
            u = uniform.get(r["budget_bits"])
            if not r["uniform"] and u is not None:
                vs = "%+.2f points" % (100 * (r["accuracy"] - u["accuracy"]))
            print(f"| {kind} | {r['budget_bits']:g} | {r['budget']:.0f} | {r['predicted']:.0f} | {r['packed']:.0f} | "
                  f"{r['bops'] / 1e6:.2f} | {100 * r['accuracy']:.2f} | {vs} |")
        alloc = [r for r in sel if not r["uniform"]]
        if alloc:
            layers = list(alloc[0]["layers"])
            print("\n| budget (bits/weight) | " + " | ".join(layers) + " |")
            print("|---:|" + "---:|" * len(layers))
            for r in alloc:
                print(f"| {r['budget_bits']:g} | " + " | ".join(str(r["layers"].get(l, "")) for l in layers) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
