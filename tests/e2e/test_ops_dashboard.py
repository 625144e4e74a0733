"""The operator dashboard in a real browser: Debian's Chromium, driven by Playwright,
against the real server with drivers and riders made through the real API.

The page must refuse anyone but the operator, then show what the API reports: every
number on it is compared with ``GET /v1/operator/dashboard`` for the same snapshot, and
the headline counts with the independent sources (``/v1/operator/supply``, the fare rule,
the proposals). It must load nothing from anywhere but this server. The screenshot goes to
``artifacts/ops-dashboard.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from core.settings import Settings
from server.harness import ROOT, Server, start_server
from tests.fixtures.phones import NEAR_MIDTOWN, Socket, new_driver, new_rider, open_socket

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "artifacts" / "ops-dashboard.png"
DEADLINE_S = 30.0
# Inwood and the Battery are over an hour apart by road: no request at one end is ever
# offered to a driver at the other (COOP_MAX_PICKUP_ETA_S is 15 minutes).
INWOOD = {"lat": 40.8680, "lng": -73.9210}
INWOOD_NEAR = {"lat": 40.8665, "lng": -73.9235}
FORT_GEORGE = {"lat": 40.8590, "lng": -73.9300}
WASHINGTON_HEIGHTS = {"lat": 40.8480, "lng": -73.9380}
BATTERY = {"lat": 40.7050, "lng": -74.0120}
BATTERY_NEAR = {"lat": 40.7068, "lng": -74.0105}
CHELSEA = {"lat": 40.7465, "lng": -74.0014}

# Every data-kpi element and the snapshot field it shows.
KPI_FIELDS: dict[str, tuple[str, ...]] = {
    "online_drivers": ("kpis", "online_drivers"),
    "available_drivers": ("kpis", "available_drivers"),
    "on_trip_drivers": ("kpis", "on_trip_drivers"),
    "open_requests": ("kpis", "open_requests"),
    "matches_last_minute": ("kpis", "matches_last_minute"),
    "request_to_offer_p50": ("kpis", "request_to_offer_s", "p50"),
    "request_to_offer_p95": ("kpis", "request_to_offer_s", "p95"),
    "pickup_eta_p50": ("kpis", "pickup_eta_s", "p50"),
    "pickup_eta_p95": ("kpis", "pickup_eta_s", "p95"),
    "expiry_rate": ("kpis", "expiry_rate"),
    "cancellation_rate": ("kpis", "cancellation_rate"),
    "earnings_gini": ("kpis", "earnings", "gini"),
    "earnings_members": ("kpis", "earnings", "members"),
    "earnings_total": ("kpis", "earnings", "total_cents"),
    "earnings_period": ("kpis", "earnings", "period"),
    "fare_rule_version": ("fare_rule", "version"),
    "open_proposals": ("kpis", "open_proposals"),
}

PAGE_STATE = """() => {
  const out = {seq: Number(document.body.dataset.seq || 0), kpis: {}};
  for (const el of document.querySelectorAll('[data-kpi]')) {
    out.kpis[el.dataset.kpi] = {value: el.dataset.value ?? null, text: el.textContent};
  }
  out.conn = document.getElementById('conn-text').textContent;
  out.proposals = document.getElementById('proposals').textContent;
  out.signInVisible = !document.getElementById('sign-in').hidden;
  out.boardVisible = !document.getElementById('board').hidden;
  out.signInError = document.getElementById('sign-in-error').textContent;
  out.stored = sessionStorage.getItem('coopride.operator_token');
  return out;
}"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def field(snapshot: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = snapshot
    for key in path:
        value = value[key]
    return value


def same(shown: str | None, expected: Any) -> bool:
    if expected is None:
        return shown in (None, "")
    if isinstance(expected, str):
        return shown == expected
    return shown is not None and shown != "" and float(shown) == float(expected)


