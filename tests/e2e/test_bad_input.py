"""Bad input gets the documented error, the socket stays open, and nothing is lost or
duplicated."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from server.harness import Server, libpq_url
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    new_driver,
    new_rider,
    open_socket,
    problem_of,
)

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


def operator(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.settings.operator_token}"}


@pytest.mark.parametrize(
    ("pickup", "slug"),
    [
        ({"lat": 91, "lng": -73.98}, "invalid-coordinates"),
        ({"lat": 40.75, "lng": -181}, "invalid-coordinates"),
        ({"lat": "forty", "lng": -73.98}, "invalid-coordinates"),
        ({"lat": None, "lng": -73.98}, "invalid-coordinates"),
        ({"lat": 40.75}, "invalid-coordinates"),
        ("not-a-point", "invalid-input"),
    ],
)
async def test_invalid_coordinates_are_422(
    http: httpx.AsyncClient, pickup: object, slug: str
) -> None:
    _, auth = await new_rider(http)
    for path in ("/v1/quotes", "/v1/trips"):
        r = await http.post(path, json={"pickup": pickup, "dropoff": CHELSEA}, headers=auth)
        assert r.status_code == 422, r.text
        assert problem_of(r)["type"] == slug
    mine = (await http.get("/v1/riders/me/trips", headers=auth)).json()
    assert mine["items"] == []  # nothing was half-created


@pytest.mark.parametrize(
    "point",
    [
        {"lat": True, "lng": -73.98},
        {"lat": 40.75, "lng": False},
        {"lat": "10.5", "lng": -73.98},
        {"lat": 40.75, "lng": "-73.98"},
    ],
)
async def test_booleans_and_strings_are_not_coordinates(
    http: httpx.AsyncClient, point: dict[str, object]
) -> None:
    """JSON `true` is not latitude 1.0 and "10.5" is not a number: refused as the driver
    socket refuses them, in the pickup and in the drop-off, and no trip is made."""
    _, auth = await new_rider(http)
    for body in ({"pickup": point, "dropoff": CHELSEA}, {"pickup": MIDTOWN, "dropoff": point}):
        for path in ("/v1/quotes", "/v1/trips"):
            r = await http.post(path, json=body, headers=auth)
            assert r.status_code == 422, r.text
            assert problem_of(r)["type"] == "invalid-coordinates"
    mine = (await http.get("/v1/riders/me/trips", headers=auth)).json()
    assert mine["items"] == []


async def test_integer_coordinates_are_numbers(http: httpx.AsyncClient) -> None:
    _, auth = await new_rider(http)
    whole = {"pickup": {"lat": 40, "lng": -74}, "dropoff": CHELSEA}
    r = await http.post("/v1/quotes", json=whole, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["fare"]["total_cents"] > 0


async def test_unknown_fields_are_ignored(http: httpx.AsyncClient) -> None:
    """An app one version ahead sends fields this server does not know, at the top and
    inside a point: it is served. A known field of the wrong type is still refused."""
    _, auth = await new_rider(http)
    newer = {
        "pickup": {**MIDTOWN, "accuracy_m": 12, "label": "Times Sq"},
        "dropoff": CHELSEA,
        "seats_wanted": 2,
    }
    quoted = await http.post("/v1/quotes", json=newer, headers=auth)
    assert quoted.status_code == 200, quoted.text
    made = await http.post("/v1/trips", json=newer, headers=auth)
    assert made.status_code == 201, made.text
    trip = made.json()
    try:
        assert trip["pickup"] == MIDTOWN  # the unknown fields were not kept either
        assert "seats_wanted" not in trip
        wrong = {**newer, "quote_id": 42}
        r = await http.post("/v1/trips", json=wrong, headers=auth)
        assert r.status_code == 422
        assert problem_of(r)["type"] == "invalid-input"
        r = await http.post("/v1/quotes", json={"pickup": MIDTOWN, "extra": 1}, headers=auth)
        assert r.status_code == 422  # dropoff missing
        assert problem_of(r)["type"] == "invalid-input"
        mine = (await http.get("/v1/riders/me/trips", headers=auth)).json()["items"]
        assert [t["id"] for t in mine] == [trip["id"]]
    finally:
        await http.post(f"/v1/trips/{trip['id']}/cancel", headers=auth)


async def test_nan_and_malformed_json_are_422(http: httpx.AsyncClient) -> None:
    _, auth = await new_rider(http)
    headers = {**auth, "content-type": "application/json"}
    nan = '{"pickup": {"lat": NaN, "lng": -73.98}, "dropoff": {"lat": 40.7, "lng": -74.0}}'
    r = await http.post("/v1/quotes", content=nan, headers=headers)
    assert r.status_code == 422
    assert problem_of(r)["type"] == "invalid-coordinates"
    r = await http.post("/v1/trips", content="{not json", headers=headers)
    assert r.status_code == 422
    problem_of(r)


async def test_auth_and_roles(http: httpx.AsyncClient, server: Server) -> None:
    _, rider = await new_rider(http)
    _, driver_token = await new_driver(http, server)
    driver = {"Authorization": f"Bearer {driver_token}"}

    r = await http.post("/v1/quotes", json=TRIP)
    assert r.status_code == 401 and problem_of(r)["type"] == "not-authenticated"
    r = await http.post("/v1/quotes", json=TRIP, headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and problem_of(r)["type"] == "not-authenticated"
    # Only operators admit members; only riders request trips.
    r = await http.post(
        "/v1/drivers",
        headers=rider,
        json={"name": "X", "phone": "+1 555 0000", "vehicle": {"plate": "P", "seats": 4}},
    )
    assert r.status_code == 403 and problem_of(r)["type"] == "wrong-role"
    r = await http.post("/v1/trips", json=TRIP, headers=driver)
    assert r.status_code == 403 and problem_of(r)["type"] == "wrong-role"
    r = await http.post("/v1/trips/trp_nope/arrived", headers=rider)
    assert r.status_code == 403 and problem_of(r)["type"] == "wrong-role"
    r = await http.post(
        "/v1/operator/service-areas", headers=driver, json={"name": "x", "polygon": {}}
    )
    assert r.status_code == 403


async def test_unknown_ids_are_404(http: httpx.AsyncClient, server: Server) -> None:
    _, rider = await new_rider(http)
    _, driver_token = await new_driver(http, server)
    driver = {"Authorization": f"Bearer {driver_token}"}
    for method, path, who in [
        ("GET", "/v1/trips/trp_unknown", rider),
        ("POST", "/v1/trips/trp_unknown/cancel", rider),
        ("GET", "/v1/trips/trp_unknown/receipt", rider),
        ("POST", "/v1/trips/trp_unknown/arrived", driver),
        ("POST", "/v1/trips/trp_unknown/complete", driver),
    ]:
        r = await http.request(method, path, headers=who)
        assert r.status_code == 404, (path, r.text)
        assert problem_of(r)["type"] == "trip-not-found"
    r = await http.get("/v1/no/such/route")
    assert r.status_code == 404
    problem_of(r)


async def test_idempotency_key(http: httpx.AsyncClient) -> None:
    _, auth = await new_rider(http)
    headers = {**auth, "Idempotency-Key": "same-key"}
    first = await http.post("/v1/trips", json=TRIP, headers=headers)
    assert first.status_code == 201
    try:
        again = await http.post("/v1/trips", json=TRIP, headers=headers)
        assert again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        # The same key for a different trip is a client bug, said clearly.
        other = await http.post(
            "/v1/trips", json={"pickup": MIDTOWN, "dropoff": NEAR_MIDTOWN}, headers=headers
        )
        assert other.status_code == 422
        assert problem_of(other)["type"] == "idempotency-key-reused"
        # Without the key, a second request while one is active is a conflict.
        second = await http.post("/v1/trips", json=TRIP, headers=auth)
        assert second.status_code == 409
        assert problem_of(second)["type"] == "active-trip-exists"
        trips = (await http.get("/v1/riders/me/trips", headers=auth)).json()["items"]
        assert [t["id"] for t in trips] == [first.json()["id"]]
    finally:
        await http.post(f"/v1/trips/{first.json()['id']}/cancel", headers=auth)


async def test_someone_elses_trip_is_403(http: httpx.AsyncClient) -> None:
    _, alice = await new_rider(http)
    _, bob = await new_rider(http)
    trip = (await http.post("/v1/trips", json=TRIP, headers=alice)).json()
    try:
        r = await http.get(f"/v1/trips/{trip['id']}", headers=bob)
        assert r.status_code == 403 and problem_of(r)["type"] == "not-your-trip"
        r = await http.post(f"/v1/trips/{trip['id']}/cancel", headers=bob)
        assert r.status_code == 403
        assert (await http.get(f"/v1/trips/{trip['id']}", headers=alice)).json()[
            "status"
        ] == "requested"
    finally:
        await http.post(f"/v1/trips/{trip['id']}/cancel", headers=alice)


async def test_illegal_transitions_are_409(http: httpx.AsyncClient) -> None:
    _, auth = await new_rider(http)
    trip = (await http.post("/v1/trips", json=TRIP, headers=auth)).json()
    r = await http.get(f"/v1/trips/{trip['id']}/receipt", headers=auth)
    assert r.status_code == 409 and problem_of(r)["type"] == "receipt-not-ready"
    r = await http.post(f"/v1/trips/{trip['id']}/cancel", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["cancelled_by"] == "rider"
    r = await http.post(f"/v1/trips/{trip['id']}/cancel", headers=auth)
    assert r.status_code == 409 and problem_of(r)["type"] == "illegal-transition"


async def test_driver_socket_bad_frames_keep_socket_open(
    http: httpx.AsyncClient, server: Server
) -> None:
    _, token = await new_driver(http, server)
    async with open_socket(server, "/v1/drivers/ws", token) as ws:
        await ws.send("{this is not json")
        assert (await ws.expect("error"))["code"] == "invalid-frame"
        await ws.send("[1, 2, 3]")
        assert (await ws.expect("error"))["code"] == "invalid-frame"
        cases = [
            ({"type": "teleport"}, "unknown-frame-type"),
            ({"type": "location", "lat": 200, "lng": 0}, "invalid-coordinates"),
            ({"type": "location", "lat": "x", "lng": 0}, "invalid-coordinates"),
            (
                {"type": "location", "lat": 40.75, "lng": -73.98, "accuracy_m": 5000},
                "inaccurate-location",
            ),
            (
                {
                    "type": "location",
                    "lat": 40.75,
                    "lng": -73.98,
                    "ts": "2999-01-01T00:00:00+00:00",
                },
                "invalid-location",
            ),
            ({"type": "status", "status": "napping"}, "invalid-frame"),
            ({"type": "accept"}, "invalid-frame"),
            ({"type": "accept", "offer_id": "ofr_unknown"}, "offer-not-found"),
            ({"type": "decline", "offer_id": "ofr_unknown"}, "offer-not-found"),
            # PostgreSQL text cannot hold NUL: such an id names no offer (hypothesis found
            # it answered service-unavailable).
            ({"type": "accept", "offer_id": "ofr_\u0000"}, "offer-not-found"),
            ({"type": "decline", "offer_id": "\u0000"}, "offer-not-found"),
            ({"type": "ack", "event_id": "one"}, "invalid-frame"),
        ]
        for frame, code in cases:
            reply = await ws.call(frame)
            assert reply["type"] == "error" and reply["code"] == code, (frame, reply)
            assert reply["detail"]
        # An older fix than one already taken never moves the driver back.
        now_ms = int(time.time() * 1000)
        assert (await ws.call({"type": "location", **MIDTOWN, "ts": now_ms - 10_000}))[
            "type"
        ] == "ok"
        old = await ws.call({"type": "location", **NEAR_MIDTOWN, "ts": now_ms - 20_000})
        assert old["code"] == "stale-location"
        same = await ws.call({"type": "location", **NEAR_MIDTOWN, "ts": now_ms - 10_000})
        assert same["code"] == "stale-location"
        # Still open and working.
        assert (await ws.call({"type": "status", "status": "online"}))["type"] == "ok"


async def test_rider_socket_rejects_driver_frames_and_bad_tokens(
    http: httpx.AsyncClient, server: Server
) -> None:
    _, auth = await new_rider(http)
    async with open_socket(server, "/v1/riders/ws", auth["Authorization"][7:]) as ws:
        assert (await ws.call({"type": "accept", "offer_id": "x"}))["code"] == "unknown-frame-type"
        assert (await ws.call({"type": "ack", "event_id": 0}))["type"] == "ok"
    # A rider token on the driver socket: error frame, then close 4403.
    async with open_socket(server, "/v1/drivers/ws", auth["Authorization"][7:]) as ws:
        assert (await ws.recv())["code"] == "wrong-role"
        await ws.conn.wait_closed()
        assert ws.conn.close_code == 4403
    async with open_socket(server, "/v1/riders/ws", "garbage", header=False) as ws:
        assert (await ws.recv())["code"] == "not-authenticated"
        await ws.conn.wait_closed()
        assert ws.conn.close_code == 4401


async def test_accepting_someone_elses_offer(http: httpx.AsyncClient, server: Server) -> None:
    _, mine = await new_driver(http, server)
    _, other = await new_driver(http, server)
    _, rider = await new_rider(http)
    async with (
        open_socket(server, "/v1/drivers/ws", mine) as me,
        open_socket(server, "/v1/drivers/ws", other) as them,
    ):
        await me.call({"type": "status", "status": "online"})
        await me.call({"type": "location", **NEAR_MIDTOWN})
        trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
        try:
            offer = await me.expect("offer", trip_id=trip["id"])
            stolen = await them.call({"type": "accept", "offer_id": offer["offer_id"]})
            assert stolen["type"] == "error" and stolen["code"] == "not-your-offer"
            declined = await them.call({"type": "decline", "offer_id": offer["offer_id"]})
            assert declined["code"] == "not-your-offer"
            # The rightful driver still wins it, exactly once.
            assert (await me.call({"type": "accept", "offer_id": offer["offer_id"]}))[
                "type"
            ] == "ok"
            assigned = await me.expect("trip.assigned")
            assert assigned["trip"]["id"] == trip["id"]
            again = await me.call({"type": "accept", "offer_id": offer["offer_id"]})
            assert again["type"] == "error" and again["code"] == "offer-withdrawn"
            t = (await http.get(f"/v1/trips/{trip['id']}", headers=rider)).json()
            assert t["status"] == "assigned"
            assert (await them.call({"type": "status", "status": "online"}))["type"] == "ok"
        finally:
            await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
        # The assigned driver hears about the cancellation.
        cancelled = await me.expect("trip.cancelled")
        assert cancelled["trip"]["status"] == "cancelled"


async def test_outside_service_area(http: httpx.AsyncClient, server: Server) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    r = await http.post(
        "/v1/operator/service-areas",
        headers=operator(server),
        json={"name": "bowtie", "polygon": bowtie},
    )
    assert r.status_code == 422 and problem_of(r)["type"] == "invalid-polygon"
    manhattan = {
        "type": "Polygon",
        "coordinates": [
            [[-74.03, 40.69], [-73.90, 40.69], [-73.90, 40.89], [-74.03, 40.89], [-74.03, 40.69]]
        ],
    }
    r = await http.post(
        "/v1/operator/service-areas",
        headers=operator(server),
        json={"name": "Manhattan", "polygon": manhattan},
    )
    assert r.status_code == 201, r.text
    _, auth = await new_rider(http)
    london = {"lat": 51.5072, "lng": -0.1276}

    async def outside() -> httpx.Response:
        return await http.post(
            "/v1/trips", json={"pickup": london, "dropoff": CHELSEA}, headers=auth
        )

    # Areas reach every api process within a second; the first request after may race it.
    r = await outside()
    for _ in range(30):
        if r.status_code == 422:
            break
        if r.status_code == 201:
            await http.post(f"/v1/trips/{r.json()['id']}/cancel", headers=auth)
        r = await outside()
    assert r.status_code == 422 and problem_of(r)["type"] == "outside-service-area"
    q = await http.post("/v1/quotes", json=TRIP, headers=auth)
    assert q.status_code == 200


async def _age_trip(server: Server, trip_id: str, *, hours: float) -> None:
    """Move a trip's request (the time its Idempotency-Key was made) back in time."""
    conn = await asyncpg.connect(libpq_url(server.settings.database_url))
    try:
        done = await conn.execute(
            "UPDATE trips SET requested_at = requested_at - make_interval(secs => $2) "
            "WHERE id = $1",
            trip_id,
            hours * 3600,
        )
        assert done == "UPDATE 1"
    finally:
        await conn.close()


