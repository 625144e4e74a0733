"""dispatch.presence.sockets against real Redis: a driver's sockets counted per api
process, under that process's lease, so the sockets of a process that died stop
counting and a restarted process's predecessor is reaped. Several ``Presence`` objects
on one Redis stand for several api processes; "dying" is stopping the lease's renewal
without letting it run out (as a SIGKILL does), then moving its end into the past, as
time would (``tests/faults/test_api_crash.py`` does it with real processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.bulk_redis import BulkScriptRunner
from core.clock import now_ms
from core.tasks import cancel_and_wait
from dispatch import offers
from dispatch.presence import Gone, Presence
from dispatch.presence.sockets import FORGET_AFTER_MS
from dispatch.runtime import Runtime
from geo import cells
from tests.fixtures.live_index import (
    MIDTOWN,
    STALE_MS,
    cells_holding,
    home_cell,
    online_at,
    search_index,
)
from tests.fixtures.world import World, east

Process = Callable[..., Awaitable[Presence]]


@pytest.fixture
async def process(runtime: Runtime) -> AsyncIterator[Process]:
    """Starts another api process's index (same Redis and keys), with a lease of its own."""
    started: list[Presence] = []

    async def start(lease_s: float | None = None) -> Presence:
        rt = runtime
        p = Presence(
            rt.redis,
            rt.keys,
            rt.presence.resolution,
            bulk=BulkScriptRunner(rt.settings.redis_url),
            bulk_search=BulkScriptRunner(rt.settings.redis_url),
            lease_s=lease_s or rt.settings.process_lease_s,
        )
        await p.start()
        started.append(p)
        return p

    yield start
    for p in started:
        await p.stop()
        p.close()


async def stall(p: Presence) -> None:
    """The process stops renewing its lease (its loop stalled, or it died), which still
    runs until its end; the test renews by hand from here (``p.sockets.renew()``)."""
    task = p.sockets._task
    if task is not None:
        await cancel_and_wait(task)
        p.sockets._task = None


async def die(rt: Runtime, p: Presence) -> None:
    """The process is gone without a word: its lease is no longer renewed, and (time
    passing) has run out."""
    await stall(p)
    p.sockets._taken = False  # and it says nothing when stopped
    await rt.redis.zadd(rt.keys.processes(), {p.process_id: now_ms() - 1000})


async def counts(rt: Runtime, driver_id: str) -> dict[str, int]:
    raw = await rt.redis.hgetall(rt.keys.driver_sockets(driver_id))
    return {str(k): int(v) for k, v in raw.items()}


async def test_each_process_counts_its_own_sockets(runtime: Runtime, process: Process) -> None:
    rt, here = runtime, runtime.presence
    there = await process()
    assert here.process_id != there.process_id
    assert await here.connected("drv_a") == 1
    assert await there.connected("drv_a") == 2  # its second phone, on another process
    assert await here.connected("drv_a") == 3  # and an old socket not closed yet
    assert await counts(rt, "drv_a") == {here.process_id: 2, there.process_id: 1}
    assert await rt.redis.smembers(rt.keys.process_drivers(there.process_id)) == {"drv_a"}
    assert await here.open_sockets("drv_a") == 3
    assert await there.disconnected("drv_a") == 2
    assert await counts(rt, "drv_a") == {here.process_id: 2}
    assert await rt.redis.smembers(rt.keys.process_drivers(there.process_id)) == set()
    assert here.sockets.held() == {"drv_a": 2} and there.sockets.held() == {}


async def test_a_dead_processes_sockets_stop_counting_and_are_reaped(
    runtime: Runtime, process: Process
) -> None:
    rt = runtime
    t = now_ms()
    there = await process()
    assert await there.connected("drv_a") == 1
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    await die(rt, there)
    # Not reaped yet, already not counted: its lease ran out.
    assert await rt.presence.open_sockets("drv_a") == 0
    ends = int(await rt.redis.zscore(rt.keys.processes(), there.process_id))

    gone = await rt.presence.reap_lapsed_processes()
    assert gone == [Gone("drv_a", ends)]
    assert await counts(rt, "drv_a") == {}
    state = await rt.presence.state("drv_a")
    assert state.status == "offline"  # as if its last socket had closed
    assert await cells_holding(rt, "drv_a") == set()
    rings = cells.disk_by_ring(home_cell(rt), 1)
    assert await search_index(rt, rings, min_seen_ms=t - STALE_MS, want=1) == []
    assert await rt.presence.reap_lapsed_processes() == []  # once


