"""dispatch.candidates.search with the real runtime (Redis live index), in Midtown."""

from __future__ import annotations

import asyncio

import pytest

from core.clock import now_ms
from dispatch import candidates
from dispatch.runtime import Runtime
from geo import cells
from geo.eta import DEFAULT_MODEL, load_eta_model
from geo.point import LatLng, haversine_m
from tests.fixtures.geometry import between, destination
from tests.fixtures.live_index import online_at

MIDTOWN = LatLng(40.7549, -73.9840)


@pytest.fixture(autouse=True)
def straight_line_eta(runtime: Runtime) -> None:
    """These tests place drivers by geometry, so they use the straight-line model, whose
    ETA is a function of distance alone (the calibrated one also depends on cell, hour
    and direction: see test_calibrated_model_finds_every_driver_within_the_cap)."""
    runtime.eta = DEFAULT_MODEL


JFK = LatLng(40.6413, -73.7781)  # ~21 km away


async def search(
    rt: Runtime,
    pickup: LatLng,
    *,
    want: int = 10,
    max_pickup_eta_s: float | None = None,
    exclude: tuple[str, ...] = (),
    min_seen_ms: int | None = None,
) -> list[candidates.Candidate]:
    return await candidates.search(
        rt.presence,
        rt.eta,
        pickup,
        want=want,
        max_pickup_eta_s=(
            rt.settings.max_pickup_eta_s if max_pickup_eta_s is None else max_pickup_eta_s
        ),
        min_seen_ms=(
            now_ms() - int(rt.settings.driver_stale_s * 1000)
            if min_seen_ms is None
            else min_seen_ms
        ),
        exclude=exclude,
    )


# Drivers at known straight-line distances from the pickup, in scattered directions.
SPREAD = {
    "drv_050": (50, 10),
    "drv_300": (300, 200),
    "drv_700": (700, 95),
    "drv_1200": (1_200, 300),
    "drv_2000": (2_000, 160),
    "drv_3000": (3_000, 45),
}


async def place_spread(rt: Runtime, pickup: LatLng, ts: int) -> dict[str, LatLng]:
    where = {}
    for driver, (metres, bearing) in SPREAD.items():
        where[driver] = destination(pickup, metres, bearing)
        await online_at(rt, driver, where[driver], ts=ts)
    return where


async def test_nearest_first_by_eta(runtime: Runtime) -> None:
    rt = runtime
    where = await place_spread(rt, MIDTOWN, now_ms())

    found = await search(rt, MIDTOWN, want=10)

    assert [c.driver_id for c in found] == list(SPREAD)  # SPREAD is nearest first
    for c in found:
        assert c.position == where[c.driver_id]
        assert c.pickup_eta_s == rt.eta.seconds(where[c.driver_id], MIDTOWN)
    etas = [c.pickup_eta_s for c in found]
    assert etas == sorted(etas)
    assert etas[0] < etas[-1]


