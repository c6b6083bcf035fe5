#!/usr/bin/env python3
"""Write the values table of a chart's README.md from its values.yaml and values.schema.json.

Every value of the chart, its default (values.yaml) and what it does (the schema's
description), between the markers `<!-- values:begin -->` and `<!-- values:end -->` of
charts/<chart>/README.md. The prose around the markers is written by hand.

  python3 deploy/scripts/chart-readme.py rtb-exchange dsp-fleet          # rewrite the tables
  python3 deploy/scripts/chart-readme.py --check rtb-exchange dsp-fleet  # exit 1 if stale

deploy/check_rendered.py runs the check (and the other direction: every key of values.yaml has
a schema entry), so a value cannot be added without its documentation.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

CHARTS = Path(__file__).resolve().parent.parent / "charts"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"


def leaves(schema: dict, values, path: str = ""):
    """(dotted key, default, description) for every documented value, in schema order. An
    object with `properties` is walked into; anything else (maps, lists, scalars) is a leaf."""
    for key, sub in schema.get("properties", {}).items():
        dotted = f"{path}.{key}" if path else key
        default = values.get(key) if isinstance(values, dict) else None
        if "properties" in sub and sub.get("type") == "object":
            yield from leaves(sub, default or {}, dotted)
        else:
            yield dotted, default, sub.get("description", "")
            # A list of objects (the DSPs): the fields of one entry, without defaults.
            if "properties" in sub.get("items", {}):
                yield from leaves(sub["items"], {}, f"{dotted}[]")


def undocumented(schema: dict, values, path: str = "") -> list[str]:
    """Keys of values.yaml that the schema does not describe."""
    missing = []
    if not isinstance(values, dict):
        return missing
    for key, value in values.items():
        dotted = f"{path}.{key}" if path else key
        sub = schema.get("properties", {}).get(key)
        if sub is None:
            missing.append(dotted)
        elif "properties" in sub:
            missing += undocumented(sub, value, dotted)
    return missing


def cell(default) -> str:
    if default is None:
        return ""
    text = json.dumps(default, separators=(", ", ": ")) if not isinstance(default, str) \
        else json.dumps(default)
    return f"`{text}`".replace("|", "\\|")


def table(chart: str) -> str:
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text()) or {}
    rows = ["| value | default | what it does |", "| --- | --- | --- |"]
    for key, default, description in leaves(schema, values):
        described = description.replace("|", "\\|")
        rows.append(f"| `{key}` | {cell(default)} | {described} |")
    return "\n".join(rows)


def render(chart: str) -> tuple[str, str]:
    """(current README, README with a fresh table)."""
    readme = (CHARTS / chart / "README.md").read_text()
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{chart}/README.md lacks the {BEGIN} ... {END} markers")
    return readme, f"{head}{BEGIN}\n{table(chart)}\n{END}{tail}"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    charts = [a for a in argv if a != "--check"]
    stale = []
    for chart in charts:
        current, fresh = render(chart)
        if current == fresh:
            continue
        if check:
            stale.append(chart)
        else:
            (CHARTS / chart / "README.md").write_text(fresh)
            print(f"wrote {chart}/README.md")
    if stale:
        print(f"stale values table in {', '.join(stale)}: run deploy/scripts/chart-readme.py "
              f"{' '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
