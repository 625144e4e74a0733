"""One whole trip, as the two phones see it: real server, real HTTP, real sockets."""

from __future__ import annotations

import httpx
import pytest

from server.harness import Server
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    new_driver,
    new_rider,
    open_socket,
)

pytestmark = pytest.mark.e2e


def assert_fare_adds_up(fare: dict[str, object]) -> None:
    b = fare["breakdown"]
    assert isinstance(b, dict)
    parts = (
        "base_cents",
        "distance_cents",
        "time_cents",
        "cost_recovery_cents",
        "platform_commission_cents",
    )
    assert sum(b[p] for p in parts) == fare["total_cents"]
    # The parts are all the breakdown holds: a UI may sum every key of it.
    assert set(b) == set(parts)
    assert sum(b.values()) == fare["total_cents"]
    assert b["platform_commission_cents"] == 0
    assert all(isinstance(b[p], int) and b[p] >= 0 for p in parts)
    topup = fare["minimum_topup_cents"]
    assert isinstance(topup, int) and 0 <= topup <= b["base_cents"]


async def test_a_whole_trip(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        driver_id, driver_token = await new_driver(http, server)
        rider_id, rider_auth = await new_rider(http)

        async with (
            open_socket(server, "/v1/drivers/ws", driver_token) as driver,
            open_socket(
                server, "/v1/riders/ws", rider_auth["Authorization"][7:], header=False
            ) as rider,
        ):
            # The driver goes online near Times Square.
            assert (await driver.call({"type": "status", "status": "online"}))["type"] == "ok"
            assert (await driver.call({"type": "location", **NEAR_MIDTOWN, "accuracy_m": 8}))[
                "type"
            ] == "ok"
            me = (
                await http.get(
                    "/v1/drivers/me", headers={"Authorization": f"Bearer {driver_token}"}
                )
            ).json()
            assert me["live_status"] == "available" and me["holds_offer"] is False

            # The rider gets a quote that knows a driver is near.
            q = await http.post(
                "/v1/quotes", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=rider_auth
            )
            assert q.status_code == 200, q.text
            quote = q.json()
            assert quote["fare_rule_version"] == 1
            assert quote["pickup_eta_s"] is not None and 0 < quote["pickup_eta_s"] < 900
            assert quote["distance_m"] > 1000 and quote["duration_s"] > 0
            assert_fare_adds_up(quote["fare"])

            # Request: 201, requested, priced as quoted.
            r = await http.post(
                "/v1/trips",
                json={"pickup": MIDTOWN, "dropoff": CHELSEA},
                headers={**rider_auth, "Idempotency-Key": "trip-1"},
            )
            assert r.status_code == 201, r.text
            trip = r.json()
            trip_id = trip["id"]
            assert trip["status"] == "requested" and trip["rider_id"] == rider_id
            assert trip["driver_id"] is None
            assert trip["fare"] == quote["fare"]
            assert trip["pickup"] == MIDTOWN and trip["dropoff"] == CHELSEA

            seen = [await rider.expect("trip.updated")]
            assert seen[0]["trip"]["status"] == "requested"

            # The dispatcher offers it to the only driver nearby.
            offer = await driver.expect("offer")
            assert offer["trip_id"] == trip_id
            assert offer["pickup"] == MIDTOWN and offer["dropoff"] == CHELSEA
            assert offer["fare"] == trip["fare"]
            assert 0 < offer["pickup_eta_s"] < 900
            assert offer["trip_distance_m"] == trip["distance_m"]
            assert offer["expires_at"] > trip["requested_at"]
            me = (
                await http.get(
                    "/v1/drivers/me", headers={"Authorization": f"Bearer {driver_token}"}
                )
            ).json()
            assert me["holds_offer"] is True

            # Accept: the driver gets trip.assigned, the rider sees assigned.
            await driver.send({"type": "accept", "offer_id": offer["offer_id"]})
            assigned = await driver.expect("trip.assigned")
            assert assigned["trip"]["id"] == trip_id
            assert assigned["trip"]["status"] == "assigned"
            assert assigned["trip"]["driver_id"] == driver_id
            assert assigned["event_id"] > offer["event_id"]
            update = await rider.expect("trip.updated")
            assert update["trip"]["status"] == "assigned"
            assert update["trip"]["driver_id"] == driver_id
            seen.append(update)

            # On the way, the rider watches the driver come.
            await driver.call({"type": "location", "lat": 40.7555, "lng": -73.9850})
            moving = await rider.expect("driver.location")
            assert moving["trip_id"] == trip_id
            assert moving["lat"] == 40.7555 and moving["eta_s"] is not None
            # The next position on the same leg is published by the location script itself
            # (one round trip); the rider cannot tell the difference.
            await driver.call({"type": "location", "lat": 40.7552, "lng": -73.9845})
            closer = await rider.expect("driver.location")
            assert closer["trip_id"] == trip_id and closer["lat"] == 40.7552
            assert closer["eta_s"] is not None and closer["eta_s"] <= moving["eta_s"]

            auth = {"Authorization": f"Bearer {driver_token}"}
            for path, status in (
                ("arrived", "arrived"),
                ("start", "in_progress"),
                ("complete", "completed"),
            ):
                r = await http.post(f"/v1/trips/{trip_id}/{path}", headers=auth)
                assert r.status_code == 200, r.text
                assert r.json()["status"] == status
                update = await rider.expect("trip.updated")
                assert update["trip"]["status"] == status
                seen.append(update)
                if status == "in_progress":
                    # Riding: the ETA is to the drop-off now, on every position.
                    for lat in (40.7540, 40.7530):
                        await driver.call({"type": "location", "lat": lat, "lng": -73.9860})
                        riding = await rider.expect("driver.location", lat=lat)
                        assert riding["eta_s"] is not None and riding["eta_s"] > closer["eta_s"]

            # Every status the rider saw, in order, each with a larger event_id.
            assert [f["trip"]["status"] for f in seen] == [
                "requested",
                "assigned",
                "arrived",
                "in_progress",
                "completed",
            ]
            ids = [f["event_id"] for f in seen]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
            # Each position reached the rider once (all were published on the rider's
            # channel before `completed`, which has been read).
            positions = [f["lat"] for f in rider.frames if f["type"] == "driver.location"]
            assert positions == [40.7555, 40.7552, 40.7540, 40.7530]
            done = seen[-1]["trip"]
            for stamp in ("assigned_at", "arrived_at", "started_at", "completed_at"):
                assert done[stamp] is not None
            assert done["cancelled_at"] is None

            # The receipt says where every cent went.
            receipt = (await http.get(f"/v1/trips/{trip_id}/receipt", headers=rider_auth)).json()
            assert receipt["trip_id"] == trip_id
            assert receipt["total_cents"] == trip["fare"]["total_cents"]
            assert receipt["platform_commission_cents"] == 0
            assert (
                receipt["driver_earnings_cents"]
                + receipt["cost_recovery_cents"]
                + receipt["platform_commission_cents"]
            ) == receipt["total_cents"]
            assert receipt["fare_rule_version"] == 1
            assert sum(receipt["breakdown"].values()) == receipt["total_cents"]
            assert receipt["minimum_topup_cents"] == trip["fare"]["minimum_topup_cents"]
            assert receipt["distance_m"] == trip["distance_m"]

            # The driver is free again and the earnings show the trip.
            me = (await http.get("/v1/drivers/me", headers=auth)).json()
            assert me["live_status"] == "available" and me["holds_offer"] is False
            period = done["completed_at"][:7]
            earnings = (
                await http.get(f"/v1/drivers/me/earnings?period={period}", headers=auth)
            ).json()
            assert earnings["trips"] == 1
            assert earnings["driver_earnings_cents"] == receipt["driver_earnings_cents"]
            assert earnings["platform_commission_cents"] == 0

            # The driver's frames: offer then trip.assigned, nothing else unexpected.
            driver_types = [f["type"] for f in driver.frames if "event_id" in f]
            assert driver_types == ["offer", "trip.assigned"]

            # Where the car went: recorded when the trip ended, never from live frames.
            trace = (await http.get(f"/v1/trips/{trip_id}/trace", headers=rider_auth)).json()
            kinds = [p["kind"] for p in trace["points"]]
            assert {"arrived", "started", "completed"} <= set(kinds)
            assert kinds.count("track") >= 1
            assert {"lat": 40.7555, "lng": -73.9850} in [
                {"lat": p["lat"], "lng": p["lng"]} for p in trace["points"]
            ]

            # History for the rider.
            page = (await http.get("/v1/riders/me/trips", headers=rider_auth)).json()
            assert [t["id"] for t in page["items"]] == [trip_id]
            assert page["items"][0]["status"] == "completed"


async def test_a_topped_up_fare_sums_to_its_total(server: Server) -> None:
    """A short ride is topped up to the minimum: the top-up is said beside the breakdown,
    not inside it, so summing the breakdown gives the fare and not the fare plus top-up."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, auth = await new_rider(http)
        short = {"pickup": MIDTOWN, "dropoff": NEAR_MIDTOWN}
        q = await http.post("/v1/quotes", json=short, headers=auth)
        assert q.status_code == 200, q.text
        fare = q.json()["fare"]
        assert fare["minimum_topup_cents"] > 0
        assert "minimum_topup_cents" not in fare["breakdown"]
        assert_fare_adds_up(fare)
        r = await http.post("/v1/trips", json=short, headers=auth)
        assert r.status_code == 201, r.text
        trip = r.json()
        try:
            assert trip["fare"] == fare
        finally:
            await http.post(f"/v1/trips/{trip['id']}/cancel", headers=auth)
