"""simulation.guidance: idle drivers move to where demand will be, with a forecast built
only from demand before the replay's window; deterministic for a seed.

Pure and fast: demand files are written to ``tmp_path``; no service is needed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dispatch import demand_forecast
from geo import cells
from geo.eta import DEFAULT_MODEL
from geo.point import LatLng
from simulation import simulator
from simulation.demand import DEMAND_TZ, METRES_PER_DEGREE_LAT, build_requests, read_demand
from simulation.guidance import Guidance, history_rates
from simulation.simulator import SimConfig, simulate
from simulation.street import Street
from tests.fixtures.demand import check_conservation, write_csv

ROOT = Path(__file__).resolve().parents[2]
# The replay: Wednesday 2014-04-30 18:00-19:00, New York time.
START = datetime(2014, 4, 30, 18, 0, tzinfo=DEMAND_TZ)
HOME = LatLng(40.7549, -73.9840)  # where the drivers are
RES = 8


def east(p: LatLng, metres: float) -> LatLng:
    return LatLng(p.lat, p.lng + metres / (METRES_PER_DEGREE_LAT * math.cos(math.radians(p.lat))))


# Two spots a few minutes' drive from HOME, on opposite sides.
WEST_SPOT = east(HOME, -1600)
EAST_SPOT = east(HOME, 1600)


def around(cell: str) -> set[str]:
    """The cell and its ring: a cell whose reach holds ``cell``."""
    return {c for ring in cells.disk_by_ring(cell, 1) for c in ring}


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def rows_at(
    spot: LatLng, first: datetime, n: int, every_s: float
) -> list[tuple[str, LatLng, LatLng | None]]:
    """``n`` pickups at ``spot`` from ``first``, one every ``every_s``, each a short trip
    that ends back at the spot (so the driver is free there again)."""
    return [
        (stamp(first + timedelta(seconds=k * every_s)), spot, east(spot, 300)) for k in range(n)
    ]


def history(spot: LatLng) -> list[tuple[str, LatLng, LatLng | None]]:
    """The same hour of the four previous Wednesdays: 20 pickups each, at ``spot``."""
    out: list[tuple[str, LatLng, LatLng | None]] = []
    for weeks in (4, 3, 2, 1):
        out += rows_at(spot, START - timedelta(weeks=weeks), 20, 150)
    return out


def config(**changes: object) -> SimConfig:
    # A short pickup limit: a driver at HOME cannot be offered a pickup at a spot; only
    # a driver who went there can.
    base = SimConfig(policy="greedy", max_pickup_eta_s=120, shift_end_s=3600.0)
    return replace(base, **changes)  # type: ignore[arg-type]


def replay(path: Path, drivers: int, *, guided: bool, compliance: float = 1.0, seed: int = 7):
    rows = read_demand(path, start=START, end=START + timedelta(hours=1))
    requests = build_requests(rows, seed=seed)
    starts = [east(HOME, 10 * k) for k in range(drivers)]
    cfg = config(seed=seed)
    if guided:
        rates, weeks = history_rates(path, before=START, resolution=RES)
        cfg = replace(cfg, guidance=Guidance(rates, START, compliance=compliance, weeks=weeks))
    return simulate(requests, starts, cfg)


@pytest.fixture
def demand_file(tmp_path: Path) -> Path:
    """History at the west spot; the window's riders there too, from 18:10."""
    rows = history(WEST_SPOT) + rows_at(WEST_SPOT, START + timedelta(minutes=10), 20, 120)
    return write_csv(tmp_path / "demand.csv", rows)


def test_guided_drivers_go_where_riders_will_be(demand_file: Path) -> None:
    without = replay(demand_file, 3, guided=False)
    guided = replay(demand_file, 3, guided=True)
    assert without.kpis.matched == 0  # stranded at HOME, out of pickup reach
    assert guided.kpis.matched >= 15
    assert guided.kpis.requests == without.kpis.requests == 20


def test_compliance_zero_is_no_guidance(demand_file: Path) -> None:
    assert replay(demand_file, 3, guided=True, compliance=0.0).kpis == (
        replay(demand_file, 3, guided=False).kpis
    )


