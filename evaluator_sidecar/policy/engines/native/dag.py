"""The DAG a rule adds when it matches, and the load-time check that all of them are acyclic.

Semantics of the edges: docs/rule-language.md ("dag").
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from evaluator_sidecar.policy.engines.native.loaded import Edge, Emission, Rule
from evaluator_sidecar.policy.errors import Problem

__all__ = ["check_acyclic", "rule_edges"]


def rule_edges(emissions: Sequence[Emission]) -> tuple[Edge, ...]:
    """The DAG edges a matched rule adds, for emissions already in output order.

    For each emission j: a 'gate' edge from every earlier GATE emission (in
    order), then a 'sequential' edge from emission j-1 when j is ORDERS and j > 0.
    """
    edges: list[Edge] = []
    for j, emission in enumerate(emissions):
        for g in range(j):
            if emissions[g].relationship == "GATE":
                edges.append(Edge(emissions[g].subtask_name, emission.subtask_name, "gate"))
        if emission.relationship == "ORDERS" and j > 0:
            edges.append(Edge(emissions[j - 1].subtask_name, emission.subtask_name, "sequential"))
    return tuple(edges)


def check_acyclic(rules: Sequence[Rule]) -> list[Problem]:
    """One problem per cycle in the union of every edge any rule can produce."""
    graph: dict[str, dict[str, list[str]]] = {}  # source -> target -> rule ids
    for rule in rules:
        for edge in rule.edges:
            owners = graph.setdefault(edge.source, {}).setdefault(edge.target, [])
            if rule.rule_id not in owners:
                owners.append(rule.rule_id)
            graph.setdefault(edge.target, {})
    problems: list[Problem] = []
    for component in _strongly_connected(graph):
        if len(component) == 1:
            (node,) = component
            if node not in graph[node]:
                continue
        cycle = _cycle_in(graph, component)
        owners = sorted({rid for a, b in itertools.pairwise(cycle) for rid in graph[a][b]})
        problems.append(
            Problem(
                "dag",
                f"cycle {' -> '.join(cycle)} (edges from rule(s) {', '.join(owners)}); "
                "the union of all rules' ORDERS and GATE edges must be acyclic",
            )
        )
    return problems


def _strongly_connected(graph: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (deep graphs must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Any]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle_in(graph: Mapping[str, Mapping[str, Any]], component: list[str]) -> list[str]:
    """A cycle through the component's first node: [a, b, ..., a] (shortest, by BFS)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        next_frontier: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in seen:
                    seen.add(child)
                    parents[child] = node
                    next_frontier.append(child)
        frontier = next_frontier
    return [start, start]  # pragma: no cover - a component always has a cycle
