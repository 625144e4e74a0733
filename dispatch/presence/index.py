"""The live driver index in Redis: one method per Redis operation, each one round trip.

Per driver a hash holds position, heading, timestamps, H3 cell and status
(``offline`` | ``available`` | ``on_trip``). Online drivers are members of their cell's
sorted set and of one ``seen`` set, both scored by the server time of their last update:
stale drivers come off the low end of ``seen`` without a scan of the rest, and
candidate search ignores drivers older than the staleness limit even before the reaper
has run. Available drivers are also in their cell's GEO set. A driver *holds an offer*
exactly while its offer key exists (``core.keys.Keys.driver_offer``), so an abandoned
reservation frees itself when its TTL runs out.

A driver's open sockets are counted per api process, under that process's lease
(``dispatch.presence.sockets``), so a process that dies takes its counts with it.

Every key a script touches is built in ``core.keys`` and passed as KEYS
(``docs/live-index.md``); those that depend on what Redis holds (the cell a driver
leaves, the trace a frame extends) are declared from this process's hints
(``dispatch.presence.hints``), and a ``moved`` reply sends the call again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from core import clock
from core.bulk_redis import BulkScriptRunner, pack, pack_args
from core.keys import Keys
from core.script_batcher import ScriptBatcher
from dispatch.batch.types import Candidate
from dispatch.presence import scripts
from dispatch.presence.hints import MAX_TRIES, UNKNOWN, Hint, Hints, KeptMoving, Reply
from dispatch.presence.results import DriverState, LocationResult, RiderForward, TripLeg
from dispatch.presence.scripts import TRACE_EVERY_MS, TRACE_MAX
from dispatch.presence.search import CandidateSearch
from dispatch.presence.sockets import Gone, Sockets
from geo.point import LatLng

Forward = RiderForward | Callable[[TripLeg], RiderForward]

# A location frame's forward arguments (trip, target, channel, frame, whether the caller
# can compute it again): none; or none yet, but ask for a ``moved`` reply on a trip.
_NO_FORWARD = pack_args("", "", "", "", "")
_NO_FORWARD_YET = pack_args("", "", "", "", "1")


class Presence:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        resolution: int,
        *,
        bulk: BulkScriptRunner,
        bulk_search: BulkScriptRunner,
        location_burst: int = 60,
        location_rate_per_s: float = 2.0,
        lease_s: float = 6.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.resolution = resolution
        self._runners = (bulk, bulk_search)
        self._hints = Hints(keys, resolution)
        self._search = CandidateSearch(keys, resolution, bulk_search)
        self._batcher = ScriptBatcher(bulk, scripts.LOCATION)
        # The location script's keys and arguments that are the same for every frame,
        # packed once: the region-wide keys first, four constants after the frame's own.
        self._location_keys = pack_args(
            keys.seen(), keys.positions(), keys.available_cells(resolution)
        )
        self._location_constants = pack_args(
            TRACE_EVERY_MS, TRACE_MAX, location_burst, repr(location_rate_per_s / 1000)
        )
        # EVALSHA sha n <8 keys, 9 with a trace> <12 args> <4 constants> <5 forward>
        self._location_head = self._batcher.head(8, 8 + 21)
        self._location_head_trip = self._batcher.head(9, 9 + 21)
        self._reserve_batcher = ScriptBatcher(bulk_search, scripts.RESERVE)
        self._restore_batcher = ScriptBatcher(bulk_search, scripts.RESTORE)
        self._reap_batcher = ScriptBatcher(bulk_search, scripts.REAP)
        self._status = redis.register_script(scripts.STATUS)
        self._trip = redis.register_script(scripts.TRIP)
        self._release = redis.register_script(scripts.RELEASE)
        self._sockets = Sockets(
            redis,
            keys,
            self._hints,
            bulk_search,
            resolution=resolution,
            lease_s=lease_s,
            set_status=self._status_now,
        )

    async def start(self) -> None:
        """Take this process's lease and keep renewing it (``sockets``)."""
        await self._sockets.start()

    async def stop(self) -> None:
        """Let this process's lease run out now."""
        await self._sockets.stop()

    def close(self) -> None:
        for runner in self._runners:
            runner.close()

    @property
    def process_id(self) -> str:
        """The id this process's sockets are counted under (a new one after a lost
        lease)."""
        return self._sockets.process_id

    @property
    def sockets(self) -> Sockets:
        return self._sockets

    @property
    def moved_retries(self) -> int:
        """Calls sent again after a ``moved`` reply (each one round trip more)."""
        return self._hints.retries

    # -- location frames -----------------------------------------------------------------

    async def update_location(
        self,
        driver_id: str,
        *,
        lat: float,
        lng: float,
        ts_ms: int,
        accuracy_m: float | None,
        heading: float | None,
        speed_mps: float | None,
        cell: str,
        now_ms: int,
        assumed_status: str = "offline",
        forward: Forward | None = None,
    ) -> LocationResult:
        """Take one location frame into the index. Frames from every socket of the
        process that arrive in the same event-loop turn go to Redis in one pipeline.
        ``assumed_status`` is what the driver's socket last asked for; it is used only
        when Redis holds no status for the driver (after Redis lost its data).

        ``forward`` is the rider's frame for this position, published by the script if
        the driver is still on its trip and heading for its target
        (``LocationResult.forwarded`` says whether it was). Given as a function of the
        trip leg, it is computed for the leg the hint names, and the script replies
        ``moved`` rather than not forwarding: the retry (one round trip more, at the
        first frame of a leg this process did not see start) carries the forward
        computed for the leg Redis holds. Every other frame is one round trip."""
        hint = self._hints.by_driver.get(driver_id, UNKNOWN)
        lat_s, lng_s, ts_s, now_s = repr(lat), repr(lng), str(ts_ms), str(now_ms)
        acc = "" if accuracy_m is None else repr(accuracy_m)
        hdg = "" if heading is None else repr(heading)
        spd = "" if speed_mps is None else repr(speed_mps)
        fixed = (driver_id, lat_s, lng_s, ts_s, acc, hdg, spd, cell, now_s, assumed_status)
        # ARGV 1-10, the frame's own, packed once for every try (the hot path: one
        # f-string, no loop; used only if all ASCII, as ids and numbers are).
        frame_args = (
            f"${len(driver_id)}\r\n{driver_id}\r\n${len(lat_s)}\r\n{lat_s}\r\n"
            f"${len(lng_s)}\r\n{lng_s}\r\n${len(ts_s)}\r\n{ts_s}\r\n${len(acc)}\r\n{acc}\r\n"
            f"${len(hdg)}\r\n{hdg}\r\n${len(spd)}\r\n{spd}\r\n${len(cell)}\r\n{cell}\r\n"
            f"${len(now_s)}\r\n{now_s}\r\n${len(assumed_status)}\r\n{assumed_status}\r\n"
        )
        for _ in range(MAX_TRIES):
            command = self._location_command(fixed, frame_args, hint, forward)
            reply = await self._batcher.submit_command(command)
            kind, value, trip, rider, tlat, tlng, restored, forwarded = reply
            if kind == "moved":
                self._hints.retries += 1
                hint = Hint(value, trip, rider, f"{tlat},{tlng}")
                self._hints.remember(driver_id, hint)
                continue
            if kind == "stale":
                return LocationResult(False, "", None, None, last_ts_ms=int(value))
            if kind == "limited":
                return LocationResult(False, "", None, None, retry_after_ms=int(value))
            target = f"{tlat},{tlng}"
            if hint != (cell, trip, rider, target):
                self._hints.remember(driver_id, Hint(cell, trip, rider, target))
            return LocationResult(
                True,
                value,
                trip or None,
                rider or None,
                target_lat=float(tlat) if tlat else None,
                target_lng=float(tlng) if tlng else None,
                restored=bool(restored),
                target=target,
                forwarded=bool(forwarded),
            )
        raise KeptMoving(f"driver {driver_id}: cell or trip changed under {MAX_TRIES} frames")

    def _location_command(
        self, fixed: tuple[str, ...], frame_args: str, hint: Hint, forward: Forward | None
    ) -> bytes:
        """The frame's ``EVALSHA``, declaring the cell and trace the hint names. What is
        the same for every frame, or every frame in a cell, is packed once; the rest is
        one string, encoded once."""
        cell = fixed[7]
        believed = hint.cell or cell
        trip = hint.trip
        driver_key = self.keys.driver(fixed[0])
        if trip:
            trace = self.keys.trace(trip)
            keys = f"${len(driver_key)}\r\n{driver_key}\r\n${len(trace)}\r\n{trace}\r\n"
        else:
            keys = f"${len(driver_key)}\r\n{driver_key}\r\n"
        text = f"{keys}{frame_args}${len(believed)}\r\n{believed}\r\n${len(trip)}\r\n{trip}\r\n"
        if text.isascii():  # a str's length is its bytes' only then
            variable = text.encode()
        else:
            declared = (driver_key, trace) if trip else (driver_key,)
            variable = pack_args(*declared, *fixed, believed, trip)
        if forward is None:
            extra = _NO_FORWARD
        elif isinstance(forward, RiderForward):
            extra = pack_args(forward.trip_id, forward.target, forward.channel, forward.frame, "")
        elif trip:
            f = forward(TripLeg(trip, hint.rider, hint.target))
            extra = pack_args(f.trip_id, f.target, f.channel, f.frame, "1")
        else:
            extra = _NO_FORWARD_YET
        cell_keys = self._hints.cell_bulks(cell)
        old_keys = cell_keys if believed == cell else self._hints.cell_bulks(believed)
        return b"".join(
            (
                self._location_head_trip if trip else self._location_head,
                self._location_keys,
                cell_keys,
                old_keys,
                variable,
                self._location_constants,
                extra,
            )
        )

    # -- status, sockets, trips ----------------------------------------------------------

    async def set_status(self, driver_id: str, status: str, *, now_ms: int) -> str:
        self._sockets.wanted(driver_id, status)
        return await self._status_now(driver_id, status, now_ms=now_ms)

    async def _status_now(self, driver_id: str, status: str, *, now_ms: int | None = None) -> str:
        k = self.keys
        now_ms = clock.now_ms() if now_ms is None else now_ms

        async def call(cell: str) -> Reply:
            reply: Reply = await self._status(
                keys=[
                    k.seen(),
                    k.available_cells(self.resolution),
                    k.fairness(),
                    k.driver(driver_id),
                    *self._hints.declared(cell),
                ],
                args=[driver_id, status, now_ms, cell],
            )
            return reply

        return str((await self._hints.settle(driver_id, call))[1])

    async def connected(self, driver_id: str) -> int:
        """One more open socket for this driver in this process; returns how many are
        open in all. The reply says where the driver stands, so this process's next calls
        declare the right keys from the first."""
        return await self._sockets.connected(driver_id)

    async def disconnected(self, driver_id: str) -> int:
        """One socket fewer in this process; the last one anywhere closing takes the
        driver offline (unless on a trip). Returns how many remain open."""
        return await self._sockets.disconnected(driver_id)

    async def reap_lapsed_processes(self) -> list[Gone]:
        """Take the socket counts of processes whose lease ran out off their drivers
        (the dispatcher's tick); returns the drivers that no socket is counted for any
        more, each taken offline as if its last socket had closed, unless on a trip."""
        return await self._sockets.reap_lapsed()

    async def set_trip(
        self, driver_id: str, *, trip_id: str, rider_id: str, target_lat: float, target_lng: float
    ) -> None:
        target = (repr(target_lat), repr(target_lng))
        await self._run_trip(driver_id, (trip_id, rider_id, *target), now_ms=0, earned_cents=0)
        hint = self._hints.get(driver_id)
        self._hints.remember(
            driver_id, hint._replace(trip=trip_id, rider=rider_id, target=",".join(target))
        )

    async def clear_trip(self, driver_id: str, *, now_ms: int, earned_cents: int = 0) -> str:
        """The trip is over: available again if a socket is open, else offline. The
        driver is idle from now, and ``earned_cents`` counts towards its shift."""
        status = await self._run_trip(
            driver_id, ("", "", "", ""), now_ms=now_ms, earned_cents=earned_cents
        )
        hint = self._hints.get(driver_id)
        self._hints.remember(driver_id, Hint(hint.cell))
        return status

    async def _run_trip(
        self, driver_id: str, trip: tuple[str, str, str, str], *, now_ms: int, earned_cents: int
    ) -> str:
        k = self.keys

        async def call(cell: str) -> Reply:
            reply: Reply = await self._trip(
                keys=[
                    k.seen(),
                    k.available_cells(self.resolution),
                    k.fairness(),
                    k.driver(driver_id),
                    k.driver_sockets(driver_id),
                    *self._hints.declared(cell),
                ],
                args=[*trip, driver_id, now_ms, earned_cents, cell],
            )
            return reply

        return str((await self._hints.settle(driver_id, call))[1])

    # -- offers --------------------------------------------------------------------------

    async def reserve_offer(
        self,
        *,
        offer_id: str,
        driver_id: str,
        trip_id: str,
        ttl_s: float,
        min_seen_ms: int,
        region: str = "default",
        fence: int | None = None,
    ) -> bool:
        """Reserve the driver and the trip for one offer, both or neither. With a
        ``fence``, only while that fence is still the region's current one."""
        k = self.keys
        ok = await self._reserve_batcher.submit(
            (
                k.driver_offer(driver_id),
                k.trip_offer(trip_id),
                k.driver(driver_id),
                k.fence(region),
                k.held_offers(),
            ),
            (offer_id, int(ttl_s * 1000), min_seen_ms, "" if fence is None else fence, driver_id),
        )
        return int(ok) == 1

    async def release_offer(self, *, offer_id: str, driver_id: str, trip_id: str) -> None:
        k = self.keys
        await self._release(
            keys=[
                k.driver_offer(driver_id),
                k.trip_offer(trip_id),
                k.offer_deadlines(),
                k.held_offers(),
            ],
            args=[offer_id, driver_id],
        )

    async def restore_offer(
        self, *, offer_id: str, driver_id: str, trip_id: str, ttl_ms: int
    ) -> bool:
        """Put a pending offer's reservation back where none is held (after Redis lost
        it): each key only if absent. Calls made together share one round trip. True if
        the driver's key was set."""
        k = self.keys
        ok = await self._restore_batcher.submit(
            (k.driver_offer(driver_id), k.trip_offer(trip_id), k.held_offers()),
            (offer_id, ttl_ms, driver_id),
        )
        return int(ok) == 1

    async def open_sockets(self, driver_id: str) -> int:
        """How many sockets of this driver are open, across every api process whose
        lease lasts."""
        return await self._sockets.open_sockets(driver_id)

    async def offer_held_by(self, driver_id: str) -> str | None:
        value = await self.redis.get(self.keys.driver_offer(driver_id))
        return str(value) if value else None

    # -- candidate search ----------------------------------------------------------------

    async def candidates(
        self,
        rings: Sequence[Sequence[str]],
        *,
        min_seen_ms: int,
        want: int,
        eta_s: Callable[[LatLng], int],
        pickup: LatLng | None = None,
        radius_m: float | None = None,
    ) -> list[Candidate]:
        """The ``want`` available, fresh drivers nearest ``pickup`` in straight line
        among the cells of ``rings`` (nearest first), within ``radius_m``, each with its
        pickup ETA ``eta_s(position)``. Without a pickup the centre of the first ring's
        cell stands in for it. Searches started in the same event-loop turn (a dispatch
        batch gathers them) share one round trip, on a connection of their own so a big
        batch never holds up location frames."""
        return await self._search(
            rings,
            min_seen_ms=min_seen_ms,
            want=want,
            eta_s=eta_s,
            pickup=pickup,
            radius_m=radius_m,
        )

    # -- traces and logs -----------------------------------------------------------------

    async def take_trace(self, trip_id: str) -> list[tuple[int, float, float]]:
        """The positions sampled during a trip so far: (ts_ms, lat, lng), oldest first."""
        raw = await self.redis.lrange(self.keys.trace(trip_id), 0, -1)
        points = []
        for item in raw:
            ts, lat, lng = str(item).split(",")
            points.append((int(ts), float(lat), float(lng)))
        return points

    async def drop_trace(self, trip_id: str) -> None:
        await self.redis.delete(self.keys.trace(trip_id))

    async def append_dispatch_log(
        self, entries: dict[str, list[str]], *, keep: int, ttl_s: int
    ) -> None:
        """Prepend each driver's new entries (JSON) to its dispatch log, keeping the
        newest ``keep``; one round trip for the whole batch."""
        commands = []
        for driver_id, items in entries.items():
            key = self.keys.dispatch_log(driver_id)
            commands.append(pack("LPUSH", key, *items))
            commands.append(pack("LTRIM", key, 0, keep - 1))
            commands.append(pack("EXPIRE", key, ttl_s))
        if commands:
            await self._runners[1].run(commands)

    async def dispatch_log(self, driver_id: str, *, limit: int) -> list[str]:
        items = await self.redis.lrange(self.keys.dispatch_log(driver_id), 0, limit - 1)
        return [str(i) for i in items]

    # -- staleness -----------------------------------------------------------------------

    async def reap_stale(self, *, cutoff_ms: int, limit: int = 1000) -> list[str]:
        """Take at most ``limit`` drivers not seen since ``cutoff_ms`` out of their cell's
        sets and ``seen`` (oldest first; returns them). Two phases: the stale ids and
        their cells are read with plain commands, then one script per driver, all in one
        round trip, declares that driver's keys and checks it is still stale. Held-offer
        entries that expired before the cutoff are trimmed on the way."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(k.seen(), "-inf", cutoff_ms, 0, limit)
            pipe.zremrangebyscore(k.held_offers(), "-inf", cutoff_ms)
            stale, _ = await pipe.execute()
        ids = [str(d) for d in stale]
        if not ids:
            return []  # the usual tick: one round trip
        async with self.redis.pipeline(transaction=False) as pipe:
            for driver_id in ids:
                pipe.hget(k.driver(driver_id), "cell")
            cells = await pipe.execute()
        outcomes = await asyncio.gather(
            *(self._reap_one(d, cell or "", cutoff_ms) for d, cell in zip(ids, cells, strict=True))
        )
        return [d for d, reaped in zip(ids, outcomes, strict=True) if reaped]

    async def _reap_one(self, driver_id: str, cell: str, cutoff_ms: int) -> bool:
        k = self.keys
        for _ in range(MAX_TRIES):
            reply = await self._reap_batcher.submit(
                (
                    k.seen(),
                    k.available_cells(self.resolution),
                    k.driver(driver_id),
                    *self._hints.declared(cell),
                ),
                (driver_id, cutoff_ms, cell),
            )
            if reply[0] != "moved":
                return bool(reply[0] == "reaped")
            self._hints.retries += 1
            cell = str(reply[1])
        raise KeptMoving(f"driver {driver_id}: cell changed under {MAX_TRIES} reaps")

    # -- reads ---------------------------------------------------------------------------

    async def state(self, driver_id: str) -> DriverState:
        raw = await self.redis.hgetall(self.keys.driver(driver_id))
        h = {str(k): str(v) for k, v in raw.items()}

        def num(name: str) -> float | None:
            value = h.get(name)
            return float(value) if value not in (None, "") else None

        ts, seen = num("ts"), num("seen")
        return DriverState(
            driver_id=driver_id,
            status=h.get("status", "offline"),
            lat=num("lat"),
            lng=num("lng"),
            ts_ms=int(ts) if ts is not None else None,
            seen_ms=int(seen) if seen is not None else None,
            cell=h.get("cell"),
            trip_id=h.get("trip") or None,
            heading=num("hdg"),
            speed_mps=num("spd"),
        )

    async def cell_counts(self, cells: list[str], *, min_seen_ms: int) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in cells:
                pipe.zcount(self.keys.cell(self.resolution, c), min_seen_ms, "+inf")
            counts = await pipe.execute()
        return {c: int(n) for c, n in zip(cells, counts, strict=True) if n}

    async def available_counts(self, cells: list[str]) -> dict[str, int]:
        """Available drivers (with or without an offer) in each of ``cells``: the
        competition a waiting driver has there (``dispatch.guidance``)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in cells:
                pipe.zcard(self.keys.cell_geo(self.resolution, c))
            counts = await pipe.execute()
        return {c: int(n) for c, n in zip(cells, counts, strict=True) if n}

    async def idle_by_cell(self, *, now_ms: int) -> dict[str, list[str]]:
        """Every available driver without a live offer, by cell: who a ``demand.map``
        frame goes to. Two round trips however many cells are occupied."""
        k = self.keys
        occupied = sorted(
            str(c) for c in await self.redis.smembers(k.available_cells(self.resolution))
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(k.held_offers(), now_ms, "+inf")
            for c in occupied:
                pipe.zrange(k.cell_geo(self.resolution, c), 0, -1)
            held, *members = await pipe.execute()
        busy = {str(d) for d in held}
        out: dict[str, list[str]] = {}
        for c, drivers in zip(occupied, members, strict=True):
            idle = sorted(str(d) for d in drivers if str(d) not in busy)
            if idle:
                out[c] = idle
        return out