def test_guidance_is_deterministic_for_a_seed(demand_file: Path) -> None:
    a = replay(demand_file, 4, guided=True, compliance=0.5)
    b = replay(demand_file, 4, guided=True, compliance=0.5)
    assert a.kpis == b.kpis and a.trips == b.trips and a.drivers == b.drivers


def test_the_forecast_never_reads_the_window_or_after(tmp_path: Path) -> None:
    """Two files with the same past: in one, the window and the days after it are busy
    at the *east* spot. Advice built with that future would send drivers east; the
    replay's forecast is the same for both files, and sends them west."""
    past = history(WEST_SPOT)
    future = rows_at(EAST_SPOT, START, 40, 60) + rows_at(
        EAST_SPOT, START + timedelta(weeks=1), 40, 60
    )
    plain = write_csv(tmp_path / "plain.csv", past)
    busy_future = write_csv(tmp_path / "future.csv", past + future)

    rates_plain, weeks_plain = history_rates(plain, before=START, resolution=RES)
    rates_future, weeks_future = history_rates(busy_future, before=START, resolution=RES)
    assert (rates_plain, weeks_plain) == (rates_future, weeks_future)
    assert weeks_plain == 4

    how = demand_forecast.hour_of_week(START)
    west, east_cell = cells.cell_of(WEST_SPOT, RES), cells.cell_of(EAST_SPOT, RES)
    assert rates_plain[how] == {west: 20.0}  # 20 in that hour of each of four weeks

    def best(rates: dict[str, float]) -> str:
        [top] = demand_forecast.advise(HOME, eta=DEFAULT_MODEL, rates=rates, idle={}, limit=1)
        return top.cell

    # A forecast that had peeked (the window's hour of the future weeks) would differ.
    peeked = history_rates(busy_future, before=START + timedelta(weeks=2), resolution=RES)[0]
    assert best(peeked[how]) in around(east_cell)
    assert best(rates_plain[how]) in around(west)


def test_followers_are_the_compliant_share() -> None:
    g = Guidance({}, START, compliance=0.25)
    assert len(g.followers(100, seed=1)) == 25
    assert g.followers(100, seed=1) == g.followers(100, seed=1)
    assert g.followers(100, seed=1) != g.followers(100, seed=2)
    with pytest.raises(ValueError, match="compliance"):
        Guidance({}, START, compliance=1.5)


def test_rates_follow_the_hour_of_the_simulated_clock() -> None:
    g = Guidance({66: {"a": 1.0}, 67: {"b": 2.0}}, START)  # Wednesday 18:00 is hour 66
    assert g.rates_at(0.0) == {"a": 1.0}
    assert g.rates_at(3599.0) == {"a": 1.0}
    assert g.rates_at(3600.0) == {"b": 2.0}
    assert g.rates_at(7200.0) == {}


