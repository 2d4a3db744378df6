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


def detail(results: dict, server: str, key: str, field: str = "value") -> float | None:
    """Median of one field over a cell's valid runs (undisturbed ones when there are any)."""
    runs = results["cells"].get(server, {}).get(key, {}).get("runs", [])
    valid = [r for r in runs if "value" in r and "error" not in r and field in r]
    clean = [r for r in valid if r.get("foreign_cpu", 0) <= DISTURBED]
    values = [r[field] for r in (clean or valid)]
    return statistics.median(values) if values else None


# (column title, profile, field, format)
COMPRESSION_COLUMNS = [
    ("z msg/s", "z", "value", "rate"),
    ("z B/msg c→s", "z", "wire_out_per_msg", "{:.0f}"),
    ("z B/msg s→c", "z", "wire_in_per_msg", "{:.0f}"),
    ("z compressed s→c", "z", "compressed_share", "{:.0%}"),
    ("z KiB/conn idle", "z", "idle_kib_per_conn", "{:.1f}"),
    ("z KiB/conn active", "z", "active_kib_per_conn", "{:.1f}"),
    ("z KiB/conn after", "z", "after_kib_per_conn", "{:.1f}"),
    ("zb deliv/s", "zb", "value", "rate"),
    ("zb B/deliv", "zb", "wire_in_per_msg", "{:.0f}"),
    ("zi KiB/conn", "zi", "value", "{:.2f}"),
    ("d KiB/conn", "d", "value", "{:.2f}"),
]
PEERS_COMPARED = ("websockets", "node-ws")  # issue 13's goals are stated against these


def compression_table(results: dict) -> str:
    """The compressed profiles' details (wire bytes, RSS idle/active/after), one row per
    server, then wsdaemon against websockets and Node ws on issue 13's goals. Empty when
    no compressed profile ran."""
    keys = set(results["profiles"])
    columns = [c for c in COMPRESSION_COLUMNS if c[1] in keys]
    if not any(results["profiles"][k].get("deflate") for k in keys):
        return ""
    rows = [["server", *(c[0] for c in columns)], ["---"] * (len(columns) + 1)]
    for name in results["servers"]:
        row = [name]
        for _, key, field, fmt in columns:
            v = detail(results, name, key, field)
            row.append("—" if v is None else human(v, "") if fmt == "rate" else fmt.format(v))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines += ["", *goals(results)]
    return "\n".join(lines)


def goals(results: dict) -> list[str]:
    """Issue 13's goals, each as 'figure: wsdaemon vs peer = ratio (goal) MET/MISSED'."""
    out = []

    def ratio(label: str, key: str, field: str, peer: str, goal: float, higher: bool) -> None:
        ours, theirs = detail(results, "wsdaemon", key, field), detail(results, peer, key, field)
        if ours is None or not theirs:
            return
        r = ours / theirs
        show = (lambda v: human(v, "")) if higher else (lambda v: f"{v:.1f} KiB")
        text = f"- {label}: wsdaemon {show(ours)} / {peer} {show(theirs)} = x{r:.2f}"
        if peer == "websockets":  # the goals are stated against websockets
            met = r >= goal if higher else r <= goal
            text += f" (goal {'>=' if higher else '<='} {goal}x) {'MET' if met else 'MISSED'}"
        out.append(text)

    for peer in PEERS_COMPARED:
        ratio("z msg/s", "z", "value", peer, 1.5, True)
        ratio("z RSS per active conn", "z", "active_kib_per_conn", peer, 0.5, False)
        ratio("zb deliveries/s", "zb", "value", peer, 3.0, True)
    zi, d = detail(results, "wsdaemon", "zi"), detail(results, "wsdaemon", "d")
    if zi is not None and d is not None:
        out.append(
            f"- idle RSS per conn, compressed (zi) - uncompressed (d): {zi - d:+.2f} KiB"
            f" (goal <= 1 KiB) {'MET' if zi - d <= 1.0 else 'MISSED'}"
        )
    return out


# Issue 17: wsdaemon against the best of these on each profile (compressed profiles: the best
# compressing one among them), goal as a ratio; d is lower-is-better.
FAST_PEERS = ("picows+uvloop", "node-ws", "aiohttp+uvloop", "websockets")
PEER_GOALS = {"a": 2.0, "b": 1.3, "c": 1.0, "d": 0.5, "e": 1.5, "f": 2.0, "z": 1.5, "zb": 1.5}


def peer_goals(results: dict) -> str:
    """Issue 17's table: per profile wsdaemon, the best fast peer, the ratio against the goal,
    and the server's and the load generator's CPU (medians) to show which one was the limit."""
    rows = [
        [
            "profile",
            "wsdaemon",
            "best peer",
            "ratio",
            "goal",
            "",
            "cpu wsdaemon / loadgen",
            "cpu peer / loadgen",
        ],
    ]
    rows.append(["---"] * len(rows[0]))
    for key, goal in PEER_GOALS.items():
        prof = results["profiles"].get(key)
        ours = detail(results, "wsdaemon", key)
        if prof is None or ours is None:
            continue
        lower = prof["lower_is_better"]
        peers = [(detail(results, p, key), p) for p in FAST_PEERS]
        peers = [(v, p) for v, p in peers if v]
        if not peers:
            continue
        best, name = min(peers) if lower else max(peers)
        r = ours / best
        met = r <= goal if lower else r >= goal

        rows.append(
            [
                key,
                human(ours, prof["unit"]),
                f"{name} {human(best, prof['unit'])}",
                f"x{r:.2f}",
                f"{'<=' if lower else '>='} {goal}",
                "met" if met else "MISSED",
                _cpu_pair(results, "wsdaemon", key),
                _cpu_pair(results, name, key),
            ]
        )
    if len(rows) == 2:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    )


def _cpu_pair(results: dict, server: str, key: str) -> str:
    s, g = detail(results, server, key, "server_cpu"), detail(results, server, key, "loadgen_cpu")
    return "—" if s is None or g is None else f"{s:.0%} / {g:.0%}"


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
    for extra in (compression_table(saved), peer_goals(saved)):
        if extra:
            print("\n" + extra)
