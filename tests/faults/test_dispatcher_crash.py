"""The leading dispatcher dies in the middle of a batch; a standby takes over.

Two places to die, each pinned with a real lock rather than luck:

1. After reserving drivers in Redis, before writing the offers: the test holds the trip's
   row lock, so the leader stops inside ``offers.make_batch`` with its reservation made;
   it is killed there. Its reservation only blocks that driver and trip until the TTL
   frees them; the standby then offers the trip, once.
2. After committing the offer in PostgreSQL, before its Redis bookkeeping and the
   ``offer`` frame: the test pauses Redis writes (``CLIENT PAUSE … WRITE`` on this
   test's own Redis) and releases the row lock, so the leader commits and then blocks
   on Redis; it is killed once the offer row exists. The new leader restores the
   pending offer's deadline from PostgreSQL, the offer expires unanswered, and the
   trip goes to another driver. Never two live offers for one trip, never an offer
   frame for an offer PostgreSQL does not hold.

Both run against this module's own Redis and PostgreSQL (``tests/fixtures/own_services.py``).
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.settings import Settings
from server.harness import Process, Server, start_dispatcher, start_server
from tests.fixtures.invariants import check_database, offers_of, rows, wait_for
from tests.fixtures.own_services import Backing
from tests.fixtures.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, new_driver, new_rider, open_socket
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
FARTHER = {"lat": 40.7600, "lng": -73.9800}
OFFER_TIMEOUT_S = 3.0


class Cluster:
    """An api process and the dispatchers started so far, on one prefix."""

    def __init__(self, backing: Backing, logs: Path) -> None:
        self.backing = backing
        self.logs = logs
        self.settings: Settings = backing.settings.model_copy(
            update={
                "redis_prefix": f"faults:{secrets.token_hex(3)}:",
                "offer_timeout_s": OFFER_TIMEOUT_S,
            }
        )
        self.server = start_server(self.settings, logs / "api.log", dispatcher=False)
        self.dispatchers: list[Process] = []

    def dispatcher(self) -> Process:
        n = len(self.dispatchers)
        process = start_dispatcher(
            self.settings, self.logs / f"dispatcher-{n}.log", log_level="info"
        )
        self.dispatchers.append(process)
        return process

    def key(self, name: str) -> str:
        return f"{self.settings.redis_prefix}{name}"

    def close(self) -> None:
        for process in self.dispatchers:
            process.stop()
        self.server.stop()


@pytest.fixture
@starts_server
def cluster(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(backing, tmp_path_factory.mktemp("crash"))
    try:
        yield c
    finally:
        c.close()


def kill(process: Process) -> None:
    process.popen.send_signal(signal.SIGKILL)  # no cleanup, no lock released
    process.popen.wait(10)


async def _leader_exists(cluster: Cluster) -> bool:
    with cluster.backing.redis.client() as raw:
        return bool(raw.exists(cluster.key("leader:default")))


async def _lock_trip(dsn: str, trip_id: str) -> asyncpg.Connection:
    """Hold the trip's row lock in an open transaction, as a slow competitor would."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.execute("SELECT 1 FROM trips WHERE id = $1 FOR UPDATE", trip_id)
    return conn


async def _unlock(conn: asyncpg.Connection) -> None:
    await conn.execute("ROLLBACK")
    await conn.close()


