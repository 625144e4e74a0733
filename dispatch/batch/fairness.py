"""Fair work distribution: edge costs that prefer the members who have waited longest
since their last trip, or earned least this shift, when pickup ETAs are close.

For a batch, each driver on any edge gets a *deserving score* in [0, 1]: the mean of
their percentile rank by ``idle_s`` (longest idle → 1) and by ``shift_earnings_cents``
(lowest earnings → 1) among the batch's drivers. With ``weight`` w in [0, 1] (the
co-op's vote)::

    bonus_s  = round(w × score × SCALE_S)          0 ≤ bonus_s ≤ offset_s
    offset_s = round(w × SCALE_S)
    cost     = pickup_eta_s + offset_s − bonus_s   pickup_eta_s ≤ cost ≤ pickup_eta_s + offset_s

Written this way the cost is never negative and needs no clamping, so the bonus works
even for drivers a few seconds away. Every request pays the same ``offset_s`` whether
it is matched or not (the caller adds it to the unmatched penalty), so the objective is
exactly "ETA minus bonus" and fairness can reorder two drivers for the same request
only when their ETAs differ by less than ``offset_s`` ≈ w × SCALE_S. ``round`` here
rounds halves up.
The formula, its bounds and a worked example are in ``docs/dispatch-algorithm.md``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dispatch.batch.types import DriverStats, Request

# At w = 1 fairness is worth at most two minutes of pickup ETA: enough to rotate work
# among drivers around a busy corner, never enough to send a driver from across town
# when one is a few blocks away.
SCALE_S = 120
MAX_WEIGHT = 1.0


@dataclass(frozen=True, slots=True)
class FairCosts:
    # ``per_edge[i][j]`` is the cost of ``requests[i].candidates[j]``, for ``solver.solve``.
    per_edge: tuple[tuple[int, ...], ...]
    # Added to every edge's cost before the bonus; add it to the unmatched penalty too.
    offset_s: int


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _percentiles(values: Mapping[str, int]) -> dict[str, float]:
    """Mid-rank percentile in [0, 1]: the share of the others with a lower value, ties
    counting half. Equal values get equal ranks; a lone driver gets 0.5."""
    n = len(values)
    if n == 0:
        return {}
    if n == 1:
        return dict.fromkeys(values, 0.5)
    ordered = sorted(values.values())
    out: dict[str, float] = {}
    for key, v in values.items():
        below = bisect_left(ordered, v)
        equal = bisect_right(ordered, v) - below
        out[key] = (below + 0.5 * (equal - 1)) / (n - 1)
    return out


def deserving_scores(
    driver_ids: Iterable[str], driver_stats: Mapping[str, DriverStats]
) -> dict[str, float]:
    """Each driver's score in [0, 1]: the mean of their idle-time percentile (longest
    idle → 1) and their low-earnings percentile (least earned → 1) among ``driver_ids``
    that have stats. A driver without stats scores 0 and is left out of the ranking."""
    ids = set(driver_ids)
    known = {d: driver_stats[d] for d in ids if d in driver_stats}
    idle = _percentiles({d: s.idle_s for d, s in known.items()})
    low_earnings = _percentiles({d: -s.shift_earnings_cents for d, s in known.items()})
    return {d: (idle[d] + low_earnings[d]) / 2 if d in known else 0.0 for d in ids}


def bonuses(
    driver_stats: Mapping[str, DriverStats],
    weight: float,
    driver_ids: Iterable[str] | None = None,
) -> dict[str, int]:
    """Each driver's fairness bonus in seconds, ``round(w × score × SCALE_S)``, ranked
    among ``driver_ids`` (default: every driver in ``driver_stats``)."""
    check_weight(weight)
    ids = driver_stats.keys() if driver_ids is None else driver_ids
    scores = deserving_scores(ids, driver_stats)
    return {d: _round_half_up(weight * score * SCALE_S) for d, score in scores.items()}


def check_weight(weight: float) -> None:
    if not (math.isfinite(weight) and 0.0 <= weight <= MAX_WEIGHT):
        raise ValueError(f"fairness weight must be in [0, {MAX_WEIGHT}], got {weight!r}")


def edge_costs(
    requests: Sequence[Request],
    driver_stats: Mapping[str, DriverStats],
    weight: float,
) -> FairCosts:
    """Integer edge costs for ``solver.solve``: pickup ETA plus ``offset_s`` minus the
    driver's fairness bonus. ``weight`` = 0 gives exactly the pickup ETAs. Raises
    ValueError for a weight outside [0, MAX_WEIGHT] (a configuration error)."""
    check_weight(weight)
    offset_s = _round_half_up(weight * SCALE_S)
    if offset_s == 0:
        return FairCosts(tuple(tuple(e.pickup_eta_s for e in r.candidates) for r in requests), 0)
    bonus_s = bonuses(driver_stats, weight, (e.driver_id for r in requests for e in r.candidates))
    per_edge = tuple(
        tuple(e.pickup_eta_s + offset_s - bonus_s[e.driver_id] for e in r.candidates)
        for r in requests
    )
    return FairCosts(per_edge, offset_s)
