"""dispatch.batch.fairness: bounded fairness costs, and how the solver uses them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.batch.fairness import (
    SCALE_S,
    FairCosts,
    deserving_scores,
    edge_costs,
)
from dispatch.batch.matching import optimal
from dispatch.batch.solver import solve
from dispatch.batch.types import Assignment, Candidate, DriverStats, Request

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)
DRIVERS = [f"drv_{i}" for i in range(6)]

weights = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
stats = st.builds(
    DriverStats,
    idle_s=st.integers(0, 4 * 3600),
    shift_earnings_cents=st.integers(0, 40_000),
)
stats_maps = st.dictionaries(st.sampled_from(DRIVERS), stats)


@st.composite
def batches(draw: st.DrawFn, max_requests: int = 6) -> list[Request]:
    n = draw(st.integers(0, max_requests))
    return [
        Request(
            f"trp_{i}",
            tuple(
                Candidate(draw(st.sampled_from(DRIVERS)), draw(st.integers(0, 900)))
                for _ in range(draw(st.integers(0, 4)))
            ),
        )
        for i in range(n)
    ]


def total_eta_with_penalty(assignments: list[Assignment], n: int, penalty: int) -> int:
    return sum(a.pickup_eta_s for a in assignments) + penalty * (n - len(assignments))


@PROPERTY_SETTINGS
@given(requests=batches(), driver_stats=stats_maps)
def test_weight_zero_is_pure_eta(
    requests: list[Request], driver_stats: dict[str, DriverStats]
) -> None:
    fair = edge_costs(requests, driver_stats, 0.0)
    assert fair == FairCosts(
        tuple(tuple(e.pickup_eta_s for e in r.candidates) for r in requests), 0
    )
    pure = optimal(requests, unmatched_penalty=900)
    assert optimal(requests, unmatched_penalty=900, driver_stats=driver_stats) == pure
    assert (
        optimal(requests, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=0.0)
        == pure
    )


@PROPERTY_SETTINGS
@given(requests=batches(), driver_stats=stats_maps, weight=weights)
def test_costs_are_integers_bounded_by_eta_and_eta_plus_offset(
    requests: list[Request], driver_stats: dict[str, DriverStats], weight: float
) -> None:
    fair = edge_costs(requests, driver_stats, weight)
    assert fair.offset_s == math.floor(weight * SCALE_S + 0.5) <= SCALE_S
    for r, row in zip(requests, fair.per_edge, strict=True):
        assert len(row) == len(r.candidates)
        for e, cost in zip(r.candidates, row, strict=True):
            assert isinstance(cost, int)
            assert e.pickup_eta_s <= cost <= e.pickup_eta_s + fair.offset_s


@PROPERTY_SETTINGS
@given(driver_stats=stats_maps)
def test_scores_are_in_unit_interval_and_missing_stats_score_zero(
    driver_stats: dict[str, DriverStats],
) -> None:
    scores = deserving_scores(DRIVERS, driver_stats)
    assert set(scores) == set(DRIVERS)
    for d, s in scores.items():
        assert 0.0 <= s <= 1.0
        if d not in driver_stats:
            assert s == 0.0


@PROPERTY_SETTINGS
@given(driver_stats=stats_maps, a=stats, b=stats)
def test_more_idle_and_less_earned_never_scores_lower(
    driver_stats: dict[str, DriverStats], a: DriverStats, b: DriverStats
) -> None:
    more = DriverStats(max(a.idle_s, b.idle_s), min(a.shift_earnings_cents, b.shift_earnings_cents))
    less = DriverStats(min(a.idle_s, b.idle_s), max(a.shift_earnings_cents, b.shift_earnings_cents))
    everyone = {**driver_stats, "more": more, "less": less}
    scores = deserving_scores(everyone, everyone)
    assert scores["more"] >= scores["less"]


@pytest.mark.parametrize("weight", [0.05, 0.3, 1.0])
def test_equal_etas_the_longer_idle_driver_wins(weight: float) -> None:
    requests = [Request("t", (Candidate("fresh", 240), Candidate("waiting", 240)))]
    driver_stats = {
        "fresh": DriverStats(idle_s=60, shift_earnings_cents=5_000),
        "waiting": DriverStats(idle_s=2_400, shift_earnings_cents=5_000),
    }
    got = optimal(
        requests, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=weight
    )
    assert got == [Assignment("t", "waiting", 240)]


@pytest.mark.parametrize("weight", [0.05, 0.3, 1.0])
def test_equal_etas_the_lower_earning_driver_wins(weight: float) -> None:
    # Listed second, and with the later driver id, so no tie-break could explain it.
    requests = [Request("t", (Candidate("a_earned_more", 240), Candidate("z_earned_less", 240)))]
    driver_stats = {
        "a_earned_more": DriverStats(idle_s=600, shift_earnings_cents=21_000),
        "z_earned_less": DriverStats(idle_s=600, shift_earnings_cents=3_500),
    }
    got = optimal(
        requests, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=weight
    )
    assert got == [Assignment("t", "z_earned_less", 240)]


def test_close_etas_fairness_decides_and_the_ten_minute_driver_never_beats_the_two_minute_one() -> (
    None
):
    driver_stats = {
        "near_busy": DriverStats(idle_s=30, shift_earnings_cents=30_000),
        "close_idle": DriverStats(idle_s=3_000, shift_earnings_cents=0),
        "far_idle": DriverStats(idle_s=3_000, shift_earnings_cents=0),
    }
    close = [Request("t", (Candidate("near_busy", 120), Candidate("close_idle", 180)))]
    assert optimal(close, unmatched_penalty=900) == [Assignment("t", "near_busy", 120)]
    assert optimal(
        close, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=1.0
    ) == [Assignment("t", "close_idle", 180)]
    far = [Request("t", (Candidate("near_busy", 120), Candidate("far_idle", 600)))]
    assert optimal(far, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=1.0) == [
        Assignment("t", "near_busy", 120)
    ]


@PROPERTY_SETTINGS
@given(
    near_eta=st.integers(0, 900),
    gap=st.integers(0, 900),
    near=stats,
    far=stats,
    others=stats_maps,
    weight=weights,
)
def test_a_driver_more_than_w_times_scale_farther_never_wins(
    near_eta: int,
    gap: int,
    near: DriverStats,
    far: DriverStats,
    others: dict[str, DriverStats],
    weight: float,
) -> None:
    far_eta = near_eta + gap
    requests = [Request("t", (Candidate("near", near_eta), Candidate("far", far_eta)))]
    driver_stats = {**others, "near": near, "far": far}
    got = optimal(
        requests, unmatched_penalty=2_000, driver_stats=driver_stats, fairness_weight=weight
    )
    assert len(got) == 1
    if far_eta - near_eta > math.floor(weight * SCALE_S + 0.5):
        assert got[0].driver_id == "near"


@PROPERTY_SETTINGS
@given(requests=batches(), driver_stats=stats_maps, weight=weights)
def test_fairness_costs_at_most_offset_seconds_per_matched_trip(
    requests: list[Request], driver_stats: dict[str, DriverStats], weight: float
) -> None:
    """The batch's ETA (plus penalties) under fairness exceeds the pure-ETA optimum by
    at most offset_s per matched trip, and fairness never sends a driver whose ETA is
    above the penalty."""
    penalty = 600
    fair = optimal(
        requests, unmatched_penalty=penalty, driver_stats=driver_stats, fairness_weight=weight
    )
    pure = solve(requests, unmatched_penalty=penalty)
    assert pure.total_cost is not None
    offset_s = edge_costs(requests, driver_stats, weight).offset_s
    assert total_eta_with_penalty(fair, len(requests), penalty) <= (
        pure.total_cost + offset_s * len(fair)
    )
    assert all(a.pickup_eta_s <= penalty for a in fair)


def test_fairness_never_changes_whether_a_lone_rider_is_served() -> None:
    driver_stats = {
        "busy": DriverStats(idle_s=0, shift_earnings_cents=40_000),
        "idle": DriverStats(idle_s=5_000, shift_earnings_cents=0),
    }
    lone = [Request("t1", (Candidate("busy", 900),)), Request("t2", (Candidate("idle", 901),))]
    got = optimal(lone, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=1.0)
    assert got == [Assignment("t1", "busy", 900)]


def test_worked_example_from_the_docs() -> None:
    driver_stats = {
        "amara": DriverStats(idle_s=1_800, shift_earnings_cents=4_000),
        "bo": DriverStats(idle_s=300, shift_earnings_cents=9_000),
        "chen": DriverStats(idle_s=900, shift_earnings_cents=15_000),
    }
    requests = [
        Request("t", (Candidate("amara", 300), Candidate("bo", 240), Candidate("chen", 230)))
    ]
    assert deserving_scores(driver_stats, driver_stats) == {"amara": 1.0, "bo": 0.25, "chen": 0.25}
    fair = edge_costs(requests, driver_stats, 0.5)
    assert fair == FairCosts(per_edge=((300, 285, 275),), offset_s=60)
    got = optimal(requests, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=0.5)
    assert got == [Assignment("t", "chen", 230)]
    got = optimal(requests, unmatched_penalty=900, driver_stats=driver_stats, fairness_weight=1.0)
    assert got == [Assignment("t", "amara", 300)]


@pytest.mark.parametrize("weight", [-0.1, 1.01, float("nan"), float("inf")])
def test_a_weight_outside_zero_to_one_is_refused(weight: float) -> None:
    with pytest.raises(ValueError):
        edge_costs([], {}, weight)
    with pytest.raises(ValueError):
        optimal([], unmatched_penalty=900, driver_stats={}, fairness_weight=weight)
