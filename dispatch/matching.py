"""Matching requests to drivers: pure functions over candidate lists, no I/O.

``nearest_first`` is the simple policy: requests in arrival order, each takes its
nearest still-free candidate. The batched optimal policy (``dispatch.solver``) solves
the same input as one assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
