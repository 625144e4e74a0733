"""core.events.EventBus with the real runtime: numbering, channel frames, resume log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from core.events import Event
from core.hub import Subscription
from web.runtime import ApiRuntime as Runtime

RECEIVE_TIMEOUT_S = 5.0


@pytest.fixture
def runtime(api_runtime: Runtime) -> Runtime:
    """The api process's runtime: these tests listen through its hub."""
    return api_runtime


@asynccontextmanager
async def listening(rt: Runtime, audience: str, ident: str) -> AsyncIterator[Subscription]:
    """Subscribe through the hub and return only once Redis has the subscription: a probe
    is published until PUBLISH reports a receiver (no sleeping), then drained."""
    channel = rt.keys.channel(audience, ident)
    async with rt.hub.subscribe(channel) as sub:
        for _ in range(1_000):
            if await rt.redis.publish(channel, "probe") > 0:
                break
        else:
            raise AssertionError(f"subscription to {channel} never became active")
        assert await asyncio.wait_for(sub.queue.get(), RECEIVE_TIMEOUT_S) == "probe"
        yield sub


async def receive(sub: Subscription) -> str:
    return await asyncio.wait_for(sub.queue.get(), RECEIVE_TIMEOUT_S)


def trip_frame(n: int) -> dict[str, Any]:
    return {"type": "trip.updated", "trip": {"id": f"trp_{n}", "status": "assigned", "n": n}}


async def test_durable_events_get_increasing_ids_per_recipient(runtime: Runtime) -> None:
    rt = runtime
    ids = await rt.bus.publish(
        [
            Event("rider", "rdr_1", trip_frame(1)),
            Event("rider", "rdr_1", trip_frame(2)),
            Event("rider", "rdr_2", trip_frame(3)),
            Event("driver", "rdr_1", trip_frame(4)),  # same id, other audience
            Event("rider", "rdr_1", trip_frame(5)),
            Event("rider", "rdr_2", trip_frame(6)),
        ]
    )
    assert ids == [1, 2, 1, 1, 3, 2]
    more = await rt.bus.publish([Event("rider", "rdr_1", trip_frame(7))])
    assert more == [4]
    assert await rt.bus.current_event_id("rider", "rdr_1") == 4
    assert await rt.bus.current_event_id("rider", "rdr_2") == 2
    assert await rt.bus.current_event_id("driver", "rdr_1") == 1
    assert await rt.bus.current_event_id("rider", "rdr_nobody") == 0
    assert await rt.bus.publish([]) == []


async def test_published_frame_is_the_frame_plus_its_event_id(runtime: Runtime) -> None:
    rt = runtime
    frames = [
        trip_frame(1),
        {
            "type": "offer",
            "offer_id": "ofr_1",
            "fare": {"total_cents": 842},
            "note": "caf\u00e9 \u2615",
        },
        {"type": "offer.expired", "offer_id": "ofr_1", "quoted": 'a "quoted" , } value'},
    ]
    async with listening(rt, "driver", "drv_1") as sub:
        ids = await rt.bus.publish([Event("driver", "drv_1", f) for f in frames])
        assert ids == [1, 2, 3]
        for event_id, frame in zip(ids, frames, strict=True):
            raw = await receive(sub)
            assert raw.startswith(f'{{"event_id":{event_id},')
            assert json.loads(raw) == {"event_id": event_id, **frame}


async def test_events_reach_only_their_recipient(runtime: Runtime) -> None:
    rt = runtime
    async with listening(rt, "rider", "rdr_1") as mine, listening(rt, "rider", "rdr_2") as other:
        await rt.bus.publish([Event("rider", "rdr_2", trip_frame(1))])
        await rt.bus.publish([Event("rider", "rdr_1", trip_frame(2))])
        assert json.loads(await receive(mine))["trip"]["n"] == 2
        assert json.loads(await receive(other))["trip"]["n"] == 1
        assert mine.queue.empty()
        assert other.queue.empty()


