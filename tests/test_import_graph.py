"""The import graph stays clean: no service imports another, and ``conveyor`` has no circle.

What several services share lives in ``conveyor``; a service importing another would
couple their deployments (issue 18). Imports under ``TYPE_CHECKING`` count: a circle in
the types is still two modules that cannot be understood apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import grimp
import pytest

SERVICES = ("gateway", "store", "scheduler", "worker")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "conveyor", *SERVICES, include_external_packages=False, exclude_type_checking_imports=False
    )


def test_services_do_not_import_each_other(graph: grimp.ImportGraph) -> None:
    arrows = {
        (found["importer"], found["imported"])
        for importer, imported in itertools.permutations(SERVICES, 2)
        for found in graph.find_matching_direct_imports(
            import_expression=f"{importer}.** -> {imported}.**"
        )
    }
    assert sorted(arrows) == []


def test_conveyor_has_no_import_cycle(graph: grimp.ImportGraph) -> None:
    modules = {m for m in graph.modules if m == "conveyor" or m.startswith("conveyor.")}
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    cycles = [c for c in strongly_connected(edges) if len(c) > 1 or c[0] in edges[c[0]]]
    assert [sorted(c) for c in cycles] == []


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def test_strongly_connected_finds_a_circle() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": ["e"]}
    found = sorted(sorted(c) for c in strongly_connected(edges))
    assert found == [["a", "b", "c"], ["d"], ["e"]]
