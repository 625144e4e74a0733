"""The two matching policies, pure functions over a batch's requests.

``nearest_first`` is the simple policy: requests in arrival order, each takes its
nearest still-free candidate. ``optimal`` is the batched policy: the same input solved
as one assignment (``dispatch.batch.solver``), optionally with fairness-adjusted costs
(``dispatch.batch.fairness``). See ``docs/dispatch-algorithm.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dispatch.batch import fairness, solver
from dispatch.batch.types import Assignment, DriverStats, Request


def nearest_first(requests: Sequence[Request]) -> list[Assignment]:
    """Greedy in request order. Never gives a driver two trips."""
    taken: set[str] = set()
    chosen: list[Assignment] = []
    for request in requests:
        for c in sorted(request.candidates, key=lambda c: (c.pickup_eta_s, c.driver_id)):
            if c.driver_id not in taken:
                taken.add(c.driver_id)
                chosen.append(Assignment(request.trip_id, c.driver_id, c.pickup_eta_s))
                break
    return chosen


def optimal(
    requests: Sequence[Request],
    *,
    unmatched_penalty: int,
    driver_stats: Mapping[str, DriverStats] | None = None,
    fairness_weight: float = 0.0,
) -> list[Assignment]:
    """The batch as one assignment (``dispatch.batch.solver``): the lowest total cost,
    where an edge costs its pickup ETA adjusted for fairness (when ``driver_stats`` are
    given and ``fairness_weight`` > 0) and every request left unmatched costs
    ``unmatched_penalty`` seconds. Never gives a driver two trips nor a trip two
    drivers, and never an edge whose pickup ETA exceeds the penalty. Assignments come
    out in request order.

    Should the solver not return an optimum (invalid input, solver fault), falls back to
    ``nearest_first`` so the batch is still dispatched; call ``solver.solve`` directly to
    see the status. Raises ValueError for a fairness weight outside [0, 1].
    """
    fairness.check_weight(fairness_weight)
    if driver_stats is None or fairness_weight == 0.0:
        solution = solver.solve(requests, unmatched_penalty=unmatched_penalty)
    else:
        # The fairness bonus may bring an edge's cost under the penalty; the rider's
        # guarantee is about the real ETA, so such edges go first.
        within = [
            Request(
                r.trip_id,
                tuple(c for c in r.candidates if c.pickup_eta_s <= unmatched_penalty),
            )
            for r in requests
        ]
        fair = fairness.edge_costs(within, driver_stats, fairness_weight)
        solution = solver.solve(
            within, unmatched_penalty=unmatched_penalty + fair.offset_s, costs=fair.per_edge
        )
    if solution.status is not solver.SolveStatus.OPTIMAL:
        return nearest_first(requests)
    return solution.assignments
