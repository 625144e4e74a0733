"""A driver's connection drops (no close frame: a tunnel, a crashed app).

Back within the grace period, the driver resumes from its last processed or acked
``event_id``: the offer it had not handled comes again, once; what it had handled does
not; the offer is still its to accept. Away longer, the offer is withdrawn and the trip
goes to another driver; the returning phone learns of the withdrawal from the replay."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from core.settings import Settings
from server.harness import Server, libpq_url, start_server
from tests.fixtures.invariants import check_database, offers_of, wait_for
from tests.fixtures.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, Socket, new_driver, new_rider
from tests.fixtures.phones import open_socket as _open_socket
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
FARTHER = {"lat": 40.7600, "lng": -73.9800}
GRACE_S = 1.0


@pytest.fixture(scope="module")
@starts_server
def drops_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Offers live 60 s, so only the disconnect grace (1 s) can end them early."""
    settings = test_settings.model_copy(
        update={
            "redis_prefix": f"{test_settings.redis_prefix}drops:",
            "offer_timeout_s": 60.0,
            "offer_disconnect_grace_s": GRACE_S,
        }
    )
    with start_server(settings, tmp_path_factory.mktemp("drops") / "server.log") as srv:
        yield srv


@pytest.fixture
async def http(drops_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=drops_server.base_url, timeout=10) as client:
        yield client


async def connect(server: Server, token: str, query: str = "") -> tuple[Any, Socket]:
    cm = _open_socket(server, "/v1/drivers/ws", token, query=query)
    return cm, await cm.__aenter__()


def drop(cm: Any, ws: Socket) -> None:
    """The connection dies: no close frame, the TCP connection just goes."""
    ws.conn.transport.abort()


async def test_back_within_grace_resumes_without_loss_or_duplicates(
    http: httpx.AsyncClient, drops_server: Server
) -> None:
    server = drops_server
    dsn = libpq_url(server.settings.database_url)
    driver_id, token = await new_driver(http, server)
    _, rider = await new_rider(http)
    cm, first = await connect(server, token)
    await first.call({"type": "status", "status": "online"})
    await first.call({"type": "location", **NEAR_MIDTOWN})
    trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
    try:
        offer = await first.expect("offer", trip_id=trip["id"])
        # The app dies before handling the offer: it still holds event_id - 1.
        drop(cm, first)
        cm, second = await connect(server, token, f"last_event_id={offer['event_id'] - 1}")
        replayed = await second.recv()
        assert replayed == offer  # the same frame, same event_id: nothing lost
        assert (await second.call({"type": "ack", "event_id": offer["event_id"]}))["type"] == "ok"
        # It dies again after acking; the next connection resumes from the ack.
        drop(cm, second)
        cm, third = await connect(server, token)
        assert (await third.call({"type": "status", "status": "online"}))["type"] == "ok"
        assert [f for f in third.frames if f.get("type") == "offer"] == []

        # Coming back cancelled the withdrawal: past the grace period (plus a few
        # dispatcher ticks) the offer is still pending. A negative check needs a window.
        orphaned = f"{server.settings.redis_prefix}offers:orphaned"
        async with _redis(server) as redis:
            assert await redis.zscore(orphaned, offer["offer_id"]) is None
        until = time.monotonic() + GRACE_S + 10 * server.settings.dispatch_batch_s
        while time.monotonic() < until:
            made = await offers_of(dsn, trip["id"])
            assert [(o["id"], o["status"]) for o in made] == [(offer["offer_id"], "pending")]
        reply = await third.call({"type": "accept", "offer_id": offer["offer_id"]})
        assert reply["type"] == "ok", reply
        assigned = await third.expect("trip.assigned")
        assert assigned["event_id"] == offer["event_id"] + 1
        assert assigned["trip"]["driver_id"] == driver_id
        every = [*first.frames, *second.frames, *third.frames]
        assert sum(f.get("offer_id") == offer["offer_id"] for f in every) == 2  # sent, replayed
        assert sum(f.get("type") == "trip.assigned" for f in every) == 1
        await cm.__aexit__(None, None, None)
    finally:
        await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
    await check_database(dsn, [trip["id"]])


async def test_offer_to_a_vanished_driver_is_withdrawn_and_redispatched(
    http: httpx.AsyncClient, drops_server: Server
) -> None:
    server = drops_server
    dsn = libpq_url(server.settings.database_url)
    _, gone_token = await new_driver(http, server)
    other_id, other_token = await new_driver(http, server)
    _, rider = await new_rider(http)
    cm, gone = await connect(server, gone_token)
    await gone.call({"type": "status", "status": "online"})
    await gone.call({"type": "location", **NEAR_MIDTOWN})
    trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
    try:
        offer = await gone.expect("offer", trip_id=trip["id"])
        assert (await gone.call({"type": "ack", "event_id": offer["event_id"]}))["type"] == "ok"
        dropped_at = time.monotonic()
        drop(cm, gone)

        async with _open_socket(server, "/v1/drivers/ws", other_token) as other:
            await other.call({"type": "status", "status": "online"})
            await other.call({"type": "location", **FARTHER})
            second = await other.expect("offer", trip_id=trip["id"], timeout=15)
            # Not before the grace period: a phone gets that long to come back.
            assert time.monotonic() - dropped_at >= GRACE_S
            made = await offers_of(dsn, trip["id"])
            assert [(o["id"], o["status"]) for o in made] == [
                (offer["offer_id"], "withdrawn"),
                (second["offer_id"], "pending"),
            ]
            assert (await other.call({"type": "accept", "offer_id": second["offer_id"]}))[
                "type"
            ] == "ok"
            assigned = await other.expect("trip.assigned")
            assert assigned["trip"]["driver_id"] == other_id

        # The phone comes back: from its ack it hears exactly that its offer went.
        async with _open_socket(server, "/v1/drivers/ws", gone_token) as back:
            withdrawn = await back.recv()
            assert withdrawn == {
                "event_id": offer["event_id"] + 1,
                "type": "offer.withdrawn",
                "offer_id": offer["offer_id"],
            }
            late = await back.call({"type": "accept", "offer_id": offer["offer_id"]})
            assert late["type"] == "error" and late["code"] == "offer-withdrawn"
            assert not [f for f in back.frames if f.get("type") == "offer"]
    finally:
        await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
    await wait_for(lambda: _no_pending(dsn, trip["id"]), 5, "no pending offer left")
    await check_database(dsn, [trip["id"]])


async def _no_pending(dsn: str, trip_id: str) -> bool:
    return all(o["status"] != "pending" for o in await offers_of(dsn, trip_id))


def _redis(server: Server) -> Any:
    from redis.asyncio import Redis

    return Redis.from_url(server.settings.redis_url, decode_responses=True)
