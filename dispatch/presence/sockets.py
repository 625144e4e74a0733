"""Whose sockets count: each api process's, for as long as its lease lasts.

A driver's open sockets are counted per process: the driver's ``conns:{driver}`` hash
holds, per process id, how many of its sockets that process has open, and the
process's ``procs:{id}:drivers`` set names the drivers it counts, so they can be found
once it is gone. A driver is connected while a process whose lease lasts counts it.

The lease is the process's id in ``procs``, scored by when it runs out (Redis's clock),
renewed every third of ``COOP_PROCESS_LEASE_S`` by one task per process: nothing per
location frame. A process that dies (SIGKILL, a lost machine) stops renewing. The
dispatcher's tick finds the ids whose lease ran out (``reap_lapsed``) and takes their
counts off their drivers; a driver left with none is treated as if its last socket had
closed: offline unless on a trip, and the offer it holds withdrawn after the grace
(``dispatch.offers.orphan_gone``). A restarted process has a fresh id, so what its
predecessor left is reaped the same way. A lapsed id is forgotten a minute after its
lease ran out, once nothing is left under it.

The process keeps its own counts in memory too: they say which sockets it really holds.
When it cannot be sure Redis agrees (its lease ran out or its id is gone: it stalled,
was cut off from Redis, or Redis lost its data; or a count did not reach Redis), it takes
a fresh id, counts its sockets again under that one (one round trip), then gives the old
id up, marked run out so the dispatcher clears what is left under it. Sockets opening or
closing meanwhile wait for it. A driver the reaper took offline although its socket here
is open, and whose last status frame here said online, is put back online.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.bulk_redis import BulkScriptRunner
from core.keys import Keys
from core.script_batcher import ScriptBatcher
from core.tasks import cancel_and_wait
from dispatch.presence import scripts
from dispatch.presence.hints import Hint, Hints, Reply

log = logging.getLogger(__name__)

# Lapsed process ids taken per dispatcher tick.
LAPSED_PER_TICK = 100
# A lapsed id is kept this long after its lease ran out, so that a count written late
# under it (sent just before its process stalled) is still found and cleared.
FORGET_AFTER_MS = 60_000


def new_process_id() -> str:
    """Unique per process, and per new lease of one process: the OS pid (for whoever
    reads the keys) and random bits."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Counted:
    """What the connections script says after a change of one process's count."""

    total: int  # the driver's sockets open, every process's (lapsed ones not reaped yet too)
    status: str  # the driver's status after the change ('' when Redis holds none)
    before: int  # the process's own count before the change


@dataclass(frozen=True, slots=True)
class Gone:
    """A driver whose last counted socket went with a lapsed process."""

    driver_id: str
    since_ms: int  # when that process's lease ran out (Redis's clock, ms)


