"""Every key a Lua script touches is one it declared in KEYS, shown on a real Redis.

A Redis of the test's own runs every script of the live index (dispatch.presence), of
the dispatcher's leader lock, of the event bus and of the rate limiter, through the
code that calls them, while a ``MONITOR`` connection records every command, those a
script runs included (logged as from ``lua``, after the ``EVALSHA`` that ran them).
``COMMAND GETKEYS`` names the keys of each recorded command, the way Redis itself (and
a Cluster's slot check) reads them; each must be among the keys its ``EVALSHA``
declared. A script that built a key name from its arguments would fail here, as the
control at the end shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.clock import now_ms
from core.events import _EMIT, Event
from core.ratelimit import _BUCKET, Limit
from core.settings import Settings
from dispatch import dispatcher
from dispatch.dispatcher import LeaderLock
from dispatch.presence import Presence, RiderForward, TripLeg, scripts
from dispatch.presence.index import Forward
from geo import cells
from geo.point import LatLng
from tests.fixtures.own_services import OwnRedis
from web.event_stream import _ACK, ack_key
from web.runtime import ApiRuntime as Runtime

MIDTOWN = LatLng(40.7549, -73.9840)

_LINE = re.compile(rb"^\+?\d+\.\d+ \[\d+ (?P<client>[^\]]+)\] (?P<args>.*)$")
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def _unescape(text: bytes) -> bytes:
    """An argument as MONITOR quotes it (Redis's ``sdscatrepr``), back to its bytes."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i : i + 1]
        if c != b"\\":
            out += c
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == b"x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += _ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


@dataclass
class ScriptRun:
    """One ``EVAL``/``EVALSHA`` as MONITOR saw it, with the commands it ran."""

    sha: str
    declared: set[bytes]
    commands: list[list[bytes]] = field(default_factory=list)


class Monitor:
    """A ``MONITOR`` connection, read line by line (each a RESP simple string)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Monitor:
        # A candidate search's EVALSHA carries a disk's keys and cell records: long lines.
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        writer.write(b"MONITOR\r\n")
        assert await reader.readline() == b"+OK\r\n"  # from here on, everything is seen
        return cls(reader, writer)

    async def until(self, marker: bytes) -> list[tuple[bytes, list[bytes]]]:
        """(client, args) of every command up to the ``ECHO marker`` one."""
        lines = []
        while True:
            raw = await asyncio.wait_for(self._reader.readline(), 30)
            assert raw, "MONITOR connection closed"
            m = _LINE.match(raw.rstrip(b"\r\n"))
            assert m is not None, raw[:200]
            args = [_unescape(a) for a in _ARG.findall(m["args"])]
            if args == [b"ECHO", marker]:
                return lines
            lines.append((m["client"], args))

    def close(self) -> None:
        self._writer.close()


def script_runs(lines: list[tuple[bytes, list[bytes]]]) -> list[ScriptRun]:
    runs: list[ScriptRun] = []
    current: ScriptRun | None = None
    for client, args in lines:
        if client == b"lua":
            assert current is not None, f"a script command with no script before it: {args}"
            current.commands.append(args)
            continue
        name = args[0].upper()
        if name in (b"EVAL", b"EVALSHA"):
            n = int(args[2])
            sha = args[1].decode() if name == b"EVALSHA" else hashlib.sha1(args[1]).hexdigest()
            current = ScriptRun(sha, set(args[3 : 3 + n]))
            runs.append(current)
        else:
            current = None
    return runs


async def undeclared(redis: Redis, runs: list[ScriptRun]) -> list[tuple[str, list[bytes]]]:
    """(script sha, command) for every command that touched a key its script did not
    declare; ``COMMAND GETKEYS`` says which arguments of a command are keys (every key
    here is ASCII, so comparing decoded names loses nothing)."""
    bad = []
    for run in runs:
        declared = {k.decode() for k in run.declared}
        for command in run.commands:
            keys: list[str] = []
            if len(command) > 1:  # TIME and the like: nothing to ask
                try:
                    keys = await redis.execute_command("COMMAND GETKEYS", *command)
                except ResponseError as exc:
                    if "no key arguments" not in str(exc):  # PUBLISH: a channel, no key
                        raise
            if not set(keys) <= declared:
                bad.append((run.sha, command))
    return bad


def sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Redis of this test's own: MONITOR sees only this test's commands."""
    redis = OwnRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop(kill=True)


@pytest.fixture
async def rt(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(settings.model_copy(update={"redis_url": own_redis.url}))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.close()


async def every_script(rt: Runtime, second: Runtime) -> None:
    """Each script at least once, through its callers, down the branches that touch the
    keys depending on stored data: cells left, traces, a moved driver, reaping, a
    process whose lease ran out."""
    p, q = rt.presence, second.presence  # two api processes
    res = p.resolution
    t = now_ms()
    home = cells.cell_of(MIDTOWN, res)
    a, b, c = (cells.center(cells.ring(home, k)[k]) for k in (1, 2, 3))

    async def frame(
        presence: Presence, driver: str, at: LatLng, ts: int, forward: Forward | None = None
    ) -> None:
        result = await presence.update_location(
            driver,
            lat=at.lat,
            lng=at.lng,
            ts_ms=ts,
            accuracy_m=5.0,
            heading=None,
            speed_mps=None,
            cell=cells.cell_of(at, res),
            now_ms=ts,
            forward=forward,
        )
        assert result.accepted

    def rider_frame(leg: TripLeg) -> RiderForward:
        return RiderForward(
            leg.trip_id, leg.target, rt.keys.channel("rider", leg.rider_id), '{"eta_s":1}'
        )

    # A driver comes online, drives across cells, is moved by its other phone.
    assert await p.connected("drv_1") == 1
    assert await p.set_status("drv_1", "available", now_ms=t) == "available"
    await frame(p, "drv_1", MIDTOWN, t)
    await frame(p, "drv_1", a, t + 1)
    await frame(q, "drv_1", b, t + 2)  # q has no hint: a moved reply, then the retry
    await frame(p, "drv_1", c, t + 3)  # p believes a: moved, retry
    # Others to find, one holding an offer.
    for i, at in enumerate((MIDTOWN, a, b)):
        await p.set_status(f"drv_{i + 2}", "available", now_ms=t)
        await frame(p, f"drv_{i + 2}", at, t)
    assert await p.reserve_offer(
        offer_id="ofr_1", driver_id="drv_4", trip_id="trp_9", ttl_s=15, min_seen_ms=t - 30_000
    )
    lock = LeaderLock(rt, "default", 5.0)
    assert await lock.acquire() and lock.fence is not None
    assert await lock.renew()
    assert await p.reserve_offer(
        offer_id="ofr_2",
        driver_id="drv_3",
        trip_id="trp_8",
        ttl_s=15,
        min_seen_ms=t - 30_000,
        fence=lock.fence,
    )
    await lock.release()
    found = await p.candidates(
        cells.disk_by_ring(home, 9), min_seen_ms=t - 30_000, want=8, eta_s=lambda _: 60
    )
    assert {f.driver_id for f in found} == {"drv_1", "drv_2"}
    await p.release_offer(offer_id="ofr_2", driver_id="drv_3", trip_id="trp_8")
    assert await p.restore_offer(offer_id="ofr_3", driver_id="drv_3", trip_id="trp_7", ttl_ms=5000)

    # A trip: set by the other process, so the first frame learns it (trace and forward)
    # by a moved reply; the target changes; the trip ends (available), another ends
    # with no socket open (offline).
    await q.set_trip("drv_1", trip_id="trp_1", rider_id="rdr_1", target_lat=a.lat, target_lng=a.lng)
    await frame(p, "drv_1", b, t + 4, forward=rider_frame)
    await q.set_trip("drv_1", trip_id="trp_1", rider_id="rdr_1", target_lat=b.lat, target_lng=b.lng)
    await frame(p, "drv_1", a, t + 20_000, forward=rider_frame)
    assert await q.clear_trip("drv_1", now_ms=t + 20_001, earned_cents=900) == "available"
    await p.set_trip("drv_2", trip_id="trp_2", rider_id="rdr_2", target_lat=a.lat, target_lng=a.lng)
    assert await p.clear_trip("drv_2", now_ms=t + 1) == "offline"  # no socket: offline

    # Offline and back; the last socket closes; a stale driver is reaped.
    assert await q.set_status("drv_1", "offline", now_ms=t + 20_002) == "offline"
    assert await p.set_status("drv_1", "available", now_ms=t + 20_003) == "available"
    assert await p.disconnected("drv_1") == 0
    await p.set_status("drv_9", "available", now_ms=t - 60_000)
    await frame(p, "drv_9", a, t - 60_000)
    assert await p.reap_stale(cutoff_ms=t - 30_000) == ["drv_9"]

    # Leases: one renewed; the other process's runs out, and its sockets are reaped.
    await p.sockets.renew()
    await q.sockets.renew()  # takes its lease
    assert await q.connected("drv_5") == 1
    await p.set_status("drv_5", "available", now_ms=t)
    await frame(p, "drv_5", a, t)
    await rt.redis.zadd(rt.keys.processes(), {q.process_id: 1})  # ran out long ago
    assert [g.driver_id for g in await p.reap_lapsed_processes()] == ["drv_5"]

    # Events and rate limits.
    await rt.bus.publish(
        [Event("driver", "drv_1", {"type": "x"}), Event("rider", "rdr_1", {"type": "y"}, False)]
    )
    await rt.limits.hit(Limit("tests", 5, 60.0), "ident", dedupe="request-1")
    # A phone's ack (web.event_stream), remembered for its next connection.
    await rt.redis.eval(_ACK, 1, ack_key(rt, "driver", "drv_1"), 3, 60)


async def test_every_key_a_script_touches_was_declared(
    rt: Runtime, own_redis: OwnRedis, settings: Settings
) -> None:
    second = Runtime.create(settings.model_copy(update={"redis_url": own_redis.url}))
    inspector = Redis.from_url(own_redis.url)  # bytes in, bytes out
    monitor = await Monitor.open(own_redis.port)
    marker = secrets.token_hex(8).encode()
    try:
        await every_script(rt, second)
        await inspector.echo(marker)
        runs = script_runs(await monitor.until(marker))
    finally:
        monitor.close()
        await second.close()

    expected = {
        "location": scripts.LOCATION,
        "status": scripts.STATUS,
        "connections": scripts.CONNECTIONS,
        "candidates": scripts.CANDIDATES,
        "reap": scripts.REAP,
        "trip": scripts.TRIP,
        "reserve": scripts.RESERVE,
        "release": scripts.RELEASE,
        "restore": scripts.RESTORE,
        "lease": scripts.LEASE,
        "lapsed": scripts.LAPSED,
        "leader renew": dispatcher._RENEW,
        "leader fence": dispatcher._NEXT_FENCE,
        "leader resign": dispatcher._RESIGN,
        "event emit": _EMIT,
        "rate limit": _BUCKET,
        "event ack": _ACK,
    }
    ran = {run.sha for run in runs if run.commands}
    missing = [name for name, script in expected.items() if sha(script) not in ran]
    assert not missing, f"scripts the scenario never ran: {missing}"
    commands = sum(len(run.commands) for run in runs)
    assert commands > 200, commands  # MONITOR did show what the scripts ran

    try:
        assert await undeclared(inspector, runs) == []

        # The control: a script that builds a key from its arguments is caught.
        monitor = await Monitor.open(own_redis.port)
        try:
            await rt.redis.eval(
                "redis.call('SET', KEYS[1], 1); return redis.call('GET', ARGV[1] .. ':x')",
                1,
                "declared",
                "built",
            )
            await inspector.echo(marker)
            control = script_runs(await monitor.until(marker))
        finally:
            monitor.close()
        assert await undeclared(inspector, control) == [(control[0].sha, [b"GET", b"built:x"])]
    finally:
        await inspector.aclose()