async def until(what: str, check: Any, timeout: float = DEADLINE_S) -> Any:
    """Poll ``check`` (async, returns a truthy result when done) until a deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)  # re-check the condition; bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(PAGE_STATE)
    return result


async def online_with(sock: Socket, where: dict[str, float]) -> None:
    assert (await sock.call({"type": "status", "status": "online"}))["type"] == "ok"
    assert (await sock.call({"type": "location", **where}))["type"] == "ok"


async def take_offer(sock: Socket, trip_id: str) -> None:
    offer = await sock.expect("offer", trip_id=trip_id)
    assert (await sock.call({"type": "accept", "offer_id": offer["offer_id"]}))["type"] == "ok"
    await sock.expect("trip.assigned")


@contextlib.asynccontextmanager
async def keep_reporting(*placed: tuple[Socket, dict[str, float]]) -> AsyncIterator[None]:
    """Phones report their position every few seconds; so do these, for as long as the
    browser looks, so no driver goes stale mid-test."""

    async def report() -> None:
        while True:
            await asyncio.sleep(4)  # a phone's reporting interval
            for sock, where in placed:
                await sock.send({"type": "location", **where})

    task = asyncio.create_task(report())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_dashboard_shows_the_live_city_to_the_operator_only(server: Server) -> None:
    operator = bearer(server.settings.operator_token)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        d1_id, d1 = await new_driver(http, server)
        _, d2 = await new_driver(http, server)
        _, d3 = await new_driver(http, server)
        riders = [await new_rider(http) for _ in range(4)]
        rider_token = riders[0][1]["Authorization"].removeprefix("Bearer ")
        open_trips: list[tuple[str, dict[str, str]]] = []
        async with (
            open_socket(server, "/v1/drivers/ws", d1) as s1,
            open_socket(server, "/v1/drivers/ws", d2) as s2,
            open_socket(server, "/v1/drivers/ws", d3) as s3,
        ):
            try:
                # d1 takes a trip in Inwood and is on it while the operator looks.
                await online_with(s1, INWOOD)
                r = await http.post(
                    "/v1/trips",
                    json={"pickup": INWOOD_NEAR, "dropoff": WASHINGTON_HEIGHTS},
                    headers=riders[0][1],
                )
                assert r.status_code == 201, r.text
                on_trip = r.json()["id"]
                open_trips.append((on_trip, bearer(d1)))
                await take_offer(s1, on_trip)
                for step in ("arrived", "start"):
                    r = await http.post(f"/v1/trips/{on_trip}/{step}", headers=bearer(d1))
                    assert r.status_code == 200, r.text

                # d3 completes a Midtown trip (a match, a pickup ETA, member earnings)
                # and goes offline.
                await online_with(s3, NEAR_MIDTOWN)
                r = await http.post(
                    "/v1/trips",
                    json={"pickup": NEAR_MIDTOWN, "dropoff": CHELSEA},
                    headers=riders[1][1],
                )
                assert r.status_code == 201, r.text
                done = r.json()["id"]
                await take_offer(s3, done)
                for step in ("arrived", "start", "complete"):
                    r = await http.post(f"/v1/trips/{done}/{step}", headers=bearer(d3))
                    assert r.status_code == 200, r.text
                receipt = (await http.get(f"/v1/trips/{done}/receipt", headers=riders[1][1])).json()
                assert (await s3.call({"type": "status", "status": "offline"}))["type"] == "ok"

                # d2 waits nearby; two riders wait at the Battery, out of anyone's reach.
                await online_with(s2, FORT_GEORGE)
                for (_, auth), pickup in zip(riders[2:], (BATTERY, BATTERY_NEAR), strict=True):
                    r = await http.post(
                        "/v1/trips", json={"pickup": pickup, "dropoff": CHELSEA}, headers=auth
                    )
                    assert r.status_code == 201, r.text
                    open_trips.append((r.json()["id"], auth))

                # A member's fare proposal is open.
                rationale = f"Dashboard test proposal {d1_id[-6:]}"
                r = await http.post(
                    "/v1/fares/proposals",
                    json={
                        "rule": {
                            "base_cents": 275,
                            "per_km_cents": 120,
                            "per_minute_cents": 35,
                            "minimum_cents": 800,
                            "cancellation_fee_cents": 500,
                            "currency": "USD",
                            "cost_recovery_mode": "per_trip",
                        },
                        "rationale": rationale,
                        "closes_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
                    },
                    headers=bearer(d1),
                )
                assert r.status_code == 201, r.text

                async with keep_reporting((s1, INWOOD_NEAR), (s2, FORT_GEORGE)):
                    await look_at_the_dashboard(
                        server,
                        http,
                        operator=operator,
                        rider_token=rider_token,
                        rationale=rationale,
                        earned_cents=receipt["driver_earnings_cents"],
                    )
            finally:
                for trip_id, auth in open_trips:
                    await http.post(f"/v1/trips/{trip_id}/cancel", headers=auth)


async def look_at_the_dashboard(
    server: Server,
    http: httpx.AsyncClient,
    *,
    operator: dict[str, str],
    rider_token: str,
    rationale: str,
    earned_cents: int,
) -> None:
    requested: list[str] = []
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )
            response = await page.goto(f"{server.base_url}/ops")
            assert response is not None and response.status == 200

            # Signed out: the sign-in form, no data.
            s = await state(page)
            assert s["signInVisible"] and not s["boardVisible"] and s["stored"] is None
            assert s["kpis"]["online_drivers"]["text"] == "–"

            # A made-up token and a rider's token are refused, and not kept.
            for token, says in (
                ("not-a-token", "Refused: invalid token"),
                (rider_token, "Refused: this needs role operator, not rider"),
            ):
                await page.fill("#token", token)
                await page.click("#sign-in-form button[type=submit]")

                async def refused(says: str = says) -> dict[str, Any] | None:
                    s = await state(page)
                    return s if s["signInError"] == says else None

                s = await until("the sign-in to be refused", refused)
                assert not s["boardVisible"] and s["stored"] is None and s["seq"] == 0

            # The operator signs in; the live socket pushes snapshots.
            await page.fill("#token", server.settings.operator_token)
            await page.click("#sign-in-form button[type=submit]")

            async def live_with_my_city() -> dict[str, Any] | None:
                s = await state(page)
                k = s["kpis"]
                ok = (
                    s["boardVisible"]
                    and s["conn"] == "live"
                    and float(k["online_drivers"]["value"] or 0) >= 2
                    and float(k["on_trip_drivers"]["value"] or 0) >= 1
                    and float(k["open_requests"]["value"] or 0) >= 2
                    and float(k["matches_last_minute"]["value"] or 0) >= 2
                    and float(k["earnings_total"]["value"] or 0) >= earned_cents
                    and rationale in s["proposals"]
                )
                return s if ok else None

            first = await until("live data on the page", live_with_my_city)
            assert first["stored"] == server.settings.operator_token

            # Snapshots keep coming over the socket, not just the sign-in fetch.
            async def newer() -> dict[str, Any] | None:
                s = await state(page)
                return s if s["seq"] >= first["seq"] + 2 else None

            await until("two more snapshots", newer)

            # Every number shown is the API's, for the same snapshot.
            async def agreeing() -> tuple[dict[str, Any], dict[str, Any]] | None:
                s = await state(page)
                r = await http.get("/v1/operator/dashboard", headers=operator)
                assert r.status_code == 200, r.text
                api = r.json()
                return (s, api) if api["seq"] == s["seq"] else None

            shown, api = await until("the page and the API on the same snapshot", agreeing)
            for name, path in KPI_FIELDS.items():
                expected = field(api, path)
                assert same(shown["kpis"][name]["value"], expected), (name, shown, expected)
            for name in ("online_drivers", "open_requests", "matches_last_minute"):
                assert shown["kpis"][name]["text"] == f"{field(api, KPI_FIELDS[name]):,}"
            assert api["kpis"]["pickup_eta_s"]["samples"] >= 2
            assert api["kpis"]["request_to_offer_s"]["samples"] >= 2
            assert 0 <= api["kpis"]["earnings"]["gini"] < 1
            assert any(c["open_requests"] >= 1 for c in api["cells"])
            assert any(c["online_drivers"] >= 1 for c in api["cells"])
            assert any(d["status"] == "on_trip" and d["target"] for d in api["drivers"])

            # ... and agrees with the independent sources.
            rule = (await http.get("/v1/fares/rules/current")).json()
            assert shown["kpis"]["fare_rule_version"]["value"] == str(rule["version"])
            proposals = (
                await http.get("/v1/fares/proposals", params={"status": "open"}, headers=operator)
            ).json()["items"]
            assert rationale in [p["rationale"] for p in proposals]

            async def matches_supply() -> bool:
                r = await http.get(
                    "/v1/operator/supply", params={"resolution": 8}, headers=operator
                )
                cells = r.json()["cells"]
                s = await state(page)
                return float(s["kpis"]["online_drivers"]["value"]) == sum(
                    c["online_drivers"] for c in cells
                ) and float(s["kpis"]["open_requests"]["value"]) == sum(
                    c["open_requests"] for c in cells
                )

            await until("the page to match /v1/operator/supply", matches_supply)

            # Nothing came from anywhere but this server: no CDN, no tiles.
            foreign = [
                u
                for u in requested
                if not (u.startswith((server.base_url, server.ws_url)) or u.startswith("data:"))
            ]
            assert not foreign, foreign
            assert any("/ops/assets/" in u and u.endswith(".js") for u in requested)
            # The browser logs the two refused sign-ins; nothing else went wrong.
            refusals = [p for p in problems if "status of 401" in p or "status of 403" in p]
            assert len(refusals) == 2, problems
            assert [p for p in problems if p not in refusals] == []

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            png = await page.screenshot(path=str(SCREENSHOT))
            assert png.startswith(b"\x89PNG") and len(png) > 20_000

            # Signing out forgets the token and shows the form again.
            await page.click("#sign-out")
            s = await state(page)
            assert s["signInVisible"] and not s["boardVisible"] and s["stored"] is None
        finally:
            await browser.close()


def _png(rgb: tuple[int, int, int]) -> bytes:
    """A one-pixel PNG: a map tile as far as the browser is concerned."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@contextlib.contextmanager
