"""The report: one table per section (medians over rounds, ratios to the section's baseline
measured in the same run), a short list of what the figures say, and one figure (throughput and
p99 per network mode and CPU limit, bars with the bare value marked: plot.py)."""
import statistics


def med(runs, fn):
    vals = [x for x in (fn(r) for r in runs) if x is not None and x == x]
    return statistics.median(vals) if vals else float("nan")


def pct(key):
    return lambda r: float(r["percentiles_ms"][key])


def ratio(v, base):
    return f"{v / base:.2f}" if base and base == base and v == v else "n/a"


def status_text(runs):
    total = {}
    for r in runs:
        for k, v in r["status"].items():
            total[k] = total.get(k, 0) + v
    text = ", ".join(f"{k}: {v}" for k, v in total.items() if v)
    errs = sum(r["socket_errors"] for r in runs)
    return text + (f"; socket errors {errs}" if errs else "")


def summary_of(runs):
    """The medians every table and the figure use."""
    return {"rps": med(runs, lambda r: r["rps"]), "p50": med(runs, pct("50")),
            "p99": med(runs, pct("99")), "p999": med(runs, pct("99.9")),
            "cpu": med(runs, lambda r: r["cpu_util"]), "connect": med(runs, lambda r: r.get("connect_ms")),
            "n": len(runs)}


def _rows(results, variants, section):
    """(variant, scenario, runs, summary, baseline summary) in plan order."""
    out = []
    for v in [v for v in variants if v.section == section]:
        for sc in v.scenarios:
            runs = results.get(v.key, {}).get(sc, [])
            if not runs:
                continue
            base_runs = results.get(f"{section}: {v.baseline}", {}).get(sc, [])
            out.append((v, sc, runs, summary_of(runs), summary_of(base_runs) if base_runs else None))
    return out


