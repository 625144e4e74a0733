"""The batch planner: the one entry point that turns a batch of queued requests, each
with its candidates, and the drivers' stats into assignments.

Both the live dispatcher (``dispatch.dispatcher``) and the simulator
(``simulation.simulator``) call ``plan`` with the constants below, so a replay is the
service as deployed. ``explain`` says, for every candidate of every request, what the
batch decided about the trip it could have had (the member's dispatch log).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dispatch.batch import fairness, matching
from dispatch.batch.types import Assignment, Candidate, DriverStats, Policy, Request

# How many queued requests one batch considers; the rest wait for the next window.
BATCH_MAX_REQUESTS = 2000
# Candidates per request: enough for the matcher to route around a driver that a nearer
# request takes, few enough to keep the candidate graph sparse and the solve fast.
CANDIDATES_PER_REQUEST = 8


def unmatched_penalty_s(max_pickup_eta_s: float) -> int:
    """Leaving a rider unmatched this batch costs twice the longest pickup ever offered,
    so the solver prefers any allowed match to none, yet never forces a driver beyond
    the limit on a rider (such edges are not in the graph)."""
    return 2 * int(max_pickup_eta_s)


def stats_of(requests: Sequence[Request], *, now_ms: int) -> dict[str, DriverStats]:
    """What fairness reads of each candidate, as the live index stores it: whole seconds
    idle (since its last drop-off or the start of its shift), and its shift's earnings."""
    stats: dict[str, DriverStats] = {}
    for r in requests:
        for c in r.candidates:
            idle_s = 0 if c.idle_since_ms is None else max(0, (now_ms - c.idle_since_ms) // 1000)
            stats[c.driver_id] = DriverStats(idle_s=idle_s, shift_earnings_cents=c.shift_cents)
    return stats


@dataclass(frozen=True, slots=True)
class Plan:
    """A planned batch: the requests as planned (each with its nearest
    ``CANDIDATES_PER_REQUEST`` candidates) and the assignments, in request order."""

    requests: tuple[Request, ...]
    assignments: list[Assignment]
    policy: Policy
    fairness_weight: float
    stats: Mapping[str, DriverStats]
    unmatched_penalty_s: int


def plan(
    requests: Sequence[Request],
    *,
    policy: Policy,
    max_pickup_eta_s: float,
    stats: Mapping[str, DriverStats],
    fairness_weight: float,
) -> Plan:
    """Match the batch. Each request's candidates come nearest first; only the nearest
    ``CANDIDATES_PER_REQUEST`` are considered. ``greedy`` serves requests in order, each
    its nearest free candidate; ``batched`` solves the batch as one assignment, with the
    co-op's fairness weight (``greedy`` ignores it, as it always has). Raises ValueError
    for a fairness weight outside [0, 1] or an unknown policy."""
    fairness.check_weight(fairness_weight)
    planned = tuple(
        r
        if len(r.candidates) <= CANDIDATES_PER_REQUEST
        else Request(r.trip_id, r.candidates[:CANDIDATES_PER_REQUEST])
        for r in requests
    )
    penalty = unmatched_penalty_s(max_pickup_eta_s)
    if policy == "greedy":
        chosen = matching.nearest_first(planned)
    elif policy == "batched":
        chosen = matching.optimal(
            planned,
            unmatched_penalty=penalty,
            driver_stats=stats,
            fairness_weight=fairness_weight,
        )
    else:
        raise ValueError(f"policy must be greedy or batched, got {policy!r}")
    return Plan(planned, chosen, policy, fairness_weight, stats, penalty)


def nearest(ranked: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """The candidates ``plan`` considers, of a list ranked nearest first."""
    return tuple(ranked[:CANDIDATES_PER_REQUEST])


def explain(plan: Plan, *, offered: Collection[str]) -> dict[str, list[dict[str, Any]]]:
    """For each candidate driver, one decision per trip it could have had: its pickup
    ETA and fairness bonus, the outcome, and the winner's ETA and bonus when the trip
    went to someone else. ``offered``: the trips whose assignment became an offer.

    Outcomes: ``offered``; ``offer-not-made`` (assigned, but the offer could not be made:
    the driver or trip was taken meanwhile); ``matched-to-another-trip``;
    ``went-to-another-driver``; ``left-unmatched``."""
    winner = {a.trip_id: a for a in plan.assignments}
    took = {a.driver_id for a in plan.assignments}
    bonus: dict[str, int] = {}
    if plan.policy == "batched" and plan.fairness_weight > 0:
        on_edges = {c.driver_id for r in plan.requests for c in r.candidates}
        bonus = fairness.bonuses(plan.stats, plan.fairness_weight, on_edges)
    out: dict[str, list[dict[str, Any]]] = {}
    for request in plan.requests:
        won = winner.get(request.trip_id)
        for c in request.candidates:
            if won is not None and won.driver_id == c.driver_id:
                outcome = "offered" if request.trip_id in offered else "offer-not-made"
            elif c.driver_id in took:
                outcome = "matched-to-another-trip"
            elif won is not None:
                outcome = "went-to-another-driver"
            else:
                outcome = "left-unmatched"
            out.setdefault(c.driver_id, []).append(
                {
                    "trip_id": request.trip_id,
                    "pickup_eta_s": c.pickup_eta_s,
                    "fairness_bonus_s": bonus.get(c.driver_id, 0),
                    "outcome": outcome,
                    "winner_pickup_eta_s": None if won is None else won.pickup_eta_s,
                    "winner_fairness_bonus_s": (
                        None if won is None else bonus.get(won.driver_id, 0)
                    ),
                    "candidates": len(request.candidates),
                }
            )
    return out
