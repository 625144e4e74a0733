"""Who may do what: every HTTP route and both sockets, called by every role.

Roles: nobody (no token), a rider, another rider, a driver (a member: the one the
trips are assigned to), another driver (a member who was never offered them), and the
co-op's operator. Every cell of the table below is a real request (or a real socket) to a
real server, and the status it gets must be the one written down. Riders see only their
own trips, drivers only trips offered or assigned to them, only members propose and vote,
only operators admit members, draw service areas, publish budgets and close periods.

The route list is read from the app itself, so a route added without a row here fails
``test_every_route_has_a_row``: adding a route means deciding who may call it.

The server has a database of its own: the table publishes a budget, closes a period,
opens proposals and suspends a member, which the other end-to-end tests do not expect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.settings import Settings
from server.app import create_app
from server.harness import Server
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    Socket,
    new_driver,
    new_rider,
    open_socket,
    phone_number,
)

pytestmark = pytest.mark.e2e

ROLES = ("none", "other_rider", "other_driver", "operator", "rider", "driver")
# Washington Heights: in the service area, too far from Midtown for the driver to be
# offered it, so a trip there stays `requested` while the table pokes at it.
FAR = {"lat": 40.8500, "lng": -73.9350}
PAST_PERIOD = "2026-10"
# Sockets: 101 means the handshake succeeded and the socket answers frames; 44xx is the
# close code after an `error` frame.
OPEN = 101


def by_role(
    none: int, rider: int, other_rider: int, driver: int, other_driver: int, operator: int
) -> dict[str, int]:
    return {
        "none": none,
        "rider": rider,
        "other_rider": other_rider,
        "driver": driver,
        "other_driver": other_driver,
        "operator": operator,
    }


PUBLIC = by_role(200, 200, 200, 200, 200, 200)
SIGNED_IN = by_role(401, 200, 200, 200, 200, 200)
RIDERS = by_role(401, 200, 200, 403, 403, 403)
MEMBERS = by_role(401, 403, 403, 200, 200, 403)
OPERATORS = by_role(401, 403, 403, 403, 403, 200)
# A trip: its rider, its driver and operators; nobody else.
TRIP_PARTIES = by_role(401, 200, 403, 200, 403, 200)


@dataclass
class World:
    http: httpx.AsyncClient
    server: Server
    tokens: dict[str, str | None]
    ids: dict[str, str]
    driver_socket: Socket
    values: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        token = self.tokens[role]
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def request_trip(self, pickup: dict[str, float]) -> str:
        r = await self.http.post(
            "/v1/trips", json={"pickup": pickup, "dropoff": CHELSEA}, headers=self.auth("rider")
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def assigned_trip(self) -> str:
        """A trip of the rider, offered to and accepted by the driver."""
        trip_id = await self.request_trip(MIDTOWN)
        offer = await self.driver_socket.expect("offer", trip_id=trip_id)
        reply = await self.driver_socket.call({"type": "accept", "offer_id": offer["offer_id"]})
        assert reply["type"] == "ok", reply
        await self.driver_socket.expect("trip.assigned")
        return trip_id

    async def advance(self, trip_id: str, *steps: str) -> None:
        for step in steps:
            r = await self.http.post(f"/v1/trips/{trip_id}/{step}", headers=self.auth("driver"))
            assert r.status_code == 200, r.text

    async def fresh_token(self, role: str) -> str | None:
        """A token of its own for a role, for calls that spend it (revocation)."""
        if role in ("rider", "other_rider"):
            r = await self.http.post("/v1/riders", json={"name": "R", "phone": phone_number()})
            return str(r.json()["token"])
        if role in ("driver", "other_driver"):
            return (await new_driver(self.http, self.server))[1]
        return self.tokens[role]


Target = Callable[[World, str], Awaitable[str]]


async def page_script(world: World) -> str:
    """The dashboard's script, whatever its content-hashed name: the page names it."""
    page = (await world.http.get("/ops")).text
    found = re.search(r'src="(/ops/assets/[^"]+[.]js)"', page)
    assert found is not None, page
    return found.group(1)


def at(path: str) -> Target:
    """The path with ``{name}`` filled from the world's ids."""

    async def target(world: World, role: str) -> str:
        return path.format(**world.ids)

    return target


async def cancel_target(world: World, role: str) -> str:
    # Everyone tries the rider's held trip, which only the rider gets to cancel (roles go
    # in ROLES order, the rider second to last); then the driver cancels one of its own.
    if role == "driver":
        return f"/v1/trips/{await world.assigned_trip()}/cancel"
    if "held" not in world.ids:
        world.ids["held"] = await world.assigned_trip()
    return f"/v1/trips/{world.ids['held']}/cancel"


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # the route's template, as the app declares it
    expect: dict[str, int]
    target: Target | None = None  # the concrete path; default: the template itself
    body: Any = None
    fresh_token: bool = False  # each role calls with a token of its own
    own_id: str | None = None  # a JSON field that must be the caller's own id


