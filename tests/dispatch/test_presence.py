"""dispatch.presence.Presence against real Redis (each test has its own key prefix)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from core.clock import now_ms
from dispatch.presence import LocationResult, RiderForward
from dispatch.runtime import Runtime
from geo import cells
from geo.point import LatLng, haversine_m
from tests.fixtures.live_index import (
    MIDTOWN,
    STALE_MS,
    available_cells_holding,
    cells_holding,
    home_cell,
    locate,
    online_at,
    point_in_ring,
    presence,
    res,
    search_index,
    seen_score,
)

# -- location frames -------------------------------------------------------------------


async def test_location_frame_is_stored_and_online_driver_is_in_its_cell(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    assert await presence(rt).set_status("drv_a", "available", now_ms=t - 5) == "available"
    result = await presence(rt).update_location(
        "drv_a",
        lat=MIDTOWN.lat,
        lng=MIDTOWN.lng,
        ts_ms=t - 100,
        accuracy_m=8.5,
        heading=270.0,
        speed_mps=4.25,
        cell=home_cell(rt),
        now_ms=t,
    )
    assert result == LocationResult(True, "available", None, None)

    h = await rt.redis.hgetall(rt.keys.driver("drv_a"))
    assert float(h["lat"]) == MIDTOWN.lat
    assert float(h["lng"]) == MIDTOWN.lng
    assert int(h["ts"]) == t - 100
    assert int(h["seen"]) == t
    assert float(h["acc"]) == 8.5
    assert float(h["hdg"]) == 270.0
    assert float(h["spd"]) == 4.25
    assert h["cell"] == home_cell(rt)
    assert h["status"] == "available"

    cell_key = rt.keys.cell(res(rt), home_cell(rt))
    assert await rt.redis.zscore(cell_key, "drv_a") == t
    assert await seen_score(rt, "drv_a") == t
    assert await cells_holding(rt, "drv_a") == {home_cell(rt)}

    state = await presence(rt).state("drv_a")
    assert (state.lat, state.lng, state.ts_ms, state.seen_ms) == (
        MIDTOWN.lat,
        MIDTOWN.lng,
        t - 100,
        t,
    )
    assert state.cell == home_cell(rt)
    assert state.status == "available"
    assert state.heading == 270.0 and state.speed_mps == 4.25
    assert state.trip_id is None


async def test_missing_optional_fields_are_stored_empty(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    result = await presence(rt).update_location(
        "drv_a",
        lat=MIDTOWN.lat,
        lng=MIDTOWN.lng,
        ts_ms=t,
        accuracy_m=None,
        heading=None,
        speed_mps=None,
        cell=home_cell(rt),
        now_ms=t,
    )
    assert result.accepted
    state = await presence(rt).state("drv_a")
    assert state.heading is None and state.speed_mps is None
    assert state.lat == MIDTOWN.lat


async def test_older_and_duplicate_timestamps_are_refused_and_do_not_move_the_driver(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    a, b = MIDTOWN, point_in_ring(rt, 2)
    cell_a, cell_b = cells.cell_of(a, res(rt)), cells.cell_of(b, res(rt))
    assert cell_a != cell_b
    await online_at(rt, "drv_a", a, ts=t)

    older = await locate(rt, "drv_a", b, ts=t - 1, now=t + 10)
    assert not older.accepted
    assert older.last_ts_ms == t
    duplicate = await locate(rt, "drv_a", b, ts=t, now=t + 20)
    assert not duplicate.accepted
    assert duplicate.last_ts_ms == t

    state = await presence(rt).state("drv_a")
    assert (state.lat, state.lng, state.cell, state.ts_ms, state.seen_ms) == (
        a.lat,
        a.lng,
        cell_a,
        t,
        t,
    )
    assert await cells_holding(rt, "drv_a") == {cell_a}
    assert await seen_score(rt, "drv_a") == t

    newer = await locate(rt, "drv_a", b, ts=t + 1)
    assert newer.accepted
    assert await cells_holding(rt, "drv_a") == {cell_b}


async def test_crossing_a_cell_boundary_moves_the_driver_between_cell_sets(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    route = [
        MIDTOWN,
        point_in_ring(rt, 1, 0),
        point_in_ring(rt, 1, 3),
        point_in_ring(rt, 2, 5),
        MIDTOWN,
    ]
    await online_at(rt, "drv_a", route[0], ts=t)
    assert await cells_holding(rt, "drv_a") == {cells.cell_of(route[0], res(rt))}
    for i, point in enumerate(route[1:], start=1):
        result = await locate(rt, "drv_a", point, ts=t + i * 1000)
        assert result.accepted
        expected = cells.cell_of(point, res(rt))
        assert await cells_holding(rt, "drv_a") == {expected}
        assert (await presence(rt).state("drv_a")).cell == expected
        assert await seen_score(rt, "drv_a") == t + i * 1000


async def test_offline_driver_stores_position_but_is_in_no_cell(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    # Never online: the first frame finds no status and keeps the driver offline.
    first = await locate(rt, "drv_new", MIDTOWN, ts=t)
    assert first.accepted and first.status == "offline"
    assert await cells_holding(rt, "drv_new") == set()
    assert await seen_score(rt, "drv_new") is None

    # Explicitly offline, moving across cells.
    assert await presence(rt).set_status("drv_off", "offline", now_ms=t) == "offline"
    for i, point in enumerate([MIDTOWN, point_in_ring(rt, 1), point_in_ring(rt, 2)]):
        result = await locate(rt, "drv_off", point, ts=t + i)
        assert result.accepted and result.status == "offline"
        state = await presence(rt).state("drv_off")
        assert (state.lat, state.lng) == (point.lat, point.lng)
        assert state.cell == cells.cell_of(point, res(rt))
        assert state.status == "offline"
        assert await cells_holding(rt, "drv_off") == set()
        assert await seen_score(rt, "drv_off") is None


async def test_set_status_online_and_offline(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    point = point_in_ring(rt, 1)
    cell = cells.cell_of(point, res(rt))
    await locate(rt, "drv_a", point, ts=t - 60_000)  # offline, old position
    assert await cells_holding(rt, "drv_a") == set()

    assert await presence(rt).set_status("drv_a", "available", now_ms=t) == "available"
    assert await cells_holding(rt, "drv_a") == {cell}
    # Scored by when the position was taken, not by the toggle: a minute-old position
    # is too stale to dispatch on until the next location frame.
    assert await rt.redis.zscore(rt.keys.cell(res(rt), cell), "drv_a") == t - 60_000
    assert await seen_score(rt, "drv_a") == t - 60_000
    state = await presence(rt).state("drv_a")
    assert state.status == "available" and state.seen_ms == t - 60_000
    rings = cells.disk_by_ring(cell, 1)
    assert await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=1) == []
    assert (await locate(rt, "drv_a", point, ts=t)).accepted
    found = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=1)
    assert [c.driver_id for c in found] == ["drv_a"]

    assert await presence(rt).set_status("drv_a", "offline", now_ms=t + 1) == "offline"
    assert await cells_holding(rt, "drv_a") == set()
    assert await seen_score(rt, "drv_a") is None
    state = await presence(rt).state("drv_a")
    assert state.status == "offline"
    assert (state.lat, state.lng) == (point.lat, point.lng)  # position kept


async def test_going_online_without_a_position_puts_driver_in_no_cell_until_located(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    assert await presence(rt).set_status("drv_a", "available", now_ms=t) == "available"
    assert await cells_holding(rt, "drv_a") == set()
    assert (await presence(rt).state("drv_a")).status == "available"
    await locate(rt, "drv_a", MIDTOWN, ts=t + 1)
    assert await cells_holding(rt, "drv_a") == {home_cell(rt)}


async def test_driver_on_a_trip_stays_on_trip_until_cleared(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    assert await presence(rt).connected("drv_a") == 1  # its app's socket is open
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    target = point_in_ring(rt, 3)
    await presence(rt).set_trip(
        "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=target.lat, target_lng=target.lng
    )
    state = await presence(rt).state("drv_a")
    assert state.status == "on_trip" and state.trip_id == "trp_1"

    assert await presence(rt).set_status("drv_a", "offline", now_ms=t + 1) == "on_trip"
    assert await presence(rt).set_status("drv_a", "available", now_ms=t + 2) == "on_trip"
    assert (await presence(rt).state("drv_a")).status == "on_trip"

    # Its positions carry the trip, rider and target (for the rider's ETA).
    moved = await locate(rt, "drv_a", point_in_ring(rt, 1), ts=t + 3)
    assert moved.accepted
    assert (moved.status, moved.trip_id, moved.rider_id) == ("on_trip", "trp_1", "rdr_1")
    assert (moved.target_lat, moved.target_lng) == (target.lat, target.lng)

    rings = cells.disk_by_ring(home_cell(rt), 2)
    assert await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=5) == []

    await presence(rt).clear_trip("drv_a", now_ms=t)
    state = await presence(rt).state("drv_a")
    assert state.status == "available" and state.trip_id is None
    h = await rt.redis.hgetall(rt.keys.driver("drv_a"))
    assert not {"trip", "rider", "tlat", "tlng"} & set(h)
    found = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=5)
    assert [c.driver_id for c in found] == ["drv_a"]
    after = await locate(rt, "drv_a", MIDTOWN, ts=t + 4)
    assert (after.status, after.trip_id, after.rider_id, after.target_lat) == (
        "available",
        None,
        None,
        None,
    )


async def test_an_on_trip_frame_publishes_the_riders_frame_only_while_trip_and_target_hold(
    runtime: Runtime,
) -> None:
    """The location script publishes the caller's frame for the rider (no second round
    trip) exactly when the driver is on the trip, heading for the target, the caller
    believed, and the frame itself is taken."""
    rt = runtime
    t = now_ms()
    await online_at(rt, "drv_f", MIDTOWN, ts=t)
    target = point_in_ring(rt, 3)
    await presence(rt).set_trip(
        "drv_f", trip_id="trp_f", rider_id="rdr_f", target_lat=target.lat, target_lng=target.lng
    )
    first = await locate(rt, "drv_f", point_in_ring(rt, 1), ts=t + 1)
    assert not first.forwarded  # nothing was asked of it
    assert first.target == f"{target.lat!r},{target.lng!r}"

    channel = rt.keys.channel("rider", "rdr_f")
    listener = rt.redis.pubsub()
    await listener.subscribe(channel)
    assert (await listener.get_message(timeout=5))["type"] == "subscribe"

    async def frame_with(trip_id: str, target_text: str, ts: int, body: str) -> bool:
        forward = RiderForward(trip_id, target_text, channel, body)
        return (await locate(rt, "drv_f", MIDTOWN, ts=ts, forward=forward)).forwarded

    try:
        assert await frame_with("trp_f", first.target, t + 2, "holds") is True
        assert await frame_with("trp_other", first.target, t + 3, "other trip") is False
        assert await frame_with("trp_f", "40.0,-73.0", t + 4, "other target") is False
        assert await frame_with("trp_f", first.target, t + 4, "stale frame") is False
        await presence(rt).clear_trip("drv_f", now_ms=t)
        assert await frame_with("trp_f", first.target, t + 5, "trip over") is False
        await rt.redis.publish(channel, "end")
        heard = []
        while not heard or heard[-1] != "end":
            message = await listener.get_message(timeout=5)
            assert message is not None, heard
            if message["type"] == "message":
                data = message["data"]
                heard.append(data.decode() if isinstance(data, bytes) else data)
        assert heard == ["holds", "end"]
    finally:
        await listener.aclose()


async def test_clear_trip_leaves_an_offline_driver_offline(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    await locate(rt, "drv_a", MIDTOWN, ts=t)
    await presence(rt).clear_trip("drv_a", now_ms=t)
    assert (await presence(rt).state("drv_a")).status == "offline"


# -- candidates ------------------------------------------------------------------------


async def test_candidates_are_only_available_fresh_unreserved_drivers(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    here = MIDTOWN
    await online_at(rt, "drv_free", here, ts=t)
    await locate(rt, "drv_offline", here, ts=t)  # never went online
    await online_at(rt, "drv_went_off", here, ts=t)
    await presence(rt).set_status("drv_went_off", "offline", now_ms=t)
    await online_at(rt, "drv_trip", here, ts=t)
    await presence(rt).set_trip(
        "drv_trip", trip_id="trp_x", rider_id="rdr_x", target_lat=here.lat, target_lng=here.lng
    )
    await online_at(rt, "drv_offered", here, ts=t)
    assert await presence(rt).reserve_offer(
        offer_id="ofr_1",
        driver_id="drv_offered",
        trip_id="trp_1",
        ttl_s=15,
        min_seen_ms=t - STALE_MS,
    )
    await online_at(rt, "drv_stale", here, ts=t - STALE_MS - 1)

    rings = cells.disk_by_ring(home_cell(rt), 1)
    found = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=10)
    assert [c.driver_id for c in found] == ["drv_free"]
    assert found[0].position == here

    # The stale one is still in its cell (no reaper ran), just ignored; a lower
    # freshness bar brings it back.
    assert await cells_holding(rt, "drv_stale") == {home_cell(rt)}
    older = await search_index(rt, rings, min_seen_ms=t - STALE_MS - 1, want=10)
    assert {c.driver_id for c in older} == {"drv_free", "drv_stale"}

    # Releasing the offer makes that driver a candidate again.
    await presence(rt).release_offer(offer_id="ofr_1", driver_id="drv_offered", trip_id="trp_1")
    again = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=10)
    assert {c.driver_id for c in again} == {"drv_free", "drv_offered"}


async def test_candidates_are_the_want_nearest_within_the_rings(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    await online_at(rt, "drv_r0", MIDTOWN, ts=t)
    await online_at(rt, "drv_r1", point_in_ring(rt, 1, 2), ts=t)
    await online_at(rt, "drv_r2", point_in_ring(rt, 2, 7), ts=t)
    rings = cells.disk_by_ring(home_cell(rt), 3)
    fresh = t - STALE_MS

    async def ids(want: int, rs: Sequence[Sequence[str]] = rings) -> list[str]:
        found = await search_index(rt, rs, min_seen_ms=fresh, want=want, pickup=MIDTOWN)
        return [c.driver_id for c in found]

    # Exactly the ``want`` nearest, nearest first, whatever ring they sit in.
    assert await ids(1) == ["drv_r0"]
    assert await ids(2) == ["drv_r0", "drv_r1"]
    assert await ids(3) == ["drv_r0", "drv_r1", "drv_r2"]
    assert await ids(10) == ["drv_r0", "drv_r1", "drv_r2"]
    # Only cells that are passed in are searched.
    assert await ids(10, rings[:2]) == ["drv_r0", "drv_r1"]
    # A busy nearest driver is passed over for the next one.
    await presence(rt).set_trip(
        "drv_r0",
        trip_id="trp_1",
        rider_id="rdr_1",
        target_lat=MIDTOWN.lat,
        target_lng=MIDTOWN.lng,
    )
    assert await ids(1) == ["drv_r1"]
    # A driver just across the cell edge beats a farther one in the pickup's own cell.
    far_in_cell = point_in_ring(rt, 0)
    await online_at(rt, "drv_far_in_cell", far_in_cell, ts=t)
    pickup_near_edge = nearest_point_to(far_in_cell, rt)
    found = await search_index(rt, rings, min_seen_ms=fresh, want=1, pickup=pickup_near_edge)
    dist = {c.driver_id: haversine_m(pickup_near_edge, c.position) for c in found}
    everyone = {
        "drv_r1": point_in_ring(rt, 1, 2),
        "drv_r2": point_in_ring(rt, 2, 7),
        "drv_far_in_cell": far_in_cell,
    }
    nearest = min(everyone, key=lambda d: haversine_m(pickup_near_edge, everyone[d]))
    assert list(dist) == [nearest]


def nearest_point_to(point: LatLng, rt: Runtime) -> LatLng:
    """A pickup a few metres from ``point``, in the same cell as MIDTOWN when possible."""
    return LatLng(point.lat + 0.00005, point.lng)


async def test_a_crowded_cell_gives_its_eight_nearest_in_order(runtime: Runtime) -> None:
    """Forty drivers in the pickup's own cell and one three rings out: exactly the
    eight nearest come back, nearest first (the GEO set pages through the crowd)."""
    rt = runtime
    t = now_ms()
    for k in range(40):
        await online_at(rt, f"drv_{k:02d}", LatLng(MIDTOWN.lat + k * 1e-5, MIDTOWN.lng), ts=t)
    await online_at(rt, "drv_ring3", point_in_ring(rt, 3), ts=t)
    found = await search_index(
        rt, cells.disk_by_ring(home_cell(rt), 3), min_seen_ms=t - STALE_MS, want=8, pickup=MIDTOWN
    )
    assert [c.driver_id for c in found] == [f"drv_{k:02d}" for k in range(8)]


async def test_the_ring_walk_never_misses_a_nearer_driver(runtime: Runtime) -> None:
    """The search stops walking rings once nothing further out can beat the ``want``-th
    best. Against a brute-force scan of every driver in the disk, for drivers scattered
    over a few kilometres and pickups anywhere in the centre cell, sometimes right at its
    edge: the same drivers at the same distances."""
    rt = runtime
    t = now_ms()
    rng = random.Random(20261122)
    drivers: dict[str, LatLng] = {}
    for k in range(120):
        # Denser near the middle, as a city is; some 3-4 km out.
        r = 0.035 * rng.random() ** 1.5
        point = LatLng(
            MIDTOWN.lat + r * (rng.random() * 2 - 1), MIDTOWN.lng + r * (rng.random() * 2 - 1)
        )
        drivers[f"drv_w{k:03d}"] = point
        await online_at(rt, f"drv_w{k:03d}", point, ts=t)
    centre = home_cell(rt)
    corners = cells.boundary(centre)
    middle = cells.center(centre)
    rings = cells.disk_by_ring(centre, 4)
    in_disk = {c for ring in rings for c in ring}
    reachable = {d: p for d, p in drivers.items() if cells.cell_of(p, res(rt)) in in_disk}
    checked = 0
    for _ in range(80):
        # A pickup between the cell's centre and a random corner: up to its very edge.
        lat, lng = corners[rng.randrange(len(corners))]
        f = rng.random() ** 0.3
        pickup = LatLng(middle.lat + (lat - middle.lat) * f, middle.lng + (lng - middle.lng) * f)
        if cells.cell_of(pickup, res(rt)) != centre:
            continue
        for want in (1, 3, 8):
            found = await search_index(
                rt, rings, min_seen_ms=t - STALE_MS, want=want, pickup=pickup
            )
            got = [haversine_m(pickup, c.position) for c in found]
            best = sorted(haversine_m(pickup, p) for p in reachable.values())[:want]
            assert len(got) == len(best) == want
            assert all(abs(a - b) < 1.0 for a, b in zip(got, best, strict=True)), (got, best)
            checked += 1
    assert checked >= 150


async def test_candidates_with_nobody_around(runtime: Runtime) -> None:
    rt = runtime
    rings = cells.disk_by_ring(home_cell(rt), 2)
    assert await search_index(rt, rings, min_seen_ms=now_ms() - STALE_MS, want=3) == []


# -- reaping ---------------------------------------------------------------------------


async def test_reap_stale_removes_only_stale_drivers_from_cells_and_seen(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    old, far_cell = t - 60_000, point_in_ring(rt, 1)
    await online_at(rt, "drv_stale1", MIDTOWN, ts=old)
    await online_at(rt, "drv_stale2", far_cell, ts=old + 1)
    await online_at(rt, "drv_fresh", MIDTOWN, ts=t)
    await online_at(rt, "drv_fresh2", far_cell, ts=t - 1000)

    reaped = await presence(rt).reap_stale(cutoff_ms=t - STALE_MS)
    assert sorted(reaped) == ["drv_stale1", "drv_stale2"]
    for d in ("drv_stale1", "drv_stale2"):
        assert await cells_holding(rt, d) == set()
        assert await seen_score(rt, d) is None
    assert await cells_holding(rt, "drv_fresh") == {home_cell(rt)}
    assert await cells_holding(rt, "drv_fresh2") == {cells.cell_of(far_cell, res(rt))}
    assert await seen_score(rt, "drv_fresh") == t
    assert await seen_score(rt, "drv_fresh2") == t - 1000

    assert await presence(rt).reap_stale(cutoff_ms=t - STALE_MS) == []


async def test_reap_stale_honours_its_limit(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    for i in range(3):
        await online_at(rt, f"drv_{i}", MIDTOWN, ts=t - 60_000 + i)
    first = await presence(rt).reap_stale(cutoff_ms=t - STALE_MS, limit=2)
    assert first == ["drv_0", "drv_1"]  # oldest first
    assert await cells_holding(rt, "drv_2") == {home_cell(rt)}
    assert await presence(rt).reap_stale(cutoff_ms=t - STALE_MS, limit=2) == ["drv_2"]


# -- offers ----------------------------------------------------------------------------


async def test_reserve_offer_is_all_or_nothing(runtime: Runtime) -> None:
    rt = runtime
    p = presence(rt)
    t = now_ms()
    fresh = t - STALE_MS
    await online_at(rt, "drv_1", MIDTOWN, ts=t)
    await online_at(rt, "drv_2", MIDTOWN, ts=t)
    k = rt.keys

    assert await p.reserve_offer(
        offer_id="ofr_1", driver_id="drv_1", trip_id="trp_1", ttl_s=15, min_seen_ms=fresh
    )
    assert await p.offer_held_by("drv_1") == "ofr_1"
    assert await rt.redis.get(k.trip_offer("trp_1")) == "ofr_1"
    ttl = await rt.redis.pttl(k.driver_offer("drv_1"))
    assert 0 < ttl <= 15_000

    # The driver already holds one: no second offer, and the other trip stays free.
    assert not await p.reserve_offer(
        offer_id="ofr_2", driver_id="drv_1", trip_id="trp_2", ttl_s=15, min_seen_ms=fresh
    )
    assert await rt.redis.get(k.trip_offer("trp_2")) is None
    # The trip already has one: no second, and the other driver stays free.
    assert not await p.reserve_offer(
        offer_id="ofr_3", driver_id="drv_2", trip_id="trp_1", ttl_s=15, min_seen_ms=fresh
    )
    assert await p.offer_held_by("drv_2") is None
    assert await p.offer_held_by("drv_1") == "ofr_1"
    assert await rt.redis.get(k.trip_offer("trp_1")) == "ofr_1"

    # A release naming another offer deletes nothing.
    await rt.redis.zadd(k.offer_deadlines(), {"ofr_1": t + 15_000, "ofr_9": t + 15_000})
    await p.release_offer(offer_id="ofr_9", driver_id="drv_1", trip_id="trp_1")
    assert await p.offer_held_by("drv_1") == "ofr_1"
    assert await rt.redis.get(k.trip_offer("trp_1")) == "ofr_1"

    await p.release_offer(offer_id="ofr_1", driver_id="drv_1", trip_id="trp_1")
    assert await p.offer_held_by("drv_1") is None
    assert await rt.redis.get(k.trip_offer("trp_1")) is None
    assert await rt.redis.zscore(k.offer_deadlines(), "ofr_1") is None

    assert await p.reserve_offer(
        offer_id="ofr_2", driver_id="drv_1", trip_id="trp_2", ttl_s=15, min_seen_ms=fresh
    )
    assert await p.reserve_offer(
        offer_id="ofr_3", driver_id="drv_2", trip_id="trp_1", ttl_s=15, min_seen_ms=fresh
    )


async def test_release_offer_only_deletes_keys_that_still_name_that_offer(
    runtime: Runtime,
) -> None:
    rt = runtime
    p = presence(rt)
    t = now_ms()
    fresh = t - STALE_MS
    await online_at(rt, "drv_1", MIDTOWN, ts=t)
    await online_at(rt, "drv_2", MIDTOWN, ts=t)
    assert await p.reserve_offer(
        offer_id="ofr_1", driver_id="drv_1", trip_id="trp_1", ttl_s=15, min_seen_ms=fresh
    )
    assert await p.reserve_offer(
        offer_id="ofr_2", driver_id="drv_2", trip_id="trp_2", ttl_s=15, min_seen_ms=fresh
    )
    # A late release of ofr_1 that names trp_2: frees drv_1's key, not trp_2's.
    await p.release_offer(offer_id="ofr_1", driver_id="drv_1", trip_id="trp_2")
    assert await p.offer_held_by("drv_1") is None
    assert await rt.redis.get(rt.keys.trip_offer("trp_2")) == "ofr_2"
    assert await rt.redis.get(rt.keys.trip_offer("trp_1")) == "ofr_1"
    assert await p.offer_held_by("drv_2") == "ofr_2"


async def test_reserve_offer_needs_a_fresh_available_driver(runtime: Runtime) -> None:
    rt = runtime
    p = presence(rt)
    t = now_ms()
    fresh = t - STALE_MS
    await locate(rt, "drv_offline", MIDTOWN, ts=t)
    await online_at(rt, "drv_stale", MIDTOWN, ts=t - STALE_MS - 1)
    await online_at(rt, "drv_trip", MIDTOWN, ts=t)
    await p.set_trip("drv_trip", trip_id="trp_0", rider_id="rdr_0", target_lat=1.0, target_lng=2.0)

    for i, driver in enumerate(["drv_offline", "drv_stale", "drv_trip", "drv_unknown"]):
        assert not await p.reserve_offer(
            offer_id=f"ofr_{i}",
            driver_id=driver,
            trip_id=f"trp_{i + 1}",
            ttl_s=15,
            min_seen_ms=fresh,
        )
        assert await p.offer_held_by(driver) is None
        assert await rt.redis.get(rt.keys.trip_offer(f"trp_{i + 1}")) is None


# -- concurrency -----------------------------------------------------------------------


async def test_concurrent_frames_leave_the_driver_at_the_newest_position_in_one_cell(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    # 50 positions along a ~5 km line crossing several cells, with increasing ts.
    frames = [
        (t + 1 + i, LatLng(MIDTOWN.lat + i * 0.0009, MIDTOWN.lng + i * 0.0004)) for i in range(50)
    ]
    assert len({cells.cell_of(p, res(rt)) for _, p in frames}) > 3
    shuffled = frames[:]
    random.Random(20240611).shuffle(shuffled)

    results = await asyncio.gather(*(locate(rt, "drv_a", p, ts=ts) for ts, p in shuffled))

    newest_ts, newest = frames[-1]
    assert any(r.accepted for r in results)
    for (ts, _), r in zip(shuffled, results, strict=True):
        if not r.accepted:
            assert r.last_ts_ms is not None and r.last_ts_ms >= ts
    # The frame with the largest ts cannot have been refused.
    assert results[shuffled.index(frames[-1])].accepted

    state = await presence(rt).state("drv_a")
    assert state.ts_ms == newest_ts
    assert (state.lat, state.lng) == (newest.lat, newest.lng)
    assert state.cell == cells.cell_of(newest, res(rt))
    assert await cells_holding(rt, "drv_a") == {cells.cell_of(newest, res(rt))}
    assert await seen_score(rt, "drv_a") is not None


async def test_sockets_are_counted_and_the_last_one_closing_takes_the_driver_offline(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    assert await presence(rt).connected("drv_a") == 1
    assert await presence(rt).connected("drv_a") == 2  # a second phone
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    assert await presence(rt).disconnected("drv_a") == 1
    assert (await presence(rt).state("drv_a")).status == "available"
    assert await cells_holding(rt, "drv_a") == {home_cell(rt)}
    assert await presence(rt).disconnected("drv_a") == 0
    assert (await presence(rt).state("drv_a")).status == "offline"
    assert await cells_holding(rt, "drv_a") == set()
    assert await seen_score(rt, "drv_a") is None
    assert await presence(rt).disconnected("drv_a") == 0  # never negative


async def test_a_trip_ending_with_no_socket_open_leaves_the_driver_offline(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    await presence(rt).connected("drv_a")
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    await presence(rt).set_trip(
        "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=MIDTOWN.lat, target_lng=MIDTOWN.lng
    )
    assert await presence(rt).disconnected("drv_a") == 0
    assert (await presence(rt).state("drv_a")).status == "on_trip"  # the trip goes on
    assert await presence(rt).clear_trip("drv_a", now_ms=t) == "offline"
    assert await cells_holding(rt, "drv_a") == set()
    rings = cells.disk_by_ring(home_cell(rt), 1)
    assert await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=1) == []


async def test_a_driver_forgotten_by_redis_comes_back_with_its_next_frame(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    await rt.redis.delete(rt.keys.driver("drv_a"), rt.keys.seen())  # Redis lost it all
    result = await rt.presence.update_location(
        "drv_a",
        lat=MIDTOWN.lat,
        lng=MIDTOWN.lng,
        ts_ms=t + 1,
        accuracy_m=None,
        heading=None,
        speed_mps=None,
        cell=home_cell(rt),
        now_ms=t + 1,
        assumed_status="available",
    )
    assert result.accepted and result.status == "available"
    rings = cells.disk_by_ring(home_cell(rt), 1)
    found = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=1)
    assert [c.driver_id for c in found] == ["drv_a"]


async def test_the_geo_set_of_a_cell_holds_exactly_its_available_drivers(
    runtime: Runtime,
) -> None:
    """Candidate search reads a cell's GEO set; every transition keeps it in step."""
    rt = runtime
    t = now_ms()
    here, there = point_in_ring(rt, 0), point_in_ring(rt, 2)
    cell_here, cell_there = cells.cell_of(here, res(rt)), cells.cell_of(there, res(rt))
    await presence(rt).connected("drv_a")
    assert (await locate(rt, "drv_a", here, ts=t)).accepted  # offline: in no set
    assert await available_cells_holding(rt, "drv_a") == set()
    await presence(rt).set_status("drv_a", "available", now_ms=t)
    assert await available_cells_holding(rt, "drv_a") == {cell_here}
    assert (await locate(rt, "drv_a", there, ts=t + 1)).accepted  # moved cells
    assert await available_cells_holding(rt, "drv_a") == {cell_there}
    await presence(rt).set_trip(
        "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=here.lat, target_lng=here.lng
    )
    assert await available_cells_holding(rt, "drv_a") == set()  # on a trip
    assert (await locate(rt, "drv_a", here, ts=t + 2)).accepted  # driving, still busy
    assert await available_cells_holding(rt, "drv_a") == set()
    assert await cells_holding(rt, "drv_a") == {cell_here}
    await presence(rt).clear_trip("drv_a", now_ms=t + 3)
    assert await available_cells_holding(rt, "drv_a") == {cell_here}
    occupied = rt.keys.available_cells(res(rt))
    assert await rt.redis.smembers(occupied) == {cell_here}  # the cell it left is empty
    await presence(rt).set_status("drv_a", "offline", now_ms=t + 4)
    assert await rt.redis.smembers(occupied) == set()
    assert await available_cells_holding(rt, "drv_a") == set()
    await presence(rt).set_status("drv_a", "available", now_ms=t + 5)
    assert await available_cells_holding(rt, "drv_a") == {cell_here}
    assert await presence(rt).disconnected("drv_a") == 0  # last socket gone: offline
    assert await available_cells_holding(rt, "drv_a") == set()
    await presence(rt).connected("drv_a")
    await presence(rt).set_status("drv_a", "available", now_ms=t + 6)
    assert await presence(rt).reap_stale(cutoff_ms=t + 10) == ["drv_a"]
    assert await available_cells_holding(rt, "drv_a") == set()
    assert await cells_holding(rt, "drv_a") == set()


