"""The ``moved`` retry of dispatch.presence: a process declares the keys of the cell and
trip it last saw for a driver; when another process (or another of the driver's
devices) changed them meanwhile, the script changes nothing, says what is stored, and
the call is sent again once with the right keys. Two ``Presence`` objects on the same
Redis stand for two api processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from core.bulk_redis import BulkScriptRunner
from core.clock import now_ms
from dispatch.presence import LocationResult, Presence, RiderForward, TripLeg
from dispatch.runtime import Runtime
from geo import cells
from geo.point import LatLng
from tests.fixtures.live_index import (
    MIDTOWN,
    STALE_MS,
    available_cells_holding,
    cells_holding,
    point_in_ring,
    res,
    seen_score,
)


class HookedRunner(BulkScriptRunner):
    """Runs ``before_next`` (once) just before its next round trip is written."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.before_next: Callable[[], Awaitable[None]] | None = None

    async def run(self, commands: list[bytes]) -> list[Any]:
        hook, self.before_next = self.before_next, None
        if hook is not None:
            await hook()
        return await super().run(commands)


@pytest.fixture
async def other(runtime: Runtime) -> AsyncIterator[Presence]:
    """A second api process's index: same Redis, same keys, hints of its own."""
    rt = runtime
    p = Presence(
        rt.redis,
        rt.keys,
        rt.presence.resolution,
        bulk=BulkScriptRunner(rt.settings.redis_url),
        bulk_search=BulkScriptRunner(rt.settings.redis_url),
    )
    yield p
    p.close()


async def locate(
    p: Presence, driver_id: str, point: LatLng, *, ts: int, forward: Any = None
) -> LocationResult:
    return await p.update_location(
        driver_id,
        lat=point.lat,
        lng=point.lng,
        ts_ms=ts,
        accuracy_m=None,
        heading=None,
        speed_mps=None,
        cell=cells.cell_of(point, p.resolution),
        now_ms=ts,
        forward=forward,
    )


def cell(rt: Runtime, point: LatLng) -> str:
    return cells.cell_of(point, res(rt))


