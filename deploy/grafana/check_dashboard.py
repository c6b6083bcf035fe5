#!/usr/bin/env python3
"""Offline checks of the Grafana dashboards in deploy/grafana/ (Grafana itself is not in Debian,
so it is not started; see deploy/README.md for what that leaves unchecked).

For each *.json here:
  1. valid JSON with what Grafana needs to import it: title, uid (at most 40 of [A-Za-z0-9-_]),
     an integer schemaVersion of at least SCHEMA_VERSION_MIN, panels with unique ids, a known
     type and a gridPos inside the 24-column grid, not overlapping; every query panel and
     target uses the templated Prometheus datasource `${datasource}` (a `datasource` variable
     of type datasource), so the file loads without edits (UI import or file provisioning);
     every `$variable` used is a templating variable or a Grafana global; no `${DS_...}`
     import placeholder is left;
  2. every PromQL expression (panel targets, and the selectors of the variables'
     label_values() queries), with Grafana's variables replaced by sample values, written as
     recording rules to OUT_RULES for `promtool check rules` to parse (deploy/validate.sh).

Whether each series the dashboards name exists in a real exchange's scrape is checked by
exchange-bin/tests/dashboards.rs, which starts one. Exits 1 on any failure.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_RULES = HERE.parent / ".out" / "grafana-expressions.rules.yaml"
SCHEMA_VERSION_MIN = 36
PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's global variables, with a value each that makes a valid PromQL duration.
GLOBALS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
# Values put in for the dashboard's own variables (all are used as regex matchers).
VARIABLE_VALUE = ".*"

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def variables_in(text: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", text))


def substituted(expr: str, own: set[str]) -> str:
    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return GLOBALS.get(name, VARIABLE_VALUE if name in own else m.group(0))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def overlaps(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def check_panels(name: str, dash: dict) -> list[tuple[str, str]]:
    """Panel checks; returns (rule name, expression) for every target."""
    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    check(bool(panels) and len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids),
          f"{name}: {len(panels)} panels with unique integer ids")
    exprs = []
    for p in panels:
        label = f"{name}: panel {p.get('id')} {p.get('title')!r}"
        g = p.get("gridPos", {})
        check(p.get("type") in PANEL_TYPES and bool(p.get("title")), f"{label}: known type {p.get('type')}, a title")
        check(all(isinstance(g.get(k), int) for k in "hwxy") and g["x"] + g["w"] <= 24 and g["w"] > 0
              and g["h"] > 0, f"{label}: gridPos inside the 24-column grid")
        if p.get("type") == "row":
            continue
        targets = p.get("targets", [])
        refs = [t.get("refId") for t in targets]
        check(p.get("datasource") == DATASOURCE and bool(targets)
              and all(t.get("datasource") == DATASOURCE and t.get("expr") for t in targets)
              and len(set(refs)) == len(refs),
              f"{label}: {len(targets)} target(s) on ${{datasource}}, unique refIds, an expr each")
        exprs += [(f"rtb_dashboard:panel{p.get('id')}_{t.get('refId')}", t.get("expr", "")) for t in targets]
    grids = [p["gridPos"] for p in panels if isinstance(p.get("gridPos"), dict)]
    clash = [(i, j) for i in range(len(grids)) for j in range(i + 1, len(grids))
             if all(k in grids[i] and k in grids[j] for k in "hwxy") and overlaps(grids[i], grids[j])]
    check(not clash, f"{name}: no two panels overlap {clash}")
    return exprs


def check_dashboard(path: Path) -> list[dict]:
    name = path.name
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        check(False, f"{name}: valid JSON ({e})")
        return []
    check(isinstance(dash.get("title"), str) and bool(dash["title"]), f"{name}: a title")
    check(isinstance(dash.get("uid"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"]) is not None,
          f"{name}: uid {dash.get('uid')!r}")
    sv = dash.get("schemaVersion")
    check(isinstance(sv, int) and sv >= SCHEMA_VERSION_MIN, f"{name}: schemaVersion {sv} >= {SCHEMA_VERSION_MIN}")
    check("${DS_" not in path.read_text(), f"{name}: no ${{DS_...}} import placeholder left")
    templating = dash.get("templating", {}).get("list", [])
    own = {v.get("name") for v in templating}
    ds = [v for v in templating if v.get("name") == "datasource"]
    check(len(ds) == 1 and ds[0].get("type") == "datasource" and ds[0].get("query") == "prometheus",
          f"{name}: a `datasource` variable of type datasource (Prometheus)")
    exprs = check_panels(name, dash)
    for v in templating:
        if v.get("type") != "query":
            continue
        check(v.get("datasource") == DATASOURCE, f"{name}: variable {v.get('name')} queries ${{datasource}}")
        query = v.get("query", {}).get("query", "") if isinstance(v.get("query"), dict) else v.get("query", "")
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        check(m is not None, f"{name}: variable {v.get('name')} is label_values(selector, label): {query}")
        if m:
            exprs.append((f"rtb_dashboard:variable_{v.get('name')}", m.group(1)))
    used = set().union(*(variables_in(e) for _, e in exprs)) if exprs else set()
    unknown = sorted(used - own - set(GLOBALS))
    check(not unknown, f"{name}: every $variable used is defined {sorted(used)}; unknown: {unknown}")
    return [{"record": r, "expr": substituted(e, own)} for r, e in exprs]


def main() -> int:
    dashboards = sorted(HERE.glob("*.json"))
    check(bool(dashboards), f"dashboards in {HERE}")
    rules = [r for d in dashboards for r in check_dashboard(d)]
    OUT_RULES.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: promtool reads this as a rules file.
    OUT_RULES.write_text(json.dumps({"groups": [{"name": "grafana-dashboards", "rules": rules}]}, indent=1))
    print(f"{len(rules)} expressions written to {OUT_RULES} (for promtool check rules)")
    print(f"check_dashboard: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
