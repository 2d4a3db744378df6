"""Summaries and the results table: median and spread per cell, ratio wsdaemon/peer.

Kept apart from the runner so the table can be rebuilt from a saved JSON file:
``python bench/report.py bench/results/<file>.json``.
"""

import json
import statistics
import sys

DISTURBED = 0.15  # cores taken by other processes during a run: the run is not trusted


def summarize(runs: list[dict]) -> dict | None:
    """Median, min, max over a cell's valid runs.

    Runs that other processes disturbed (see run.py) are left out when at least
    one undisturbed run exists; otherwise they are used and the cell is flagged.
    """
    valid = [r for r in runs if "value" in r and "error" not in r]
    clean = [r for r in valid if r.get("foreign_cpu", 0) <= DISTURBED]
    values = [r["value"] for r in (clean or valid)]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "disturbed": not clean,
    }


def human(value: float, unit: str) -> str:
    """Short figure: 118k, 2.41M, 1.47 GB/s, 13.6 KiB."""
    if unit == "B/s":
        return f"{value / 1e9:.2f} GB/s" if value >= 1e9 else f"{value / 1e6:.0f} MB/s"
    if unit == "KiB/conn":
        return f"{value:.1f} KiB"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def spread(s: dict, unit: str) -> str:
    """Spread as min-max relative to the median (compact enough for a table cell)."""
    if s["n"] < 2 or not s["median"]:
        return ""
    lo = 100 * (s["min"] / s["median"] - 1)
    hi = 100 * (s["max"] / s["median"] - 1)
    return f" ({lo:+.0f}/{hi:+.0f}%)"


def cell(summary: dict | None, skipped: bool, unit: str, ours: dict | None) -> str:
    if not summary:
        return "skipped" if skipped else "failed"
    text = human(summary["median"], unit) + spread(summary, unit)
    text += "*" if summary.get("disturbed") else ""
    if ours and ours is not summary and summary["median"]:
        text += f" [x{ours['median'] / summary['median']:.2f}]"
    return text


def table(results: dict) -> str:
    """Markdown table: one row per server, one column per profile.

    Cells: median (min/max relative to the median) and, on peer rows, [x ratio]
    = wsdaemon median / peer median. Reasons for skipped cells follow the table.
    """
    profiles = results["profiles"]
    header = ["server"] + [f"{k}: {profiles[k]['unit']}" for k in profiles]
    rows = [header, ["---"] * len(header)]
    reasons = {}
    for name in results["servers"]:
        row = [name]
        for key, prof in profiles.items():
            entry = results["cells"].get(name, {}).get(key, {})
            ours = results["cells"].get("wsdaemon", {}).get(key, {}).get("summary")
            if "skipped" in entry:
                reasons.setdefault((name, entry["skipped"]), []).append(key)
            row.append(cell(entry.get("summary"), "skipped" in entry, prof["unit"], ours))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    legend = [
        f"- {k}: {p['title']}"
        + (" (lower is better)" if p["lower_is_better"] else "")
        + (f"; {p['note']}" if p.get("note") else "")
        for k, p in profiles.items()
    ]
    legend.append(
        "- cells: median (min/max vs median) of undisturbed runs; [xR] = wsdaemon / peer;"
        " * = every run was disturbed by other processes"
    )
    legend += [f"- {name} skipped ({','.join(keys)}): {why}" for (name, why), keys in reasons.items()]
    return "\n".join(lines + ["", *legend])


def save(results: dict, path) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        saved = json.load(f)
    for cells in saved["cells"].values():
        for entry in cells.values():
            entry["summary"] = summarize(entry["runs"])
    print(table(saved))