async def test_a_trip_trace_samples_one_position_per_interval_and_only_on_a_trip(
    runtime: Runtime,
) -> None:
    from dispatch.presence import TRACE_EVERY_MS

    rt = runtime
    t = now_ms()
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    assert await presence(rt).take_trace("trp_1") == []  # not on a trip: nothing traced
    await presence(rt).set_trip(
        "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=MIDTOWN.lat, target_lng=MIDTOWN.lng
    )
    here = point_in_ring(rt, 1)
    frames = [t + 1, t + 2, t + TRACE_EVERY_MS + 1, t + TRACE_EVERY_MS + 5, t + 3 * TRACE_EVERY_MS]
    for ts in frames:
        assert (await locate(rt, "drv_a", here, ts=ts)).accepted
    assert not (await locate(rt, "drv_a", here, ts=t + 3)).accepted  # out of order: ignored
    trace = await presence(rt).take_trace("trp_1")
    assert [ts for ts, _, _ in trace] == [t + 1, t + TRACE_EVERY_MS + 1, t + 3 * TRACE_EVERY_MS]
    assert all((lat, lng) == (here.lat, here.lng) for _, lat, lng in trace)
    await presence(rt).drop_trace("trp_1")
    assert await presence(rt).take_trace("trp_1") == []


# -- region-wide keys candidate search reads ------------------------------------------


