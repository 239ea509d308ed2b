#!/usr/bin/python3
"""Draws the report's plots (//experiments:report) with matplotlib.

  /usr/bin/python3 experiments/plots.py plots.json OUT_DIR

plots.json is a list of plot specs written by experiments/report.cc; each has a
`kind` (lines, pareto, speed, histograms), a `file` (PNG name in OUT_DIR) and the
data. Seeds are already aggregated: a point's `err` is its 95 % CI half-width.
"""
import json
import multiprocessing
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def lines(spec, ax):
    for s in spec["series"]:
        pts = sorted(s["points"], key=lambda p: p["x"])
        xs = [p["x"] for p in pts]
        ys = [p["y"] for p in pts]
        errs = [p.get("err", 0) for p in pts]
        if any(e > 0 for e in errs):
            ax.errorbar(xs, ys, yerr=errs, marker="o", ms=4, capsize=3, label=s["label"])
        else:
            ax.plot(xs, ys, marker="o", ms=4, label=s["label"])
    if spec.get("xticks") == "integer":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(spec["series"]) > 8 else 1, loc="best")


def grid(fig, n):
    """n axes in two columns (one if n == 1); the spare cell of an odd n is hidden."""
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return list(axes.flat[:n])


def panels(spec, fig):
    """A panel per model: each configuration a point (with its CI), joined by a line per
    series where the series has one configuration per x."""
    ps = spec["panels"]
    for ax, p in zip(grid(fig, len(ps)), ps):
        for s in p["series"]:
            pts = s["points"]
            line = {}
            for q in pts:
                line.setdefault(q["x"], []).append(q["y"])
            xs = sorted(line)
            # A line only where each bit width has one configuration: a mean over different
            # configurations would be a point no run measured.
            single = all(len(v) == 1 for v in line.values())
            (l,) = ax.plot(xs if single else [], [line[x][0] for x in xs] if single else [], marker="",
                           linewidth=1, label=s["label"])
            ax.errorbar([q["x"] for q in pts], [q["y"] for q in pts], yerr=[q.get("err", 0) for q in pts],
                        fmt="o", ms=3, capsize=2, color=l.get_color())
        ax.set_title(p["title"], fontsize=10)
        ax.set_xlabel(spec["xlabel"])
        ax.set_ylabel(spec["ylabel"])
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, ncol=2, loc="lower right")


def pareto(spec, ax):
    for s in spec["series"]:
        pts = sorted(s["points"], key=lambda p: (p["x"], -p["y"]))
        sc = ax.scatter([p["x"] for p in pts], [p["y"] for p in pts], s=14, alpha=0.6, label=s["label"])
        # The front: each point no smaller run beats.
        front, best = [], float("-inf")
        for p in pts:
            if p["y"] > best:
                front.append(p)
                best = p["y"]
        ax.step([p["x"] for p in front], [p["y"] for p in front], where="post", color=sc.get_facecolor()[0],
                linewidth=1.5)
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def speed(spec, fig):
    groups = spec["groups"]
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "batch1", "batch 1"), (axes[1], "batch256", "batch 256")):
        width = 0.8 / max(1, max(len(g["bars"]) for g in groups))
        backends = []
        for g in groups:
            for b in g["bars"]:
                if b["label"] not in backends:
                    backends.append(b["label"])
        for k, name in enumerate(backends):
            xs, ys = [], []
            for i, g in enumerate(groups):
                for b in g["bars"]:
                    if b["label"] == name and b[key] > 0:
                        xs.append(i + k * width)
                        ys.append(b[key])
            ax.bar(xs, ys, width=width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
        ax.set_xticklabels([g["label"] for g in groups], fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel(spec["ylabel"])
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[1].legend(fontsize=7)


def histograms(spec, fig):
    panels = spec["panels"]
    for ax, p in zip(grid(fig, len(panels)), panels):
        counts = p["counts"]
        lo, hi = p["min"], p["max"]
        width = (hi - lo) / len(counts) if hi > lo else 1.0
        ax.bar([lo + (i + 0.5) * width for i in range(len(counts))], counts, width=width, color="0.7",
               label="float values")
        ax.set_yscale("log")
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for k, r in enumerate(p["ranges"]):
            c = colors[k % len(colors)]
            label = "%s (%.1f dB)" % (r["label"], r["sqnr_db"])
            ax.axvline(r["lo"], color=c, linestyle="--", linewidth=1.2, label=label)
            ax.axvline(r["hi"], color=c, linestyle="--", linewidth=1.2)
        ax.set_title(p["tensor"], fontsize=9)
        ax.set_xlabel("value")
        ax.set_ylabel("count (log)")
        ax.legend(fontsize=6, loc="upper right")


def draw(job):
    spec, out = job
    kind = spec["kind"]
    if kind == "speed":
        fig = plt.figure(figsize=(11, 4.5))
        speed(spec, fig)
    elif kind == "panels":
        rows = (len(spec["panels"]) + 1) // 2
        fig = plt.figure(figsize=(12, 4.8 * rows))
        panels(spec, fig)
    elif kind == "histograms":
        rows = (len(spec["panels"]) + 1) // 2
        fig = plt.figure(figsize=(11, 3.6 * rows))
        histograms(spec, fig)
    else:
        fig, ax = plt.subplots(figsize=(8, 5))
        {"lines": lines, "pareto": pareto}[kind](spec, ax)
        ax.set_xlabel(spec["xlabel"])
        ax.set_ylabel(spec["ylabel"])
    fig.suptitle(spec["title"], fontsize=11)
    fig.tight_layout()
    fig.savefig("%s/%s" % (out, spec["file"]), dpi=DPI)
    plt.close(fig)


def main():
    with open(sys.argv[1]) as f:
        specs = json.load(f)
    out = sys.argv[2]
    jobs = [(spec, out) for spec in specs]
    # Figures are independent: one process per core (a sweep of 50 sweeps has ~100 figures).
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        for job in jobs:
            draw(job)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(draw, jobs, chunksize=1)


if __name__ == "__main__":
    main()
