"""An api process is SIGKILLed with drivers' sockets open on it.

Its sockets close without it running a line, so it never counts them off. Each api
process holds a lease in Redis (``COOP_PROCESS_LEASE_S``, 2 s here) and counts its
drivers' sockets under its id (``dispatch.presence.sockets``): once the lease runs out,
the dispatcher (a process of its own here, which survives) takes the dead process's
counts off its drivers. A driver left with none counts as disconnected: offline, its
pending offer withdrawn after the grace (1 s here, counted from when the lease ran out)
and re-dispatched, and no new offer goes to it. A driver whose other phone is on a
surviving process stays connected. However often the process is killed and restarted,
no driver is left counted with more sockets than it has open.

Real processes: ``serve --no-dispatcher`` for each api, ``coopride dispatcher``, on this
module's own Redis and PostgreSQL (``tests/fixtures/own_services.py``). ``-s`` prints
the measured times (``docs/reliability.md`` quotes them).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from redis import Redis as SyncRedis

from core.settings import Settings
from server.harness import Process, Server, start_dispatcher, start_server
from tests.fixtures.invariants import (
    check_database,
    check_socket_counts,
    counted_sockets,
    offers_of,
    wait_for,
)
from tests.fixtures.own_services import Backing
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    Socket,
    new_driver,
    new_rider,
    open_socket,
)
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
FARTHER = {"lat": 40.7600, "lng": -73.9800}
FARTHEST = {"lat": 40.7640, "lng": -73.9760}
GRACE_S = 1.0
LEASE_S = 2.0
# Beyond grace + lease: the dispatcher's ticks (0.1 s), the withdrawal's transaction,
# the next batch, the offer frame's way to the phone; on a busy two-core machine.
SLACK_S = 1.5
# Longer than a restart of the api takes, for the issue's sequence.
SLOW_LEASE_S = 10.0


class Fleet:
    """Api processes (started and killed by name) and one dispatcher, on one prefix."""

    def __init__(self, backing: Backing, logs: Path) -> None:
        self.backing = backing
        self.logs = logs
        self.settings: Settings = backing.settings.model_copy(
            update={
                "redis_prefix": f"faults:{secrets.token_hex(3)}:",
                "offer_timeout_s": 60.0,  # only a disconnect can end an offer early
                "offer_disconnect_grace_s": GRACE_S,
                "process_lease_s": LEASE_S,
            }
        )
        self.dispatcher: Process = start_dispatcher(
            self.settings, logs / "dispatcher.log", log_level="info"
        )
        self.apis: dict[str, Server] = {}
        self.ports: dict[str, int] = {}
        self.starts = 0
        self.redis: SyncRedis = backing.redis.client()
        self.dsn = backing.pg.libpq_url("coopride")

    def api(self, name: str) -> Server:
        """Starts the api ``name`` (again on its port, if it ran before)."""
        self.starts += 1
        server = start_server(
            self.settings,
            self.logs / f"api-{name}-{self.starts}.log",
            dispatcher=False,
            port=self.ports.get(name),
        )
        self.apis[name] = server
        self.ports[name] = int(server.base_url.rsplit(":", 1)[1])
        return server

    def kill(self, name: str) -> None:
        """SIGKILL: no socket is closed by the server, no lease let go."""
        popen = self.apis.pop(name).process.popen
        popen.send_signal(signal.SIGKILL)
        popen.wait(10)

    def key(self, name: str) -> str:
        return f"{self.settings.redis_prefix}{name}"

    def driver(self, driver_id: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.redis.hgetall(self.key(f"drv:{driver_id}")).items()}

    def counted(self) -> dict[str, int]:
        """Driver -> sockets counted, by every process, live or dead."""
        prefix = self.settings.redis_prefix
        return {d: sum(c.values()) for d, c in counted_sockets(self.redis, prefix).items()}

    def check_counts(self, open_now: dict[str, int]) -> None:
        check_socket_counts(self.redis, self.settings.redis_prefix, open_now)

    async def settle(self, open_now: dict[str, int]) -> None:
        """Sockets the test just closed are counted off as their api notices; then every
        driver is counted with exactly the sockets it has open."""

        async def exact() -> bool:
            return self.counted() == {d: n for d, n in open_now.items() if n}

        await wait_for(exact, 5, f"socket counts {open_now}")
        self.check_counts(open_now)

    def close(self) -> None:
        for server in self.apis.values():
            server.stop()
        self.dispatcher.stop()
        self.redis.close()


@pytest.fixture
@starts_server
def fleet(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(backing, tmp_path_factory.mktemp("api-crash"))
    try:
        yield f
    finally:
        f.close()


@asynccontextmanager
async def phone(server: Server, token: str, at: dict[str, float]) -> AsyncIterator[Socket]:
    """A driver's phone on ``server``: online, at ``at``. Leaving the block closes it;
    a socket whose server was killed just goes."""
    cm = open_socket(server, "/v1/drivers/ws", token)
    ws = await cm.__aenter__()
    try:
        assert (await ws.call({"type": "status", "status": "online"}))["type"] == "ok"
        assert (await ws.call({"type": "location", **at}))["type"] == "ok"
        yield ws
    finally:
        with contextlib.suppress(Exception):
            await cm.__aexit__(None, None, None)


async def _gone(fleet: Fleet, driver_id: str) -> bool:
    return driver_id not in fleet.counted() and fleet.driver(driver_id).get("status") == "offline"


async def _no_pending(dsn: str, trip_id: str) -> bool:
    return all(o["status"] != "pending" for o in await offers_of(dsn, trip_id))


async def test_killing_the_api_that_holds_a_drivers_only_socket(fleet: Fleet) -> None:
    doomed, survivor = fleet.api("a"), fleet.api("b")
    async with httpx.AsyncClient(base_url=survivor.base_url, timeout=10) as http:
        x_id, x_token = await new_driver(http, survivor)
        y_id, y_token = await new_driver(http, survivor)
        z_id, z_token = await new_driver(http, survivor)
        _, rider = await new_rider(http)
        _, rider2 = await new_rider(http)
        trips: list[str] = []
        try:
            async with phone(doomed, x_token, NEAR_MIDTOWN) as x:
                trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
                trips.append(trip["id"])
                offer = await x.expect("offer", trip_id=trip["id"])
                assert fleet.counted() == {x_id: 1}
                fleet.kill("a")
                killed = time.monotonic()

            async with phone(survivor, y_token, FARTHER) as y:
                # Within the lease (and a tick), the dead process's socket stops counting.
                await wait_for(lambda: _gone(fleet, x_id), LEASE_S + SLACK_S, "x disconnected")
                disconnected_s = time.monotonic() - killed
                # Within the grace after that, its offer is withdrawn and goes to y.
                second = await y.expect("offer", trip_id=trip["id"], timeout=30)
                redispatched_s = time.monotonic() - killed
                assert GRACE_S <= redispatched_s <= GRACE_S + LEASE_S + SLACK_S, redispatched_s
                made = await offers_of(fleet.dsn, trip["id"])
                assert [(o["driver_id"], o["status"]) for o in made] == [
                    (x_id, "withdrawn"),
                    (y_id, "pending"),
                ]
                assert made[0]["id"] == offer["offer_id"]
                assert (await y.call({"type": "accept", "offer_id": second["offer_id"]}))[
                    "type"
                ] == "ok"
                await y.expect("trip.assigned")

                # No new offer goes to x, nearest as it was: the next trip from where it
                # stood goes to z, farther away.
                async with phone(survivor, z_token, FARTHEST) as z:
                    trip2 = (await http.post("/v1/trips", json=TRIP, headers=rider2)).json()
                    trips.append(trip2["id"])
                    third = await z.expect("offer", trip_id=trip2["id"])
                    made2 = await offers_of(fleet.dsn, trip2["id"])
                    assert [(o["id"], o["driver_id"]) for o in made2] == [(third["offer_id"], z_id)]
                    fleet.check_counts({y_id: 1, z_id: 1})
            print(
                f"\n[api crash] driver disconnected {disconnected_s:.2f} s after the SIGKILL, "
                f"offer re-dispatched after {redispatched_s:.2f} s "
                f"(lease {LEASE_S:g} s, grace {GRACE_S:g} s)"
            )
        finally:
            for trip_id, who in zip(trips, (rider, rider2), strict=False):
                await http.post(f"/v1/trips/{trip_id}/cancel", headers=who)
    for trip_id in trips:
        await wait_for(lambda t=trip_id: _no_pending(fleet.dsn, t), 5, "no pending offer")
    await check_database(fleet.dsn, trips)
    await fleet.settle({})


async def test_a_second_phone_on_a_surviving_api_keeps_the_driver_connected(
    fleet: Fleet,
) -> None:
    doomed, survivor = fleet.api("a"), fleet.api("b")
    async with httpx.AsyncClient(base_url=survivor.base_url, timeout=10) as http:
        x_id, x_token = await new_driver(http, survivor)
        _, rider = await new_rider(http)
        trips: list[str] = []
        try:
            async with phone(survivor, x_token, NEAR_MIDTOWN) as kept:
                async with phone(doomed, x_token, NEAR_MIDTOWN) as lost:
                    trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
                    trips.append(trip["id"])
                    offer = await kept.expect("offer", trip_id=trip["id"])
                    await lost.expect("offer", trip_id=trip["id"])  # each phone hears it
                    assert fleet.counted() == {x_id: 2}
                    fleet.kill("a")
                # The dead process's count is reaped; the surviving phone's stays.
                await wait_for(
                    lambda: _counted_is(fleet, x_id, 1), LEASE_S + SLACK_S, "the dead count gone"
                )
                # A wrongful withdrawal would come within the grace after the reaping.
                until = time.monotonic() + GRACE_S + 1.0
                while time.monotonic() < until:
                    made = await offers_of(fleet.dsn, trip["id"])
                    assert [(o["id"], o["status"]) for o in made] == [
                        (offer["offer_id"], "pending")
                    ]
                assert fleet.driver(x_id)["status"] == "available"
                reply = await kept.call({"type": "accept", "offer_id": offer["offer_id"]})
                assert reply["type"] == "ok", reply
                assigned = await kept.expect("trip.assigned")
                assert assigned["trip"]["driver_id"] == x_id
                assert not [f for f in kept.frames if f.get("type") == "offer.withdrawn"]
                fleet.check_counts({x_id: 1})
        finally:
            for trip_id in trips:
                await http.post(f"/v1/trips/{trip_id}/cancel", headers=rider)
    await check_database(fleet.dsn, trips)
    await fleet.settle({})


async def _counted_is(fleet: Fleet, driver_id: str, n: int) -> bool:
    return fleet.counted().get(driver_id, 0) == n


async def test_the_issues_reproduction_restart_then_reconnect(fleet: Fleet) -> None:
    """The issue's steps: x online on an api that is killed and restarted; x back on the
    restarted one (the dead one's count still there); a request, x closes its socket
    without answering: the offer is withdrawn after the grace and the lease, not the
    whole offer timeout, and the next request is not offered to x. Here the lease is
    longer than a restart takes, as in production (6 s, a restart 3-5 s), so the dead
    process still counts x when it is back."""
    fleet.settings = fleet.settings.model_copy(update={"process_lease_s": SLOW_LEASE_S})
    fleet.api("a")
    async with httpx.AsyncClient(base_url=fleet.apis["a"].base_url, timeout=10) as http:
        x_id, x_token = await new_driver(http, fleet.apis["a"])
        z_id, z_token = await new_driver(http, fleet.apis["a"])
        _, rider = await new_rider(http)
        _, rider2 = await new_rider(http)
    async with phone(fleet.apis["a"], x_token, NEAR_MIDTOWN):
        assert fleet.counted() == {x_id: 1}
        fleet.kill("a")
    restarted = fleet.api("a")
    async with httpx.AsyncClient(base_url=restarted.base_url, timeout=10) as http:
        trips: list[str] = []
        try:
            async with phone(restarted, x_token, NEAR_MIDTOWN) as x:
                assert fleet.counted() == {x_id: 2}  # the dead process's count, and this one
                trip = (await http.post("/v1/trips", json=TRIP, headers=rider)).json()
                trips.append(trip["id"])
                offer = await x.expect("offer", trip_id=trip["id"])
            closed = time.monotonic()  # closed without answering
            await wait_for(
                lambda: _no_pending(fleet.dsn, trip["id"]),
                GRACE_S + SLOW_LEASE_S + SLACK_S,
                "the offer withdrawn",
            )
            withdrawn_s = time.monotonic() - closed
            made = await offers_of(fleet.dsn, trip["id"])
            assert [(o["id"], o["status"]) for o in made] == [(offer["offer_id"], "withdrawn")]
            assert fleet.driver(x_id)["status"] == "offline"
            fleet.check_counts({})
            async with phone(restarted, z_token, FARTHEST) as z:
                # z, farther, is offered the first trip again, then the second: never x.
                first = await z.expect("offer", trip_id=trip["id"])
                await z.call({"type": "decline", "offer_id": first["offer_id"]})
                trip2 = (await http.post("/v1/trips", json=TRIP, headers=rider2)).json()
                trips.append(trip2["id"])
                await z.expect("offer", trip_id=trip2["id"])
                for trip_id in trips:
                    drivers = {o["driver_id"] for o in await offers_of(fleet.dsn, trip_id)}
                    assert drivers <= {x_id, z_id}
                assert [o["driver_id"] for o in await offers_of(fleet.dsn, trip2["id"])] == [z_id]
            print(f"\n[api crash] offer withdrawn {withdrawn_s:.2f} s after the last socket closed")
        finally:
            for trip_id, who in zip(trips, (rider, rider2), strict=False):
                await http.post(f"/v1/trips/{trip_id}/cancel", headers=who)
    for trip_id in trips:
        await wait_for(lambda t=trip_id: _no_pending(fleet.dsn, t), 5, "no pending offer")
    await check_database(fleet.dsn, trips)


async def test_repeated_crashes_never_leave_drivers_counted_above_their_open_sockets(
    fleet: Fleet,
) -> None:
    """Three rounds: drivers with sockets on the api that is killed, one with a second
    phone on the one that survives; the killed one restarted at once and one driver back
    on it. After each, once the old lease ran out, every driver is counted with exactly
    the sockets it has open, and the database holds."""
    survivor = fleet.api("b")
    async with httpx.AsyncClient(base_url=survivor.base_url, timeout=10) as http:
        ids: dict[str, str] = {}
        tokens: dict[str, str] = {}
        for name in ("d1", "d2", "d3", "d4"):
            ids[name], tokens[name] = await new_driver(http, survivor)
    d = ids
    async with contextlib.AsyncExitStack() as stack:
        # d3 and d4 have a phone on the survivor throughout.
        for name in ("d3", "d4"):
            await stack.enter_async_context(phone(survivor, tokens[name], FARTHER))
        fleet.api("a")
        for _ in range(3):
            doomed = fleet.apis["a"]
            async with contextlib.AsyncExitStack() as on_doomed:
                for name in ("d1", "d2", "d3"):
                    await on_doomed.enter_async_context(phone(doomed, tokens[name], NEAR_MIDTOWN))
                await wait_for(
                    lambda: _counts_are(fleet, {d["d1"]: 1, d["d2"]: 1, d["d3"]: 2, d["d4"]: 1}),
                    5,
                    "every socket counted",
                )
                fleet.kill("a")
            restarted = fleet.api("a")
            async with phone(
                restarted, tokens["d1"], NEAR_MIDTOWN
            ):  # back, before the lease ran out
                open_now = {d["d1"]: 1, d["d3"]: 1, d["d4"]: 1}
                await wait_for(
                    lambda o=open_now: _counts_are(fleet, o),
                    LEASE_S + SLACK_S,
                    "dead counts reaped",
                )
                fleet.check_counts(open_now)
                assert fleet.driver(d["d2"])["status"] == "offline"
                for name in ("d1", "d3", "d4"):
                    assert fleet.driver(d[name])["status"] == "available"
            await fleet.settle({d["d3"]: 1, d["d4"]: 1})  # d1's phone closed its socket
            await check_database(fleet.dsn)
    await wait_for(lambda: _counts_are(fleet, {}), 5, "no socket counted")


async def _counts_are(fleet: Fleet, expected: dict[str, int]) -> bool:
    return fleet.counted() == expected
