#!/usr/bin/env python3
"""Count the verdicts of a wstest fuzzingclient report.

usage: summarize.py OUTDIR

Reads OUTDIR/index.json, the report index that wstest writes, and prints a table per
agent (cases per top-level group and verdict), the ids of the cases that were not OK,
and as its last line:

    autobahn: OK=N NON-STRICT=N INFORMATIONAL=N UNIMPLEMENTED=N FAILED=N

A case's verdict is its "behavior", the field the HTML report colours its cell by.
A verdict other than those five is counted as FAILED and named.

Exit status: 0 when the index holds at least one case, 2 when it is missing, unreadable
or empty (the last line then has all counts 0).
"""

import json
import sys
from collections import Counter
from pathlib import Path

VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
LIST_AT_MOST = 60  # case ids listed per verdict


def case_order(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def summary_line(counts):
    return "autobahn: " + " ".join(f"{v}={counts[v]}" for v in VERDICTS)


def verdicts(index):
    """(agent, case id, verdict, raw behavior) for every case, in case order."""
    if not isinstance(index, dict) or not all(
        isinstance(cases, dict) and all(isinstance(r, dict) for r in cases.values())
        for cases in index.values()
    ):
        raise ValueError("not an index of {agent: {case id: result}}")
    for agent in sorted(index):
        for case_id in sorted(index[agent], key=case_order):
            raw = index[agent][case_id].get("behavior")
            yield agent, case_id, raw if raw in VERDICTS else "FAILED", raw


def table(rows):
    groups = {}
    for _, case_id, verdict, _ in rows:
        groups.setdefault(case_id.split(".")[0], Counter())[verdict] += 1
    total = sum(groups.values(), Counter())
    lines = ["  group  cases" + "".join(f"{v:>15}" for v in VERDICTS)]
    for name, counts in [*((g + ".*", c) for g, c in groups.items()), ("all", total)]:
        lines.append(f"  {name:<6} {sum(counts.values()):>5}" + "".join(f"{counts[v]:>15}" for v in VERDICTS))
    return lines


def main(argv):
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 64
    path = Path(argv[0]) / "index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        rows = list(verdicts(index))
    except (OSError, ValueError) as e:
        print(f"summarize: no usable report at {path}: {e}")
        print(summary_line(Counter()))
        return 2

    for agent in sorted(index):
        mine = [r for r in rows if r[0] == agent]
        print(f"agent {agent}: {len(mine)} cases")
        print("\n".join(table(mine)))
    odd = [f"{case_id} ({raw!r})" for _, case_id, verdict, raw in rows if raw != verdict]
    if odd:
        print("unknown verdicts, counted as FAILED: " + ", ".join(odd))
    for verdict in ("FAILED", "NON-STRICT", "UNIMPLEMENTED"):
        ids = [case_id for _, case_id, v, _ in rows if v == verdict]
        if ids:
            shown = " ".join(ids[:LIST_AT_MOST]) + (" ..." if len(ids) > LIST_AT_MOST else "")
            print(f"{verdict} ({len(ids)}): {shown}")
    if any(v == "FAILED" for _, _, v, _ in rows):
        print(f"per-case details: {path.parent}/*_case_*.html and .json")

    counts = Counter(v for _, _, v, _ in rows)
    print(summary_line(counts))
    return 0 if rows else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