async def test_search_gives_what_fairness_reads_from_the_shift_and_the_last_trip(
    runtime: Runtime,
) -> None:
    rt = runtime
    t = now_ms()
    await presence(rt).connected("drv_a")
    await online_at(rt, "drv_a", MIDTOWN, ts=t)  # the shift starts at t
    await locate(rt, "drv_b", point_in_ring(rt, 1), ts=t)  # never went online...
    await presence(rt).set_status("drv_b", "available", now_ms=t + 7)  # ...until t + 7
    rings = cells.disk_by_ring(home_cell(rt), 2)

    async def stats() -> dict[str, tuple[int | None, int]]:
        found = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=5)
        return {c.driver_id: (c.idle_since_ms, c.shift_cents) for c in found}

    assert await stats() == {"drv_a": (t, 0), "drv_b": (t + 7, 0)}
    for i, earned in enumerate((1_850, 2_400)):
        await presence(rt).set_trip(
            "drv_a", trip_id=f"trp_{i}", rider_id="rdr_1", target_lat=1.0, target_lng=2.0
        )
        assert "drv_a" not in await stats()
        status = await presence(rt).clear_trip("drv_a", now_ms=t + 100 + i, earned_cents=earned)
        assert status == "available"
    assert (await stats())["drv_a"] == (t + 101, 4_250)
    # Going offline and online again starts a new shift.
    await presence(rt).set_status("drv_a", "offline", now_ms=t + 200)
    await presence(rt).set_status("drv_a", "available", now_ms=t + 300)
    assert (await stats())["drv_a"] == (t + 300, 0)
    # A driver whose first frame put it online (as after Redis lost everything: the
    # frame assumed the status its socket asked for) has no shift on record.
    restored = await rt.presence.update_location(
        "drv_c",
        lat=MIDTOWN.lat,
        lng=MIDTOWN.lng,
        ts_ms=t + 400,
        accuracy_m=None,
        heading=None,
        speed_mps=None,
        cell=home_cell(rt),
        now_ms=t + 400,
        assumed_status="available",
    )
    assert restored.restored
    assert (await stats())["drv_c"] == (None, 0)


