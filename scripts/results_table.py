#!/usr/bin/env python3
"""Prints the training-scheme results table (README / docs/qat.md) from result records.

Each row is the latest successful run of one experiment, found through the
<output_dir>/<name> link the driver keeps. Run the configs first:

  for c in mlp_fp32 cnn_fp32 qat_sweep_mlp pact_sweep_mlp lsq_sweep_mlp ...; do
    bazel run //experiments:run -- --config=configs/$c.yaml; done
  python3 scripts/results_table.py [--runs=runs] [--exact_runs=runs_exact]

The second table is every QAT row deployed by its own config's `ptq: {method: from_qat}`:
the QAT (fake-quant) accuracy, the integer model's on `reference` (gemmlowp is
bit-identical to it) and `xnnpack`, and the share of test images whose top-1 equals
the simulation's. --exact_runs adds the same table for runs made with
`--set train.integer_exact=true --output_dir=runs_exact` (docs/qat.md, "Deployment").

A missing run is printed as "not run", never as a number.
"""
import argparse
import json
import os
import sys

BITS = [(8, 8), (4, 8), (4, 4), (2, 2)]


def rows():
    """(label, bits, experiment name with {m} for the model, config file)."""
    out = [("fp32, 5 epochs (baseline)", "32/32", "{m}_fp32", "{m}_fp32.yaml"),
           ("fp32, +2 epochs at lr 0.005 (control)", "32/32", "{m}_fp32_7ep", "{m}_fp32_7ep.yaml")]
    for scheme, sweep in (("qat (PyTorch default observers)", "qat"), ("pact", "pact"), ("lsq", "lsq")):
        for i, (w, a) in enumerate(BITS):
            name = "{m}_%s__weights.bits=%d__activations.bits=%d" % (sweep, w, a)
            if sweep == "lsq":
                name += "__overrides#%d" % (i + 1)
            out.append((scheme, "W%dA%d" % (w, a), name, "%s_sweep_{m}.yaml" % sweep))
    out.append(("lsq, every layer at 4 bits (logits too)", "W4A4",
                "{m}_lsq__weights.bits=4__activations.bits=4__overrides#5", "lsq_sweep_{m}.yaml"))
    out += [("dorefa", "W4A4", "{m}_dorefa_w4a4", "{m}_dorefa_w4a4.yaml"),
            ("binary (BNN)", "W1A1", "{m}_binary", "{m}_binary.yaml"),
            ("xnor (XNOR-Net)", "W1A1", "{m}_xnor", "{m}_xnor.yaml"),
            ("ternary (TWN)", "W2A32", "{m}_ternary", "{m}_ternary.yaml"),
            ("mixed precision bf16", "bf16", "{m}_bf16", "{m}_bf16.yaml"),
            ("mixed precision fp16 + loss scaling", "fp16", "{m}_fp16", "{m}_fp16.yaml")]
    return out


def load(runs, name):
    path = os.path.join(runs, name, "result.json")
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError):
        return None
    return r if r.get("status") == "OK" else None


def accuracy(r):
    m = r.get("metrics", {})
    if "final_test_accuracy" in m:
        return m["final_test_accuracy"]
    return r["epochs"][-1]["test_accuracy"] if r.get("epochs") else None


def cell(r, base):
    if r is None:
        return "not run", ""
    acc = accuracy(r)
    delta = "" if base is None or acc is None else "%+.2f" % (100 * (acc - base))
    return "%.2f %%" % (100 * acc), delta


def backend(r, name):
    for b in r.get("backends", []):
        if b.get("backend") == name:
            return b
    return None


def deployed_cells(r):
    """simulated, reference (delta), xnnpack (delta), same top-1 as the simulation on reference."""
    if r is None or "qat_simulated_test_accuracy" not in r.get("metrics", {}):
        return ["not run"] * 4
    sim = 100 * r["metrics"]["qat_simulated_test_accuracy"]
    out = ["%.2f %%" % sim]
    for name in ("reference", "xnnpack"):
        b = backend(r, name)
        if b is None:
            out.append("not run")
            continue
        acc = 100 * b.get("test_accuracy", 0.0)
        out.append("%.2f (%+.2f)" % (acc, acc - sim))
    ref = backend(r, "reference")
    out.append("%.2f %%" % (100 * ref.get("prediction_agreement_with_simulation", 0.0)) if ref else "not run")
    return out