def proposal_body() -> dict[str, Any]:
    return {
        "rule": {
            "base_cents": 300,
            "per_km_cents": 150,
            "per_minute_cents": 45,
            "minimum_cents": 900,
            "cancellation_fee_cents": 500,
            "currency": "USD",
            "cost_recovery_mode": "per_trip",
        },
        "rationale": "Authorization matrix",
        "closes_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
    }


NEW_YORK = {
    "type": "Polygon",
    "coordinates": [
        [[-74.30, 40.45], [-73.60, 40.45], [-73.60, 41.00], [-74.30, 41.00], [-74.30, 40.45]]
    ],
}
TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
ADMISSION = {"name": "New", "phone": "+1 555 0199", "vehicle": {"plate": "N1", "seats": 4}}

# In order: later rows rely on what earlier ones did (the trip moves along its states,
# the budget is published before it is read and the period closed).
MATRIX: list[Row] = [
    Row("GET", "/openapi.json", PUBLIC),
    Row("GET", "/asyncapi.json", PUBLIC),
    Row("GET", "/docs", PUBLIC),
    Row("GET", "/docs/oauth2-redirect", PUBLIC),
    Row("GET", "/redoc", PUBLIC),
    Row("GET", "/healthz", PUBLIC),
    Row("GET", "/readyz", PUBLIC),
    Row("GET", "/metrics", PUBLIC),
    Row("GET", "/v1/fares/rules/current", PUBLIC),
    Row("GET", "/v1/fares/rules", PUBLIC),
    Row(
        "POST",
        "/v1/riders",
        by_role(201, 201, 201, 201, 201, 201),
        body={"name": "X", "phone": "+1 555 0198"},
    ),
    Row("GET", "/v1/riders/me", RIDERS, own_id="id"),
    Row("POST", "/v1/quotes", RIDERS, body=TRIP),
    Row(
        "POST",
        "/v1/trips",
        by_role(401, 201, 201, 403, 403, 403),
        body={"pickup": FAR, "dropoff": CHELSEA},
        fresh_token=True,
        own_id="rider_id",
    ),
    Row("GET", "/v1/riders/me/trips", RIDERS),
    Row("GET", "/v1/trips/{trip_id}", TRIP_PARTIES, target=at("/v1/trips/{done}")),
    Row("GET", "/v1/trips/{trip_id}/receipt", TRIP_PARTIES, target=at("/v1/trips/{done}/receipt")),
    Row("GET", "/v1/trips/{trip_id}/trace", TRIP_PARTIES, target=at("/v1/trips/{done}/trace")),
    # The live trip, step by step: only its driver moves it on.
    Row(
        "POST",
        "/v1/trips/{trip_id}/arrived",
        by_role(401, 403, 403, 200, 403, 403),
        target=at("/v1/trips/{live}/arrived"),
    ),
    Row(
        "POST",
        "/v1/trips/{trip_id}/start",
        by_role(401, 403, 403, 200, 403, 403),
        target=at("/v1/trips/{live}/start"),
    ),
    Row(
        "POST",
        "/v1/trips/{trip_id}/complete",
        by_role(401, 403, 403, 200, 403, 403),
        target=at("/v1/trips/{live}/complete"),
    ),
    Row(
        "POST",
        "/v1/trips/{trip_id}/cancel",
        by_role(401, 200, 403, 200, 403, 403),
        target=cancel_target,
    ),
    Row("POST", "/v1/drivers", OPERATORS | {"operator": 201}, body=ADMISSION),
    Row("GET", "/v1/drivers/me", MEMBERS, own_id="id"),
    Row("GET", "/v1/drivers/me/earnings", MEMBERS),
    Row("GET", "/v1/drivers/me/statement", MEMBERS),
    Row("GET", "/v1/drivers/me/dispatch-log", MEMBERS),
    # Members only; the other driver never sent a position: nothing to advise from.
    Row("GET", "/v1/drivers/me/demand-map", MEMBERS | {"other_driver": 409}),
    Row(
        "POST",
        "/v1/operator/service-areas",
        OPERATORS | {"operator": 201},
        body={"name": "NYC", "polygon": NEW_YORK},
    ),
    Row("GET", "/v1/operator/service-areas", OPERATORS),
    Row("GET", "/v1/operator/supply", OPERATORS),
    Row("POST", "/v1/fares/proposals", by_role(401, 403, 403, 201, 201, 403), body=proposal_body()),
    Row("GET", "/v1/fares/proposals", SIGNED_IN),
    Row(
        "GET",
        "/v1/fares/proposals/{proposal_id}",
        SIGNED_IN,
        target=at("/v1/fares/proposals/{proposal}"),
    ),
    Row(
        "POST",
        "/v1/fares/proposals/{proposal_id}/ballots",
        by_role(401, 403, 403, 201, 201, 403),
        target=at("/v1/fares/proposals/{proposal}/ballots"),
        body={"choice": "yes"},
    ),
    Row(
        "GET",
        "/v1/fares/proposals/{proposal_id}/ballots",
        SIGNED_IN,
        target=at("/v1/fares/proposals/{proposal}/ballots"),
    ),
    Row("GET", "/v1/coop/audit", SIGNED_IN),
    Row(
        "PUT",
        "/v1/coop/budgets/{period}",
        OPERATORS,
        target=at(f"/v1/coop/budgets/{PAST_PERIOD}"),
        body={"lines": [{"label": "Servers", "amount_cents": 10_000}], "expected_trips": 100},
    ),
    Row(
        "GET", "/v1/coop/budgets/{period}", SIGNED_IN, target=at(f"/v1/coop/budgets/{PAST_PERIOD}")
    ),
    Row(
        "POST",
        "/v1/coop/periods/{period}/close",
        OPERATORS,
        target=at(f"/v1/coop/periods/{PAST_PERIOD}/close"),
    ),
    Row(
        "GET", "/v1/coop/periods/{period}", SIGNED_IN, target=at(f"/v1/coop/periods/{PAST_PERIOD}")
    ),
    Row(
        "PUT",
        "/v1/operator/members/{member_id}/standing",
        OPERATORS,
        target=at("/v1/operator/members/{spare_member}/standing"),
        body={"status": "suspended", "reason": "matrix"},
    ),
    Row("POST", "/v1/tokens/revoke", by_role(401, 204, 204, 204, 204, 403), fresh_token=True),
    # The operator dashboard: the page and its assets are public (the page holds no data
    # and asks for the operator token); its data and its socket are the operator's.
    Row("GET", "/ops", PUBLIC),
    Row("GET", "/ops/assets/{name}", PUBLIC, target=lambda world, role: page_script(world)),
    Row("GET", "/v1/operator/dashboard", OPERATORS),
]

