"""Matching requests to drivers: pure functions over candidate lists, no I/O.

``nearest_first`` is the simple policy: requests in arrival order, each takes its
nearest still-free candidate. ``optimal`` is the batched policy: the same input solved
as one assignment (``dispatch.solver``), optionally with fairness-adjusted costs
(``dispatch.fairness``). See ``docs/dispatch-algorithm.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatch.fairness import DriverStats


@dataclass(frozen=True, slots=True)
class Edge:
    driver_id: str
    pickup_eta_s: int


@dataclass(frozen=True, slots=True)
class Request:
    trip_id: str
    edges: tuple[Edge, ...]


@dataclass(frozen=True, slots=True)
class Assignment:
    trip_id: str
    driver_id: str
    pickup_eta_s: int


def nearest_first(requests: Sequence[Request]) -> list[Assignment]:
    """Greedy in request order. Never gives a driver two trips."""
    taken: set[str] = set()
    chosen: list[Assignment] = []
    for request in requests:
        for edge in sorted(request.edges, key=lambda e: (e.pickup_eta_s, e.driver_id)):
            if edge.driver_id not in taken:
                taken.add(edge.driver_id)
                chosen.append(Assignment(request.trip_id, edge.driver_id, edge.pickup_eta_s))
                break
    return chosen


def optimal(
    requests: Sequence[Request],
    *,
    unmatched_penalty: int,
    driver_stats: Mapping[str, DriverStats] | None = None,
    fairness_weight: float = 0.0,
) -> list[Assignment]:
    """The batch as one assignment (``dispatch.solver``): the lowest total cost, where an
    edge costs its pickup ETA adjusted for fairness (``dispatch.fairness``, when
    ``driver_stats`` are given and ``fairness_weight`` > 0) and every request left
    unmatched costs ``unmatched_penalty`` seconds. Never gives a driver two trips nor a
    trip two drivers, and never an edge whose pickup ETA exceeds the penalty.
    Assignments come out in request order.

    Should the solver not return an optimum (invalid input, solver fault), falls back to
    ``nearest_first`` so the batch is still dispatched; call ``solver.solve`` directly to
    see the status. Raises ValueError for a fairness weight outside [0, 1].
    """
    # solver and fairness are built on this module's types, so they import it; importing
    # them here, not at the top, keeps that a one-way street at import time.
    from dispatch import fairness, solver

    fairness.check_weight(fairness_weight)
    if driver_stats is None or fairness_weight == 0.0:
        solution = solver.solve(requests, unmatched_penalty=unmatched_penalty)
    else:
        # The fairness bonus may bring an edge's cost under the penalty; the rider's
        # guarantee is about the real ETA, so such edges go first.
        within = [
            Request(r.trip_id, tuple(e for e in r.edges if e.pickup_eta_s <= unmatched_penalty))
            for r in requests
        ]
        fair = fairness.edge_costs(within, driver_stats, fairness_weight)
        solution = solver.solve(
            within, unmatched_penalty=unmatched_penalty + fair.offset_s, costs=fair.per_edge
        )
    if solution.status is not solver.SolveStatus.OPTIMAL:
        return nearest_first(requests)
    return solution.assignments
