#!/usr/bin/env python3
"""Draws docs/heartbeat-cost.svg from criterion's output and prints the medians.

Usage (from the crate root, after `cargo bench --bench heartbeat`):

    python3 scripts/chart.py [target/criterion] [docs/heartbeat-cost.svg]

Reads `<group>/<table>/<parameter>/new/estimates.json` under the criterion directory (the
median's point estimate, in nanoseconds), prints every median as a Markdown table, and draws
heartbeat cost (`heartbeat_hit`) against table size for worklease and the baselines, on log
scales. Standard library only; the SVG is written by hand.
"""

import json
import math
import os
import sys

CRITERION = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
OUTPUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join("docs", "heartbeat-cost.svg")

TABLES = ["worklease", "worklease_sharded", "assembled", "naive"]
COLORS = {
    "worklease": "#1b7837",
    "worklease_sharded": "#5aae61",
    "assembled": "#2166ac",
    "naive": "#b2182b",
}
SIZES = {"10k": 10_000, "1M": 1_000_000}


def medians():
    """{(group, table, parameter): median ns} for every benchmark criterion recorded."""
    found = {}
    for root, _dirs, files in os.walk(CRITERION):
        if "estimates.json" not in files or os.path.basename(root) != "new":
            continue
        parts = os.path.relpath(os.path.dirname(root), CRITERION).split(os.sep)
        with open(os.path.join(root, "estimates.json")) as f:
            median = json.load(f)["median"]["point_estimate"]
        group, rest = parts[0], parts[1:]
        table = rest[0] if rest else ""
        parameter = "/".join(rest[1:])
        found[(group, table, parameter)] = median
    return found


def table_markdown(found):
    lines = ["| group | table | parameter | median |", "|---|---|---|---|"]
    for (group, table, parameter), ns in sorted(found.items()):
        shown = f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns:.1f} ns"
        lines.append(f"| {group} | {table} | {parameter} | {shown} |")
    return "\n".join(lines)


def chart(found):
    width, height = 640, 400
    left, right, top, bottom = 70, 170, 40, 50
    series = {}
    for table in TABLES:
        points = [
            (SIZES[p], found[("heartbeat_hit", table, p)])
            for p in SIZES
            if ("heartbeat_hit", table, p) in found
        ]
        if points:
            series[table] = sorted(points)
    if not series:
        sys.exit(f"no heartbeat_hit results under {CRITERION}")
    ys = [y for points in series.values() for _, y in points]
    y_lo = 10 ** math.floor(math.log10(min(ys)))
    y_hi = 10 ** math.ceil(math.log10(max(ys)))
    x_lo, x_hi = 10_000 / 2, 1_000_000 * 2

    def x_of(v):
        return left + (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo)) * (width - left - right)

    def y_of(v):
        return top + (1 - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))) * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="14">Heartbeat cost vs table size '
        "(median ns per heartbeat, 1 thread, log scales)</text>",
    ]
    decade = y_lo
    while decade <= y_hi:
        y = y_of(decade)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{decade:g} ns</text>')
        decade *= 10
    for label, v in SIZES.items():
        x = x_of(v)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{label} leases</text>')
    for i, (table, points) in enumerate(series.items()):
        color = COLORS.get(table, "black")
        path = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="4" fill="{color}"/>')
            out.append(f'<text x="{x_of(x) + 7:.1f}" y="{y_of(y) - 6:.1f}" fill="{color}">{y:.0f}</text>')
        ly = top + 10 + i * 20
        out.append(f'<line x1="{width - right + 15}" y1="{ly}" x2="{width - right + 35}" y2="{ly}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 40}" y="{ly + 4}">{table}</text>')
    out.append("</svg>")
    os.makedirs(os.path.dirname(OUTPUT) or ".", exist_ok=True)
    with open(OUTPUT, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    results = medians()
    print(table_markdown(results))
    chart(results)
    print(f"\nwrote {OUTPUT}", file=sys.stderr)
