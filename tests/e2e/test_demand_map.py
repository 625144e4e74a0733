"""Where to wait, through the real server: the dispatcher builds the forecast from the
co-op's trips, an idle driver gets ``demand.map`` frames, and
``GET /v1/drivers/me/demand-map`` answers members only.

The server has a database of its own (the forecast counts every trip of its database)
and rebuilds the forecast and pushes frames every half second. The forecast is per hour
of the week: the trips requested here count for the hour they were requested in, so a
run that crosses the top of an hour between its requests and its frames sees an empty
map (and fails, rarely: the module takes a few seconds)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from core.settings import Settings
from geo import cells
from geo.point import LatLng
from server.harness import Server
from tests.fixtures.isolated import isolated_server
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    new_driver,
    new_rider,
    open_socket,
    problem_of,
)
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

REQUESTS = 6
CELL_KEYS = {
    "cell",
    "lat",
    "lng",
    "drive_s",
    "expected_wait_s",
    "score_s",
    "requests_per_hour",
    "idle_drivers",
}


@pytest.fixture(scope="module")
@starts_server
def guided_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with isolated_server(
        test_settings,
        tmp_path_factory,
        "guide",
        guidance_push_s=0.5,
        guidance_forecast_refresh_s=0.5,
    ) as srv:
        yield srv


@pytest.fixture
async def demand(guided_server: Server) -> int:
    """``REQUESTS`` trips requested (and cancelled) at Midtown, before any driver is
    online: this hour's demand in the server's fresh database."""
    async with httpx.AsyncClient(base_url=guided_server.base_url, timeout=10) as http:
        _, rider = await new_rider(http)
        for _ in range(REQUESTS):
            r = await http.post(
                "/v1/trips", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=rider
            )
            assert r.status_code == 201, r.text
            cancel = await http.post(f"/v1/trips/{r.json()['id']}/cancel", headers=rider)
            assert cancel.status_code == 200, cancel.text
    return REQUESTS


@pytest.fixture
async def http(guided_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guided_server.base_url, timeout=10) as client:
        yield client


def check_map(body: dict[str, Any], *, at: dict[str, float]) -> None:
    """The documented shape, the position's cell, and the ranking's arithmetic."""
    assert {"at", "hour_of_week", "origin", "forecast_built_at", "cells"} <= set(body)
    assert 0 <= body["hour_of_week"] < 168
    assert body["origin"]["cell"] == cells.cell_of(LatLng(at["lat"], at["lng"]), 8)
    scores = [c["score_s"] for c in body["cells"]]
    assert scores == sorted(scores)
    for c in body["cells"]:
        assert set(c) == CELL_KEYS
        assert c["score_s"] == c["drive_s"] + c["expected_wait_s"]
        assert c["drive_s"] >= 0 and c["expected_wait_s"] > 0


def demand_seen(frame: dict[str, Any]) -> bool:
    return bool(frame.get("cells"))


async def test_an_idle_driver_gets_demand_maps(
    guided_server: Server, http: httpx.AsyncClient, demand: int
) -> None:
    driver_id, token = await new_driver(http, guided_server)
    async with open_socket(guided_server, "/v1/drivers/ws", token) as ws:
        assert (await ws.call({"type": "status", "status": "online"}))["type"] == "ok"
        assert (await ws.call({"type": "location", **NEAR_MIDTOWN}))["type"] == "ok"
        # One at once (it just became idle), then the dispatcher's, every half second,
        # once the forecast holds the requests above.
        first = await ws.expect("demand.map")
        check_map(first, at=NEAR_MIDTOWN)
        frame = await ws._take(lambda f: f.get("type") == "demand.map" and demand_seen(f), 10.0)
        assert "event_id" not in frame  # advice is ephemeral: not logged for resume
        midtown = cells.cell_of(LatLng(**MIDTOWN), 8)
        # Every listed cell reaches Midtown's (all this database's demand), and a
        # forecast from less than a week of trips averages over one week.
        for c in frame["cells"]:
            assert c["requests_per_hour"] == float(demand)
            assert midtown in {x for ring in cells.disk_by_ring(c["cell"], 1) for x in ring}
        assert frame["forecast_built_at"] is not None

        # The route answers the same advice for the driver's position.
        r = await http.get(
            "/v1/drivers/me/demand-map",
            params={"limit": 2},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        check_map(body, at=NEAR_MIDTOWN)
        assert 1 <= len(body["cells"]) <= 2
        assert body["cells"][0]["requests_per_hour"] == float(demand)
        assert driver_id  # the member the frames were addressed to


async def test_the_route_refuses_non_members_and_bad_input(
    guided_server: Server, http: httpx.AsyncClient
) -> None:
    _, rider = await new_rider(http)
    _, token = await new_driver(http, guided_server)
    driver = {"Authorization": f"Bearer {token}"}
    operator = {"Authorization": f"Bearer {guided_server.settings.operator_token}"}
    path = "/v1/drivers/me/demand-map"

    nobody = await http.get(path)
    assert nobody.status_code == 401 and problem_of(nobody)["type"] == "not-authenticated"
    for who in (rider, operator):
        r = await http.get(path, headers=who)
        assert r.status_code == 403 and problem_of(r)["type"] == "wrong-role"
    # A member who never sent a position: nothing to advise from.
    r = await http.get(path, headers=driver)
    assert r.status_code == 409 and problem_of(r)["type"] == "position-unknown"
    for bad in ("0", "21", "many"):
        r = await http.get(path, params={"limit": bad}, headers=driver)
        assert r.status_code == 422 and problem_of(r)["type"] == "invalid-input", bad
