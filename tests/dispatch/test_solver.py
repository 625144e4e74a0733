"""dispatch.batch.solver: one batch as a min-cost assignment, against brute force and greedy."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from dispatch.batch.matching import nearest_first, optimal
from dispatch.batch.solver import MAX_COST, Solution, SolveStatus, solve
from dispatch.batch.types import Assignment, Candidate, Request

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def instances(
    draw: st.DrawFn, *, max_requests: int = 10, max_drivers: int = 10, max_eta: int = 900
) -> tuple[list[Request], list[list[int]], int]:
    """Requests over a small driver pool (duplicate edges allowed), a cost per edge
    (independent of the ETA, as fairness makes it), and a penalty."""
    drivers = [f"drv_{i}" for i in range(draw(st.integers(1, max_drivers)))]
    n = draw(st.integers(0, max_requests))
    requests = []
    costs = []
    for i in range(n):
        k = draw(st.integers(0, min(6, 2 * len(drivers))))
        edges = tuple(
            Candidate(draw(st.sampled_from(drivers)), draw(st.integers(0, max_eta)))
            for _ in range(k)
        )
        requests.append(Request(f"trp_{i}", edges))
        costs.append([draw(st.integers(0, max_eta)) for _ in range(k)])
    penalty = draw(st.integers(0, max_eta + 100))
    return requests, costs, penalty


def eta_costs(requests: Sequence[Request]) -> list[list[int]]:
    return [[e.pickup_eta_s for e in r.candidates] for r in requests]


def check_valid(
    requests: Sequence[Request], costs: list[list[int]], penalty: int, sol: Solution
) -> None:
    """A driver at most once, a trip at most once, only existing edges, every trip
    either assigned or unmatched, and total_cost adds up."""
    assert sol.status is SolveStatus.OPTIMAL
    assert all(n == 1 for n in Counter(a.driver_id for a in sol.assignments).values())
    assert all(n == 1 for n in Counter(a.trip_id for a in sol.assignments).values())
    order = [r.trip_id for r in requests]
    assigned = [a.trip_id for a in sol.assignments]
    assert sorted(assigned + sol.unmatched, key=order.index) == order
    assert assigned == [t for t in order if t in set(assigned)]
    by_trip = {r.trip_id: (r, costs[i]) for i, r in enumerate(requests)}
    total = penalty * len(sol.unmatched)
    for a in sol.assignments:
        request, row = by_trip[a.trip_id]
        options = [
            row[j]
            for j, e in enumerate(request.candidates)
            if e == Candidate(a.driver_id, a.pickup_eta_s) and row[j] <= penalty
        ]
        assert options, f"{a} is not an edge of {a.trip_id} within the penalty"
        total += min(options)
    assert sol.total_cost == total


def brute_force(
    requests: Sequence[Request], costs: list[list[int]], penalty: int
) -> tuple[int, int]:
    """(lowest total cost, most matches among the solutions with that cost), by trying
    every way to give each request one free candidate or none."""
    best = (10**18, 0)

    def go(i: int, taken: frozenset[str], cost: int, matched: int) -> None:
        nonlocal best
        if i == len(requests):
            best = min(best, (cost, -matched))
            return
        go(i + 1, taken, cost + penalty, matched)
        for j, e in enumerate(requests[i].candidates):
            if e.driver_id not in taken:
                go(i + 1, taken | {e.driver_id}, cost + costs[i][j], matched + 1)

    go(0, frozenset(), 0, 0)
    return best[0], -best[1]


@PROPERTY_SETTINGS
@given(instance=instances())
def test_never_a_driver_twice_nor_a_trip_twice_and_only_existing_edges(
    instance: tuple[list[Request], list[list[int]], int],
) -> None:
    requests, costs, penalty = instance
    check_valid(requests, costs, penalty, solve(requests, unmatched_penalty=penalty, costs=costs))
    etas = eta_costs(requests)
    check_valid(requests, etas, penalty, solve(requests, unmatched_penalty=penalty))


@PROPERTY_SETTINGS
@given(instance=instances())
def test_never_worse_than_greedy_in_request_order(
    instance: tuple[list[Request], list[list[int]], int],
) -> None:
    requests, _, penalty = instance
    greedy = nearest_first(requests)
    greedy_total = sum(a.pickup_eta_s for a in greedy) + penalty * (len(requests) - len(greedy))
    sol = solve(requests, unmatched_penalty=penalty)
    assert sol.total_cost is not None
    assert sol.total_cost <= greedy_total


@PROPERTY_SETTINGS
@given(instance=instances(max_requests=6, max_drivers=6))
def test_equals_brute_force_optimum_on_small_instances(
    instance: tuple[list[Request], list[list[int]], int],
) -> None:
    requests, costs, penalty = instance
    sol = solve(requests, unmatched_penalty=penalty, costs=costs)
    best_cost, most_matched = brute_force(requests, costs, penalty)
    assert sol.total_cost == best_cost
    # Ties go to matching more riders.
    assert len(sol.assignments) == most_matched


@PROPERTY_SETTINGS
@given(instance=instances(max_requests=6, max_drivers=6, max_eta=30))
def test_equals_brute_force_with_many_ties(
    instance: tuple[list[Request], list[list[int]], int],
) -> None:
    requests, costs, penalty = instance
    sol = solve(requests, unmatched_penalty=penalty, costs=costs)
    assert (sol.total_cost, len(sol.assignments)) == brute_force(requests, costs, penalty)


def test_equals_the_dense_optimum_on_larger_random_instances() -> None:
    """300 requests × 300 drivers, 8 candidates each, against scipy on the dense matrix
    (non-candidates at a cost above the penalty, one dummy column per request)."""
    rng = random.Random(7)
    for _ in range(3):
        n, d, penalty = 300, 300, 600
        requests = [
            Request(
                f"trp_{i}",
                tuple(Candidate(f"drv_{k}", rng.randint(0, 900)) for k in rng.sample(range(d), 8)),
            )
            for i in range(n)
        ]
        big = 10 * penalty
        dense = np.full((n, d + n), big, dtype=np.int64)
        dense[:, d:] = penalty
        for i, r in enumerate(requests):
            for e in r.candidates:
                k = int(e.driver_id.removeprefix("drv_"))
                dense[i, k] = min(dense[i, k], e.pickup_eta_s)
        rows, cols = linear_sum_assignment(dense)
        sol = solve(requests, unmatched_penalty=penalty)
        assert sol.total_cost == int(dense[rows, cols].sum())


def test_a_better_batch_than_greedy() -> None:
    requests = [
        Request("t1", (Candidate("a", 10), Candidate("b", 20))),
        Request("t2", (Candidate("a", 11),)),
    ]
    assert nearest_first(requests) == [Assignment("t1", "a", 10)]
    sol = solve(requests, unmatched_penalty=900)
    assert sol == Solution(
        SolveStatus.OPTIMAL,
        assignments=[Assignment("t1", "b", 20), Assignment("t2", "a", 11)],
        total_cost=31,
        unmatched=[],
    )
    assert optimal(requests, unmatched_penalty=900) == sol.assignments


def test_a_candidate_costing_more_than_the_penalty_is_never_forced() -> None:
    requests = [Request("far", (Candidate("a", 901),)), Request("near", (Candidate("b", 100),))]
    sol = solve(requests, unmatched_penalty=900)
    assert sol.assignments == [Assignment("near", "b", 100)]
    assert sol.unmatched == ["far"]
    assert sol.total_cost == 1000
    assert optimal(requests, unmatched_penalty=900) == [Assignment("near", "b", 100)]


def test_a_candidate_costing_exactly_the_penalty_is_matched() -> None:
    sol = solve([Request("t", (Candidate("a", 900),))], unmatched_penalty=900)
    assert sol.assignments == [Assignment("t", "a", 900)]
    assert sol.total_cost == 900


def test_leaves_a_rider_unmatched_when_the_chain_costs_more_than_the_penalty() -> None:
    # Serving both would cost 100 + 800; serving t1 with a and leaving t2 costs 0 + 500.
    requests = [
        Request("t1", (Candidate("a", 0), Candidate("b", 100))),
        Request("t2", (Candidate("a", 800),)),
    ]
    sol = solve(requests, unmatched_penalty=500)
    assert sol.assignments == [Assignment("t1", "a", 0)]
    assert sol.unmatched == ["t2"]
    assert sol.total_cost == 500


def test_duplicate_edges_and_requests_without_candidates() -> None:
    requests = [
        Request("t1", (Candidate("a", 50), Candidate("a", 30))),
        Request("t2", ()),
        Request("t3", (Candidate("a", 10),)),
    ]
    sol = solve(requests, unmatched_penalty=100)
    assert sol.assignments == [Assignment("t3", "a", 10)]
    assert sol.unmatched == ["t1", "t2"]
    assert sol.total_cost == 210


def test_empty_input() -> None:
    assert solve([], unmatched_penalty=900) == Solution(SolveStatus.OPTIMAL, [], 0, [])
    assert optimal([], unmatched_penalty=900) == []


def test_uses_the_given_costs_not_the_etas() -> None:
    requests = [Request("t", (Candidate("a", 60), Candidate("b", 90)))]
    sol = solve(requests, unmatched_penalty=900, costs=[[100, 40]])
    assert sol.assignments == [Assignment("t", "b", 90)]
    assert sol.total_cost == 40


def test_bad_input_is_a_status_not_an_exception() -> None:
    one = [Request("t", (Candidate("a", 60),))]
    cases: list[tuple[list[Request], int, object]] = [
        (one, -1, None),
        (one, MAX_COST + 1, None),
        (one, 900, [[-5]]),
        (one, 900, [[1.5]]),
        (one, 900, [[True]]),
        (one, 900, [[1, 2]]),
        (one, 900, []),
        ([Request("t", ()), Request("t", ())], 900, None),
        ([Request("t", (Candidate("a", MAX_COST + 1),))], 900, None),
    ]
    for requests, penalty, costs in cases:
        sol = solve(requests, unmatched_penalty=penalty, costs=costs)  # type: ignore[arg-type]
        assert sol.status is SolveStatus.INVALID_INPUT, (penalty, costs)
        assert sol.assignments == []
        assert sol.total_cost is None
        assert sol.unmatched == [r.trip_id for r in requests]
        assert sol.detail


def test_optimal_falls_back_to_greedy_when_the_solver_refuses() -> None:
    requests = [Request("t", (Candidate("a", 60),))]
    assert optimal(requests, unmatched_penalty=-1) == nearest_first(requests)