async def test_a_frame_after_another_process_moved_the_driver_retries_once(
    runtime: Runtime, other: Presence
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    a, b, c = MIDTOWN, point_in_ring(rt, 2, 0), point_in_ring(rt, 3, 5)
    assert len({cell(rt, a), cell(rt, b), cell(rt, c)}) == 3
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", a, ts=t)).accepted  # this process: in a
    assert (await locate(other, "drv_a", b, ts=t + 1)).accepted  # its other phone: b
    assert await cells_holding(rt, "drv_a") == {cell(rt, b)}

    before = here.moved_retries
    result = await locate(here, "drv_a", c, ts=t + 2)  # believes a, Redis says b
    assert result.accepted and result.status == "available"
    assert here.moved_retries == before + 1
    assert await cells_holding(rt, "drv_a") == {cell(rt, c)}
    assert await available_cells_holding(rt, "drv_a") == {cell(rt, c)}
    assert await rt.redis.smembers(rt.keys.available_cells(res(rt))) == {cell(rt, c)}
    # The hint is right now: the next frame is one call.
    assert (await locate(here, "drv_a", a, ts=t + 3)).accepted
    assert here.moved_retries == before + 1
    assert await cells_holding(rt, "drv_a") == {cell(rt, a)}


async def test_a_stale_hint_costs_nothing_when_the_frame_stays_in_the_stored_cell(
    runtime: Runtime, other: Presence
) -> None:
    """Only a cell the frame must leave has to be declared: a frame in the cell Redis
    holds needs no retry, whatever this process believed."""
    rt, here = runtime, runtime.presence
    t = now_ms()
    a, b = MIDTOWN, point_in_ring(rt, 2, 0)
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", a, ts=t)).accepted
    assert (await locate(other, "drv_a", b, ts=t + 1)).accepted
    before = here.moved_retries
    assert (await locate(here, "drv_a", b, ts=t + 2)).accepted
    assert here.moved_retries == before
    assert await cells_holding(rt, "drv_a") == {cell(rt, b)}


async def test_opening_a_socket_teaches_the_process_where_the_driver_is(
    runtime: Runtime, other: Presence
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    a, b = MIDTOWN, point_in_ring(rt, 2, 0)
    await other.set_status("drv_a", "available", now_ms=t)
    assert (await locate(other, "drv_a", a, ts=t)).accepted
    before = here.moved_retries
    assert await here.connected("drv_a") == 1  # a socket opens on this process
    assert (await locate(here, "drv_a", b, ts=t + 1)).accepted
    assert here.moved_retries == before  # the first frame already declared a's keys
    assert await cells_holding(rt, "drv_a") == {cell(rt, b)}


async def test_going_offline_after_another_process_moved_the_driver(
    runtime: Runtime, other: Presence
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    a, b = MIDTOWN, point_in_ring(rt, 2, 0)
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", a, ts=t)).accepted
    assert (await locate(other, "drv_a", b, ts=t + 1)).accepted
    before = here.moved_retries
    assert await here.set_status("drv_a", "offline", now_ms=t + 2) == "offline"
    assert here.moved_retries == before + 1
    assert await cells_holding(rt, "drv_a") == set()
    assert await available_cells_holding(rt, "drv_a") == set()
    assert await seen_score(rt, "drv_a") is None
    assert await rt.redis.smembers(rt.keys.available_cells(res(rt))) == set()
    # And back online: into b, where its position is, in one call.
    assert await here.set_status("drv_a", "available", now_ms=t + 3) == "available"
    assert here.moved_retries == before + 1
    assert await available_cells_holding(rt, "drv_a") == {cell(rt, b)}


async def test_the_last_socket_closing_after_another_process_moved_the_driver(
    runtime: Runtime, other: Presence
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    a, b = MIDTOWN, point_in_ring(rt, 2, 0)
    assert await here.connected("drv_a") == 1
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", a, ts=t)).accepted
    assert (await locate(other, "drv_a", b, ts=t + 1)).accepted
    before = here.moved_retries
    assert await here.disconnected("drv_a") == 0
    assert here.moved_retries == before + 1
    assert (await here.state("drv_a")).status == "offline"
    assert await cells_holding(rt, "drv_a") == set()
    assert await available_cells_holding(rt, "drv_a") == set()
    # Nothing happened twice: the count is 0, not -1 clamped (a retried decrement).
    assert await here.connected("drv_a") == 1


async def test_trips_after_another_process_moved_the_driver(
    runtime: Runtime, other: Presence
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    a, b = MIDTOWN, point_in_ring(rt, 2, 0)
    assert await here.connected("drv_a") == 1
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", a, ts=t)).accepted
    assert (await locate(other, "drv_a", b, ts=t + 1)).accepted
    before = here.moved_retries
    await here.set_trip(
        "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=a.lat, target_lng=a.lng
    )
    assert here.moved_retries == before + 1
    assert await available_cells_holding(rt, "drv_a") == set()  # busy: out of b's GEO set
    assert await cells_holding(rt, "drv_a") == {cell(rt, b)}

    # Moved again while on the trip (GEO sets untouched), then the trip ends here.
    c = point_in_ring(rt, 3, 2)
    assert (await locate(other, "drv_a", c, ts=t + 2)).accepted
    assert await here.clear_trip("drv_a", now_ms=t + 3, earned_cents=1_250) == "available"
    assert here.moved_retries == before + 2
    assert await available_cells_holding(rt, "drv_a") == {cell(rt, c)}
    assert await rt.redis.hget(rt.keys.fairness(), "drv_a") == f"{t + 3},1250"


async def test_the_reaper_retries_a_driver_that_moved_between_its_two_phases(
    runtime: Runtime, other: Presence
) -> None:
    """The reaper reads the stale drivers' cells, then runs one script per driver: a
    driver moved in between (still stale) is reaped from the cell it is really in."""
    rt = runtime
    t = now_ms()
    old = t - 60_000
    a, b = MIDTOWN, point_in_ring(rt, 2, 0)
    runner = HookedRunner(rt.settings.redis_url)
    reaper = Presence(
        rt.redis,
        rt.keys,
        res(rt),
        bulk=BulkScriptRunner(rt.settings.redis_url),
        bulk_search=runner,
    )
    try:
        await other.set_status("drv_a", "available", now_ms=old)
        assert (await locate(other, "drv_a", a, ts=old)).accepted

        async def move_while_stale() -> None:
            # A late frame stamped with an old server time: moves it, keeps it stale.
            assert (await locate(other, "drv_a", b, ts=old + 1)).accepted

        runner.before_next = move_while_stale
        assert await reaper.reap_stale(cutoff_ms=t - STALE_MS) == ["drv_a"]
        assert reaper.moved_retries == 1
        assert await cells_holding(rt, "drv_a") == set()
        assert await available_cells_holding(rt, "drv_a") == set()
        assert await seen_score(rt, "drv_a") is None
        assert await rt.redis.smembers(rt.keys.available_cells(res(rt))) == set()
    finally:
        reaper.close()


async def test_the_reaper_leaves_a_driver_that_came_back_between_its_two_phases(
    runtime: Runtime, other: Presence
) -> None:
    rt = runtime
    t = now_ms()
    old = t - 60_000
    runner = HookedRunner(rt.settings.redis_url)
    reaper = Presence(
        rt.redis, rt.keys, res(rt), bulk=BulkScriptRunner(rt.settings.redis_url), bulk_search=runner
    )
    try:
        await other.set_status("drv_a", "available", now_ms=old)
        assert (await locate(other, "drv_a", MIDTOWN, ts=old)).accepted

        async def fresh_frame() -> None:
            assert (await locate(other, "drv_a", point_in_ring(rt, 2, 0), ts=t)).accepted

        runner.before_next = fresh_frame
        assert await reaper.reap_stale(cutoff_ms=t - STALE_MS) == []
        assert await cells_holding(rt, "drv_a") == {cell(rt, point_in_ring(rt, 2, 0))}
        assert await seen_score(rt, "drv_a") == t
    finally:
        reaper.close()


# -- a trip's first frames -----------------------------------------------------------


async def listen(rt: Runtime, rider_id: str) -> Any:
    listener = rt.redis.pubsub()
    await listener.subscribe(rt.keys.channel("rider", rider_id))
    assert (await listener.get_message(timeout=5))["type"] == "subscribe"
    return listener


async def heard(rt: Runtime, listener: Any, rider_id: str) -> list[str]:
    """Everything published to the rider so far (an end marker bounds the read)."""
    await rt.redis.publish(rt.keys.channel("rider", rider_id), "end")
    out: list[str] = []
    while True:
        message = await listener.get_message(timeout=5)
        assert message is not None, out
        if message["type"] != "message":
            continue
        if message["data"] == "end":
            return out
        out.append(message["data"])


def forward_for(rt: Runtime, label: str) -> Callable[[TripLeg], RiderForward]:
    """A forward computed for whatever leg it is asked about: its frame names the leg
    and ``label``, so the test can tell which leg a published frame was computed for."""

    def build(leg: TripLeg) -> RiderForward:
        return RiderForward(
            leg.trip_id,
            leg.target,
            rt.keys.channel("rider", leg.rider_id),
            f"{label}:{leg.trip_id}:{leg.target}",
        )

    return build


async def test_a_legs_first_frame_is_two_round_trips_and_the_rider_hears_it_once(
    runtime: Runtime, other: Presence
) -> None:
    """The trip started on another process: this one's first frame is told ``moved``
    with the trip, rider and target, and its retry carries the rider's frame computed
    for them; from then on, one call per frame, every one forwarded."""
    rt, here = runtime, runtime.presence
    t = now_ms()
    pickup, dropoff = point_in_ring(rt, 3, 0), point_in_ring(rt, 4, 7)
    await here.connected("drv_a")
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", MIDTOWN, ts=t, forward=forward_for(rt, "f0"))).accepted
    listener = await listen(rt, "rdr_1")
    try:
        await other.set_trip(
            "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=pickup.lat, target_lng=pickup.lng
        )
        to_pickup = f"{pickup.lat!r},{pickup.lng!r}"
        before = here.moved_retries
        first = await locate(here, "drv_a", MIDTOWN, ts=t + 1, forward=forward_for(rt, "f1"))
        assert first.accepted and first.forwarded
        assert (first.trip_id, first.rider_id, first.target) == ("trp_1", "rdr_1", to_pickup)
        assert here.moved_retries == before + 1
        second = await locate(here, "drv_a", MIDTOWN, ts=t + 2, forward=forward_for(rt, "f2"))
        assert second.forwarded and here.moved_retries == before + 1

        # The ride starts (on the other process): the target is the drop-off now.
        await other.set_trip(
            "drv_a",
            trip_id="trp_1",
            rider_id="rdr_1",
            target_lat=dropoff.lat,
            target_lng=dropoff.lng,
        )
        to_dropoff = f"{dropoff.lat!r},{dropoff.lng!r}"
        third = await locate(here, "drv_a", MIDTOWN, ts=t + 3, forward=forward_for(rt, "f3"))
        assert third.forwarded and third.target == to_dropoff
        assert here.moved_retries == before + 2
        assert await heard(rt, listener, "rdr_1") == [
            f"f1:trp_1:{to_pickup}",
            f"f2:trp_1:{to_pickup}",
            f"f3:trp_1:{to_dropoff}",
        ]
        # Traced under the trip: the first frame (after its retry) and not the second
        # (within the sampling interval).
        assert [ts for ts, _, _ in await here.take_trace("trp_1")] == [t + 1]
    finally:
        await listener.aclose()


async def test_a_trip_set_by_this_process_forwards_from_the_first_frame(
    runtime: Runtime,
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    pickup = point_in_ring(rt, 3, 0)
    await here.connected("drv_a")
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", MIDTOWN, ts=t)).accepted
    listener = await listen(rt, "rdr_1")
    try:
        await here.set_trip(
            "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=pickup.lat, target_lng=pickup.lng
        )
        before = here.moved_retries
        first = await locate(here, "drv_a", MIDTOWN, ts=t + 1, forward=forward_for(rt, "f1"))
        assert first.forwarded and here.moved_retries == before
        assert await heard(rt, listener, "rdr_1") == [f"f1:trp_1:{pickup.lat!r},{pickup.lng!r}"]
        assert [ts for ts, _, _ in await here.take_trace("trp_1")] == [t + 1]
    finally:
        await listener.aclose()


async def test_a_fixed_forward_for_another_leg_is_not_retried_but_the_trace_key_is(
    runtime: Runtime, other: Presence
) -> None:
    """A caller that hands a ready frame (not a function of the leg) cannot recompute it:
    a wrong leg only means no forward. But the trace must go to the trip Redis names,
    so a frame that believed another trip is retried with that trip's trace key."""
    rt, here = runtime, runtime.presence
    t = now_ms()
    await here.set_status("drv_a", "available", now_ms=t)
    assert (await locate(here, "drv_a", MIDTOWN, ts=t)).accepted
    await other.set_trip("drv_a", trip_id="trp_2", rider_id="rdr_2", target_lat=1.0, target_lng=2.0)
    before = here.moved_retries
    wrong = RiderForward("trp_1", "1.0,2.0", rt.keys.channel("rider", "rdr_2"), "x")
    result = await locate(here, "drv_a", MIDTOWN, ts=t + 1, forward=wrong)
    assert result.accepted and not result.forwarded
    assert here.moved_retries == before + 1  # for the trace, not for the forward
    assert [ts for ts, _, _ in await here.take_trace("trp_2")] == [t + 1]
    assert await here.take_trace("trp_1") == []
    # Within the sampling interval nothing is traced, so nothing needs retrying.
    await other.set_trip("drv_a", trip_id="trp_3", rider_id="rdr_3", target_lat=1.0, target_lng=2.0)
    assert (await locate(here, "drv_a", MIDTOWN, ts=t + 2)).accepted
    assert here.moved_retries == before + 1
    assert (await here.state("drv_a")).trip_id == "trp_3"
