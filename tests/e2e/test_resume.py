"""A phone that drops its socket gets what it missed when it comes back, once."""

from __future__ import annotations

import httpx
import pytest

from server.harness import Server
from tests.fixtures.phones import CHELSEA, MIDTOWN, new_rider, open_socket

pytestmark = pytest.mark.e2e


async def test_rider_resumes_from_last_event_id_and_from_its_ack(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, auth = await new_rider(http)
        token = auth["Authorization"][7:]
        async with open_socket(server, "/v1/riders/ws", token) as ws:
            trip = (
                await http.post(
                    "/v1/trips", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=auth
                )
            ).json()
            first = await ws.expect("trip.updated")
            assert first["trip"]["status"] == "requested"
        # While the phone is away, the trip is cancelled (say, from the web).
        r = await http.post(f"/v1/trips/{trip['id']}/cancel", headers=auth)
        assert r.status_code == 200

        async with open_socket(
            server, "/v1/riders/ws", token, query=f"last_event_id={first['event_id']}"
        ) as ws:
            missed = await ws.recv()
            assert missed["type"] == "trip.updated"
            assert missed["event_id"] == first["event_id"] + 1
            assert missed["trip"]["status"] == "cancelled"
            assert (await ws.call({"type": "ack", "event_id": missed["event_id"]}))["type"] == "ok"

        # Reconnecting without a last_event_id resumes from the stored ack: nothing is
        # sent twice, and the next live event arrives with the next id.
        async with open_socket(server, "/v1/riders/ws", token) as ws:
            again = (
                await http.post(
                    "/v1/trips", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=auth
                )
            ).json()
            live = await ws.recv()
            assert live["type"] == "trip.updated"
            assert live["trip"]["id"] == again["id"]
            assert live["event_id"] == missed["event_id"] + 1
            await http.post(f"/v1/trips/{again['id']}/cancel", headers=auth)
            assert (await ws.expect("trip.updated"))["trip"]["status"] == "cancelled"