def cli(demand: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "simulate",
            "--demand",
            str(demand),
            "--drivers",
            "3",
            "--policy",
            "greedy",
            "--start",
            "2014-04-30 18:00",
            "--end",
            "2014-04-30 19:00",
            "--max-pickup-eta-s",
            "120",
            "--json",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_takes_guidance(demand_file: Path) -> None:
    guided = cli(demand_file, "--guidance", "--guidance-compliance", "1")
    assert guided.returncode == 0, guided.stderr
    out = json.loads(guided.stdout)
    assert out["scenario"]["guidance"] is True and out["scenario"]["guidance_compliance"] == 1.0
    assert "forecast from the 4 week(s) before the window" in guided.stderr
    plain = json.loads(cli(demand_file).stdout)
    assert plain["scenario"]["guidance"] is False
    assert plain["scenario"]["guidance_compliance"] is None


@pytest.mark.parametrize("share", ["1.5", "-0.1"])
def test_the_cli_refuses_a_compliance_outside_0_1(demand_file: Path, share: str) -> None:
    bad = cli(demand_file, "--guidance", "--guidance-compliance", share)
    assert bad.returncode == 2 and "--guidance-compliance must be in [0, 1]" in bad.stderr
    assert bad.stdout == ""


class _Checked(simulator._Simulation):
    """The replay, checking before every dispatch tick the bookkeeping that shifts and
    guidance share, and counting what makes the check worth something."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.checks = 0
        self.off_while_moving = 0
        self.off_while_idle = 0
        self.routes: dict[int, tuple[LatLng, LatLng, float, float]] = {}

    def _on_logoff(self, now: float, k: int) -> None:
        if self.state[k] is simulator._DriverState.AVAILABLE:
            self.off_while_idle += 1
            self.off_while_moving += k in self.route
        super()._on_logoff(now, k)

    def _tick(self, now: float) -> None:
        available = {k for k, s in enumerate(self.state) if s is simulator._DriverState.AVAILABLE}
        # The index holds the available drivers, each in the cell it is in now.
        assert {k for ks in self.index.values() for k in ks} == available
        for c, ks in self.index.items():
            assert ks and all(self.cell[k] == c for k in ks)
        # Only available drivers count as waiting (where they are or are heading),
        # move, or have a look at the map or a move step pending.
        assert {k for k, c in enumerate(self.effective) if c is not None} == available
        assert self.waiting == Counter(c for c in self.effective if c is not None)
        assert set(self.route) <= available
        guidance_kinds = (simulator._Event.GUIDE, simulator._Event.MOVE)
        pending = {
            a
            for _, kind, _, a, b in self.events
            if kind in guidance_kinds and b == self.guide_gen[a]
        }
        assert pending <= available
        self.routes.update(self.route)
        self.checks += 1
        super()._tick(now)


def test_shifts_and_guidance_keep_one_bookkeeping(tmp_path: Path) -> None:
    """Drivers with shifts, all following the advice, on a street that makes every leg
    exp(0.5) times its estimate: before every tick the live index, the guidance's
    counts and its pending looks hold the available drivers only (a driver logged off,
    even mid-move, is advised no more), and each move lasts its estimate on the street."""
    rng = np.random.default_rng(3)
    n_window, n_drivers = 60, 60

    def scattered(first: datetime, n: int) -> list[tuple[str, LatLng, LatLng | None]]:
        """``n`` short trips around the west spot over two hours from ``first``."""
        seconds = np.sort(rng.uniform(0, 7200, size=n))
        pickups = [east(WEST_SPOT, m) for m in rng.uniform(-300, 300, size=n).tolist()]
        return [
            (stamp(first + timedelta(seconds=float(s))), p, east(p, 400))
            for s, p in zip(seconds, pickups, strict=True)
        ]

    rows = [r for weeks in (4, 3, 2, 1) for r in scattered(START - timedelta(weeks=weeks), 60)]
    path = write_csv(tmp_path / "demand.csv", rows + scattered(START, n_window))
    window = read_demand(path, start=START, end=START + timedelta(hours=2))
    requests = build_requests(window, seed=5)
    starts = [east(HOME, 100 * k) for k in range(n_drivers)]
    rates, weeks = history_rates(path, before=START, resolution=RES)
    factor = math.exp(0.5)
    cfg = config(
        shift_end_s=7200.0,
        max_pickup_eta_s=600,
        shifts=True,
        street=Street.from_residuals(np.array([100.0]), np.array([0.5])),
        guidance=Guidance(rates, START, weeks=weeks),
        seed=5,
    )
    sim = _Checked(requests, starts, cfg)
    result = sim.run()
    check_conservation(result, cfg)
    assert sim.checks > 100 and sim.off_while_idle > 0 and sim.off_while_moving > 0
    assert result.kpis.matched > 50
    assert len(sim.routes) > 5
    for origin, target, _, seconds in sim.routes.values():
        estimate = max(1, DEFAULT_MODEL.seconds(origin, target))
        assert seconds == max(1, math.ceil(estimate * factor))
    # Logged off for good: not idle anywhere, not moving, no look at the map pending.
    off = [k for k in range(n_drivers) if sim.offline_at[k] is not None]
    assert off and all(sim.effective[k] is None and k not in sim.route for k in off)