async def test_search_returns_positions_exactly_as_sent_and_falls_back_to_the_geo_set(
    runtime: Runtime,
) -> None:
    """A GEO set keeps a position to about a metre; the positions hash keeps it exactly.
    A driver with no entry there (indexed before the hash was kept) is still found, at
    its GEO position."""
    rt = runtime
    t = now_ms()
    here = LatLng(40.754912345678901, -73.984012345678901)
    await online_at(rt, "drv_a", here, ts=t)
    rings = cells.disk_by_ring(home_cell(rt), 1)
    [found] = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=1)
    assert found.position == here
    assert await rt.redis.hget(rt.keys.positions(), "drv_a") == f"{here.lat!r},{here.lng!r}"
    await rt.redis.hdel(rt.keys.positions(), "drv_a")
    [fallback] = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=1)
    assert fallback.driver_id == "drv_a"
    assert fallback.position != here  # the GEO set's rounding shows
    assert haversine_m(fallback.position, here) < 1.0


async def test_a_held_offer_entry_counts_only_until_it_expires(runtime: Runtime) -> None:
    """Candidate search reads reservations from one sorted set, driver -> expiry: an
    entry whose time has passed is free, as the expired key it stands for would be."""
    rt = runtime
    t = now_ms()
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    rings = cells.disk_by_ring(home_cell(rt), 1)

    async def ids() -> list[str]:
        return [c.driver_id for c in await search_index(rt, rings, min_seen_ms=t - 1, want=3)]

    held = rt.keys.held_offers()
    assert await presence(rt).reserve_offer(
        offer_id="ofr_1", driver_id="drv_a", trip_id="trp_1", ttl_s=15, min_seen_ms=t - 1
    )
    expiry = await rt.redis.zscore(held, "drv_a")
    ttl = await rt.redis.pttl(rt.keys.driver_offer("drv_a"))
    assert expiry is not None and abs(expiry - (now_ms() + ttl)) < 1_000
    assert await ids() == []
    # Its key gone by TTL and no release came (the dispatcher died): the entry stays,
    # but its time has passed.
    await rt.redis.delete(rt.keys.driver_offer("drv_a"))
    await rt.redis.zadd(held, {"drv_a": t - 60_000})
    assert await ids() == ["drv_a"]
    # The reaper trims entries that passed before its cutoff, and only those.
    await rt.redis.zadd(held, {"drv_b": now_ms() + 60_000})
    assert await presence(rt).reap_stale(cutoff_ms=t - STALE_MS) == []
    assert await rt.redis.zrange(held, 0, -1) == ["drv_b"]


