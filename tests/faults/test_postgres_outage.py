"""PostgreSQL crashes under traffic and comes back.

Requests in flight when it dies and every request while it is down get 503
problem+json (never a 500, never a hang); nothing is half-written (a trip without its
event, a completed trip without its ledger journal, an unbalanced journal); and the
service recovers on its own when the database returns: retries with the same
``Idempotency-Key`` make exactly one trip, the dispatcher offers again."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from core.db import is_connection_error, make_engine, make_sessionmaker, unit_of_work
from core.errors import Unavailable
from server.harness import Server, start_server
from tests.fixtures.invariants import check_database, rows, wait_ready
from tests.fixtures.own_services import Backing
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    assert_unavailable,
    new_driver,
    new_rider,
    open_socket,
)
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
ON_TRIP = 6
REQUESTS = 10


@pytest.fixture
@starts_server
def server(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = backing.settings.model_copy(
        update={"redis_prefix": f"faults:{secrets.token_hex(3)}:"}
    )
    with start_server(settings, tmp_path_factory.mktemp("pg") / "server.log") as srv:
        yield srv


async def _in_progress(http: httpx.AsyncClient, server: Server) -> tuple[str, dict[str, str]]:
    """A driver on a started trip: its trip id and the driver's auth header."""
    _, token = await new_driver(http, server)
    _, rider = await new_rider(http)
    driver = {"Authorization": f"Bearer {token}"}
    async with open_socket(server, "/v1/drivers/ws", token) as ws:
        await ws.call({"type": "status", "status": "online"})
        await ws.call({"type": "location", **NEAR_MIDTOWN})
        trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
        offer = await ws.expect("offer", trip_id=trip["id"])
        assert (await ws.call({"type": "accept", "offer_id": offer["offer_id"]}))["type"] == "ok"
    for step in ("arrived", "start"):
        r = await http.post(f"/v1/trips/{trip['id']}/{step}", headers=driver)
        assert r.status_code == 200, r.text
    return trip["id"], driver


async def test_postgres_crash_under_traffic(server: Server, backing: Backing) -> None:
    dsn = backing.pg.libpq_url("coopride")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
        started = [await _in_progress(http, server) for _ in range(ON_TRIP)]
        riders = [await new_rider(http) for _ in range(REQUESTS)]
        keys = [secrets.token_hex(8) for _ in riders]

        async def complete(trip_id: str, driver: dict[str, str]) -> httpx.Response:
            return await http.post(f"/v1/trips/{trip_id}/complete", headers=driver)

        async def request(rider: dict[str, str], key: str) -> httpx.Response:
            return await http.post(
                "/v1/trips", json=TRIP, headers={**rider, "Idempotency-Key": key}
            )

        async def crash() -> None:
            await asyncio.to_thread(backing.pg.stop, "immediate")

        # The crash lands among the requests: each either made it or got a clean 503.
        answers = await asyncio.gather(
            *(complete(t, d) for t, d in started),
            *(request(r, k) for (_, r), k in zip(riders, keys, strict=True)),
            crash(),
        )
        completes = answers[:ON_TRIP]
        requests = answers[ON_TRIP : ON_TRIP + REQUESTS]
        for r in [*completes, *requests]:
            assert r.status_code in (200, 201, 503), r.text
            if r.status_code == 503:
                assert_unavailable(r)
        print(
            "postgres crash among in-flight calls:",
            {code: [r.status_code for r in answers[:-1]].count(code) for code in (200, 201, 503)},
        )
        try:
            # While it is down: every call that needs it says so, readiness too.
            r = await http.get("/readyz")
            assert r.status_code == 503 and r.json()["checks"]["database"].startswith("down")
            assert r.json()["checks"]["redis"] == "ok"
            assert_unavailable(await request(riders[0][1], keys[0]))
            assert_unavailable(await complete(*started[0]))
            assert_unavailable(await http.get("/v1/riders/me", headers=riders[0][1]))
            assert_unavailable(await http.post("/v1/riders", json={"name": "X", "phone": "+1 555"}))
            assert_unavailable(
                await http.post(
                    "/v1/drivers",
                    json={"name": "D", "phone": "+1 556", "vehicle": {"plate": "P", "seats": 4}},
                    headers={"Authorization": f"Bearer {server.settings.operator_token}"},
                )
            )
        finally:
            await asyncio.to_thread(backing.pg.start)
        await wait_ready(server)

        # Nothing half-written by the requests the crash cut off.
        await check_database(dsn)

        # Retried: every complete lands once (200, or 409 if it had committed before the
        # crash cut the answer off), every request makes exactly one trip.
        for (trip_id, driver), first in zip(started, completes, strict=True):
            again = await complete(trip_id, driver)
            if first.status_code == 200:
                assert again.status_code == 409, again.text
            else:
                assert again.status_code in (200, 409), again.text
        waiting: set[str] = set()
        for (_, rider), key in zip(riders, keys, strict=True):
            r = await request(rider, key)
            assert r.status_code == 201, r.text
            mine = (await http.get("/v1/riders/me/trips", headers=rider)).json()["items"]
            assert [t["id"] for t in mine] == [r.json()["id"]]
            waiting.add(r.json()["id"])
        journals = await rows(
            dsn,
            "SELECT count(*) AS n FROM ledger_journals WHERE trip_id = ANY($1::text[])",
            [t for t, _ in started],
        )
        assert journals[0]["n"] == ON_TRIP

        # The dispatcher recovered by itself too: a driver online now gets an offer.
        _, token = await new_driver(http, server)
        async with open_socket(server, "/v1/drivers/ws", token) as ws:
            await ws.call({"type": "status", "status": "online"})
            await ws.call({"type": "location", **NEAR_MIDTOWN})
            offer = await ws.expect("offer", timeout=20)
            assert offer["trip_id"] in waiting
        for _, rider in riders:
            for t in (await http.get("/v1/riders/me/trips", headers=rider)).json()["items"]:
                await http.post(f"/v1/trips/{t['id']}/cancel", headers=rider)
    await check_database(dsn)


async def test_a_database_shutting_down_is_unavailable_not_an_error(backing: Backing) -> None:
    """While PostgreSQL shuts down it still accepts TCP and answers every new connection
    with SQLSTATE 57P03. asyncpg reports that as a plain server error, not a lost
    connection, so only the SQLSTATE tells a unit of work to say 503 instead of 500."""
    dsn = backing.pg.libpq_url("coopride")
    held = await asyncpg.connect(dsn, timeout=10)  # keeps the smart shutdown waiting
    engine = make_engine(backing.settings.database_url)
    try:
        backing.pg.begin_stop("smart")
        refused = None
        for _ in range(1_000):  # the postmaster flips state on its signal, not on our clock
            try:
                await (await asyncpg.connect(dsn, timeout=10)).close()
            except asyncpg.CannotConnectNowError as exc:
                refused = exc
                break
        assert refused is not None and refused.sqlstate == "57P03"

        with pytest.raises(Unavailable) as caught:
            async with unit_of_work(make_sessionmaker(engine)) as db:
                await db.execute(text("SELECT 1"))
        assert is_connection_error(caught.value.__cause__)
        # The session that was already open still works: nothing was cut off.
        assert await held.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()
        await held.close()
        backing.pg.wait_stopped()
        backing.pg.start()