def tile_server() -> Iterator[tuple[str, list[str]]]:
    """A tile server on a free loopback port that answers every /{z}/{x}/{y}.png."""
    served: list[str] = []
    tile = _png((40, 60, 90))

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_the_map_uses_tiles_when_a_tile_server_is_configured(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    problems: list[str] = []
    with tile_server() as (tiles_url, served):
        settings = test_settings.model_copy(
            update={
                "redis_prefix": f"{test_settings.redis_prefix}tiles:",
                "ops_tile_url": f"{tiles_url}/{{z}}/{{x}}/{{y}}.png",
                "ops_tile_attribution": "Test tiles",
            }
        )
        with start_server(settings, tmp_path_factory.mktemp("tiles") / "server.log") as srv:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM)
                try:
                    page = await browser.new_page(viewport={"width": 1000, "height": 700})
                    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                    page.on(
                        "console",
                        lambda m: problems.append(m.text) if m.type == "error" else None,
                    )
                    await page.goto(f"{srv.base_url}/ops")
                    await page.fill("#token", settings.operator_token)
                    await page.click("#sign-in-form button[type=submit]")

                    async def tiles_drawn() -> int:
                        loaded: int = await page.locator("img.leaflet-tile-loaded").count()
                        return loaded if loaded >= 4 else 0

                    await until("map tiles to load", tiles_drawn)
                    attribution = await page.locator(".leaflet-control-attribution").inner_text()
                    assert "Test tiles" in attribution
                    note = await page.locator("#projection-note").inner_text()
                    assert note == ""
                finally:
                    await browser.close()
    # The tiles came from the configured server, as /{z}/{x}/{y}.png, and the page's
    # Content-Security-Policy let them in (a refused image is a console error).
    assert len(served) >= 4 and all(p.endswith(".png") and p.count("/") == 3 for p in served)
    assert problems == []