async def test_restoring_a_reservation_sets_only_what_is_missing(runtime: Runtime) -> None:
    rt = runtime
    p = presence(rt)
    t = now_ms()
    k = rt.keys
    await online_at(rt, "drv_1", MIDTOWN, ts=t)
    await online_at(rt, "drv_2", MIDTOWN, ts=t)
    assert await p.reserve_offer(
        offer_id="ofr_live", driver_id="drv_1", trip_id="trp_1", ttl_s=15, min_seen_ms=t - 1
    )
    live_expiry = await rt.redis.zscore(k.held_offers(), "drv_1")
    # drv_1 holds a live reservation: nothing of it is overwritten.
    assert not await p.restore_offer(
        offer_id="ofr_old", driver_id="drv_1", trip_id="trp_9", ttl_ms=60_000
    )
    assert await p.offer_held_by("drv_1") == "ofr_live"
    assert await rt.redis.zscore(k.held_offers(), "drv_1") == live_expiry
    assert await rt.redis.get(k.trip_offer("trp_9")) == "ofr_old"  # that one was free
    # drv_2 holds nothing (Redis lost it): restored, and held for search too.
    assert await p.restore_offer(
        offer_id="ofr_2", driver_id="drv_2", trip_id="trp_2", ttl_ms=20_000
    )
    assert await p.offer_held_by("drv_2") == "ofr_2"
    assert await rt.redis.get(k.trip_offer("trp_2")) == "ofr_2"
    expiry = await rt.redis.zscore(k.held_offers(), "drv_2")
    assert expiry is not None and now_ms() + 15_000 < expiry <= now_ms() + 20_000
    rings = cells.disk_by_ring(home_cell(rt), 1)
    assert await search_index(rt, rings, min_seen_ms=t - 1, want=5) == []
    await p.release_offer(offer_id="ofr_2", driver_id="drv_2", trip_id="trp_2")
    assert await rt.redis.zscore(k.held_offers(), "drv_2") is None
    assert [c.driver_id for c in await search_index(rt, rings, min_seen_ms=t - 1, want=5)] == [
        "drv_2"
    ]


async def test_a_frame_with_a_name_outside_ascii_is_packed_by_its_bytes(runtime: Runtime) -> None:
    """The location command is packed as one string when it is ASCII (ids and numbers
    are); otherwise argument by argument, by byte length."""
    rt = runtime
    t = now_ms()
    for driver in ("drv_ünïcode", "drv_ascii"):
        await presence(rt).set_status(driver, "available", now_ms=t)
        assert (await locate(rt, driver, MIDTOWN, ts=t)).accepted
        assert (await locate(rt, driver, point_in_ring(rt, 2), ts=t + 1)).accepted
        assert await cells_holding(rt, driver) == {cells.cell_of(point_in_ring(rt, 2), res(rt))}
    rings = cells.disk_by_ring(home_cell(rt), 3)
    found = await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=5)
    assert {c.driver_id for c in found} == {"drv_ünïcode", "drv_ascii"}
