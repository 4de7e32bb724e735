#!/usr/bin/env python3
"""The ablation's README table from runs/ablation/DATA/TRICK-sSEED/eval.json: per dataset and
trick, the mean and the spread (sample standard deviation) over the seeds, and each mean's change
against the baseline's in units of the baseline's spread."""
import json
import pathlib
import statistics
import sys

root = pathlib.Path(sys.argv[1])
datasets = sys.argv[2:]
TRICKS = ["baseline", "label-smoothing", "feature-matching", "minibatch-stddev",
          "instance-noise", "historical-averaging", "two-time-scale"]
IMAGE = [("FID", lambda e: e["generated"]["fid"], "lower"),
         ("classes", lambda e: e["generated"]["classes_covered"], "higher"),
         ("precision", lambda e: e["generated"]["precision"], "higher"),
         ("recall", lambda e: e["generated"]["recall"], "higher")]
TOY = [("modes", lambda e: e["modes_covered"], "higher"),
       ("high-quality", lambda e: 100 * e["high_quality"], "higher")]


def runs(data, trick):
    folder = root / data.replace(":", "-")
    return [json.loads(f.read_text()) for f in sorted(folder.glob(f"{trick}-s*/eval.json"))]


def cell(values):
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    digits = 1 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


for data in datasets:
    sample = next((r for t in TRICKS for r in runs(data, t)), None)
    if sample is None:
        continue
    metrics = TOY if sample.get("kind") == "toy" else IMAGE
    print(f"\n**{data}** (seeds per cell: {len(runs(data, 'baseline'))})\n")
    print("| trick | " + " | ".join(f"{m} ({better})" for m, _, better in metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    n_base = len(runs(data, 'baseline'))
    for trick in TRICKS:
        rs = runs(data, trick)
        if rs:
            # A row with other than the baseline's number of seeds says how many it has.
            name = trick if len(rs) == n_base else f"{trick} ({len(rs)} seed{'' if len(rs) == 1 else 's'})"
            print(f"| {name} | " + " | ".join(cell([f(r) for r in rs]) for _, f, _ in metrics)
                  + " |")