async def test_equal_etas_are_ordered_by_driver_id(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    for driver, bearing in (("drv_c", 0), ("drv_a", 120), ("drv_b", 240)):
        await online_at(rt, driver, destination(MIDTOWN, 390, bearing), ts=t)
    found = await search(rt, MIDTOWN)
    assert len({c.pickup_eta_s for c in found}) == 1
    assert [c.driver_id for c in found] == ["drv_a", "drv_b", "drv_c"]


async def test_exclude_is_respected(runtime: Runtime) -> None:
    rt = runtime
    await place_spread(rt, MIDTOWN, now_ms())

    found = await search(rt, MIDTOWN, want=10, exclude=("drv_050", "drv_1200"))
    assert [c.driver_id for c in found] == ["drv_300", "drv_700", "drv_2000", "drv_3000"]

    everyone = tuple(SPREAD)
    assert await search(rt, MIDTOWN, want=3, exclude=everyone) == []

    # Excluding the nearest still finds the next nearest for a single want.
    one = await search(rt, MIDTOWN, want=1, exclude=("drv_050",))
    assert one and one[0].driver_id == "drv_300"
    assert all(c.driver_id != "drv_050" for c in one)


async def test_never_returns_a_driver_beyond_max_pickup_eta(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    await place_spread(rt, MIDTOWN, t)
    # ETA = ceil(d x 1.35 / 6): 1,331 m -> 300 s (kept), 1,334 m -> 301 s (dropped).
    at_limit = destination(MIDTOWN, 1_331, 250)
    over_limit = destination(MIDTOWN, 1_334, 70)
    assert rt.eta.seconds(at_limit, MIDTOWN) == 300
    assert rt.eta.seconds(over_limit, MIDTOWN) == 301
    await online_at(rt, "drv_at_limit", at_limit, ts=t)
    await online_at(rt, "drv_over_limit", over_limit, ts=t)

    found = await search(rt, MIDTOWN, want=20, max_pickup_eta_s=300)

    assert all(c.pickup_eta_s <= 300 for c in found)
    # 1,200 m -> 270 s (kept); 2,000 m -> 450 s (dropped).
    assert [c.driver_id for c in found] == [
        "drv_050",
        "drv_300",
        "drv_700",
        "drv_1200",
        "drv_at_limit",
    ]

    for cap in (30, 120, 500, 900):
        capped = await search(rt, MIDTOWN, want=20, max_pickup_eta_s=cap)
        assert all(c.pickup_eta_s <= cap for c in capped)
        expected = {
            d
            for d, (metres, _) in SPREAD.items()
            if rt.eta.seconds(destination(MIDTOWN, metres, SPREAD[d][1]), MIDTOWN) <= cap
        }
        assert {c.driver_id for c in capped} - {"drv_at_limit", "drv_over_limit"} == expected


async def test_nobody_near_gives_an_empty_list(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    assert await search(rt, MIDTOWN) == []

    await online_at(rt, "drv_jfk", JFK, ts=t)  # far beyond the cap
    stale = t - int(rt.settings.driver_stale_s * 1000) - 1
    await online_at(rt, "drv_stale", MIDTOWN, ts=stale)
    await rt.presence.update_location(
        "drv_offline",
        lat=MIDTOWN.lat,
        lng=MIDTOWN.lng,
        ts_ms=t,
        accuracy_m=None,
        heading=None,
        speed_mps=None,
        cell=cells.cell_of(MIDTOWN, rt.presence.resolution),
        now_ms=t,
    )
    assert await search(rt, MIDTOWN, min_seen_ms=stale + 1) == []

    # The JFK driver is found from JFK, so the emptiness above is about distance.
    near_jfk = await search(rt, JFK, min_seen_ms=stale + 1)
    assert [c.driver_id for c in near_jfk] == ["drv_jfk"]


async def test_a_single_want_finds_the_nearest_driver_across_a_cell_boundary(
    runtime: Runtime,
) -> None:
    """The quote's pickup ETA and the dispatcher both rely on the first candidate being
    the nearest. A driver just across the boundary of the pickup's cell is nearer than
    one on the far side of that cell."""
    rt = runtime
    res = rt.presence.resolution
    home = cells.cell_of(MIDTOWN, res)
    neighbour = cells.ring(home, 1)[0]
    c_home, c_next = cells.center(home), cells.center(neighbour)
    pickup = between(c_home, c_next, 0.45)  # inside home, near the shared edge
    across = between(c_home, c_next, 0.55)  # just inside the neighbour
    far_side = between(c_home, c_next, -0.4)  # inside home, on the other side
    assert cells.cell_of(pickup, res) == home
    assert cells.cell_of(far_side, res) == home
    assert cells.cell_of(across, res) == neighbour
    assert haversine_m(pickup, across) < 150 < 700 < haversine_m(pickup, far_side)

    t = now_ms()
    await online_at(rt, "drv_far_side", far_side, ts=t)
    await online_at(rt, "drv_across", across, ts=t)

    found = await search(rt, pickup, want=1)
    assert found, "two available drivers are well within the cap"
    assert found[0].driver_id == "drv_across", (
        f"nearest is drv_across ({rt.eta.seconds(across, pickup)} s), search gave "
        f"{[(c.driver_id, c.pickup_eta_s) for c in found]}"
    )


async def test_every_driver_within_max_pickup_eta_is_found(runtime: Runtime) -> None:
    """search() must look far enough: with the default settings (res 8, 900 s) every
    available driver whose pickup ETA is within the cap comes back when ``want`` is not
    limiting. Drivers ring each of several pickups in the cell at just under the reach."""
    rt = runtime
    res = rt.presence.resolution
    cap = rt.settings.max_pickup_eta_s
    reach_m = rt.eta.reach_m(cap)
    home = cells.cell_of(MIDTOWN, res)
    centre = cells.center(home)
    pickups = [centre] + [destination(centre, 350, b) for b in range(0, 360, 60)]
    assert all(cells.cell_of(p, res) == home for p in pickups)

    spots = {
        f"drv_{i}_{b}": destination(pickup, reach_m * 0.995, b)
        for i, pickup in enumerate(pickups)
        for b in range(0, 360, 2)
    }
    t = now_ms()
    placed = list(spots.items())
    for i in range(0, len(placed), 100):  # well under the client's connection pool
        await asyncio.gather(*(online_at(rt, d, spot, ts=t) for d, spot in placed[i : i + 100]))

    for pickup in pickups:
        expected = {d for d, spot in spots.items() if rt.eta.seconds(spot, pickup) <= cap}
        assert len(expected) >= 180  # at least the pickup's own ring of drivers
        found = await search(rt, pickup, want=10_000)
        assert all(c.pickup_eta_s <= cap for c in found)
        missed = expected - {c.driver_id for c in found}
        assert not missed, (
            f"{len(missed)} drivers within {cap} s of the pickup were never searched, e.g. "
            + ", ".join(
                f"{d} at {haversine_m(pickup, spots[d]):.0f} m "
                f"(ETA {rt.eta.seconds(spots[d], pickup)} s)"
                for d in sorted(missed)[:3]
            )
        )
        assert {c.driver_id for c in found} == expected


async def test_calibrated_model_finds_every_driver_within_the_cap(runtime: Runtime) -> None:
    """With the calibrated model (the default), reach_m is an upper bound: every driver
    whose calibrated pickup ETA is within the cap is found, wherever it stands."""
    rt = runtime
    rt.eta = load_eta_model("calibrated")
    cap = rt.settings.max_pickup_eta_s
    reach_m = rt.eta.reach_m(cap)
    spots = {
        f"drv_{f}_{b}": destination(MIDTOWN, reach_m * f, b)
        for f in (0.2, 0.5, 0.7, 0.85, 0.95, 1.0)
        for b in range(0, 360, 15)
    }
    t = now_ms()
    placed = list(spots.items())
    for i in range(0, len(placed), 100):
        await asyncio.gather(*(online_at(rt, d, spot, ts=t) for d, spot in placed[i : i + 100]))
    expected = {d for d, spot in spots.items() if rt.eta.seconds(spot, MIDTOWN) <= cap}
    assert 24 <= len(expected) < len(spots)  # some in, some out: the test can fail
    found = await search(rt, MIDTOWN, want=10_000)
    assert {c.driver_id for c in found} == expected
    assert all(c.pickup_eta_s <= cap for c in found)
