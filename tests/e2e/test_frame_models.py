"""Every frame the real server sends on a trip's way (offer, accept, positions, a bad
frame, a cancellation) is one its socket's server-frame union (web/frames.py,
driver_api/frames.py) accepts: the models, and so asyncapi.json, describe what the
sockets really send, not what they were meant to."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import TypeAdapter

from driver_api.frames import DriverServerFrame
from server.harness import Server
from tests.fixtures.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, new_driver, new_rider, open_socket
from web.frames import RiderServerFrame

DRIVER_FRAMES: TypeAdapter[Any] = TypeAdapter(DriverServerFrame)
RIDER_FRAMES: TypeAdapter[Any] = TypeAdapter(RiderServerFrame)


async def test_frames_sent_on_a_trip_are_the_modelled_ones(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, driver_token = await new_driver(http, server)
        _, rider = await new_rider(http)
        rider_token = rider["Authorization"].removeprefix("Bearer ")
        async with (
            open_socket(server, "/v1/drivers/ws", driver_token) as driver,
            open_socket(server, "/v1/riders/ws", rider_token) as rider_ws,
        ):
            assert (await driver.call({"type": "status", "status": "online"}))["type"] == "ok"
            assert (await driver.call({"type": "location", **NEAR_MIDTOWN}))["type"] == "ok"
            r = await http.post(
                "/v1/trips", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=rider
            )
            assert r.status_code == 201, r.text
            trip_id = r.json()["id"]
            await rider_ws.expect("trip.updated")
            offer = await driver.expect("offer", trip_id=trip_id)
            assert (await driver.call({"type": "accept", "offer_id": offer["offer_id"]}))[
                "type"
            ] == "ok"
            await driver.expect("trip.assigned")
            assert (await driver.call({"type": "location", **MIDTOWN}))["type"] == "ok"
            await rider_ws.expect("driver.location", trip_id=trip_id)
            refused = await driver.call({"type": "location", "lat": 91, "lng": 0})
            assert refused["code"] == "invalid-coordinates"
            assert (await rider_ws.call({"type": "status"}))["code"] == "unknown-frame-type"
            assert (await rider_ws.call({"type": "ack", "event_id": 1}))["type"] == "ok"
            cancelled = await http.post(f"/v1/trips/{trip_id}/cancel", headers=rider)
            assert cancelled.status_code == 200, cancelled.text
            await driver.expect("trip.cancelled")
            while (await rider_ws.expect("trip.updated"))["trip"]["status"] != "cancelled":
                pass  # the updates before it (assigned) were passed over above

    for adapter, frames in ((DRIVER_FRAMES, driver.frames), (RIDER_FRAMES, rider_ws.frames)):
        for frame in frames:
            adapter.validate_python(frame)  # raises, naming the field, on a frame off-model
    assert {"ok", "error", "offer", "trip.assigned", "trip.cancelled"} <= {
        f["type"] for f in driver.frames
    }
    assert {"ok", "error", "trip.updated", "driver.location"} <= {
        f["type"] for f in rider_ws.frames
    }