async def test_missed_since_returns_exactly_the_frames_after_an_id(runtime: Runtime) -> None:
    rt = runtime
    await rt.bus.publish([Event("rider", "rdr_1", trip_frame(n)) for n in range(1, 6)])
    await rt.bus.publish([Event("rider", "rdr_other", trip_frame(99))])

    def ns(frames: list[str]) -> list[tuple[int, int]]:
        return [(json.loads(f)["event_id"], json.loads(f)["trip"]["n"]) for f in frames]

    frames, complete, _ = await rt.bus.missed_since("rider", "rdr_1", 2)
    assert ns(frames) == [(3, 3), (4, 4), (5, 5)]
    assert complete

    frames, complete, _ = await rt.bus.missed_since("rider", "rdr_1", 0)
    assert ns(frames) == [(n, n) for n in range(1, 6)]
    assert complete

    frames, complete, _ = await rt.bus.missed_since("rider", "rdr_1", 4)
    assert ns(frames) == [(5, 5)]
    assert complete

    frames, complete, _ = await rt.bus.missed_since("rider", "rdr_1", 5)
    assert frames == []
    assert complete

    frames, complete, _ = await rt.bus.missed_since("rider", "rdr_nobody", 0)
    assert frames == [] and complete


async def test_a_restarted_sequence_sends_everything_new_and_asks_for_a_resync(
    runtime: Runtime,
) -> None:
    """Redis lost the sequence: a phone that saw event 40 of the old one must still get
    the new events 1..3 (not drop them as already seen) and be told to refetch."""
    rt = runtime
    await rt.bus.publish([Event("rider", "rdr_1", trip_frame(n)) for n in range(1, 4)])
    frames, complete, since = await rt.bus.missed_since("rider", "rdr_1", 40)
    assert [json.loads(f)["event_id"] for f in frames] == [1, 2, 3]
    assert since == 0 and not complete


async def test_a_trimmed_log_asks_for_a_resync(runtime: Runtime) -> None:
    rt = runtime
    await rt.bus.publish([Event("rider", "rdr_1", trip_frame(n)) for n in range(1, 6)])
    log = rt.keys.event_log("rider", "rdr_1")
    await rt.redis.xtrim(log, minid="4-1", approximate=False)  # events 1..3 are gone
    frames, complete, since = await rt.bus.missed_since("rider", "rdr_1", 0)
    assert [json.loads(f)["event_id"] for f in frames] == [4, 5]
    assert not complete and since == 0
    frames, complete, _ = await rt.bus.missed_since("rider", "rdr_1", 3)
    assert [json.loads(f)["event_id"] for f in frames] == [4, 5] and complete


async def test_log_frames_are_the_frames_that_were_published(runtime: Runtime) -> None:
    rt = runtime
    async with listening(rt, "rider", "rdr_1") as sub:
        await rt.bus.publish([Event("rider", "rdr_1", trip_frame(n)) for n in range(3)])
        live = [await receive(sub) for _ in range(3)]
    logged, _, _ = await rt.bus.missed_since("rider", "rdr_1", 0)
    assert logged == live


async def test_ephemeral_frames_are_published_but_not_logged(runtime: Runtime) -> None:
    rt = runtime
    location = {
        "type": "driver.location",
        "trip_id": "trp_1",
        "lat": 40.75,
        "lng": -73.99,
        "eta_s": 120,
    }
    async with listening(rt, "rider", "rdr_1") as sub:
        ids = await rt.bus.publish(
            [
                Event("rider", "rdr_1", trip_frame(1)),
                Event("rider", "rdr_1", location, durable=False),
                Event("rider", "rdr_1", trip_frame(2)),
            ]
        )
        assert ids == [1, None, 2]
        first, second, third = [await receive(sub) for _ in range(3)]
    assert json.loads(first)["event_id"] == 1
    assert json.loads(second) == location  # no event_id, exactly the frame
    assert json.loads(third)["event_id"] == 2

    assert await rt.bus.current_event_id("rider", "rdr_1") == 2
    logged, _, _ = await rt.bus.missed_since("rider", "rdr_1", 0)
    assert [json.loads(f)["type"] for f in logged] == ["trip.updated", "trip.updated"]
    assert await rt.redis.xlen(rt.keys.event_log("rider", "rdr_1")) == 2

    only_ephemeral = await rt.bus.publish([Event("rider", "rdr_9", location, durable=False)])
    assert only_ephemeral == [None]
    assert await rt.bus.current_event_id("rider", "rdr_9") == 0
    assert await rt.redis.exists(rt.keys.event_log("rider", "rdr_9")) == 0


async def test_event_log_and_sequence_expire(runtime: Runtime) -> None:
    rt = runtime
    await rt.bus.publish([Event("driver", "drv_1", trip_frame(1))])
    for key in (rt.keys.event_seq("driver", "drv_1"), rt.keys.event_log("driver", "drv_1")):
        ttl = await rt.redis.ttl(key)
        assert 0 < ttl <= 24 * 3600
