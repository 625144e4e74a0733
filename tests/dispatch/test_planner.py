"""dispatch.batch.planner: the expiry skip, the second pass, and what the dispatch log
says about a batch planned in two passes. Pure; the dispatcher's use of them, against
real Redis and PostgreSQL, is in test_dispatcher.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.batch import planner
from dispatch.batch.planner import CANDIDATES_PER_REQUEST, SECOND_PASS_CANDIDATES, Plan
from dispatch.batch.types import POLICIES, Assignment, Candidate, DriverStats, Policy, Request

MAX_ETA_S = 900
OFFER_TIMEOUT_S = 15.0
BATCH_S = 2.0
ANSWER_S = OFFER_TIMEOUT_S + BATCH_S


def first_pass(
    requests: Sequence[Request],
    policy: Policy,
    *,
    stats: dict[str, DriverStats] | None = None,
    weight: float = 0.0,
) -> Plan:
    return planner.plan(
        requests,
        policy=policy,
        max_pickup_eta_s=MAX_ETA_S,
        stats=stats or {},
        fairness_weight=weight,
        offer_timeout_s=OFFER_TIMEOUT_S,
        batch_s=BATCH_S,
    )


def ranked(*pairs: tuple[str, int]) -> tuple[Candidate, ...]:
    return tuple(
        sorted((Candidate(d, s) for d, s in pairs), key=lambda c: (c.pickup_eta_s, c.driver_id))
    )


def objective(plan: Plan) -> int:
    """The bench's objective over the planned requests: total pickup ETA plus the
    unmatched penalty for every one left without a driver."""
    eta = sum(a.pickup_eta_s for a in plan.assignments)
    return eta + plan.unmatched_penalty_s * (len(plan.requests) - len(plan.assignments))


# -- the expiry skip ---------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_a_request_about_to_expire_gets_no_offer_and_a_fresh_one_does(policy: Policy) -> None:
    """Both want the one driver; the older request would expire before the driver could
    answer, so it is skipped, whichever policy, and the fresh one gets the driver."""
    near = ranked(("drv_a", 30))
    expiring = Request("trp_old", near, expires_in_s=ANSWER_S - 0.5)
    fresh = Request("trp_new", ranked(("drv_a", 200)), expires_in_s=280.0)
    plan = first_pass([expiring, fresh], policy)
    assert plan.skipped == ("trp_old",)
    assert plan.assignments == [Assignment("trp_new", "drv_a", 200)]
    assert [r.trip_id for r in plan.requests] == ["trp_new"]
    # Without the skip the old request, first in line and nearer, would have the driver.
    assert planner.plan(
        [expiring, fresh],
        policy=policy,
        max_pickup_eta_s=MAX_ETA_S,
        stats={},
        fairness_weight=0.0,
        offer_timeout_s=0.0,
        batch_s=0.0,
    ).assignments == [Assignment("trp_old", "drv_a", 30)]


@pytest.mark.parametrize(
    ("expires_in_s", "skipped"),
    [(None, False), (ANSWER_S, False), (ANSWER_S - 0.001, True), (0.0, True), (-3.0, True)],
)
def test_the_skip_is_time_left_below_the_answer_time_plus_a_batch(
    expires_in_s: float | None, skipped: bool
) -> None:
    request = Request("trp_1", ranked(("drv_a", 30)), expires_in_s=expires_in_s)
    assert planner.will_expire(request, offer_timeout_s=OFFER_TIMEOUT_S, batch_s=BATCH_S) is skipped
    plan = first_pass([request], "batched")
    assert (plan.skipped == ("trp_1",)) is skipped
    assert (plan.assignments == []) is skipped


# -- the second pass ---------------------------------------------------------------


def crowded(n_requests: int) -> list[Request]:
    """``n_requests`` riders around one corner whose ``CANDIDATES_PER_REQUEST`` nearest are
    the same eight drivers: eight are matched, the rest are left with full lists."""
    eight = ranked(*((f"drv_{k}", 10 * (k + 1)) for k in range(CANDIDATES_PER_REQUEST)))
    return [Request(f"trp_{i}", eight) for i in range(n_requests)]


@pytest.mark.parametrize("policy", POLICIES)
def test_riders_whose_nearest_all_went_to_others_are_served_by_the_second_pass(
    policy: Policy,
) -> None:
    requests = crowded(10)
    first = first_pass(requests, policy)
    assert len(first.assignments) == CANDIDATES_PER_REQUEST
    left = first.retry
    assert len(left) == 2
    taken = {a.driver_id for a in first.assignments}
    # The wider search for each still sees the matched drivers (a caller that cannot
    # leave them out), then two free ones farther away.
    wider = [
        Request(t, ranked(*((d, 5) for d in taken), ("drv_far1", 400), ("drv_far2", 500)))
        for t in left
    ]
    both = planner.second_pass(first, wider, stats={})
    assert set(first.assignments) <= set(both.assignments)
    later = {a.trip_id: a for a in both.assignments if a.trip_id in left}
    assert {a.driver_id for a in later.values()} == {"drv_far1", "drv_far2"}
    assert objective(both) == objective(first) - 2 * first.unmatched_penalty_s + 900
    # Assignments stay in request order, and the matched drivers were left out.
    order = [r.trip_id for r in requests]
    assert [a.trip_id for a in both.assignments] == sorted(
        (a.trip_id for a in both.assignments), key=order.index
    )
    assert all(not taken & {c.driver_id for c in r.candidates} for r in both.wider)
    assert both.retry == ()


def test_a_short_list_means_every_driver_in_reach_was_seen_so_no_second_search() -> None:
    short = ranked(("drv_a", 10), ("drv_b", 20))
    first = first_pass(
        [Request("trp_1", short), Request("trp_2", short), Request("trp_3", short)], "batched"
    )
    assert len(first.assignments) == 2
    assert first.retry == ()


def test_the_second_pass_takes_only_what_the_first_left() -> None:
    first = first_pass(crowded(9), "batched")
    [left] = first.retry
    matched = first.assignments[0].trip_id
    with pytest.raises(ValueError, match=matched):
        planner.second_pass(first, [Request(matched, ranked(("drv_x", 10)))], stats={})
    # Nothing found: the first pass stands.
    assert planner.second_pass(first, [Request(left, ())], stats={}) == first
    assert planner.second_pass(first, [], stats={}) == first


def test_the_second_pass_keeps_its_nearest_within_the_maximum() -> None:
    first = first_pass(crowded(9), "batched")
    [left] = first.retry
    many = ranked(
        ("drv_beyond", MAX_ETA_S + 1),
        *((f"drv_w{k:03d}", 100 + k) for k in range(SECOND_PASS_CANDIDATES + 5)),
    )
    both = planner.second_pass(first, [Request(left, many)], stats={})
    [wide] = both.wider
    assert len(wide.candidates) == SECOND_PASS_CANDIDATES
    assert wide.candidates[-1].pickup_eta_s == 100 + SECOND_PASS_CANDIDATES - 1
    assert "drv_beyond" not in {c.driver_id for c in wide.candidates}
    assert Assignment(left, "drv_w000", 100) in both.assignments


def test_the_dispatch_log_explains_both_passes() -> None:
    """The rider left by the first pass: its eight first-pass candidates went to other
    trips; in the second pass one far driver got it and another did not."""
    first = first_pass(crowded(9), "batched", weight=0.0)
    [left] = first.retry
    wider = [Request(left, ranked(("drv_far1", 400), ("drv_far2", 500)))]
    both = planner.second_pass(first, wider, stats={})
    log = planner.explain(both, offered={a.trip_id for a in both.assignments})
    about = {d: [e for e in entries if e["trip_id"] == left] for d, entries in log.items()}
    for k in range(CANDIDATES_PER_REQUEST):
        [entry] = about[f"drv_{k}"]
        assert entry["outcome"] == "matched-to-another-trip"
        assert entry["winner_pickup_eta_s"] == 400 and entry["candidates"] == 8
    [won] = about["drv_far1"]
    [lost] = about["drv_far2"]
    assert won["outcome"] == "offered" and won["candidates"] == 2
    assert lost["outcome"] == "went-to-another-driver" and lost["winner_pickup_eta_s"] == 400


def test_the_second_pass_ranks_fairness_among_its_own_drivers() -> None:
    """Two free drivers 10 s apart for the left rider; the farther one has waited far
    longer and earned less, so at w = 1 it wins, and the log shows the bonus it won with."""
    stats = {f"drv_{k}": DriverStats(idle_s=60, shift_earnings_cents=5_000) for k in range(8)}
    first = first_pass(crowded(9), "batched", stats=stats, weight=1.0)
    [left] = first.retry
    wider = [Request(left, ranked(("drv_near", 300), ("drv_idle", 310)))]
    later = {
        "drv_near": DriverStats(idle_s=10, shift_earnings_cents=20_000),
        "drv_idle": DriverStats(idle_s=3_000, shift_earnings_cents=0),
    }
    both = planner.second_pass(first, wider, stats=later)
    assert Assignment(left, "drv_idle", 310) in both.assignments
    log = planner.explain(both, offered=set())
    [near] = log["drv_near"]
    assert near["outcome"] == "went-to-another-driver"
    assert (near["fairness_bonus_s"], near["winner_fairness_bonus_s"]) == (0, 120)


# -- properties --------------------------------------------------------------------

# The first pass's candidates come from a pool of two more drivers than a full list,
# so requests compete and many are left with full lists; a wider search reaches the
# whole pool.
DRIVERS = [f"drv_{k:02d}" for k in range(24)]
NEAR = DRIVERS[: CANDIDATES_PER_REQUEST + 2]


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Request], dict[str, list[Candidate]]]:
    """A batch on a small pool of drivers, ETAs that may exceed the maximum, some
    requests about to expire, and for each request what a wider search would find
    (drivers the first pass matches included)."""

    def edges(pool: list[str], size: int, beyond_s: int) -> tuple[Candidate, ...]:
        chosen = draw(st.permutations(pool))[:size]
        eta = st.integers(0, MAX_ETA_S + beyond_s)
        etas = draw(st.lists(eta, min_size=len(chosen), max_size=len(chosen)))
        return ranked(*zip(chosen, etas, strict=True))

    n = draw(st.integers(0, 20))
    # Mostly full lists, so that many requests are left to the second pass.
    sizes = st.sampled_from([0, 3] + [CANDIDATES_PER_REQUEST, CANDIDATES_PER_REQUEST + 2] * 3)
    requests = [
        Request(
            f"trp_{i:02d}",
            edges(NEAR, draw(sizes), 1),
            draw(st.one_of(st.none(), st.floats(-5.0, 300.0))),
        )
        for i in range(n)
    ]
    wider = {r.trip_id: list(edges(DRIVERS, draw(st.integers(0, 24)), 600)) for r in requests}
    return requests, wider


def two_passes(
    requests: list[Request], wider: dict[str, list[Candidate]], policy: Policy, weight: float
) -> tuple[Plan, Plan]:
    stats = {
        d: DriverStats(idle_s=37 * k % 900, shift_earnings_cents=53 * k % 10_000)
        for k, d in enumerate(DRIVERS)
    }
    first = first_pass(requests, policy, stats=stats, weight=weight)
    again = [Request(t, tuple(wider[t])) for t in first.retry]
    return first, planner.second_pass(first, again, stats=stats)


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
policies = st.sampled_from(POLICIES)
weights = st.sampled_from([0.0, 0.5, 1.0])


@PROPERTY_SETTINGS
@given(batch=batches(), policy=policies, weight=weights)
def test_never_a_driver_twice_nor_a_trip_twice(
    batch: tuple[list[Request], dict[str, list[Candidate]]], policy: Policy, weight: float
) -> None:
    _, both = two_passes(*batch, policy, weight)
    assert all(n == 1 for n in Counter(a.driver_id for a in both.assignments).values())
    assert all(n == 1 for n in Counter(a.trip_id for a in both.assignments).values())


@PROPERTY_SETTINGS
@given(batch=batches(), policy=policies, weight=weights)
def test_every_assignment_is_a_real_edge_within_the_maximum_and_answerable_in_time(
    batch: tuple[list[Request], dict[str, list[Candidate]]], policy: Policy, weight: float
) -> None:
    requests, wider = batch
    _, both = two_passes(requests, wider, policy, weight)
    by_trip = {r.trip_id: r for r in requests}
    for a in both.assignments:
        assert a.pickup_eta_s <= MAX_ETA_S
        edge = Candidate(a.driver_id, a.pickup_eta_s)
        assert edge in by_trip[a.trip_id].candidates or edge in wider[a.trip_id]
        assert not planner.will_expire(
            by_trip[a.trip_id], offer_timeout_s=OFFER_TIMEOUT_S, batch_s=BATCH_S
        )
    assert set(both.skipped) == {
        r.trip_id
        for r in requests
        if planner.will_expire(r, offer_timeout_s=OFFER_TIMEOUT_S, batch_s=BATCH_S)
    }


@PROPERTY_SETTINGS
@given(batch=batches(), policy=policies, weight=weights)
def test_the_second_pass_keeps_the_first_and_never_makes_the_objective_worse(
    batch: tuple[list[Request], dict[str, list[Candidate]]], policy: Policy, weight: float
) -> None:
    first, both = two_passes(*batch, policy, weight)
    assert objective(both) <= objective(first)
    assert set(first.assignments) <= set(both.assignments)
    later = [a for a in both.assignments if a not in first.assignments]
    assert {a.trip_id for a in later} <= set(first.retry)
    assert len(both.assignments) - len(first.assignments) == len(later)