async def test_idempotency_keys_live_a_day(http: httpx.AsyncClient, server: Server) -> None:
    """Within 24 h a key names its trip (another body with it is refused); older, the key
    is a new request, not a months-old finished trip returned as if just made."""
    _, auth = await new_rider(http)
    headers = {**auth, "Idempotency-Key": "morning-commute"}
    first = await http.post("/v1/trips", json=TRIP, headers=headers)
    assert first.status_code == 201, first.text
    old_id = first.json()["id"]
    again = await http.post("/v1/trips", json=TRIP, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == old_id
    other = {"pickup": MIDTOWN, "dropoff": NEAR_MIDTOWN}
    reused = await http.post("/v1/trips", json=other, headers=headers)
    assert reused.status_code == 422
    assert problem_of(reused)["type"] == "idempotency-key-reused"
    cancelled = await http.post(f"/v1/trips/{old_id}/cancel", headers=auth)
    assert cancelled.status_code == 200, cancelled.text

    # 23 h on, the key still names the (now cancelled) trip.
    await _age_trip(server, old_id, hours=23)
    replay = await http.post("/v1/trips", json=TRIP, headers=headers)
    assert replay.status_code == 201
    assert replay.json()["id"] == old_id and replay.json()["status"] == "cancelled"
    assert replay.headers.get("Idempotent-Replayed") == "true"

    # Past 24 h it is a new request: a new trip, even with another body.
    await _age_trip(server, old_id, hours=2)
    fresh = await http.post("/v1/trips", json=other, headers=headers)
    assert fresh.status_code == 201, fresh.text
    new_trip = fresh.json()
    try:
        assert new_trip["id"] != old_id and new_trip["status"] == "requested"
        assert "Idempotent-Replayed" not in fresh.headers
        # ... and the key now names the new trip.
        replayed = await http.post("/v1/trips", json=other, headers=headers)
        assert replayed.json()["id"] == new_trip["id"]
        mine = (await http.get("/v1/riders/me/trips", headers=auth)).json()["items"]
        assert sorted(t["id"] for t in mine) == sorted([old_id, new_trip["id"]])
    finally:
        await http.post(f"/v1/trips/{new_trip['id']}/cancel", headers=auth)
