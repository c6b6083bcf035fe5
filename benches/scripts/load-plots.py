#!/usr/bin/env python3
"""Plots of an rtb-load report (runs in the matplotlib venv <repo>/.tools/venv):
latency percentile curves per scenario (HdrHistogram style: x = percentile on a log scale of
1/(1-p), so 50, 90, 99, 99.9, 99.99 are evenly spaced), the closed-loop throughput bars with
the baselines, and, for a scenario run open loop at several rates, offered load against
goodput, shed rate and p99 (issue 14). Reads <report dir>/results.json, writes SVGs next to
it, prints their names.

Usage: load-plots.py <report dir>
"""
import json
import math
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

TICKS = [50, 90, 99, 99.9, 99.99, 99.999]
COLORS = {"exchange": "#1f77b4", "exchange-epoll": "#17becf", "nginx": "#2ca02c",
          "bench-404": "#7f7f7f", "tokio": "#d62728"}
LABELS = {"exchange": "rtb-exchange (io_uring)", "exchange-epoll": "rtb-exchange (epoll)",
          "nginx": "nginx return 404", "bench-404": "bare responder (bench_404)",
          "tokio": "tokio-exchange"}


def xpos(p):
    return -math.log10(1 - p / 100.0)


def curve(run):
    pts = []
    for k, v in run["percentiles_ms"].items():
        try:
            p = float(k)
        except ValueError:
            continue
        if 50 <= p < 100 and v and v > 0:
            pts.append((xpos(p), v))
    return sorted(pts)


def median_run(runs):
    m = statistics.median(r["rps"] for r in runs)
    return min(runs, key=lambda r: abs(r["rps"] - m))


def latency_plot(name, sc, deadline, out):
    fig, ax = plt.subplots(figsize=(8, 5))
    for srv, runs in sc["closed"].items():
        pts = curve(median_run(runs))
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, color=COLORS.get(srv), linestyle="--",
                    label=f"{LABELS.get(srv, srv)}, closed loop ({median_run(runs)['rps']:.0f} req/s)")
    shades = ["#9ecae1", "#4292c6", "#08519c", "#08306b"]
    for i, r in enumerate(sc["open"]):
        pts = curve(r)
        if pts:
            ax.plot(*zip(*pts), marker="s", ms=3, color=shades[i % len(shades)] if r["rate_pct"] <= 100
                    else "#e6550d",
                    linestyle="-" if r.get("corrected", True) else "-.",
                    label=f"rtb-exchange open loop {r['rate_pct']}%"
                          + ("" if r.get("corrected", True) else " (uncorrected)")
                          + f" ({r['offered_rps']:.0f} req/s)")
    ax.axhline(deadline, color="black", linewidth=0.8, linestyle=":")
    ax.text(xpos(99.999), deadline * 1.08, f"deadline {deadline:.0f} ms", fontsize=8, ha="right")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xticks([xpos(p) for p in TICKS])
    ax.set_xticklabels([f"{p:g}" for p in TICKS])
    ax.set_xlim(xpos(50) - 0.1, xpos(99.999) + 0.1)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"{name}: latency by percentile")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def throughput_plot(results, out):
    names = [n for n, s in results["scenarios"].items() if s["closed"]]
    servers = ["exchange", "exchange-epoll", "nginx", "bench-404", "tokio"]
    present = [s for s in servers if any(s in results["scenarios"][n]["closed"] for n in names)]
    width = 0.8 / max(1, len(present))
    fig, ax = plt.subplots(figsize=(max(8, 2 * len(names)), 5))
    for j, srv in enumerate(present):
        xs, ys = [], []
        for i, n in enumerate(names):
            runs = results["scenarios"][n]["closed"].get(srv)
            if runs:
                xs.append(i + (j - (len(present) - 1) / 2) * width)
                ys.append(statistics.median(r["rps"] for r in runs))
        bars = ax.bar(xs, ys, width, color=COLORS.get(srv), label=LABELS.get(srv, srv))
        for b, y in zip(bars, ys):
            ax.text(b.get_x() + b.get_width() / 2, y, f"{y / 1000:.1f}k", ha="center",
                    va="bottom", fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=9)
    ax.set_ylabel("req/s (closed loop, median of rounds)")
    ax.set_title("Maximum throughput, 1 server core (server on core 0, load + DSPs on core 1)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def per_second(run, *outcomes):
    return sum(run.get("outcomes", {}).get(o, 0) for o in outcomes) / run["seconds"]


def overload_plot(name, sc, deadline, out):
    """Offered load against goodput (auctions answered after a DSP round: won + no bid), shed
    answers and p99, one point per corrected open-loop run; False when there are fewer than
    two rates to plot."""
    runs = sorted((r for r in sc["open"] if r.get("corrected", True) and "outcomes" in r),
                  key=lambda r: r["offered_rps"])
    if len(runs) < 2:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [r["offered_rps"] for r in runs]
    ax.plot(xs, [per_second(r, "won", "no_bid") for r in runs], marker="o", color="#1f77b4",
            label="goodput: auctions after a DSP round (won + no bid) / s")
    ax.plot(xs, [per_second(r, "shed") for r in runs], marker="s", color="#ff7f0e",
            label="shed (204 at once) / s")
    # The rates' base: the closed-loop maximum, or the run's --capacity-rps.
    base = runs[0]["offered_rps"] * 100 / runs[0]["rate_pct"]
    ax.axhline(base, color="#1f77b4", linewidth=0.8, linestyle=":")
    ax.text(xs[0], base * 1.02, f"capacity (the rates' base) {base:.0f}/s", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(bottom=0)
    ax.set_xlabel("offered load (req/s, log scale; labels: % of capacity)")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:.0f}\n{r['rate_pct']}%" for x, r in zip(xs, runs)], fontsize=8)
    ax.set_ylabel("answers / s")
    ax.grid(True, alpha=0.3)
    right = ax.twinx()
    right.plot(xs, [r["percentiles_ms"].get("99", float("nan")) for r in runs], marker="^",
               color="#d62728", linestyle="--", label="p99 ms, corrected (right axis)")
    right.axhline(deadline, color="#d62728", linewidth=0.8, linestyle=":")
    right.set_ylabel("p99 latency, ms (oha, latency-corrected; log scale)")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    ax.set_title(f"{name}: offered load against goodput, sheds and p99 (deadline {deadline:.0f} ms)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return True


def main():
    out_dir = Path(sys.argv[1])
    results = json.loads((out_dir / "results.json").read_text())
    deadline = results.get("deadline_ms", 80.0)
    written = []
    throughput_plot(results, out_dir / "throughput.svg")
    written.append("throughput.svg")
    for name, sc in results["scenarios"].items():
        fname = f"latency-{name}.svg"
        latency_plot(name, sc, deadline, out_dir / fname)
        written.append(fname)
        fname = f"overload-{name}.svg"
        if overload_plot(name, sc, deadline, out_dir / fname):
            written.append(fname)
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
