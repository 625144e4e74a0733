"""The api and the dispatcher as separate processes (``serve --no-dispatcher`` plus
``coopride dispatcher``): the offer made in one process reaches the socket held by the
other through Redis pub/sub. And the metrics endpoint counts what happened."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from core.settings import Settings
from server.harness import Server, start_dispatcher, start_server
from tests.fixtures.isolated import isolated_settings
from tests.fixtures.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, new_driver, new_rider, open_socket

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_settings(test_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """A database and Redis prefix of the test's own: its dispatchers must not pick up
    the shared server's open trips, nor leave theirs to it."""
    with isolated_settings(test_settings, request.node.name.removeprefix("test_")[:24]) as s:
        yield s


async def test_api_and_dispatcher_in_separate_processes(
    own_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = own_settings
    logs = tmp_path_factory.mktemp("split")
    server = start_server(settings, logs / "api.log", dispatcher=False)
    dispatcher = start_dispatcher(settings, logs / "dispatcher.log")
    try:
        await _one_trip_is_offered_and_accepted(server)
        assert dispatcher.popen.poll() is None, dispatcher.log_tail()
    finally:
        dispatcher.stop()
        server.stop()
    assert dispatcher.popen.returncode == 0, dispatcher.log_tail()


async def test_metrics_count_requests_and_sockets(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, token = await new_driver(http, server)
        async with open_socket(server, "/v1/drivers/ws", token) as ws:
            await ws.call({"type": "location", **NEAR_MIDTOWN})
            text = (await http.get("/metrics")).text
            assert 'coop_sockets_connected{audience="driver"}' in text
            connected = [
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith('coop_sockets_connected{audience="driver"}')
            ]
            assert connected and connected[0] >= 1
            assert "coop_location_frames_total" in text
        r = await http.get("/healthz")
        assert r.json() == {"status": "ok"}
        text = (await http.get("/metrics")).text
        assert 'coop_http_requests_total{method="GET",route="/healthz",status="200"}' in text
        assert 'route="/v1/drivers",status="201"' in text


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        # Another process changes what we poll, so there is no event to wait on.
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_standby_dispatcher_takes_over_when_the_leader_dies(
    own_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = own_settings
    logs = tmp_path_factory.mktemp("takeover")
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    leader_key = f"{settings.redis_prefix}leader:default"
    fence_key = f"{settings.redis_prefix}fence:default"
    server = start_server(settings, logs / "api.log", dispatcher=False)
    first = start_dispatcher(settings, logs / "first.log")
    second = None
    try:
        await _wait_for(lambda: redis.exists(leader_key), 15)
        first_token, first_fence = await redis.get(leader_key), await redis.get(fence_key)
        second = start_dispatcher(settings, logs / "second.log")
        first.popen.send_signal(signal.SIGKILL)  # the leader dies without letting go
        first.popen.wait(10)
        # The standby takes over within one lock TTL (3 batches, at least 2 s).
        await _wait_for(lambda: _token_changed(redis, leader_key, first_token), 10)
        assert int(await redis.get(fence_key)) == int(first_fence) + 1

        await _one_trip_is_offered_and_accepted(server)
        assert second.popen.poll() is None, second.log_tail()
    finally:
        for dispatcher in (first, second):
            if dispatcher is not None:
                dispatcher.stop()
        server.stop()
        await redis.aclose()


async def _token_changed(redis: Redis, key: str, old: str | None) -> bool:
    current = await redis.get(key)
    return current is not None and current != old


async def _one_trip_is_offered_and_accepted(server: Server) -> None:
    """A driver online near Times Square gets exactly one offer for a new trip, accepts it
    and is assigned; the trip is cancelled afterwards so no other test sees it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        driver_id, token = await new_driver(http, server)
        _, rider = await new_rider(http)
        async with open_socket(server, "/v1/drivers/ws", token) as ws:
            await ws.call({"type": "status", "status": "online"})
            await ws.call({"type": "location", **NEAR_MIDTOWN})
            trip = (
                await http.post(
                    "/v1/trips", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=rider
                )
            ).json()
            try:
                offer = await ws.expect("offer", trip_id=trip["id"])
                await ws.call({"type": "accept", "offer_id": offer["offer_id"]})
                assigned = await ws.expect("trip.assigned")
                assert assigned["trip"]["driver_id"] == driver_id
                # Exactly one offer for the trip, ever.
                assert [f for f in ws.frames if f.get("type") == "offer"] == [offer]
            finally:
                await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
