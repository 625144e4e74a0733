"""The batch planner: what turns a batch of queued requests, each with its candidates,
and the drivers' stats into assignments.

Both the live dispatcher (``dispatch.dispatcher``) and the simulator
(``simulation.simulator``) call ``plan`` and ``second_pass`` with the constants below, so
a replay is the service as deployed. A batch runs in two passes:

1. ``plan``: every request that can still be answered in time (not ``will_expire``),
   with its nearest ``CANDIDATES_PER_REQUEST`` candidates, matched by the policy.
2. ``second_pass``: the requests the first pass left unmatched with a full candidate
   list (``Plan.retry``: their nearest drivers all went to other riders) are searched
   again by the caller, for their nearest ``SECOND_PASS_CANDIDATES`` drivers not matched
   in the first pass, and matched by the same policy among those.

``explain`` says, for every candidate of every request, what the batch decided about
the trip it could have had (the member's dispatch log).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dispatch.batch import fairness, matching
from dispatch.batch.types import POLICIES, Assignment, Candidate, DriverStats, Policy, Request

# How many queued requests one batch considers; the rest wait for the next window.
BATCH_MAX_REQUESTS = 2000
# Candidates per request: enough for the matcher to route around a driver that a nearer
# request takes, few enough to keep the candidate graph sparse and the solve fast.
CANDIDATES_PER_REQUEST = 8
# Candidates per request in the second pass. Only the riders whose 8 nearest all went to
# others get there (~10% of a batch at 1:1 supply, almost none at 1:2), and the drivers
# still free are few and mostly far away: 64 finds nearly all of those within reach
# (benchmarks/bench_solver.py, 2,000 × 2,000: 64 serve 1,947 riders where every free
# driver serves 1,949 and 32 serve 1,930) for a search and a solve of a few tens of ms.
SECOND_PASS_CANDIDATES = 64


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


def will_expire(request: Request, *, offer_timeout_s: float, batch_s: float) -> bool:
    """Whether ``request`` expires before an offer made now could be answered: it has
    less than the driver's time to answer (``offer_timeout_s``) plus one batch window
    (``batch_s``: offers go out at the end of the batch that planned them) left. Such a
    request gets no offer: the driver would give up other riders for an offer that is
    withdrawn under them. It stays queued and expires as any unmatched request does."""
    return request.expires_in_s is not None and request.expires_in_s < offer_timeout_s + batch_s


@dataclass(frozen=True, slots=True)
class Plan:
    """A planned batch: the requests as the first pass planned them (each with its
    nearest ``CANDIDATES_PER_REQUEST`` candidates), those the second pass searched again
    (``wider``, each with its candidates not matched in the first pass), and the
    assignments of both passes, in request order."""

    requests: tuple[Request, ...]
    assignments: list[Assignment]
    policy: Policy
    fairness_weight: float
    stats: Mapping[str, DriverStats]
    unmatched_penalty_s: int
    max_pickup_eta_s: float
    # Requests that would expire before an offer could be answered: not planned.
    skipped: tuple[str, ...] = ()
    wider: tuple[Request, ...] = ()

    @property
    def retry(self) -> tuple[str, ...]:
        """The requests the second pass should search again: left unmatched by the first
        pass although their candidate list was full. One with fewer candidates already
        had every available driver within reach; its drivers all went to other riders."""
        if self.wider:
            return ()  # the second pass has run
        matched = {a.trip_id for a in self.assignments}
        return tuple(
            r.trip_id
            for r in self.requests
            if r.trip_id not in matched and len(r.candidates) >= CANDIDATES_PER_REQUEST
        )


def _match(
    requests: Sequence[Request],
    *,
    policy: Policy,
    penalty: int,
    stats: Mapping[str, DriverStats],
    fairness_weight: float,
) -> list[Assignment]:
    if policy == "greedy":
        return matching.nearest_first(requests)
    return matching.optimal(
        requests, unmatched_penalty=penalty, driver_stats=stats, fairness_weight=fairness_weight
    )


def plan(
    requests: Sequence[Request],
    *,
    policy: Policy,
    max_pickup_eta_s: float,
    stats: Mapping[str, DriverStats],
    fairness_weight: float,
    offer_timeout_s: float,
    batch_s: float,
) -> Plan:
    """The batch's first pass. Requests that ``will_expire`` before an offer could be
    answered are skipped (``Plan.skipped``), under either policy. The others' candidates
    come nearest first; only the nearest ``CANDIDATES_PER_REQUEST`` within
    ``max_pickup_eta_s`` are considered.
    ``greedy`` serves requests in order, each its nearest free candidate; ``batched``
    solves the batch as one assignment, with the co-op's fairness weight (``greedy``
    ignores it, as it always has). Raises ValueError for a fairness weight outside
    [0, 1] or an unknown policy."""
    fairness.check_weight(fairness_weight)
    if policy not in POLICIES:
        raise ValueError(f"policy must be greedy or batched, got {policy!r}")
    skipped = tuple(
        r.trip_id
        for r in requests
        if will_expire(r, offer_timeout_s=offer_timeout_s, batch_s=batch_s)
    )
    gone = set(skipped)
    planned = tuple(
        replace(r, candidates=nearest(_within(r.candidates, max_pickup_eta_s)))
        for r in requests
        if r.trip_id not in gone
    )
    penalty = unmatched_penalty_s(max_pickup_eta_s)
    chosen = _match(
        planned, policy=policy, penalty=penalty, stats=stats, fairness_weight=fairness_weight
    )
    return Plan(
        planned,
        chosen,
        policy,
        fairness_weight,
        stats,
        penalty,
        max_pickup_eta_s=max_pickup_eta_s,
        skipped=skipped,
    )


def _within(ranked: Sequence[Candidate], max_pickup_eta_s: float) -> tuple[Candidate, ...]:
    """The search never returns a driver beyond the maximum pickup ETA; the planner does
    not rely on it: the limit is the rider's guarantee, under either policy."""
    return tuple(c for c in ranked if c.pickup_eta_s <= max_pickup_eta_s)