async def test_crash_after_reserving_before_writing(cluster: Cluster) -> None:
    server: Server = cluster.server
    dsn = cluster.backing.pg.libpq_url("coopride")
    first = cluster.dispatcher()
    await wait_for(lambda: _leader_exists(cluster), 15, "a leader")
    cluster.dispatcher()  # the standby
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        driver_id, token = await new_driver(http, server)
        _, rider = await new_rider(http)
        trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
        lock = await _lock_trip(dsn, trip["id"])
        try:
            async with open_socket(server, "/v1/drivers/ws", token) as ws:
                await ws.call({"type": "status", "status": "online"})
                await ws.call({"type": "location", **NEAR_MIDTOWN})

                async def reserved() -> bool:
                    with cluster.backing.redis.client() as raw:
                        return bool(raw.exists(cluster.key(f"offer:trip:{trip['id']}")))

                await wait_for(reserved, 15, "the leader's reservation")
                assert await offers_of(dsn, trip["id"]) == []
                kill(first)  # reserved in Redis, nothing written in PostgreSQL
                await _unlock(lock)
                lock = None

                offer = await ws.expect("offer", trip_id=trip["id"], timeout=30)
                made = await offers_of(dsn, trip["id"])
                assert [(o["id"], o["driver_id"], o["status"]) for o in made] == [
                    (offer["offer_id"], driver_id, "pending")
                ]
                reply = await ws.call({"type": "accept", "offer_id": offer["offer_id"]})
                assert reply["type"] == "ok", reply
                await ws.expect("trip.assigned")
                assert [f["offer_id"] for f in ws.frames if f.get("type") == "offer"] == [
                    offer["offer_id"]
                ]
        finally:
            if lock is not None:
                await _unlock(lock)
            await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
    await check_database(dsn, [trip["id"]])


async def test_crash_after_commit_before_publishing(cluster: Cluster) -> None:
    server: Server = cluster.server
    dsn = cluster.backing.pg.libpq_url("coopride")
    leader = cluster.dispatcher()
    await wait_for(lambda: _leader_exists(cluster), 15, "a leader")
    cluster.dispatcher()  # the standby
    raw = cluster.backing.redis.client()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        first_id, first_token = await new_driver(http, server)
        second_id, second_token = await new_driver(http, server)
        _, rider = await new_rider(http)
        trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
        lock = await _lock_trip(dsn, trip["id"])
        paused = False
        try:
            async with open_socket(server, "/v1/drivers/ws", first_token) as ws:
                await ws.call({"type": "status", "status": "online"})
                await ws.call({"type": "location", **NEAR_MIDTOWN})
                await wait_for(
                    lambda: _exists(raw, cluster.key(f"offer:trip:{trip['id']}")),
                    15,
                    "the leader's reservation",
                )
                raw.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
                paused = True
                await _unlock(lock)
                lock = None

                async def committed() -> bool:
                    return bool(await offers_of(dsn, trip["id"]))

                await wait_for(committed, 15, "the offer committed")
                kill(leader)  # committed in PostgreSQL; Redis bookkeeping never ran
                raw.execute_command("CLIENT", "UNPAUSE")
                paused = False
                (lost,) = await offers_of(dsn, trip["id"])
                assert lost["driver_id"] == first_id and lost["status"] == "pending"

                async with open_socket(server, "/v1/drivers/ws", second_token) as other:
                    await other.call({"type": "status", "status": "online"})
                    await other.call({"type": "location", **FARTHER})
                    offer = await other.expect("offer", trip_id=trip["id"], timeout=30)
                    made = await offers_of(dsn, trip["id"])
                    assert [(o["driver_id"], o["status"]) for o in made] == [
                        (first_id, "expired"),
                        (second_id, "pending"),
                    ]
                    assert made[1]["id"] == offer["offer_id"]
                    assert (await other.call({"type": "accept", "offer_id": offer["offer_id"]}))[
                        "type"
                    ] == "ok"
                    await other.expect("trip.assigned")
                    assert [f["offer_id"] for f in other.frames if f.get("type") == "offer"] == [
                        offer["offer_id"]
                    ]
                # The first driver never saw an offer frame for the lost offer: it was
                # never published, and it is not published late either.
                await ws.expect("offer.expired", offer_id=lost["id"])
                assert [f for f in ws.frames if f.get("type") == "offer"] == []
        finally:
            if paused:
                raw.execute_command("CLIENT", "UNPAUSE")
            raw.close()
            if lock is not None:
                await _unlock(lock)
            await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider)
    await check_database(dsn, [trip["id"]])
    expired = await rows(dsn, "SELECT count(*) AS n FROM offers WHERE status = 'pending'")
    assert expired[0]["n"] == 0


async def _exists(raw: object, key: str) -> bool:
    return bool(raw.exists(key))  # type: ignore[attr-defined]
