#!/usr/bin/env python3
"""Summarises criterion's last run of the `core` bench: per-sample medians of decode/* with the
speed ratios of rtb-core against each baseline (and their median over the 2.4-3.5 KB samples),
strict over lenient validation per sample (validation/*) with their median, plus
auction/encode/pipeline medians, as Markdown tables.

Usage: benches/scripts/summarize.py [<criterion dir>]  (default $CARGO_TARGET_DIR/criterion)
"""
import json
import os
import statistics
import sys
from pathlib import Path

MID_SIZE_PREFIXES = ("04-", "06-", "13-", "15-", "18-")
BASELINES = ("serde_json-owned", "serde_json-view", "sonic-rs")


def load(root):
    medians = {}
    for bench in root.rglob("new/benchmark.json"):
        full_id = json.loads(bench.read_text())["full_id"]
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        medians[full_id] = estimates["median"]["point_estimate"]
    return medians


def fmt(ns):
    return f"{ns / 1000:.2f} us" if ns >= 1000 else f"{ns:.0f} ns"


def print_validation(m):
    """Strict against lenient decode, measured side by side in the `validation` group."""
    stems = sorted({k.split("/", 2)[2] for k in m if k.startswith("validation/lenient/")})
    ratios = []
    if not stems:
        return
    print()
    print("| sample | lenient | strict | strict / lenient |")
    print("|---|---|---|---|")
    for stem in stems:
        lenient, strict = m[f"validation/lenient/{stem}"], m.get(f"validation/strict/{stem}")
        if strict is None:
            continue
        ratios.append(strict / lenient)
        print(f"| {stem} | {fmt(lenient)} | {fmt(strict)} | {strict / lenient:.2f}x |")
    if ratios:
        print(f"\nstrict / lenient: median {statistics.median(ratios):.2f}x over {len(ratios)} samples (target <= 1.30x)")


def main():
    default = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    m = load(root)
    stems = sorted({k.split("/", 2)[2] for k in m if k.startswith("decode/rtb-core/")})
    print("| sample | rtb-core | serde_json-owned | serde_json-view | sonic-rs | x owned | x view | x sonic |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = {b: [] for b in BASELINES}
    for stem in stems:
        core = m[f"decode/rtb-core/{stem}"]
        cells, xs = [], []
        for b in BASELINES:
            v = m.get(f"decode/{b}/{stem}")
            cells.append(fmt(v) if v else "skipped")
            xs.append(f"{v / core:.2f}x" if v else "-")
            if v and stem.startswith(MID_SIZE_PREFIXES):
                ratios[b].append(v / core)
        mark = " (mid)" if stem.startswith(MID_SIZE_PREFIXES) else ""
        print(f"| {stem}{mark} | {fmt(core)} | " + " | ".join(cells) + " | " + " | ".join(xs) + " |")
    print()
    print("Median speed-up of rtb-core over the 2.4-3.5 KB samples (04, 06, 13, 15, 18):")
    for b in BASELINES:
        if ratios[b]:
            print(f"- vs {b}: {statistics.median(ratios[b]):.2f}x (n={len(ratios[b])}: "
                  + ", ".join(f"{r:.2f}" for r in ratios[b]) + ")")
    print_validation(m)
    print()
    print("| bench | median |")
    print("|---|---|")
    for k in sorted(k for k in m if not k.startswith(("decode/", "validation/"))):
        print(f"| {k} | {fmt(m[k])} |")
    pipes = [v for k, v in m.items() if k.startswith("pipeline/3-dsps/")]
    if pipes:
        print(f"\npipeline/3-dsps median over samples: {fmt(statistics.median(pipes))}, max {fmt(max(pipes))}")


if __name__ == "__main__":
    main()