def modes_table(results, variants):
    lines = ["| mode | scenario | req/s | ×bare | p50 ms | ×bare | p99 ms | ×bare | p99.9 ms | "
             "status codes | new-conn connect ms | exchange CPU |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for v, sc, runs, s, b in _rows(results, variants, "modes"):
        b = b or {}
        lines.append(f"| {v.label} | {sc} | {s['rps']:,.0f} | {ratio(s['rps'], b.get('rps'))} | "
                     f"{s['p50']:.3f} | {ratio(s['p50'], b.get('p50'))} | {s['p99']:.3f} | "
                     f"{ratio(s['p99'], b.get('p99'))} | {s['p999']:.3f} | {status_text(runs)} | "
                     f"{s['connect']:.3f} | {s['cpu'] * 100:.0f}% |")
    return "\n".join(lines)


def cpu_table(results, variants):
    lines = ["| exchange (2 workers) | scenario | req/s | ×no limit | p50 ms | p99 ms | ×no limit | "
             "p99.9 ms | ×no limit | throttled periods | throttled ms per s | exchange CPU (cores) | "
             "status codes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for v, sc, runs, s, b in _rows(results, variants, "cpu"):
        b = b or {}
        cg = [r["cgroup"] for r in runs if "cgroup" in r]
        if cg:
            thr = f"{med(cg, lambda c: c['throttled'] / c['periods'] if c['periods'] else 0) * 100:.0f}% " \
                  f"({med(cg, lambda c: c['throttled']):.0f} of {med(cg, lambda c: c['periods']):.0f})"
            per_s = f"{med(runs, lambda r: r['cgroup']['throttled_ms'] / r['seconds']):.0f}"
        else:
            thr, per_s = "no cgroup", "-"
        lines.append(f"| {v.label} | {sc} | {s['rps']:,.0f} | {ratio(s['rps'], b.get('rps'))} | "
                     f"{s['p50']:.3f} | {s['p99']:.3f} | {ratio(s['p99'], b.get('p99'))} | "
                     f"{s['p999']:.3f} | {ratio(s['p999'], b.get('p999'))} | {thr} | {per_s} | "
                     f"{s['cpu']:.2f} | {status_text(runs)} |")
    return "\n".join(lines)


def timeline_rates(r):
    """New DSP connections per second in the run's first and last second (the sampled
    /metrics timeline): a failure that the run's start caused and that then keeps itself going
    shows a last-second rate as high as the first."""
    tl = r.get("timeline") or []
    if len(tl) < 4:
        return None

    def rate(a, b):
        return (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")
    first = next((s for s in tl if s[0] >= 1.0), tl[-1])
    last = next((s for s in tl if s[0] >= tl[-1][0] - 1.0), tl[0])
    return rate(tl[0], first), rate(last, tl[-1])


def kube_proxy_table(results, variants):
    lines = ["| proxy / services | rules per node | connect ms | exchange's connect() syscall ms | "
             "req/s | p50 ms | p99 ms | "
             "status codes | new DSP conns /s (first s → last s) | DSP timeouts /s | breaker skips /s | "
             "conntrack drop + insert_failed | exchange core softirq | worker stalled in connect() |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for v, sc, runs, s, b in _rows(results, variants, "kube-proxy"):
        per_s = lambda key: med(runs, lambda r: r.get(key, 0) / r["seconds"])  # noqa: E731
        opened = per_s("pool_opened")
        ends = [t for t in (timeline_rates(r) for r in runs) if t]
        trend = (f"{statistics.median(t[0] for t in ends):,.0f} → {statistics.median(t[1] for t in ends):,.0f}"
                 if ends else "-")
        ct = sum(r.get("conntrack", {}).get("drop", 0) + r.get("conntrack", {}).get("insert_failed", 0)
                 for r in runs)
        soft = med(runs, lambda r: r.get("softirq_share", {}).get("cpu0"))
        syscall = med(runs, lambda r: r.get("connect_syscall_ms"))
        # The worker's event loop stands still for the whole connect() call.
        stalled = opened * syscall / 1000 * 100 if syscall == syscall else float("nan")
        lines.append(f"| {v.label} | {med(runs, lambda r: r.get('rules')):,.0f} | {s['connect']:.3f} | "
                     f"{syscall:.3f} | {s['rps']:,.0f} | {s['p50']:.3f} | {s['p99']:.3f} | "
                     f"{status_text(runs)} | {opened:,.0f} ({trend}) | {per_s('dsp_timeouts'):,.0f} | "
                     f"{per_s('breaker_skipped'):,.0f} | {ct} | {soft * 100:.0f}% | {stalled:.1f}% |")
    return "\n".join(lines)


def conntrack_table(results, variants):
    lines = ["| churn (Connection: close, 404 path) | new conns/s | ×baseline | p50 ms | p99 ms | "
             "p99.9 ms | conntrack entries (nodes) | drop | insert_failed | early_drop | "
             "client SYN retransmits | SYNs refused by the exchange's TIME_WAIT (PAWS) | socket errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v, sc, runs, s, b in _rows(results, variants, "conntrack"):
        b = b or {}
        ct = lambda k: med(runs, lambda r: r.get("conntrack", {}).get(k))  # noqa: E731
        fmt = lambda x: "-" if x != x else f"{x:,.0f}"  # noqa: E731
        lines.append(f"| {v.label} | {s['rps']:,.0f} | {ratio(s['rps'], b.get('rps'))} | "
                     f"{s['p50']:.3f} | {s['p99']:.3f} | {s['p999']:.3f} | {fmt(ct('entries'))} | "
                     f"{fmt(ct('drop'))} | {fmt(ct('insert_failed'))} | {fmt(ct('early_drop'))} | "
                     f"{fmt(med(runs, lambda r: r.get('tcp', {}).get('TCPSynRetrans')))} | "
                     f"{fmt(med(runs, lambda r: r.get('exchange_paws_timewait')))} | "
                     f"{fmt(med(runs, lambda r: r['socket_errors']))} |")
    return "\n".join(lines)


TABLES = {"modes": ("Network modes (bare is hostNetwork)", modes_table),
          "cpu": ("CPU limits (CFS quota) on a 2-worker exchange, bare", cpu_table),
          "kube-proxy": ("kube-proxy at scale: overlay-nat, three-dsps, N extra services", kube_proxy_table),
          "conntrack": ("conntrack under connection churn", conntrack_table)}


def tables(results, variants, sections):
    out = []
    for s in sections:
        title, fn = TABLES[s]
        if any(v.section == s and v.key in results for v in variants):
            out.append(f"### {title}\n\n{fn(results, variants)}\n")
    return "\n".join(out)


def figure_bars(results, variants):
    """({(label, group): (rps, p99)}, {group: baseline label}) for the figure: the network modes
    per scenario, then the CPU limits per scenario (their own groups: 2 workers, own baseline)."""
    bars, bases = {}, {}
    for v in variants:
        if v.section not in ("modes", "cpu"):
            continue
        for sc in v.scenarios:
            runs = results.get(v.key, {}).get(sc, [])
            if runs:
                s = summary_of(runs)
                group = sc if v.section == "modes" else f"{sc}, 2 workers"
                bars[(v.label, group)] = (s["rps"], s["p99"])
                bases[group] = v.baseline
    return bars, bases
