"""The dashboard's endpoints over plain HTTP and WebSocket: only the operator gets data,
the page is a self-contained shell, the live socket pushes snapshots."""

from __future__ import annotations

import re

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.harness import Server
from tests.fixtures.phones import new_driver, new_rider, open_socket, problem_of

pytestmark = pytest.mark.e2e


async def test_only_the_operator_gets_the_snapshot(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, rider = await new_rider(http)
        _, driver = await new_driver(http, server)
        r = await http.get("/v1/operator/dashboard")
        assert r.status_code == 401 and problem_of(r)["type"] == "not-authenticated"
        r = await http.get("/v1/operator/dashboard", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and problem_of(r)["type"] == "not-authenticated"
        for who in (rider, {"Authorization": f"Bearer {driver}"}):
            r = await http.get("/v1/operator/dashboard", headers=who)
            assert r.status_code == 403 and problem_of(r)["type"] == "wrong-role"
        r = await http.get(
            "/v1/operator/dashboard",
            headers={"Authorization": f"Bearer {server.settings.operator_token}"},
        )
        assert r.status_code == 200
        snap = r.json()
        assert snap["seq"] >= 1 and snap["resolution"] == server.settings.h3_resolution
        k = snap["kpis"]
        assert k["online_drivers"] == k["available_drivers"] + k["on_trip_drivers"]
        assert k["open_requests"] == sum(c["open_requests"] for c in snap["cells"])
        assert k["online_drivers"] == sum(c["online_drivers"] for c in snap["cells"])
        current = (await http.get("/v1/fares/rules/current")).json()
        assert snap["fare_rule"]["version"] == current["version"]
        assert snap["fare_rule"]["base_cents"] == current["base_cents"]


async def test_only_the_operator_gets_the_live_socket(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, rider = await new_rider(http)
    url = f"{server.ws_url}/v1/operator/live"
    for token, code, slug in (
        (None, 4401, "not-authenticated"),
        ("nope", 4401, "not-authenticated"),
        (rider["Authorization"][7:], 4403, "wrong-role"),
    ):
        target = url if token is None else f"{url}?token={token}"
        async with connect(target, open_timeout=10) as ws:
            frame = (await ws.recv()).strip()
            assert f'"code":"{slug}"' in frame
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_the_live_socket_pushes_snapshots_and_takes_no_frames(server: Server) -> None:
    # The header works as well as ?token= (the page uses the query; tools use either).
    async with open_socket(
        server, "/v1/operator/live", server.settings.operator_token, header=False
    ) as live:
        first = await live.expect("snapshot")
        assert {"seq", "generated_at", "kpis", "cells", "drivers", "requests"} <= set(first)
        # It only listens: anything sent is refused, and the socket stays up.
        await live.send({"type": "hello", "id": 7})
        refused = await live.expect("error")
        assert refused["code"] == "unknown-frame-type" and refused["ref"] == 7
        await live.send("not json")
        assert (await live.expect("error"))["code"] == "invalid-frame"
        later = await live.expect("snapshot")
        assert later["seq"] > first["seq"]
    async with open_socket(server, "/v1/operator/live", server.settings.operator_token) as live:
        assert (await live.expect("snapshot"))["seq"] >= later["seq"]


async def test_the_page_is_a_shell_that_loads_only_local_assets(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        r = await http.get("/ops")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and r.headers["x-frame-options"] == "DENY"
        page = r.text
        # No data and no secret in the page itself.
        assert server.settings.operator_token not in page
        assert '"tile_url":null' in page  # no tile server configured: a plain projection
        refs = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert refs, page
        for ref in refs:
            assert ref.startswith("/ops/assets/") or ref.startswith("data:"), ref
        assets = [ref for ref in refs if ref.startswith("/ops/assets/")]
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        for asset in assets:
            a = await http.get(asset)
            assert a.status_code == 200 and len(a.content) > 1000, asset
            if asset.endswith(".css"):
                # Leaflet's images are bundled beside it, not fetched from elsewhere.
                for url in re.findall(r"url\(([^)]+)\)", a.text):
                    url = url.strip("\"'")
                    assert not re.match(r"^(https?:)?//", url), url
                    if not url.startswith(("data:", "#")):  # "#default#VML": old IE
                        assert (
                            await http.get(f"/ops/assets/{url.removeprefix('./')}")
                        ).status_code == 200
        for bad in ("../index.html", "..%2Findex.html", "nope.js", "main.exe"):
            r = await http.get(f"/ops/assets/{bad}")
            assert r.status_code == 404, bad
