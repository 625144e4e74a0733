"""One dispatch batch solved as a minimum-cost assignment. The only module that imports
OR-Tools.

The batch is a sparse bipartite graph: each request lists a handful of candidate
drivers (``types.Candidate``), each edge has an integer cost (the pickup ETA, or the
fairness-adjusted cost from ``dispatch.batch.fairness``), and any request may instead stay
unmatched for ``unmatched_penalty``. The solver picks the set of edges with the lowest
total cost, counting every unmatched request at the penalty, such that no driver gets
two trips and no trip gets two drivers. It is a min-cost flow::

    request (supply 1) ──cost c──▶ driver ──cost 0, cap 1──▶ sink (demand = #requests)
           └───────────────── cost penalty ─────────────────▲

Every request can always reach the sink through its "unmatched" arc, so the flow is
always feasible; a status other than ``OPTIMAL`` means bad input or a solver fault, and
comes back as a value, never an exception.

OR-Tools' min-cost flow has no time limit to set: it is a polynomial cost-scaling
push-relabel algorithm, not a search, and its running time depends only on the graph's
size (bounded by the batch and candidate caps) and the logarithm of the largest cost. A
batch of 2,000 requests × 8 candidates solves in about 30 ms on a 2-core machine
(``benchmarks/bench_solver.py`` measures it).

Ties: among equally cheap solutions the solver returns one that matches the most
requests. Costs are scaled by ``n + 1`` (n requests) and each unmatched arc costs one
unit more, so matching breaks ties but can never outweigh one second of real cost.
See ``docs/dispatch-algorithm.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from ortools.graph.python import min_cost_flow

from dispatch.batch.types import Assignment, Candidate, Request

# Costs are seconds. Anything beyond this (about 116 days) is a caller's bug, and the
# cap keeps ``cost × (n + 1)`` and OR-Tools' own internal scaling far from int64 limits.
MAX_COST = 10_000_000

# Per-request costs aligned with ``requests[i].candidates[j]``.
EdgeCosts = Sequence[Sequence[int]]


class SolveStatus(StrEnum):
    OPTIMAL = "optimal"
    INVALID_INPUT = "invalid_input"
    SOLVER_FAILED = "solver_failed"


@dataclass(frozen=True, slots=True)
class Solution:
    status: SolveStatus
    assignments: list[Assignment] = field(default_factory=list)
    # Sum of the chosen edges' costs plus the penalty for every unmatched request;
    # None unless ``status`` is OPTIMAL.
    total_cost: int | None = None
    unmatched: list[str] = field(default_factory=list)
    # Why the status is not OPTIMAL, for logs.
    detail: str = ""


def _is_cost(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_COST


def _invalid(requests: Sequence[Request], detail: str) -> Solution:
    return Solution(
        SolveStatus.INVALID_INPUT,
        unmatched=[r.trip_id for r in requests],
        detail=detail,
    )


def solve(
    requests: Sequence[Request],
    *,
    unmatched_penalty: int,
    costs: EdgeCosts | None = None,
) -> Solution:
    """The cheapest assignment of this batch.

    ``costs[i][j]`` is the cost of ``requests[i].candidates[j]``; without ``costs`` an edge
    costs its ``pickup_eta_s``. Costs and the penalty are integers in [0, MAX_COST].
    An edge that costs more than the penalty is never used (leaving its request
    unmatched is cheaper and frees the driver). Assignments come out in request order
    and carry the edge's ``pickup_eta_s``; ``unmatched`` lists the other trip ids in
    request order.
    """
    if not _is_cost(unmatched_penalty):
        return _invalid(requests, f"unmatched_penalty must be an int in [0, {MAX_COST}]")
    if costs is not None and len(costs) != len(requests):
        return _invalid(requests, "costs must have one row per request")
    n = len(requests)
    if len({r.trip_id for r in requests}) != n:
        return _invalid(requests, "trip ids must be unique")
    if n == 0:
        return Solution(SolveStatus.OPTIMAL, total_cost=0)

    # Nodes: requests 0..n-1, then drivers n..n+d-1, then the sink. One arc per usable
    # edge; ``arc_request[k]``, ``arc_edge[k]`` and ``arc_cost[k]`` describe arc k.
    driver_node: dict[str, int] = {}
    arc_request: list[int] = []
    arc_driver: list[int] = []
    arc_cost: list[int] = []
    arc_edge: list[Candidate] = []
    for i, request in enumerate(requests):
        if costs is None:
            row: Sequence[int] = [e.pickup_eta_s for e in request.candidates]
        else:
            row = costs[i]
            if len(row) != len(request.candidates):
                return _invalid(requests, f"costs[{i}] must have one cost per edge")
        for edge, cost in zip(request.candidates, row, strict=True):
            if type(cost) is not int or not 0 <= cost <= MAX_COST:
                return _invalid(requests, f"cost of {request.trip_id}→{edge.driver_id} is invalid")
            if cost > unmatched_penalty:
                continue
            node = driver_node.get(edge.driver_id)
            if node is None:
                node = driver_node[edge.driver_id] = n + len(driver_node)
            arc_request.append(i)
            arc_driver.append(node)
            arc_cost.append(cost)
            arc_edge.append(edge)

    d = len(driver_node)
    sink = n + d
    scale = n + 1
    m = len(arc_request)
    request_nodes = np.arange(n, dtype=np.int64)
    driver_nodes = np.arange(n, n + d, dtype=np.int64)
    all_tails = np.concatenate(
        [np.asarray(arc_request, dtype=np.int64), request_nodes, driver_nodes]
    )
    all_heads = np.concatenate(
        [np.asarray(arc_driver, dtype=np.int64), np.full(n + d, sink, dtype=np.int64)]
    )
    all_costs = np.concatenate(
        [
            np.asarray(arc_cost, dtype=np.int64) * scale,
            np.full(n, unmatched_penalty * scale + 1, dtype=np.int64),
            np.zeros(d, dtype=np.int64),
        ]
    )
    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(
        all_tails, all_heads, np.ones(m + n + d, dtype=np.int64), all_costs
    )
    supplies = np.ones(n + 1, dtype=np.int64)
    supplies[n] = -n
    flow.set_nodes_supplies(np.append(request_nodes, sink), supplies)
    status = flow.solve()
    if status != flow.OPTIMAL:
        return Solution(
            SolveStatus.SOLVER_FAILED,
            unmatched=[r.trip_id for r in requests],
            detail=f"min-cost flow returned {status.name}",
        )

    used = np.flatnonzero(flow.flows(arcs[:m])).tolist()
    chosen = {
        arc_request[k]: Assignment(
            requests[arc_request[k]].trip_id, arc_edge[k].driver_id, arc_edge[k].pickup_eta_s
        )
        for k in used
    }
    total = sum(arc_cost[k] for k in used)
    unmatched = [r.trip_id for i, r in enumerate(requests) if i not in chosen]
    return Solution(
        SolveStatus.OPTIMAL,
        assignments=[chosen[i] for i in sorted(chosen)],
        total_cost=total + unmatched_penalty * len(unmatched),
        unmatched=unmatched,
    )