SOCKETS: dict[str, dict[str, int]] = {
    "/v1/riders/ws": by_role(4401, OPEN, OPEN, 4403, 4403, 4403),
    "/v1/drivers/ws": by_role(4401, 4403, 4403, OPEN, OPEN, 4403),
    "/v1/operator/live": by_role(4401, 4403, 4403, 4403, 4403, OPEN),
}


def app_routes() -> Iterator[BaseRoute]:
    """Every route the app serves, through included routers."""

    def walk(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
        for r in routes:
            inner = getattr(r, "original_router", None)
            if inner is not None:
                assert not r.include_context.prefix, "prefixed routers: extend this walk"  # type: ignore[attr-defined]
                yield from walk(inner.routes)
            else:
                yield r

    yield from walk(create_app(Settings(bench_endpoints=False)).routes)


def test_every_route_has_a_row() -> None:
    http: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    for route in app_routes():
        if isinstance(route, WebSocketRoute):
            sockets.add(route.path)
        else:
            assert isinstance(route, Route), route
            http |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
    rows = {(row.method, row.path) for row in MATRIX}
    assert len(rows) == len(MATRIX), "one row per route"
    assert http - rows == set(), "routes nobody decided who may call: add rows to MATRIX"
    assert rows - http == set(), "rows for routes the app does not serve"
    assert sockets == set(SOCKETS)


async def socket_outcome(server: Server, path: str, token: str | None) -> int:
    """OPEN when the server answers a frame on the socket (``ok``, or an ``error`` that
    leaves it open: a socket that takes no frames); else the code it closed with."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with connect(f"{server.ws_url}{path}", additional_headers=headers, open_timeout=10) as ws:
        try:
            await ws.send(json.dumps({"type": "ack", "event_id": 0, "id": 1}))
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("ref") == 1:
                    return OPEN
        except ConnectionClosed:
            pass
        assert ws.close_code is not None
        return ws.close_code


async def run_row(world: World, row: Row, own: dict[str, str]) -> list[str]:
    """Call one route as every role; what differs from the table."""
    wrong = []
    for role in ROLES:
        path = await (row.target or at(row.path))(world, role)
        token = await world.fresh_token(role) if row.fresh_token else world.tokens[role]
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        r = await world.http.request(row.method, path, json=row.body, headers=headers)
        want = row.expect[role]
        if r.status_code != want:
            wrong.append(
                f"{row.method} {path} as {role}: {r.status_code}, not {want} {r.text[:200]}"
            )
        elif r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), r.text
        elif (
            row.own_id and role in own and not row.fresh_token and r.json()[row.own_id] != own[role]
        ):
            wrong.append(f"{row.method} {path} as {role}: someone else's {row.own_id}")
        if row.path == "/v1/trips" and r.status_code == 201:
            cancel = await world.http.post(f"/v1/trips/{r.json()['id']}/cancel", headers=headers)
            assert cancel.status_code == 200, cancel.text
    return wrong


async def test_every_route_and_socket_by_role(own_server: Server) -> None:
    server = own_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
        rider_id, rider = await new_rider(http)
        other_rider_id, other_rider = await new_rider(http)
        driver_id, driver = await new_driver(http, server)
        other_driver_id, other_driver = await new_driver(http, server)
        spare_member, _ = await new_driver(http, server)
        tokens: dict[str, str | None] = {
            "none": None,
            "rider": rider["Authorization"][7:],
            "other_rider": other_rider["Authorization"][7:],
            "driver": driver,
            "other_driver": other_driver,
            "operator": server.settings.operator_token,
        }
        own = {
            "rider": rider_id,
            "other_rider": other_rider_id,
            "driver": driver_id,
            "other_driver": other_driver_id,
        }
        async with open_socket(server, "/v1/drivers/ws", driver) as ws:
            assert (await ws.call({"type": "status", "status": "online"}))["type"] == "ok"
            assert (await ws.call({"type": "location", **NEAR_MIDTOWN}))["type"] == "ok"
            world = World(http, server, tokens, {"spare_member": spare_member}, ws)
            done = await world.assigned_trip()
            await world.advance(done, "arrived", "start", "complete")
            world.ids["done"] = done
            world.ids["live"] = await world.assigned_trip()
            r = await http.post(
                "/v1/fares/proposals", json=proposal_body(), headers=world.auth("driver")
            )
            assert r.status_code == 201, r.text
            world.ids["proposal"] = r.json()["id"]

            wrong: list[str] = []
            for row in MATRIX:
                wrong += await run_row(world, row, own)
            # Riders' lists hold their own trips only.
            for role in ("rider", "other_rider"):
                items = (await http.get("/v1/riders/me/trips", headers=world.auth(role))).json()[
                    "items"
                ]
                assert {t["rider_id"] for t in items} <= {own[role]}
            for path, expect in SOCKETS.items():
                for role in ROLES:
                    got = await socket_outcome(server, path, tokens[role])
                    if got != expect[role]:
                        wrong.append(f"socket {path} as {role}: {got}, not {expect[role]}")
        assert wrong == [], "\n".join(wrong)


async def test_a_driver_offered_a_trip_sees_it_but_not_how_it_went(own_server: Server) -> None:
    """A driver who was offered a trip and declined may read the trip (it was shown the
    trip), but not its receipt (another member's earnings) or its trace (another member's
    whereabouts); a driver never offered it may read nothing of it."""
    server = own_server
    farther = {"lat": 40.7600, "lng": -73.9800}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
        _, declined = await new_driver(http, server)
        winner_id, winner = await new_driver(http, server)
        _, stranger = await new_driver(http, server)
        _, rider = await new_rider(http)
        async with (
            open_socket(server, "/v1/drivers/ws", declined) as near,
            open_socket(server, "/v1/drivers/ws", winner) as far,
        ):
            for ws, spot in ((near, NEAR_MIDTOWN), (far, farther)):
                assert (await ws.call({"type": "status", "status": "online"}))["type"] == "ok"
                assert (await ws.call({"type": "location", **spot}))["type"] == "ok"
            trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()["id"]
            offer = await near.expect("offer", trip_id=trip)
            assert (await near.call({"type": "decline", "offer_id": offer["offer_id"]}))[
                "type"
            ] == "ok"
            await near.call({"type": "status", "status": "offline"})
            offer = await far.expect("offer", trip_id=trip)
            assert (await far.call({"type": "accept", "offer_id": offer["offer_id"]}))[
                "type"
            ] == "ok"
            for step in ("arrived", "start", "complete"):
                r = await http.post(
                    f"/v1/trips/{trip}/{step}", headers={"Authorization": f"Bearer {winner}"}
                )
                assert r.status_code == 200, r.text

        async def status(token: str, path: str) -> int:
            r = await http.get(
                f"/v1/trips/{trip}{path}", headers={"Authorization": f"Bearer {token}"}
            )
            return r.status_code

        assert (await http.get(f"/v1/trips/{trip}", headers=rider)).json()["driver_id"] == winner_id
        assert [await status(winner, p) for p in ("", "/receipt", "/trace")] == [200, 200, 200]
        assert [await status(declined, p) for p in ("", "/receipt", "/trace")] == [200, 403, 403]
        assert [await status(stranger, p) for p in ("", "/receipt", "/trace")] == [403, 403, 403]