def deployed_table(runs, title):
    print("\n%s\n" % title)
    print("| scheme | bits W/A | mlp QAT | mlp reference | mlp xnnpack | mlp same top-1 "
          "| cnn QAT | cnn reference | cnn xnnpack | cnn same top-1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, bits, name, config in rows():
        if "fp32" in name or any(k in name for k in ("binary", "xnor", "ternary", "bf16", "fp16")):
            continue  # not QAT-scheme rows: nothing to deploy
        cells = []
        for m in ("mlp", "cnn"):
            cells += deployed_cells(load(runs, name.format(m=m)))
        print("| %s | %s | %s |" % (label, bits, " | ".join(cells)))
    print("\n| model | config | QAT | reference | xnnpack | same top-1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in ("cnn_bn_qat_w8a8", "resnet_mini_qat_w8a8", "resnet_mini_lsq_w4a4", "mobilenet_mini_qat_w8a8",
                 "mobilenet_mini_lsq_w4a4"):
        print("| %s | `configs/%s.yaml` | %s |" % (name.split("_q")[0].split("_l")[0], name,
                                                    " | ".join(deployed_cells(load(runs, name)))))


def ptq_cells(r, exact=False):
    """fake-quant simulation, [integer-exact simulation,] reference (gemmlowp bit-identical?), xnnpack."""
    if r is None:
        return ["not run"] * (4 if exact else 3)
    m = r.get("metrics", {})
    ref, gl, xn = backend(r, "reference"), backend(r, "gemmlowp"), backend(r, "xnnpack")
    same = ref is not None and gl is not None and \
        gl.get("agreement_with_reference", {}).get("outputs_identical") == \
        gl.get("agreement_with_reference", {}).get("outputs_compared")
    out = ["%.2f %%" % (100 * m.get("ptq_test_accuracy", 0))]
    if exact:
        fx = backend(r, "fake_quant_exact")
        out.append("%.2f %%" % (100 * fx["test_accuracy"]) if fx else "-")
    return out + [("%.2f %%" % (100 * ref["test_accuracy"]) + ("" if same else " (gemmlowp differs!)")) if ref
                  else "not run", "%.2f %%" % (100 * xn["test_accuracy"]) if xn else "not run"]


def find_run(runs, prefix, *parts):
    """The finished run whose folder name starts with `prefix` and contains every part."""
    try:
        names = sorted(os.listdir(runs))
    except OSError:
        return None
    for n in names:
        if n.startswith(prefix) and all(p in n for p in parts):
            r = load(runs, n)
            if r is not None:
                return r
    return None


def reference_accuracy(r):
    b = backend(r, "reference") if r is not None else None
    return 100 * b["test_accuracy"] if b else None


def mean_sd_ci(values):
    """mean, sample standard deviation, 95 % confidence half-width (t distribution)."""
    t95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0, float("nan")
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return mean, sd, t95.get(n, 2.0) * sd / n ** 0.5


def ptq_pass_tables(runs):
    """The PTQ-pass sweeps (configs/mobilenet_mini_dfq_sweep.yaml, configs/*_gptq_sweep.yaml)."""
    labels = ["nearest", "cle", "bias_correction", "cle + bias_correction", "cle + bias_absorption + bias_correction",
              "cle + bias_absorption + bias_correction (analytic)"]
    print("\nmobilenet_mini, per-tensor weights, int8 activations (`configs/mobilenet_mini_dfq_sweep.yaml`):\n")
    print("| passes | bits W | fake-quant | reference | xnnpack |")
    print("| --- | --- | --- | --- | --- |")
    for bits in (8, 6, 4):
        for i, label in enumerate(labels):
            r = load(runs, "mobilenet_mini_dfq__bits=%d__passes#%d" % (bits, i + 1))
            print("| %s | %d | %s |" % (label, bits, " | ".join(ptq_cells(r))))
    print("\nWeight rounding, per-channel weights (`configs/{cnn,resnet_mini,mobilenet_mini}_{gptq,adaround,brecq}"
          "_sweep.yaml`; W2A4 keeps the first and last layer at 8 bits):\n")
    print("| model | bits W/A | passes | fake-quant | integer-exact simulation | reference | xnnpack |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model in ("cnn", "resnet_mini", "mobilenet_mini"):
        for cell_name, (bits, sweep_index, ada_index) in zip(("W4A8", "W2A4"), (("W4A8", 0, 1), ("W2A4", 2, 2))):
            w, a = bits[1], bits[3]
            for passes, r in (
                    ("nearest", load(runs, "%s_gptq__weights.bits=%s__activations.bits=%s__passes#%d__overrides#%d" % (
                        model, w, a, sweep_index + 1, sweep_index + 1))),
                    ("gptq", load(runs, "%s_gptq__weights.bits=%s__activations.bits=%s__passes#%d__overrides#%d" % (
                        model, w, a, sweep_index + 2, sweep_index + 2))),
                    ("adaround", load(runs, "%s_adaround__weights.bits=%s__activations.bits=%s__overrides#%d" % (
                        model, w, a, ada_index))),
                    ("brecq", load(runs, "%s_brecq__passes#1__weights.bits=%s__activations.bits=%s__overrides#%d" % (
                        model, w, a, ada_index))),
                    ("qdrop", load(runs, "%s_brecq__passes#2__weights.bits=%s__activations.bits=%s__overrides#%d" % (
                        model, w, a, ada_index)))):
                print("| %s | %s | %s | %s |" % (model, bits, passes, " | ".join(ptq_cells(r, exact=True))))
    ptq_seed_table(runs)


def ptq_seed_table(runs):
    """Seeds 0-2 of the headline cells: seed 0 from the sweeps above, 1 and 2 from configs/*_ptq_seeds.yaml."""
    print("\nSeeds 0-2 (reference backend; seed 0 from the sweeps above, 1 and 2 from "
          "`configs/{cnn,resnet_mini}_ptq_seeds.yaml`; the seed draws the calibration images and the passes' "
          "minibatches, the float model is the same):\n")
    print("| model | bits W/A | passes | seed 0 | seed 1 | seed 2 | mean +- sd | 95 % CI | n |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    cells = [("cnn", "W4A8", "nearest", ("cnn_gptq__weights.bits=4__activations.bits=8__passes#1",),
              ("cnn_ptq_seeds__seed=%d__passes#1",)),
             ("cnn", "W4A8", "adaround", ("cnn_adaround__weights.bits=4__activations.bits=8",),
              ("cnn_ptq_seeds__seed=%d__passes#2",))]
    for bits, k0, passes in (("W4A8", 1, "nearest"), ("W4A8", 2, "adaround"), ("W2A4", 3, "nearest"),
                             ("W2A4", 4, "brecq"), ("W2A4", 5, "qdrop")):
        w, a = bits[1], bits[3]
        seed0 = {"nearest": "resnet_mini_gptq__weights.bits=%s__activations.bits=%s__passes#%d" % (
                     w, a, 1 if bits == "W4A8" else 3),
                 "adaround": "resnet_mini_adaround__weights.bits=%s__activations.bits=%s" % (w, a),
                 "brecq": "resnet_mini_brecq__passes#1__weights.bits=%s__activations.bits=%s" % (w, a),
                 "qdrop": "resnet_mini_brecq__passes#2__weights.bits=%s__activations.bits=%s" % (w, a)}[passes]
        cells.append(("resnet_mini", bits, passes, (seed0,),
                      ("resnet_mini_ptq_seeds__seed=%%d__weights.bits=%s__activations.bits=%s__passes#%d" % (
                          w, a, k0),)))
    for model, bits, passes, seed0, later in cells:
        accs = [reference_accuracy(find_run(runs, seed0[0]))]
        for seed in (1, 2):
            accs.append(reference_accuracy(find_run(runs, later[0] % seed)))
        shown = ["%.2f" % v if v is not None else "not run" for v in accs]
        got = [v for v in accs if v is not None]
        if got:
            mean, sd, ci = mean_sd_ci(got)
            stats = ["%.2f +- %.2f" % (mean, sd), "+- %.2f" % ci if ci == ci else "-", str(len(got))]
        else:
            stats = ["-", "-", "0"]
        print("| %s | %s | %s | %s | %s |" % (model, bits, passes, " | ".join(shown), " | ".join(stats)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--exact_runs", default="")
    args = ap.parse_args()
    models = ("mlp", "cnn")
    base = {}
    for m in models:
        r = load(args.runs, "%s_fp32" % m)
        base[m] = accuracy(r) if r else None
    print("| scheme | bits W/A | mlp top-1 | vs fp32 | mlp deployed | cnn top-1 | vs fp32 | cnn deployed | config |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, bits, name, config in rows():
        cells = []
        for m in models:
            r = load(args.runs, name.format(m=m))
            acc, delta = cell(r, base[m])
            ref = backend(r, "reference") if r is not None else None
            deployed = "%.2f %%" % (100 * ref.get("test_accuracy", 0.0)) if ref is not None else "-"
            cells += [acc, delta, deployed]
        print("| %s | %s | %s | `configs/%s` |" % (label, bits, " | ".join(cells), config.format(m="{mlp,cnn}")))
    extra = load(args.runs, "cnn_bn_qat_w8a8")
    if extra is not None:
        print("\ncnn_bn with BN folding, qat W8A8 (`configs/cnn_bn_qat_w8a8.yaml`): %.2f %% "
              "(after its own 5 float epochs: %.2f %%)" % (
                  100 * accuracy(extra), 100 * extra["epochs"][4]["test_accuracy"]))
    for m in models:
        for p in ("bf16", "fp16"):
            r = load(args.runs, "%s_%s" % (m, p))
            if r is None:
                continue
            mm = r.get("metrics", {})
            keys = ("underflow_fp16_unscaled", "underflow_fp16_scaled", "underflow_bf16", "skipped_steps",
                    "loss_scale_final")
            print("\n%s %s: " % (m, p) + ", ".join("%s %s" % (k, ("%.4g" % mm[k]) if k in mm else "-")
                                                  for k in keys))
    deployed_table(args.runs, "QAT deployed (`ptq: {method: from_qat}`, default float simulation):")
    if args.exact_runs:
        deployed_table(args.exact_runs, "QAT deployed, integer-exact simulation (`train.integer_exact: true`):")
    ptq_pass_tables(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