async def test_a_driver_with_a_phone_on_a_surviving_process_stays_connected(
    runtime: Runtime, process: Process
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    there = await process()
    await there.connected("drv_a")
    await here.connected("drv_a")
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    await die(rt, there)
    assert await rt.presence.open_sockets("drv_a") == 1
    assert await rt.presence.reap_lapsed_processes() == []  # nobody left without a socket
    assert await counts(rt, "drv_a") == {here.process_id: 1}
    assert (await rt.presence.state("drv_a")).status == "available"
    assert await cells_holding(rt, "drv_a") == {home_cell(rt)}


async def test_a_driver_on_a_trip_stays_on_it_when_its_process_dies(
    runtime: Runtime, process: Process
) -> None:
    rt = runtime
    t = now_ms()
    there = await process()
    await there.connected("drv_a")
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    await rt.presence.set_trip(
        "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=MIDTOWN.lat, target_lng=MIDTOWN.lng
    )
    await die(rt, there)
    assert [g.driver_id for g in await rt.presence.reap_lapsed_processes()] == ["drv_a"]
    assert (await rt.presence.state("drv_a")).status == "on_trip"
    # The trip ends with no socket counted: offline, not offered the next one.
    assert await rt.presence.clear_trip("drv_a", now_ms=t + 1) == "offline"


async def test_a_trip_ends_available_while_a_socket_is_counted(runtime: Runtime) -> None:
    rt = runtime
    t = now_ms()
    await rt.presence.connected("drv_a")
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    await rt.presence.set_trip(
        "drv_a", trip_id="trp_1", rider_id="rdr_1", target_lat=MIDTOWN.lat, target_lng=MIDTOWN.lng
    )
    assert await rt.presence.clear_trip("drv_a", now_ms=t + 1) == "available"


async def test_the_issues_sequence_a_restart_then_a_reconnect(
    runtime: Runtime, process: Process
) -> None:
    """Connected on a process that is killed; back on its restarted successor (a fresh
    id) before the old lease ran out; that socket closes too: once the old lease runs
    out, the driver counts as gone, and is not left counted by the dead process."""
    rt = runtime
    t = now_ms()
    first = await process()
    assert await first.connected("drv_x") == 1
    await online_at(rt, "drv_x", MIDTOWN, ts=t)
    await stall(first)  # SIGKILL: its lease still runs a while
    restarted = await process()
    assert await restarted.connected("drv_x") == 2  # the dead one's count not reaped yet
    assert await restarted.disconnected("drv_x") == 1
    assert (await rt.presence.state("drv_x")).status == "available"
    assert await rt.presence.reap_lapsed_processes() == []  # its lease has not run out
    await die(rt, first)
    assert [g.driver_id for g in await rt.presence.reap_lapsed_processes()] == ["drv_x"]
    assert await counts(rt, "drv_x") == {}
    assert (await rt.presence.state("drv_x")).status == "offline"


async def test_an_offer_held_by_a_driver_gone_with_its_process_is_withdrawn(
    world: World, process: Process
) -> None:
    rt = world.rt
    there = await process()
    driver = await world.member()  # counted by the test's own process: take that back
    await rt.presence.disconnected(driver)
    await there.connected(driver)
    await online_at(rt, driver, east(100), ts=now_ms())
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    await die(rt, there)
    ends = int(await rt.redis.zscore(rt.keys.processes(), there.process_id))
    gone = await rt.presence.reap_lapsed_processes()
    assert await offers.orphan_gone(rt, gone) == 1
    due = await rt.redis.zscore(rt.keys.offers_orphaned(), offer.id)
    # The grace counts from when the lease ran out: the socket was last known open then.
    assert due == ends + int(rt.settings.offer_disconnect_grace_s * 1000)
    await rt.redis.zadd(rt.keys.offers_orphaned(), {offer.id: now_ms() - 1})
    assert await offers.withdraw_orphaned(rt) == 1
    assert (await world.offer_row(offer.id)).status == "withdrawn"


async def test_a_lapsed_id_is_forgotten_once_nothing_is_left_under_it(
    runtime: Runtime, process: Process
) -> None:
    rt = runtime
    there = await process()
    await there.connected("drv_a")
    await die(rt, there)
    await rt.presence.reap_lapsed_processes()
    assert await rt.redis.zscore(rt.keys.processes(), there.process_id) is not None  # kept
    long_ago = now_ms() - FORGET_AFTER_MS - 1
    await rt.redis.zadd(rt.keys.processes(), {there.process_id: long_ago})
    assert await rt.presence.reap_lapsed_processes() == []
    assert await rt.redis.zscore(rt.keys.processes(), there.process_id) is None
    # Live leases stay.
    assert await rt.redis.zscore(rt.keys.processes(), rt.presence.process_id) is not None


async def test_a_process_that_lost_its_lease_counts_its_sockets_again(
    runtime: Runtime, process: Process
) -> None:
    """The process stalled (or was cut off from Redis) past its lease, and was reaped as
    dead: at its next renewal it takes a new id, counts its open sockets again, and puts
    back online the drivers whose socket here had asked to be."""
    rt = runtime
    t = now_ms()
    stalled = await process()
    await stall(stalled)
    await stalled.connected("drv_a")
    await stalled.connected("drv_a")  # two phones
    await stalled.connected("drv_b")
    await stalled.set_status("drv_a", "available", now_ms=t)
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    await online_at(rt, "drv_b", MIDTOWN, ts=t)
    await stalled.set_status("drv_b", "offline", now_ms=t + 1)  # its socket asked: offline
    old = stalled.process_id
    await rt.redis.zadd(rt.keys.processes(), {old: now_ms() - 1})  # it overslept
    assert {g.driver_id for g in await rt.presence.reap_lapsed_processes()} == {
        "drv_a",
        "drv_b",
    }
    assert (await rt.presence.state("drv_a")).status == "offline"

    await stalled.sockets.renew()  # the process wakes up
    new = stalled.process_id
    assert new != old and stalled.sockets.new_ids == 1
    assert await counts(rt, "drv_a") == {new: 2}
    assert await counts(rt, "drv_b") == {new: 1}
    assert await rt.presence.open_sockets("drv_a") == 2
    assert (await rt.presence.state("drv_a")).status == "available"
    assert await cells_holding(rt, "drv_a") == {home_cell(rt)}
    assert (await rt.presence.state("drv_b")).status == "offline"
    # The old id was given up (run out now): nothing is left under it to reap.
    assert await rt.redis.zscore(rt.keys.processes(), old) <= now_ms()
    assert await rt.presence.reap_lapsed_processes() == []
    assert await counts(rt, "drv_a") == {new: 2}


async def test_after_redis_lost_everything_each_process_counts_its_sockets_again(
    runtime: Runtime,
) -> None:
    rt, here = runtime, runtime.presence
    t = now_ms()
    await stall(here)
    await here.connected("drv_a")
    await online_at(rt, "drv_a", MIDTOWN, ts=t)
    # A restarted Redis: every key is gone (this test's only, here).
    mine = [k async for k in rt.redis.scan_iter(match=rt.keys.all_keys_pattern())]
    await rt.redis.delete(*mine)
    await here.sockets.renew()
    assert await counts(rt, "drv_a") == {here.process_id: 1}
    # The status is not made up: the driver's next frame brings it back (docs/live-index).
    assert await rt.redis.exists(rt.keys.driver("drv_a")) == 0


async def test_a_count_that_failed_is_made_good_under_a_new_id(
    runtime: Runtime, process: Process
) -> None:
    rt = runtime
    p = await process()
    await stall(p)
    await p.connected("drv_a")
    await p.connected("drv_b")
    old = p.process_id

    async def broken(commands: list[bytes]) -> list[object]:
        raise ConnectionError("redis went away")

    runner = p.sockets._batcher._runner
    working = runner.run
    runner.run = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await p.disconnected("drv_a")  # the phone left; Redis did not hear of it
    runner.run = working  # type: ignore[method-assign]
    assert await counts(rt, "drv_a") == {old: 1}  # counted still
    await p.sockets.renew()
    assert p.process_id != old
    assert await rt.presence.open_sockets("drv_a") == 0
    assert await rt.presence.open_sockets("drv_b") == 1
    assert [g.driver_id for g in await rt.presence.reap_lapsed_processes()] == ["drv_a"]
    assert await counts(rt, "drv_a") == {}
    assert await counts(rt, "drv_b") == {p.process_id: 1}


async def test_the_lease_is_renewed_while_the_process_lives(
    runtime: Runtime, process: Process
) -> None:
    rt = runtime
    p = await process(lease_s=0.6)
    first = await rt.redis.zscore(rt.keys.processes(), p.process_id)
    assert first > now_ms()
    await asyncio.sleep(p.sockets.lease_s / 3 + 0.2)
    assert await rt.redis.zscore(rt.keys.processes(), p.process_id) > first
    await p.stop()  # a clean stop lets it run out at once
    assert await rt.redis.zscore(rt.keys.processes(), p.process_id) <= now_ms()
