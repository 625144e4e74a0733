"""``/metrics`` moves with a real trip driven through the real server, and every
answer carries a request id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from server.harness import Server
from tests.fixtures.isolated import isolated_server
from tests.fixtures.phones import CHELSEA, NEAR_MIDTOWN, new_driver, new_rider, open_socket
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_trip_moves_the_metrics(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, token = await new_driver(http, server)
        _, rider = await new_rider(http)
        before = await scrape(http)
        async with (
            open_socket(server, "/v1/drivers/ws", token) as phone,
            open_socket(server, "/v1/riders/ws", rider["Authorization"][7:]) as rider_phone,
        ):
            # A reply means the socket is being served (and counted).
            assert (await phone.call({"type": "status", "status": "online"}))["type"] == "ok"
            assert (await rider_phone.call({"type": "ack", "event_id": 0}))["type"] == "ok"
            during = await scrape(http)
            assert value(during, "coop_sockets_connected", audience="driver") >= 1
            assert value(during, "coop_sockets_connected", audience="rider") >= 1
            # Fix times a millisecond apart: each frame is newer than the last.
            t0 = int(time.time() * 1000)
            for k in range(3):
                where = {
                    "lat": NEAR_MIDTOWN["lat"] + k * 1e-4,
                    "lng": NEAR_MIDTOWN["lng"],
                    "ts": t0 + k,
                }
                assert (await phone.call({"type": "location", **where}))["type"] == "ok"
            r = await http.post(
                "/v1/trips", json={"pickup": NEAR_MIDTOWN, "dropoff": CHELSEA}, headers=rider
            )
            assert r.status_code == 201, r.text
            trip_id = r.json()["id"]
            offer = await phone.expect("offer", trip_id=trip_id)
            assert (await phone.call({"type": "accept", "offer_id": offer["offer_id"]}))[
                "type"
            ] == "ok"
            for step in ("arrived", "start", "complete"):
                r = await http.post(
                    f"/v1/trips/{trip_id}/{step}", headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 200, r.text
            await rider_phone.expect("trip.updated", timeout=10)
        after = await scrape(http)

    def moved(name: str, by: float = 1, **labels: str) -> None:
        delta = value(after, name, **labels) - value(before, name, **labels)
        assert delta >= by, (name, labels, delta)

    # HTTP counts and latencies, by route template.
    moved("coop_http_requests_total", method="POST", route="/v1/trips", status="201")
    for step in ("arrived", "start", "complete"):
        route = f"/v1/trips/{{trip_id}}/{step}"
        moved("coop_http_requests_total", method="POST", route=route, status="200")
    moved("coop_http_request_seconds_count", method="POST", route="/v1/trips")
    # Sockets: opened, frames in (counted and timed), events out.
    moved("coop_socket_connections_total", audience="driver")
    moved("coop_socket_connections_total", audience="rider")
    moved("coop_socket_frames_total", 3, audience="driver", type="location")
    moved("coop_socket_frame_seconds_count", 3, audience="driver", type="location")
    moved("coop_socket_frame_seconds_count", audience="driver", type="accept")
    moved("coop_socket_events_sent_total", audience="driver")
    moved("coop_socket_events_sent_total", 4, audience="rider")
    # Location frames taken into the index (a rate of this is frames/s).
    moved("coop_location_frames_total", 3)
    # The dispatcher: batch size and solve time observed, the offer sent and accepted.
    moved("coop_dispatch_batch_requests_count")
    moved("coop_dispatch_solve_seconds_count")
    moved("coop_offers_total", outcome="sent")
    moved("coop_offers_total", outcome="accepted")
    # Trip outcomes: every status the trip went through, once each.
    for status in ("requested", "assigned", "arrived", "in_progress", "completed"):
        moved("coop_trips_total", status=status)
    # The sockets closed: the gauges come down (the server notices a moment later).
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http, asyncio.timeout(10):
        for audience in ("driver", "rider"):
            was = value(during, "coop_sockets_connected", audience=audience)
            # The server process updates the gauge; there is nothing to wait on but it.
            while value(await scrape(http), "coop_sockets_connected", audience=audience) >= was:  # noqa: ASYNC110
                await asyncio.sleep(0.05)


@pytest.fixture
@starts_server
def expiry_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with one-second offers and a database of its own (every dispatcher
    re-queues the open trips of its database)."""
    with isolated_server(test_settings, tmp_path_factory, "expiry", offer_timeout_s=1.0) as srv:
        yield srv


async def test_expired_and_withdrawn_offers_are_counted(expiry_server: Server) -> None:
    """An offer nobody answers expires, one whose trip is cancelled is withdrawn: each
    is counted, and so is the cancelled trip. Its own server, with one-second offers."""
    srv = expiry_server
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as http:
        _, t1 = await new_driver(http, srv)
        _, t2 = await new_driver(http, srv)
        _, rider = await new_rider(http)
        before = await scrape(http)
        async with (
            open_socket(srv, "/v1/drivers/ws", t1) as first,
            open_socket(srv, "/v1/drivers/ws", t2) as second,
        ):
            await first.call({"type": "status", "status": "online"})
            await first.call({"type": "location", **NEAR_MIDTOWN})
            r = await http.post(
                "/v1/trips", json={"pickup": NEAR_MIDTOWN, "dropoff": CHELSEA}, headers=rider
            )
            assert r.status_code == 201, r.text
            trip_id = r.json()["id"]
            # The first driver lets its offer run out ...
            offer = await first.expect("offer", trip_id=trip_id)
            await first.expect("offer.expired", offer_id=offer["offer_id"])
            # ... the second gets the trip next, and the rider cancels meanwhile.
            await second.call({"type": "status", "status": "online"})
            await second.call({"type": "location", **NEAR_MIDTOWN})
            offer = await second.expect("offer", trip_id=trip_id)
            r = await http.post(f"/v1/trips/{trip_id}/cancel", headers=rider)
            assert r.status_code == 200, r.text
            await second.expect("offer.withdrawn", offer_id=offer["offer_id"])
        after = await scrape(http)
    for name, labels in (
        ("coop_offers_total", {"outcome": "sent"}),
        ("coop_offers_total", {"outcome": "expired"}),
        ("coop_offers_total", {"outcome": "withdrawn"}),
        ("coop_trips_total", {"status": "cancelled"}),
    ):
        assert value(after, name, **labels) - value(before, name, **labels) >= 1, (name, labels)


async def test_answers_carry_a_request_id(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        a = await http.get("/healthz")
        b = await http.get("/healthz")
        assert len(a.headers["x-request-id"]) >= 8
        assert a.headers["x-request-id"] != b.headers["x-request-id"]
        # A caller's own id is kept (a proxy's, a load test's) ...
        r = await http.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"})
        assert r.headers["x-request-id"] == "lb-1234.abc"
        # ... unless it could inject text into the logs.
        r = await http.get("/healthz", headers={"X-Request-ID": "x\ty" + "z" * 100})
        assert r.headers["x-request-id"] not in ("x\ty" + "z" * 100,)
        assert r.headers["x-request-id"].isalnum()
        # Problems carry it too.
        r = await http.get("/v1/riders/me")
        assert r.status_code == 401 and r.headers["x-request-id"]