class Sockets:
    """This process's driver sockets, counted in Redis under its id and lease; and the
    reaping of lapsed processes' counts (the dispatcher's)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        hints: Hints,
        runner: BulkScriptRunner,
        *,
        resolution: int,
        lease_s: float,
        set_status: Callable[[str, str], Awaitable[object]],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._hints = hints
        self._resolution = resolution
        self.lease_s = lease_s
        self._lease_ms = max(1, int(lease_s * 1000))
        self._set_status = set_status
        self._batcher = ScriptBatcher(runner, scripts.CONNECTIONS)
        self._lease = redis.register_script(scripts.LEASE)
        self._lapsed = redis.register_script(scripts.LAPSED)
        self.process_id = new_process_id()
        self._taken = False  # this id's lease was taken
        self._used = False  # a count was sent under this id
        self._renewed_at = -math.inf  # monotonic time the last good renewal was sent
        self._doubt = False  # a count may not have reached Redis: count again
        self._given_up: list[str] = []  # ids to mark run out with the next lease call
        self._counts: dict[str, int] = {}  # driver -> its sockets open in this process
        self._wanted: dict[str, str] = {}  # driver -> the status its socket here asked for
        self._settled = asyncio.Event()  # clear while counting again under a new id
        self._settled.set()
        self._task: asyncio.Task[None] | None = None
        self.new_ids = 0  # ids taken after the first (each a recount)

    # -- this process's sockets ----------------------------------------------------------

    async def connected(self, driver_id: str) -> int:
        await self._settled.wait()
        self._counts[driver_id] = self._counts.get(driver_id, 0) + 1
        try:
            return (await self._change(driver_id, 1)).total
        except BaseException:
            self._drop_local(driver_id)
            self._doubt = True  # Redis may have counted it all the same
            raise

    async def disconnected(self, driver_id: str) -> int:
        await self._settled.wait()
        self._drop_local(driver_id)
        try:
            return (await self._change(driver_id, -1)).total
        except BaseException:
            self._doubt = True
            raise

    def wanted(self, driver_id: str, status: str) -> None:
        """A socket of the driver in this process asked for ``status``."""
        if driver_id in self._counts:
            self._wanted[driver_id] = status

    def held(self) -> dict[str, int]:
        """Driver -> sockets this process holds open."""
        return dict(self._counts)

    def _drop_local(self, driver_id: str) -> None:
        n = self._counts.get(driver_id, 0) - 1
        if n > 0:
            self._counts[driver_id] = n
        else:
            self._counts.pop(driver_id, None)
            self._wanted.pop(driver_id, None)

    async def _change(
        self, driver_id: str, change: int | str, *, process_id: str | None = None
    ) -> Counted:
        k = self._keys
        pid = process_id or self.process_id
        if pid == self.process_id:
            self._used = True
        fixed = (
            k.seen(),
            k.available_cells(self._resolution),
            k.driver(driver_id),
            k.driver_sockets(driver_id),
            k.process_drivers(pid),
        )

        async def call(cell: str) -> Reply:
            reply: Reply = await self._batcher.submit(
                (*fixed, *self._hints.declared(cell)), (driver_id, pid, change, cell)
            )
            return reply

        reply = await self._hints.settle(driver_id, call)
        cell, trip, rider, tlat, tlng = (str(x) for x in reply[2:7])
        self._hints.remember(driver_id, Hint(cell, trip, rider, f"{tlat},{tlng}"))
        return Counted(int(reply[1]), str(reply[7]), int(reply[8]))

    async def open_sockets(self, driver_id: str) -> int:
        """The driver's sockets open in processes whose lease lasts."""
        counts = await self._redis.hgetall(self._keys.driver_sockets(driver_id))
        if not counts:
            return 0
        ids = [str(i) for i in counts]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(self._keys.processes(), ids)
            pipe.time()
            ends, (seconds, micros) = await pipe.execute()
        now = int(seconds) * 1000 + int(micros) // 1000
        return sum(int(counts[i]) for i, e in zip(ids, ends, strict=True) if e and e > now)

    # -- the lease -----------------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease (or leave it to the renewing task, if Redis does not answer)
        and start renewing it."""
        with contextlib.suppress(RedisError, OSError):
            await self.renew()
        self._task = asyncio.create_task(self._keep(), name="process-lease")

    async def stop(self) -> None:
        """Stop renewing and let the lease run out now: the dispatcher clears whatever
        this process's sockets left (normally nothing: each one closing counted off)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._taken:
            with contextlib.suppress(RedisError, OSError):
                await self._lease_call(self.process_id, "end")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
            except (RedisError, OSError) as exc:
                log.warning(
                    "process lease not renewed",
                    extra={"process_id": self.process_id, "error": repr(exc)},
                )
            except Exception:
                log.exception("process lease task failed")

    async def renew(self) -> None:
        """Extend the lease. If it ran out, its id is gone, or a count is in doubt: take a
        new id and count this process's sockets again under it."""
        sent = time.monotonic()
        if self._taken and not self._doubt and sent - self._renewed_at < self.lease_s:
            if await self._lease_call(self.process_id, "renew") == "ok":
                self._renewed_at = sent
                return
            log.warning("process lease lost", extra={"process_id": self.process_id})
        await self._new_id()

    async def _new_id(self) -> None:
        old = self.process_id
        first = not (self._taken or self._used)
        new = old if first else new_process_id()
        sent = time.monotonic()
        await self._lease_call(new, "take")  # on failure, the next renewal tries again
        self._settled.clear()
        try:
            self.process_id, self._taken, self._used = new, True, False
            self._renewed_at, self._doubt = sent, False
            if first:
                return
            self._given_up.append(old)
            self.new_ids += 1
            counts = dict(self._counts)
            replies = await asyncio.gather(
                *(self._change(d, n) for d, n in counts.items()), return_exceptions=True
            )
        except BaseException:
            self._doubt = True
            raise
        finally:
            self._settled.set()
        if any(isinstance(r, BaseException) for r in replies):
            self._doubt = True  # start over with yet another id at the next renewal
        back = [
            d
            for d, r in zip(counts, replies, strict=True)
            if isinstance(r, Counted)
            and r.status == "offline"
            and self._wanted.get(d) == "available"
        ]
        for driver_id in back:
            with contextlib.suppress(RedisError, OSError):
                await self._set_status(driver_id, "available")
        log.warning(
            "process lease taken again under a new id",
            extra={
                "process_id": new,
                "gave_up": old,
                "drivers": len(counts),
                "back_online": len(back),
            },
        )
        with contextlib.suppress(RedisError, OSError):
            await self._lease_call(new, "renew")  # gives the old id up

    async def _lease_call(self, process_id: str, what: str) -> str:
        given_up = list(self._given_up)
        reply = str(
            await self._lease(
                keys=[self._keys.processes()],
                args=[process_id, self._lease_ms, what, *given_up],
            )
        )
        if reply == "ok":
            self._given_up = [i for i in self._given_up if i not in given_up]
        return reply

    # -- reaping (the dispatcher's) ------------------------------------------------------

    async def reap_lapsed(self) -> list[Gone]:
        """Take the counts of processes whose lease ran out off their drivers; returns the
        drivers left with no socket counted anywhere. One round trip when no lease ran
        out (the usual tick), three when some did."""
        k = self._keys
        raw = await self._lapsed(keys=[k.processes()], args=[LAPSED_PER_TICK])
        now = int(raw[0])
        lapsed = [(str(raw[i]), int(float(raw[i + 1]))) for i in range(1, len(raw), 2)]
        if not lapsed:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for process_id, _ in lapsed:
                pipe.smembers(k.process_drivers(process_id))
            members = await pipe.execute()
        calls = [
            (process_id, ends, str(d))
            for (process_id, ends), drivers in zip(lapsed, members, strict=True)
            for d in drivers
        ]
        replies = await asyncio.gather(
            *(self._change(d, "drop", process_id=p) for p, _, d in calls),
            return_exceptions=True,
        )
        gone: list[Gone] = []
        failed = 0
        for (_, ends, driver_id), reply in zip(calls, replies, strict=True):
            if isinstance(reply, BaseException):
                failed += 1
            elif reply.total == 0 and reply.before > 0:
                gone.append(Gone(driver_id, ends))
        forget = [
            process_id
            for (process_id, ends), drivers in zip(lapsed, members, strict=True)
            if not drivers and ends <= now - FORGET_AFTER_MS
        ]
        if forget:
            await self._redis.zrem(k.processes(), *forget)
        if calls:
            log.warning(
                "sockets of lapsed processes reaped",
                extra={
                    "processes": sorted({p for p, _, _ in calls}),
                    "sockets_of": len(calls),
                    "drivers_gone": len(gone),
                    "failed": failed,
                },
            )
        return gone