def second_pass(first: Plan, wider: Sequence[Request], *, stats: Mapping[str, DriverStats]) -> Plan:
    """The batch's second pass: ``wider`` holds the requests of ``first.retry`` searched
    again, nearest first (any of them may be missing: not searched, or nothing found).
    Each keeps its nearest ``SECOND_PASS_CANDIDATES`` candidates within the maximum
    pickup ETA that the first pass did not match (the caller's search should already
    leave those out, so that the count is of drivers still free), and they are matched
    by the first pass's policy and weight, with ``stats`` for the new candidates. Every
    assignment adds a rider at a pickup ETA within the maximum, below the unmatched
    penalty: the second pass never makes the batch's objective worse. Raises ValueError
    for a request not in ``first.retry``."""
    retry = set(first.retry)
    if stray := [r.trip_id for r in wider if r.trip_id not in retry]:
        raise ValueError(f"not left for the second pass: {', '.join(stray)}")
    taken = {a.driver_id for a in first.assignments}
    again = tuple(
        replace(r, candidates=free[:SECOND_PASS_CANDIDATES])
        for r in wider
        if (
            free := tuple(
                c for c in _within(r.candidates, first.max_pickup_eta_s) if c.driver_id not in taken
            )
        )
    )
    if not again:
        return first
    merged = {**first.stats, **stats}
    chosen = _match(
        again,
        policy=first.policy,
        penalty=first.unmatched_penalty_s,
        stats=merged,
        fairness_weight=first.fairness_weight,
    )
    order = {r.trip_id: i for i, r in enumerate(first.requests)}
    both = sorted([*first.assignments, *chosen], key=lambda a: order[a.trip_id])
    return replace(first, assignments=both, stats=merged, wider=again)


def nearest(ranked: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """The candidates ``plan`` considers, of a list ranked nearest first."""
    return tuple(ranked[:CANDIDATES_PER_REQUEST])


def explain(plan: Plan, *, offered: Collection[str]) -> dict[str, list[dict[str, Any]]]:
    """For each candidate driver, one decision per trip it could have had: its pickup
    ETA and fairness bonus, the outcome, and the winner's ETA and bonus when the trip
    went to someone else. ``offered``: the trips whose assignment became an offer. A
    trip searched again by the second pass is explained once per pass, each with that
    pass's candidates and bonuses (ranked among that pass's drivers, as it solved).

    Outcomes: ``offered``; ``offer-not-made`` (assigned, but the offer could not be made:
    the driver or trip was taken meanwhile); ``matched-to-another-trip``;
    ``went-to-another-driver``; ``left-unmatched``."""
    winner = {a.trip_id: a for a in plan.assignments}
    took = {a.driver_id for a in plan.assignments}
    bonuses = [_bonuses(plan, requests) for requests in (plan.requests, plan.wider)]
    # A trip searched again was left unmatched by the first pass: its winner, if any, won
    # in the second, with the second pass's bonus.
    won_later = {r.trip_id for r in plan.wider}
    out: dict[str, list[dict[str, Any]]] = {}
    for requests, bonus in zip((plan.requests, plan.wider), bonuses, strict=True):
        for request in requests:
            won = winner.get(request.trip_id)
            winner_bonus = bonuses[request.trip_id in won_later]
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
                            None if won is None else winner_bonus.get(won.driver_id, 0)
                        ),
                        "candidates": len(request.candidates),
                    }
                )
    return out


def _bonuses(plan: Plan, requests: Sequence[Request]) -> dict[str, int]:
    """The fairness bonuses one pass solved with: ranked among its drivers."""
    if plan.policy != "batched" or plan.fairness_weight == 0:
        return {}
    on_edges = {c.driver_id for r in requests for c in r.candidates}
    return fairness.bonuses(plan.stats, plan.fairness_weight, on_edges)
