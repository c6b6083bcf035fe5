"""The report's one figure, as plain SVG (no plotting dependency): two panels (throughput, p99)
of grouped bars, one group per scenario and section, one bar per row, each bar labelled with its
value and its ratio to the group's baseline (bare, or no CPU limit), whose value is drawn across
the group as a dashed line. A PNG is added
when rsvg-convert is installed (librsvg2-bin)."""
import shutil
import subprocess

COLORS = ["#4477aa", "#66ccee", "#228833", "#ccbb44", "#ee6677", "#aa3377", "#bbbbbb", "#555555",
          "#994f00", "#e69f00", "#56b4e9", "#000000"]
W, H, TOP, BOTTOM, LEFT = 1400, 500, 60, 110, 70


def _panel(out, bars, labels, groups, x0, panel_w, idx, title, bases):
    ph = H - TOP - BOTTOM
    vals = [bars[(lab, g)][idx] for g in groups for lab in labels if (lab, g) in bars]
    vmax = max(vals) * 1.2 if vals else 1
    out.append(f'<text x="{x0 + panel_w / 2}" y="{TOP - 12}" text-anchor="middle" '
               f'font-size="13">{title}</text>')
    out.append(f'<line x1="{x0}" y1="{TOP + ph}" x2="{x0 + panel_w}" y2="{TOP + ph}" stroke="black"/>')
    out.append(f'<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{TOP + ph}" stroke="black"/>')
    for t in range(5):
        v, y = vmax * t / 4, TOP + ph - ph * t / 4
        out.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x0 + panel_w}" y2="{y:.1f}" stroke="#ddd"/>')
        txt = f"{v:,.0f}" if vmax > 20 else f"{v:.2f}"
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{txt}</text>')
    gw = panel_w / max(1, len(groups))
    bw = gw * 0.85 / max(1, max(sum((lab, g) in bars for lab in labels) for g in groups))
    for gi, g in enumerate(groups):
        gx = x0 + gi * gw + gw * 0.075
        out.append(f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{TOP + ph + 16}" '
                   f'text-anchor="middle">{g}</text>')
        base_label = bases.get(g)
        base = bars.get((base_label, g), (0, 0))[idx]
        in_group = [lab for lab in labels if (lab, g) in bars]
        for lab in in_group:
            li = labels.index(lab)
            v = bars[(lab, g)][idx]
            bh, x = ph * v / vmax, gx + in_group.index(lab) * bw
            out.append(f'<rect x="{x:.1f}" y="{TOP + ph - bh:.1f}" width="{bw - 2:.1f}" '
                       f'height="{bh:.1f}" fill="{COLORS[li % len(COLORS)]}"/>')
            txt = (f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}") if idx == 0 else f"{v:.1f}"
            cx = x + bw / 2 - 1
            out.append(f'<text x="{cx:.1f}" y="{TOP + ph - bh - 4:.1f}" text-anchor="middle" '
                       f'font-size="8">{txt}</text>')
            if base and lab != base_label:
                out.append(f'<text x="{cx:.1f}" y="{TOP + ph - bh - 13:.1f}" text-anchor="middle" '
                           f'font-size="8">{v / base:.2f}×</text>'.replace("×</", "x</"))
        if base:
            y = TOP + ph - ph * base / vmax
            out.append(f'<line x1="{gx:.1f}" y1="{y:.1f}" x2="{gx + gw * 0.85:.1f}" y2="{y:.1f}" '
                       f'stroke="black" stroke-dasharray="4 3"/>')


def svg_plot(bars, path, title, bases):
    """Writes the figure of `bars` {(label, group): (rps, p99)}, each group's bars compared with
    the bar `bases[group]`; returns the files written."""
    labels = list(dict.fromkeys(lab for lab, _ in bars))
    groups = list(dict.fromkeys(g for _, g in bars))
    panel_w = (W - LEFT - 40) / 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    _panel(out, bars, labels, groups, LEFT, panel_w, 0, "throughput (req/s, higher is better)",
           bases)
    _panel(out, bars, labels, groups, LEFT + panel_w + 40, panel_w, 1,
           "p99 latency (ms, lower is better)", bases)
    lx, ly = LEFT, H - 62
    for li, lab in enumerate(labels):
        if lx + 30 + 7 * len(lab) > W:
            lx, ly = LEFT, ly + 18
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{COLORS[li % len(COLORS)]}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly + 10}">{lab}</text>')
        lx += 30 + 7 * len(lab)
    names = ", ".join(dict.fromkeys(bases.values()))
    out.append(f'<text x="{LEFT}" y="{H - 8}" font-size="10">dashed line and ratios: each '
               f'group\'s baseline ({names})</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    png = path.with_suffix(".png")
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", "-o", str(png), str(path)], check=False)
    return [p for p in (path, png) if p.exists()]
