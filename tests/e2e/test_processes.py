"""The api and the dispatcher as separate processes (``serve --no-dispatcher`` plus
``coopride dispatcher``): the offer made in one process reaches the socket held by the
other through Redis pub/sub. And the metrics endpoint counts what happened."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from core.settings import Settings
from tests.conftest import ROOT, Server, service_env, start_server, stop_server
from tests.e2e.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, new_driver, new_rider, open_socket

pytestmark = pytest.mark.e2e


async def test_api_and_dispatcher_in_separate_processes(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = test_settings.model_copy(
        update={"redis_prefix": f"{test_settings.redis_prefix}split:"}
    )
    logs = tmp_path_factory.mktemp("split")
    api, server = start_server(settings, logs / "api.log", dispatcher=False)
    dispatcher = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "dispatcher", "--log-level", "warning"],
        env={**os.environ, **service_env(settings)},
        cwd=ROOT,
        stdout=(logs / "dispatcher.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
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
                finally:
                    await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
        assert dispatcher.poll() is None, (logs / "dispatcher.log").read_text()
    finally:
        dispatcher.terminate()
        dispatcher.wait(15)
        stop_server(api)
    assert dispatcher.returncode == 0, (logs / "dispatcher.log").read_text()


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
