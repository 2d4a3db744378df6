"""The package's import graph: layers point down (import-linter) and no module cycle at all.

Every import counts, including those under ``TYPE_CHECKING`` and inside functions:
grimp reads them all from the source.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
#: The accelerator has no Python source; grimp resolves ``from . import _speedups`` to its package.
ACCELERATOR_EDGE = ("wsdaemon.proto.accel", "wsdaemon.proto")


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return cycles


def package_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("wsdaemon", cache_dir=None)
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        targets = {t for t in graph.find_modules_directly_imported_by(module) if t.startswith("wsdaemon")}
        if module == ACCELERATOR_EDGE[0]:
            targets.discard(ACCELERATOR_EDGE[1])
        edges[module] = targets
    return edges


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = package_graph()
    assert len(graph) > 30  # the whole package was read
    assert import_cycles(graph) == []


def test_layer_contracts_hold():
    result = subprocess.run(
        ["lint-imports", "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout
