"""Abuse limits: rate limits (sign-ups per address, quotes and trip requests per rider,
location frames per driver), the request body cap, the socket frame cap and the bound on
service-area vertices. Exceeding any of them is a documented error, never a crash, and
the server goes on serving everyone else.

The server here has small limits so that they are reached in a few calls.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.settings import Settings
from geo.areas import MAX_VERTICES
from server.harness import Server, start_server
from tests.fixtures.phones import CHELSEA, MIDTOWN, new_driver, new_rider, open_socket, problem_of
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

FAR = {"lat": 40.8500, "lng": -73.9350}  # no driver near: requests stay `requested`
SIGNUPS, QUOTES, TRIP_REQUESTS, BURST = 3, 3, 2, 5
# Slow enough that no token comes back while the burst is sent, even on a busy machine.
REFILL_PER_S = 0.25


@pytest.fixture(scope="module")
@starts_server
def limits_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    settings = test_settings.model_copy(
        update={
            "redis_prefix": f"{test_settings.redis_prefix}limits:",
            "signup_rate_per_min": SIGNUPS,
            "quote_rate_per_min": QUOTES,
            "trip_request_rate_per_min": TRIP_REQUESTS,
            "location_burst": BURST,
            "location_rate_per_s": REFILL_PER_S,
        }
    )
    with start_server(settings, tmp_path_factory.mktemp("limits") / "server.log") as srv:
        yield srv


def client(server: Server, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A phone at ``address`` (any 127.x.y.z reaches the loopback server)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=server.base_url, timeout=10, transport=transport)


@pytest.fixture
async def http(limits_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with client(limits_server) as c:
        yield c


def assert_limited(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    body = problem_of(r)
    assert body["type"] == "rate-limited"
    retry_after = int(r.headers["retry-after"])
    assert retry_after >= 1 and body["retry_after_s"] == retry_after
    return retry_after


async def test_sign_ups_are_limited_per_address(limits_server: Server) -> None:
    async with (
        client(limits_server, "127.0.0.7") as crowded,
        client(limits_server, "127.0.0.8") as other,
    ):
        for _ in range(SIGNUPS):
            await new_rider(crowded)
        r = await crowded.post("/v1/riders", json={"name": "Bot", "phone": "+1 555 0000"})
        retry_after = assert_limited(r)
        # The bucket refills one sign-up per 60/SIGNUPS s: the wait says so.
        assert retry_after <= math.ceil(60 / SIGNUPS)
        # Another address is not held back by this one.
        await new_rider(other)


async def test_quotes_are_limited_per_rider(http: httpx.AsyncClient) -> None:
    _, alice = await new_rider(http)
    _, bob = await new_rider(http)
    trip = {"pickup": MIDTOWN, "dropoff": CHELSEA}
    for _ in range(QUOTES):
        assert (await http.post("/v1/quotes", json=trip, headers=alice)).status_code == 200
    assert_limited(await http.post("/v1/quotes", json=trip, headers=alice))
    assert (await http.post("/v1/quotes", json=trip, headers=bob)).status_code == 200


async def test_trip_requests_are_limited_per_rider_but_retries_are_free(
    http: httpx.AsyncClient,
) -> None:
    _, rider = await new_rider(http)
    body = {"pickup": FAR, "dropoff": CHELSEA}
    made = []
    for n in range(TRIP_REQUESTS):
        r = await http.post("/v1/trips", json=body, headers={**rider, "Idempotency-Key": f"k{n}"})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
        # Retrying the same request (same key) is answered with the same trip and is
        # not charged: the rider is not punished for a flaky network.
        for _ in range(3):
            again = await http.post(
                "/v1/trips", json=body, headers={**rider, "Idempotency-Key": f"k{n}"}
            )
            assert again.status_code == 201 and again.json()["id"] == r.json()["id"]
        assert (await http.post(f"/v1/trips/{made[-1]}/cancel", headers=rider)).status_code == 200
    assert_limited(
        await http.post("/v1/trips", json=body, headers={**rider, "Idempotency-Key": "k-new"})
    )
    assert_limited(await http.post("/v1/trips", json=body, headers=rider))
    # Nothing was created by the refused requests.
    mine = (await http.get("/v1/riders/me/trips", headers=rider)).json()["items"]
    assert sorted(t["id"] for t in mine) == sorted(made)


async def test_location_frames_are_limited_per_driver(
    http: httpx.AsyncClient, limits_server: Server
) -> None:
    driver_id, token = await new_driver(http, limits_server)
    redis = Redis.from_url(limits_server.settings.redis_url, decode_responses=True)
    key = f"{limits_server.settings.redis_prefix}drv:{driver_id}"
    try:
        async with (
            open_socket(limits_server, "/v1/drivers/ws", token) as phone,
            open_socket(limits_server, "/v1/drivers/ws", token) as tablet,
        ):
            t0 = int(time.time() * 1000) - 60_000
            frames = [
                {"type": "location", "lat": 40.75 + i * 1e-4, "lng": -73.98, "ts": t0 + i}
                for i in range(BURST + 1)
            ]
            # The burst fits; one more is refused, even sent at once and from the
            # driver's other socket: the limit is the driver's, not the socket's.
            for i, frame in enumerate(frames[:BURST]):
                await phone.send({**frame, "id": f"b{i}"})
            for i in range(BURST):
                assert (await phone.expect("ok", ref=f"b{i}"))["type"] == "ok"
            refused = await tablet.call(frames[BURST])
            assert refused["type"] == "error" and refused["code"] == "rate-limited"
            assert 1 <= refused["retry_after_s"] <= math.ceil(1 / REFILL_PER_S)
            # The frame was dropped: the live index holds the last frame taken.
            assert await redis.hget(key, "ts") == str(t0 + BURST - 1)
            # The socket stays up and answers other frames at once.
            assert (await phone.call({"type": "ack", "event_id": 0}))["type"] == "ok"
            # The bucket refills at REFILL_PER_S: a token is back within about 1/REFILL s.
            refused_at = time.monotonic()
            deadline = refused_at + 3 / REFILL_PER_S
            while True:
                reply = await phone.call(frames[BURST])
                if reply["type"] == "ok":
                    break
                assert reply["code"] == "rate-limited"
                assert time.monotonic() < deadline, "the bucket never refilled"
                await asyncio.sleep(0.1)  # paced retries, as a phone would
            assert time.monotonic() - refused_at <= 2 / REFILL_PER_S
            assert await redis.hget(key, "ts") == str(t0 + BURST)
    finally:
        await redis.aclose()


async def test_an_oversized_declared_body_is_refused_unread(limits_server: Server) -> None:
    """A Content-Length over the cap gets 413 at once: the server does not wait for (or
    read) the body, which this client never sends."""
    cap = limits_server.settings.max_body_bytes
    host, port = limits_server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            (
                f"POST /v1/riders HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
                f"content-length: {100 * cap}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert b"application/problem+json" in head
    finally:
        writer.close()


async def test_an_oversized_streamed_body_is_cut_off(limits_server: Server) -> None:
    """Chunked, with no length: counted as it arrives and refused past the cap, long
    before the client would have finished sending."""
    cap = limits_server.settings.max_body_bytes
    host, port = limits_server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    chunk = b"x" * 65536
    sent = 0
    try:
        writer.write(
            (
                f"POST /v1/riders HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
                "transfer-encoding: chunked\r\n\r\n"
            ).encode()
        )
        answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
        try:
            while not answer.done() and sent < 64 * cap:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed while we were still sending
        head = await asyncio.wait_for(answer, 10)
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert b"application/problem+json" in head
        assert sent < 64 * cap
    finally:
        writer.close()
    async with httpx.AsyncClient(base_url=limits_server.base_url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200  # and it keeps serving


async def test_a_body_under_the_cap_is_taken(
    http: httpx.AsyncClient, limits_server: Server
) -> None:
    """The largest legitimate body, a service area of more than the vertex bound, fits
    under the cap and gets the vertex check's 422, not a 413."""
    n = MAX_VERTICES + 1
    ring = [
        [
            round(-73.98 + 0.05 * math.cos(2 * math.pi * k / n), 9),
            round(40.75 + 0.05 * math.sin(2 * math.pi * k / n), 9),
        ]
        for k in range(n)
    ]
    ring.append(ring[0])
    payload = json.dumps(
        {"name": "Too detailed", "polygon": {"type": "Polygon", "coordinates": [ring]}}
    )
    assert len(payload) < limits_server.settings.max_body_bytes
    r = await http.post(
        "/v1/operator/service-areas",
        content=payload,
        headers={
            "Authorization": f"Bearer {limits_server.settings.operator_token}",
            "content-type": "application/json",
        },
    )
    assert r.status_code == 422 and problem_of(r)["type"] == "invalid-polygon"
    assert "vertices" in problem_of(r)["detail"]


async def test_socket_frames_are_capped_at_16_kib(
    http: httpx.AsyncClient, limits_server: Server
) -> None:
    _, token = await new_driver(http, limits_server)
    cap = 16 * 1024
    frame = '{"type": "status", "status": "'
    at_cap = frame + "x" * (cap - len(frame) - 2) + '"}'
    assert len(at_cap) == cap
    async with open_socket(limits_server, "/v1/drivers/ws", token) as phone:
        await phone.send(at_cap)  # at the cap: read, and refused for what it says
        reply = await phone.recv()
        assert reply["type"] == "error" and reply["code"] == "invalid-frame"
        await phone.send(at_cap[:-2] + 'x"}')  # one character over
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(phone.conn.recv(), 10)
        assert phone.conn.close_code == 1009
    # The server is fine, and the driver can connect again.
    async with connect(
        f"{limits_server.ws_url}/v1/drivers/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as conn:
        await conn.send(json.dumps({"type": "status", "status": "offline", "id": 1}))
        assert json.loads(await conn.recv()) == {"type": "ok", "ref": 1}
