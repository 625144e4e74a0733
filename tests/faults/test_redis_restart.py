"""Redis restarts mid-traffic and comes back empty (it keeps nothing on disk here).

While it is down the api says so (``/readyz`` 503, 503 problem+json, ``error`` frames
with ``service-unavailable``) and the sockets stay open. When it is back: the drivers'
next frames rebuild the live index (a driver on a trip goes back on it), the open trip
and the pending offer are restored from PostgreSQL, the held offer can still be
accepted, and no trip is lost or offered twice."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from core.events import Event, EventBus
from core.keys import Keys
from core.redis import make_redis
from server.harness import Server, start_server
from tests.fixtures.invariants import check_database, offers_of, trip_row, wait_for, wait_ready
from tests.fixtures.own_services import Backing
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    assert_unavailable,
    new_driver,
    new_rider,
    open_socket,
)
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}


@pytest.fixture
@starts_server
def server(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = backing.settings.model_copy(
        update={"redis_prefix": f"faults:{secrets.token_hex(3)}:", "offer_timeout_s": 60.0}
    )
    with start_server(settings, tmp_path_factory.mktemp("redis") / "server.log") as srv:
        yield srv


async def test_redis_restart_mid_traffic(server: Server, backing: Backing) -> None:
    dsn = backing.pg.libpq_url("coopride")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as http:
        busy_id, busy_token = await new_driver(http, server)
        held_id, held_token = await new_driver(http, server)
        fresh_id, fresh_token = await new_driver(http, server)
        _, rider_busy = await new_rider(http)
        _, rider_held = await new_rider(http)
        _, rider_open = await new_rider(http)
        _, rider_late = await new_rider(http)
        async with (
            open_socket(server, "/v1/drivers/ws", busy_token) as busy,
            open_socket(server, "/v1/drivers/ws", held_token) as held,
        ):
            # One driver on a trip, one holding an offer, one trip waiting in the queue.
            await busy.call({"type": "status", "status": "online"})
            await busy.call({"type": "location", **NEAR_MIDTOWN})
            on_trip = (await http.post("/v1/trips", json=TRIP, headers=rider_busy)).json()
            first = await busy.expect("offer", trip_id=on_trip["id"])
            assert (await busy.call({"type": "accept", "offer_id": first["offer_id"]}))[
                "type"
            ] == "ok"
            await busy.expect("trip.assigned")

            await held.call({"type": "status", "status": "online"})
            await held.call({"type": "location", **NEAR_MIDTOWN})
            offered = (await http.post("/v1/trips", json=TRIP, headers=rider_held)).json()
            offer = await held.expect("offer", trip_id=offered["id"])
            waiting = (await http.post("/v1/trips", json=TRIP, headers=rider_open)).json()
            assert waiting["status"] == "requested"

            backing.redis.stop()
            try:
                r = await http.get("/readyz")
                assert r.status_code == 503
                assert r.json()["checks"]["redis"].startswith("down")
                assert r.json()["checks"]["database"] == "ok"
                assert_unavailable(await http.post("/v1/quotes", json=TRIP, headers=rider_late))
                assert_unavailable(await http.post("/v1/trips", json=TRIP, headers=rider_late))
                reply = await held.call({"type": "location", **NEAR_MIDTOWN})
                assert reply["type"] == "error" and reply["code"] == "service-unavailable"
            finally:
                backing.redis.start()
            await wait_ready(server)
            prefix = server.settings.redis_prefix
            with backing.redis.client() as raw:
                # It came back empty: no driver is known until its next frame.
                assert raw.exists(f"{prefix}drv:{busy_id}", f"{prefix}drv:{held_id}") == 0

            # The refused request left nothing behind.
            mine = (await http.get("/v1/riders/me/trips", headers=rider_late)).json()
            assert mine["items"] == []

            # The next frame puts each driver back: the one on a trip, on it.
            for ws in (busy, held):
                assert (await ws.call({"type": "location", **NEAR_MIDTOWN}))["type"] == "ok"
            prefix = server.settings.redis_prefix
            with backing.redis.client() as raw:
                busy_state = raw.hgetall(f"{prefix}drv:{busy_id}")
                held_state = raw.hgetall(f"{prefix}drv:{held_id}")
            assert busy_state["status"] == "on_trip" and busy_state["trip"] == on_trip["id"]
            assert float(busy_state["lat"]) == NEAR_MIDTOWN["lat"]
            assert held_state["status"] == "available"
            assert float(held_state["lng"]) == NEAR_MIDTOWN["lng"]

            # A driver who arrives after the restart gets the trip that was waiting,
            # re-queued from PostgreSQL; not the held offer's trip, not the busy driver.
            async with open_socket(server, "/v1/drivers/ws", fresh_token) as fresh:
                await fresh.call({"type": "status", "status": "online"})
                await fresh.call({"type": "location", **NEAR_MIDTOWN})
                second = await fresh.expect("offer", timeout=20)
                assert second["trip_id"] == waiting["id"]

                # The offer held across the restart is still the held driver's to take,
                # and its answer reaches the socket that stayed open all along.
                await wait_for(
                    lambda: _reserved(backing, prefix, held_id, offer["offer_id"]),
                    10,
                    "the pending offer's reservation restored",
                )
                reply = await held.call({"type": "accept", "offer_id": offer["offer_id"]})
                assert reply["type"] == "ok", reply
                assigned = await held.expect("trip.assigned")
                assert assigned["trip"]["id"] == offered["id"]
                assert any(f["type"] == "resync" for f in held.frames)
                assert (await fresh.call({"type": "accept", "offer_id": second["offer_id"]}))[
                    "type"
                ] == "ok"
                await fresh.expect("trip.assigned")

                # Exactly one offer per trip, each seen once by its driver.
                for trip, driver_id in (
                    (on_trip, busy_id),
                    (offered, held_id),
                    (waiting, fresh_id),
                ):
                    made = await offers_of(dsn, trip["id"])
                    assert [(o["driver_id"], o["status"]) for o in made] == [
                        (driver_id, "accepted")
                    ]
                    assert (await trip_row(dsn, trip["id"]))["driver_id"] == driver_id
                for ws in (busy, held, fresh):
                    seen = [f["offer_id"] for f in ws.frames if f.get("type") == "offer"]
                    assert len(seen) == len(set(seen)) == 1
        await check_database(dsn)


async def _reserved(backing: Backing, prefix: str, driver_id: str, offer_id: str) -> bool:
    with backing.redis.client() as raw:
        return bool(raw.get(f"{prefix}offer:drv:{driver_id}") == offer_id)


async def test_an_event_published_while_the_hub_reconnects_still_reaches_the_phone(
    server: Server, backing: Backing
) -> None:
    """Pub/sub drops what is published while a subscriber's connection is down. The
    server's subscription is cut, an event is published to a driver in that gap (no
    subscriber hears it), and the driver's open socket still gets it, once, from the
    event log when the hub reconnects."""
    prefix = server.settings.redis_prefix
    keys = Keys(prefix)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as http:
        driver_id, token = await new_driver(http, server)
    redis = make_redis(backing.redis.url)
    bus = EventBus(redis, keys)
    try:
        async with open_socket(server, "/v1/drivers/ws", token) as phone:
            assert (await phone.call({"type": "status", "status": "online"}))["type"] == "ok"
            channel = keys.channel("driver", driver_id)
            await redis.ping()  # the publisher's connection, opened before the gap
            with backing.redis.client() as raw:
                assert raw.pubsub_numsub(channel) == [(channel, 1)]
                # Redis takes no new connection until told otherwise, so the server's
                # pub/sub connection, once cut, stays cut while the event goes out.
                maxclients = raw.config_get("maxclients")["maxclients"]
                raw.config_set("maxclients", 1)
                try:
                    assert raw.client_kill_filter(_type="pubsub") >= 1
                    assert raw.pubsub_numsub(channel) == [(channel, 0)]
                    gap = {"type": "trip.updated", "trip": {"id": "trp_gap", "status": "assigned"}}
                    [gap_id] = await bus.publish([Event("driver", driver_id, gap)])
                    assert raw.pubsub_numsub(channel) == [(channel, 0)]
                finally:
                    raw.config_set("maxclients", maxclients)

            got = await phone.expect("trip.updated", timeout=10)
            assert got["event_id"] == gap_id and got["trip"] == gap["trip"]

            # Live delivery works again, and the gap's event came once.
            after = {"type": "trip.updated", "trip": {"id": "trp_after", "status": "assigned"}}
            [after_id] = await bus.publish([Event("driver", driver_id, after)])
            assert (await phone.expect("trip.updated", timeout=10))["event_id"] == after_id
            ids = [f.get("event_id") for f in phone.frames if f.get("type") == "trip.updated"]
            assert ids == [gap_id, after_id]
    finally:
        await redis.aclose()
