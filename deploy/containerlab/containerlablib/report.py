"""The lab's table (medians over rounds, ratios to the host-network baseline of the same rounds),
the markdown report and its figure (plain SVG, PNG when rsvg-convert is installed)."""
import shutil
import statistics
import subprocess

from .runner import SCENARIOS

BASELINE = "host"
COLORS = ["#4477aa", "#66ccee", "#ee6677", "#aa3377", "#ccbb44", "#228833", "#bbbbbb"]


def _pct(run, key):
    return float(run["percentiles_ms"][key])


def round_ratio(runs, base_runs, value):
    """Median over rounds of value(variant) / value(host) within the same round."""
    by_round = {r["round"]: value(r) for r in base_runs}
    ratios = [value(r) / by_round[r["round"]] for r in runs
              if by_round.get(r["round"])]
    return statistics.median(ratios) if ratios else float("nan")


def summarize(results, variants):
    """{(variant, scenario): row dict} with medians and ratios to host."""
    rows = {}
    for sc in SCENARIOS:
        base = results.get(BASELINE, {}).get(sc, [])
        for v in variants:
            runs = results.get(v.name, {}).get(sc, [])
            if not runs:
                continue
            status = {}
            for r in runs:
                for k, n in r["status"].items():
                    status[k] = status.get(k, 0) + n
            th = [r.get("throttling") or {} for r in runs]
            rows[(v.name, sc)] = {
                "about": v.about(), "driver": runs[0].get("driver", "?"),
                "rps": statistics.median(r["rps"] for r in runs),
                "p50": statistics.median(_pct(r, "50") for r in runs),
                "p99": statistics.median(_pct(r, "99") for r in runs),
                "x_rps": round_ratio(runs, base, lambda r: r["rps"]),
                "x_p50": round_ratio(runs, base, lambda r: _pct(r, "50")),
                "x_p99": round_ratio(runs, base, lambda r: _pct(r, "99")),
                "status": ", ".join(f"{k}: {n}" for k, n in status.items() if n),
                "errors": sum(r["socket_errors"] for r in runs),
                "shed": int(sum(r.get("outcomes", {}).get("shed", 0) for r in runs)),
                "cpu": statistics.median(r["cpu_util"] for r in runs),
                "cpu_per_1k": statistics.median(r["cpu_ms_per_1k"] for r in runs),
                "throttled": sum(t.get("nr_throttled", 0) for t in th),
                "periods": sum(t.get("nr_periods", 0) for t in th),
                "throttled_ms": sum(t.get("throttled_ms", 0) for t in th),
                "quota": runs[0].get("quota", "n/a"),
                "load": statistics.median(r["loadavg"] for r in runs),
            }
    return rows


def table(rows):
    lines = ["| variant | scenario | driver | req/s | ×host | p50 ms | ×host | p99 ms | ×host "
             "| status codes | exchange CPU | CPU ms / 1k req | throttled periods | throttled ms "
             "| load avg |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for (name, sc), r in rows.items():
        st = r["status"] + (f" (shed {r['shed']})" if r["shed"] else "") + \
            (f"; socket errors {r['errors']}" if r["errors"] else "")
        lines.append(f"| {name} | {sc} | {r['driver']} | {r['rps']:,.0f} | {r['x_rps']:.2f} | "
                     f"{r['p50']:.3f} | {r['x_p50']:.2f} | {r['p99']:.3f} | {r['x_p99']:.2f} | "
                     f"{st} | {r['cpu'] * 100:.0f}% | {r['cpu_per_1k']:.1f} | "
                     f"{r['throttled']} of {r['periods']} | {r['throttled_ms']:,.0f} | "
                     f"{r['load']:.1f} |")
    return "\n".join(lines)


def svg(rows, names, path, title):
    """One panel per scenario: req/s bars per variant, labelled with ×host and p99."""
    bar_h, gap, left, top, width = 22, 6, 150, 50, 900
    panel_h = len(names) * (bar_h + gap) + 40
    height = top + panel_h * len(SCENARIOS) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15">{title}</text>']
    plot_w = width - left - 330
    for si, sc in enumerate(SCENARIOS):
        y0 = top + si * panel_h
        vals = [rows[(n, sc)]["rps"] for n in names if (n, sc) in rows]
        vmax = max(vals) if vals else 1.0
        out.append(f'<text x="10" y="{y0 + 12}" font-size="13" font-weight="bold">{sc} '
                   '(req/s, median)</text>')
        for i, n in enumerate(names):
            r = rows.get((n, sc))
            if not r:
                continue
            y = y0 + 22 + i * (bar_h + gap)
            w = plot_w * r["rps"] / vmax
            out.append(f'<text x="{left - 6}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">{n}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="{COLORS[i % len(COLORS)]}"/>')
            out.append(f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.7:.1f}">{r["rps"]:,.0f} '
                       f'(×{r["x_rps"]:.2f}), p99 {r["p99"]:.2f} ms (×{r["x_p99"]:.2f})</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    made = [path]
    if shutil.which("rsvg-convert"):
        png = path.with_suffix(".png")
        subprocess.run(["rsvg-convert", "-o", str(png), str(path)], check=False)
        if png.exists():
            made.append(png)
    return made
