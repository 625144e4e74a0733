"""Offers under pressure: decline, expiry, request expiry, racing accepts, and retried
requests. Real server, real sockets; the invariants are checked in the API's answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from core.settings import Settings
from server.harness import Server
from tests.fixtures.isolated import isolated_server
from tests.fixtures.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, new_driver, new_rider, open_socket
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
FARTHER = {"lat": 40.7600, "lng": -73.9800}


@pytest.fixture(scope="module")
@starts_server
def quick_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose offers expire after 1 s and requests after 4 s, with a database of
    its own (every dispatcher re-queues the open trips of its database)."""
    with isolated_server(
        test_settings, tmp_path_factory, "quick", offer_timeout_s=1.0, trip_request_timeout_s=4.0
    ) as srv:
        yield srv


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


async def test_decline_goes_to_the_next_driver(http: httpx.AsyncClient, server: Server) -> None:
    _, near_token = await new_driver(http, server)
    far_id, far_token = await new_driver(http, server)
    _, rider = await new_rider(http)
    async with (
        open_socket(server, "/v1/drivers/ws", near_token) as near,
        open_socket(server, "/v1/drivers/ws", far_token) as far,
    ):
        for ws, spot in ((near, NEAR_MIDTOWN), (far, FARTHER)):
            assert (await ws.call({"type": "status", "status": "online"}))["type"] == "ok"
            assert (await ws.call({"type": "location", **spot}))["type"] == "ok"
        trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
        try:
            first = await near.expect("offer", trip_id=trip["id"])
            assert (await near.call({"type": "decline", "offer_id": first["offer_id"]}))[
                "type"
            ] == "ok"
            second = await far.expect("offer", trip_id=trip["id"])
            assert second["offer_id"] != first["offer_id"]
            assert second["pickup_eta_s"] >= first["pickup_eta_s"]
            await far.call({"type": "accept", "offer_id": second["offer_id"]})
            assigned = await far.expect("trip.assigned")
            assert assigned["trip"]["driver_id"] == far_id
            # The decliner is never offered that trip again, and its decline is final.
            again = await near.call({"type": "accept", "offer_id": first["offer_id"]})
            assert again["code"] == "offer-withdrawn"
            assert not [f for f in near.backlog if f["type"] == "offer"]
        finally:
            await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)


# Phones of one driver racing to accept one offer; only the offered driver can win it,
# so the race is between its own sockets, each handled concurrently by the server.
RACERS = 100


async def test_racing_accepts_have_one_winner(http: httpx.AsyncClient, server: Server) -> None:
    """RACERS sockets of the offered driver accept the one offer at once: exactly one
    wins, every other gets the documented error, and one assignment is made."""
    driver_id, token = await new_driver(http, server)
    _, rider = await new_rider(http)
    async with contextlib.AsyncExitStack() as stack:
        phones = [
            await stack.enter_async_context(open_socket(server, "/v1/drivers/ws", token))
            for _ in range(RACERS)
        ]
        a = phones[0]
        await a.call({"type": "status", "status": "online"})
        await a.call({"type": "location", **NEAR_MIDTOWN})
        trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
        try:
            offers = [await p.expect("offer", trip_id=trip["id"]) for p in phones]
            offer_id = offers[0]["offer_id"]
            assert {o["offer_id"] for o in offers} == {offer_id}
            # Every frame is on the wire before any reply is read.
            for p in phones:
                await p.send({"type": "accept", "offer_id": offer_id, "id": "race"})
            replies = [await p.expect_reply("race") for p in phones]
            kinds = [r["type"] for r in replies]
            assert kinds.count("ok") == 1, replies
            losers = [r for r in replies if r["type"] == "error"]
            assert len(losers) == RACERS - 1
            assert {r["code"] for r in losers} <= {"offer-withdrawn", "offer-expired"}
            # One assignment event, seen by every phone of the driver, with one event_id.
            got = [await p.expect("trip.assigned") for p in phones]
            assert len({g["event_id"] for g in got}) == 1
            assert not [f for p in phones for f in p.backlog if f["type"] == "trip.assigned"]
            t = (await http.get(f"/v1/trips/{trip['id']}", headers=rider)).json()
            assert t["status"] == "assigned" and t["driver_id"] == driver_id
        finally:
            await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)


async def test_concurrent_retries_make_one_trip(http: httpx.AsyncClient) -> None:
    _, rider = await new_rider(http)
    headers = {**rider, "Idempotency-Key": "retry-storm"}
    # 100 at once, as many as the client's pool allows in flight: retries with one key
    # are not charged to the rider's rate limit, so none of them is refused for that.
    responses = await asyncio.gather(
        *(http.post("/v1/trips", json=TRIP, headers=headers) for _ in range(100))
    )
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    mine = (await http.get("/v1/riders/me/trips", headers=rider)).json()["items"]
    assert [t["id"] for t in mine] == list(ids)
    await http.post(f"/v1/trips/{ids.pop()}/cancel", headers=rider)


async def test_ignored_offer_expires_and_moves_on(quick_server: Server) -> None:
    server = quick_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, sleepy_token = await new_driver(http, server)
        awake_id, awake_token = await new_driver(http, server)
        _, rider = await new_rider(http)
        async with open_socket(server, "/v1/drivers/ws", sleepy_token) as sleepy:
            await sleepy.call({"type": "status", "status": "online"})
            await sleepy.call({"type": "location", **NEAR_MIDTOWN})
            trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
            offer = await sleepy.expect("offer", trip_id=trip["id"])
            expired = await sleepy.expect("offer.expired")
            assert expired["offer_id"] == offer["offer_id"]
            late = await sleepy.call({"type": "accept", "offer_id": offer["offer_id"]})
            assert late["code"] == "offer-expired"
            # Another driver comes online and gets the trip; the sleepy one is excluded.
            async with open_socket(server, "/v1/drivers/ws", awake_token) as awake:
                await awake.call({"type": "status", "status": "online"})
                await awake.call({"type": "location", **FARTHER})
                second = await awake.expect("offer", trip_id=trip["id"])
                await awake.call({"type": "accept", "offer_id": second["offer_id"]})
                assigned = await awake.expect("trip.assigned")
                assert assigned["trip"]["driver_id"] == awake_id
            assert not [f for f in sleepy.backlog if f["type"] == "offer"]
            await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)


async def test_unmatched_request_expires_and_rider_is_told(quick_server: Server) -> None:
    server = quick_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, rider = await new_rider(http)
        # Washington Heights: inside the service area, no driver anywhere near.
        far_away = {"pickup": {"lat": 40.8500, "lng": -73.9350}, "dropoff": CHELSEA}
        async with open_socket(server, "/v1/riders/ws", rider["Authorization"][7:]) as ws:
            trip = (await http.post("/v1/trips", json=far_away, headers=rider)).json()
            assert (await ws.expect("trip.updated"))["trip"]["status"] == "requested"
            update = await ws.expect("trip.updated", timeout=15)
            assert update["trip"]["id"] == trip["id"]
            assert update["trip"]["status"] == "expired"
            assert update["trip"]["expired_at"] is not None
        t = (await http.get(f"/v1/trips/{trip['id']}", headers=rider)).json()
        assert t["status"] == "expired"
        r = await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
        assert r.status_code == 409
        # The rider may ask again: an expired trip is not active.
        again = await http.post("/v1/trips", json=TRIP, headers=rider)
        assert again.status_code == 201
        await http.post(f"/v1/trips/{again.json()['id']}/cancel", headers=rider)
