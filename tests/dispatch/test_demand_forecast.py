"""dispatch.demand_forecast: the forecast per cell and hour of the week, the expected wait
and the ranking of where to wait. Pure: no service is needed."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from dispatch import demand_forecast as df
from geo import cells
from geo.eta import DEFAULT_MODEL
from geo.point import LatLng

MIDTOWN = LatLng(40.7549, -73.9840)
HERE = cells.cell_of(MIDTOWN, df.RESOLUTION)


def cells_at_ring(k: int) -> list[str]:
    return cells.ring(HERE, k)


def test_hour_of_week_is_new_york_time() -> None:
    # Wednesday 2014-04-30 22:30 UTC is 18:30 in New York (EDT): 2 × 24 + 18.
    assert df.hour_of_week(datetime(2014, 4, 30, 22, 30, tzinfo=UTC)) == 66
    # Monday 00:10 in New York is 04:10 UTC.
    assert df.hour_of_week(datetime(2014, 4, 28, 4, 10, tzinfo=UTC)) == 0


def test_rates_are_means_over_the_weeks_observed() -> None:
    rates = df.build_rates([(66, "a", 1.0)] * 12 + [(66, "b", 2.0), (67, "a", 1.0)], weeks=4)
    assert rates == {66: {"a": 3.0, "b": 0.5}, 67: {"a": 0.25}}


@pytest.mark.parametrize("bad", [-1, 168])
def test_hours_outside_the_week_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        df.build_rates([(bad, "a", 1.0)], weeks=1)


def test_a_forecast_needs_a_week() -> None:
    with pytest.raises(ValueError, match="at least one week"):
        df.build_rates([], weeks=0)


def test_expected_wait_is_the_queue_ahead_over_the_rate() -> None:
    # 3 idle drivers ahead, 12 requests an hour: the 4th request, 20 minutes away.
    assert df.expected_wait_s(12.0, 3) == pytest.approx(1200.0)
    assert df.expected_wait_s(0.0, 0) == math.inf


def test_an_empty_busy_cell_beats_a_crowded_one_and_staying_is_no_drive() -> None:
    # Two of the driver's neighbours, on opposite sides: each other's reach misses them.
    quiet, busy = cells_at_ring(1)[0], cells_at_ring(1)[3]
    rates = {quiet: 30.0, busy: 30.0}
    idle = {busy: 5}
    advice = df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates=rates, idle=idle, limit=df.MAX_LIMIT)
    by_cell = {a.cell: a for a in advice}
    # Here: both in reach, 60 an hour, 5 drivers ahead: the 6th request, 6 minutes away.
    assert by_cell[HERE].drive_s == 0
    assert (by_cell[HERE].requests_per_hour, by_cell[HERE].idle_drivers) == (60.0, 5)
    assert by_cell[HERE].expected_wait_s == 360
    # The quiet cell: 30 an hour and nobody waiting, 2 minutes; the busy one, 12.
    assert (by_cell[quiet].expected_wait_s, by_cell[quiet].idle_drivers) == (120, 0)
    assert (by_cell[busy].expected_wait_s, by_cell[busy].idle_drivers) == (720, 5)
    assert by_cell[quiet].score_s < by_cell[busy].score_s
    scores = [a.score_s for a in advice]
    assert scores == sorted(scores) and advice[0].score_s <= by_cell[quiet].score_s
    assert all(a.score_s == a.drive_s + a.expected_wait_s for a in advice)


def test_the_advised_driver_is_not_its_own_competition() -> None:
    rates = {HERE: 6.0}
    alone = df.advise(
        MIDTOWN, eta=DEFAULT_MODEL, rates=rates, idle={HERE: 1}, exclude_self_from=HERE
    )
    counted = df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates=rates, idle={HERE: 1})
    assert [a.idle_drivers for a in alone if a.cell == HERE] == [0]
    assert [a.idle_drivers for a in counted if a.cell == HERE] == [1]


def test_cells_without_demand_or_too_far_are_left_out() -> None:
    far = cells.ring(HERE, 12)[0]  # ~10 km: far beyond a few minutes' drive
    advice = df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates={far: 100.0}, idle={}, limit=20)
    assert advice == []
    near = cells_at_ring(1)[0]
    advice = df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates={near: 1.0}, idle={}, limit=20)
    # Only cells whose reach (itself and its ring) holds ``near``.
    assert advice
    assert {a.cell for a in advice} <= {c for ring in cells.disk_by_ring(near, 1) for c in ring}
    assert all(a.drive_s <= df.MAX_DRIVE_S for a in advice)


def test_ranking_is_deterministic_and_limited() -> None:
    rates = {c: 10.0 for c in cells_at_ring(2)}
    first = df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates=rates, idle={}, limit=3)
    again = df.advise(
        MIDTOWN, eta=DEFAULT_MODEL, rates=dict(reversed(rates.items())), idle={}, limit=3
    )
    assert len(first) == 3 and first == again
    assert df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates=rates, idle={}, limit=0) == []


def test_the_wire_shape() -> None:
    [best] = df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates={HERE: 60.0}, idle={}, limit=1)
    wire = best.wire()
    assert set(wire) == {
        "cell",
        "lat",
        "lng",
        "drive_s",
        "expected_wait_s",
        "score_s",
        "requests_per_hour",
        "idle_drivers",
    }
    assert wire["cell"] == HERE and wire["requests_per_hour"] == 60.0
    assert wire["expected_wait_s"] == 60


def test_a_stranded_driver_is_shown_cells_further_out() -> None:
    out_there = cells.ring(HERE, 5)[0]  # ~4 km: beyond a few minutes, within 20
    far = df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates={out_there: 10.0}, idle={}, limit=20)
    assert far and all(df.MAX_DRIVE_S < a.drive_s <= df.FAR_DRIVE_S for a in far)
    # With demand nearby too, only the nearby cells are listed.
    near = cells_at_ring(1)[0]
    both = df.advise(
        MIDTOWN, eta=DEFAULT_MODEL, rates={out_there: 10.0, near: 1.0}, idle={}, limit=20
    )
    assert both and all(a.drive_s <= df.MAX_DRIVE_S for a in both)
    assert (
        df.advise(MIDTOWN, eta=DEFAULT_MODEL, rates={out_there: 10.0}, idle={}, far_drive_s=0) == []
    )
