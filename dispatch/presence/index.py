"""The live driver index in Redis: one function per Redis operation, each one round trip.

Per driver a hash holds position, heading, timestamps, H3 cell and status
(``offline`` | ``available`` | ``on_trip``). A driver *holds an offer* exactly while
its offer key exists (``core.keys.Keys.driver_offer``), so an abandoned reservation
frees itself when its TTL runs out. Online drivers are members of their cell's sorted
set, scored by the server time of their last update, and of one ``seen`` set scored
the same way: stale drivers come off the low end of ``seen`` without a scan of the
rest, and candidate search ignores cell members older than the staleness limit even
before the reaper has run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from core.bulk_redis import BulkScriptRunner, pack, pack_args
from core.keys import Keys
from core.script_batcher import ScriptBatcher
from dispatch.batch.types import Candidate
from dispatch.presence import scripts
from dispatch.presence.disk import PackedDisk, pack_disk
from dispatch.presence.results import DriverState, LocationResult, RiderForward
from dispatch.presence.scripts import TRACE_EVERY_MS, TRACE_MAX
from geo import cells
from geo.point import LatLng

CELL_ARGS_CACHE = 50_000

_NO_FORWARD = ("", "", "", "")


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
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.resolution = resolution
        self._cell_prefix = keys.cell(resolution, "")
        self._driver_prefix = keys.driver("")
        self._offer_prefix = keys.driver_offer("")
        self._runners = (bulk, bulk_search)
        # A hexagon's circumradius is its edge length; 2% for H3's size variation.
        self._circumradius_m = round(cells.edge_length_m(resolution) * 1.02, 1)
        # Per disk of rings: its cells and their centres, packed once (a city has a few
        # thousand pickup cells; each disk is reused by every search from that cell).
        self._cell_args: dict[tuple[tuple[str, ...], ...], PackedDisk] = {}
        self._batcher = ScriptBatcher(bulk, scripts.LOCATION)
        self._location_constants = (
            self._cell_prefix,
            keys.trace(""),
            TRACE_EVERY_MS,
            keys.seen(),
            location_burst,
            repr(location_rate_per_s / 1000),
            TRACE_MAX,
        )
        # EVALSHA sha 1 <key> <10 args> <7 constants> <4 forward>: 25 parts.
        self._location_head = self._batcher.head(1, 22)
        self._location_tail = pack_args(*self._location_constants)
        self._search_batcher = ScriptBatcher(bulk_search, scripts.CANDIDATES)
        self._reserve_batcher = ScriptBatcher(bulk_search, scripts.RESERVE)
        self._status = redis.register_script(scripts.STATUS)
        self._reap = redis.register_script(scripts.REAP)
        self._trip = redis.register_script(scripts.TRIP)
        self._connections = redis.register_script(scripts.CONNECTIONS)
        self._release = redis.register_script(scripts.RELEASE)

    def close(self) -> None:
        for runner in self._runners:
            runner.close()

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
        forward: RiderForward | None = None,
    ) -> LocationResult:
        """Take one location frame into the index. Frames from every socket of the
        process that arrive in the same event-loop turn go to Redis in one pipeline.
        ``assumed_status`` is what the driver's socket last asked for; it is used only
        when Redis holds no status for the driver (after Redis lost its data).
        ``forward`` is published if the driver is still on that trip and target
        (``LocationResult.forwarded`` says whether it was)."""
        variable = (
            self._driver_prefix + driver_id,
            driver_id,
            repr(lat),
            repr(lng),
            str(ts_ms),
            "" if accuracy_m is None else repr(accuracy_m),
            "" if heading is None else repr(heading),
            "" if speed_mps is None else repr(speed_mps),
            cell,
            str(now_ms),
            assumed_status,
        )
        extra = (
            _NO_FORWARD
            if forward is None
            else (
                forward.trip_id,
                forward.target,
                forward.channel,
                forward.frame,
            )
        )
        # The hot path: one string for the parts that change, the rest packed once.
        body = "".join([f"${len(p)}\r\n{p}\r\n" for p in variable])
        forward_body = "".join([f"${len(p)}\r\n{p}\r\n" for p in extra])
        if body.isascii() and forward_body.isascii():
            command = (
                self._location_head + body.encode() + self._location_tail + forward_body.encode()
            )
        else:
            command = pack(
                "EVALSHA", self._batcher.sha, 1, *variable, *self._location_constants, *extra
            )
        result = await self._batcher.submit_command(command)
        kind, status, trip, rider, tlat, tlng, restored, forwarded = result
        if kind == "stale":
            return LocationResult(False, "", None, None, last_ts_ms=int(status))
        if kind == "limited":
            return LocationResult(False, "", None, None, retry_after_ms=int(status))
        return LocationResult(
            True,
            status,
            trip or None,
            rider or None,
            target_lat=float(tlat) if tlat else None,
            target_lng=float(tlng) if tlng else None,
            restored=bool(restored),
            target=f"{tlat},{tlng}",
            forwarded=bool(forwarded),
        )

    async def set_status(self, driver_id: str, status: str, *, now_ms: int) -> str:
        result = await self._status(
            keys=[self.keys.driver(driver_id), self.keys.seen()],
            args=[driver_id, status, self._cell_prefix, now_ms],
        )
        return str(result)

    async def connected(self, driver_id: str) -> int:
        """One more open socket for this driver; returns how many are open."""
        return await self._count_connection(driver_id, 1)

    async def disconnected(self, driver_id: str) -> int:
        """One socket fewer; the last one closing takes the driver offline (unless on a
        trip). Returns how many remain open."""
        return await self._count_connection(driver_id, -1)

    async def _count_connection(self, driver_id: str, delta: int) -> int:
        result = await self._connections(
            keys=[self.keys.driver(driver_id), self.keys.seen()],
            args=[delta, driver_id, self._cell_prefix],
        )
        return int(result)

    async def set_trip(
        self, driver_id: str, *, trip_id: str, rider_id: str, target_lat: float, target_lng: float
    ) -> None:
        await self._trip(
            keys=[self.keys.driver(driver_id), self.keys.seen()],
            args=[
                trip_id,
                rider_id,
                repr(target_lat),
                repr(target_lng),
                driver_id,
                self._cell_prefix,
                0,
                0,
            ],
        )

    async def clear_trip(self, driver_id: str, *, now_ms: int, earned_cents: int = 0) -> str:
        """The trip is over: available again if a socket is open, else offline. The
        driver is idle from now, and ``earned_cents`` counts towards its shift."""
        result = await self._trip(
            keys=[self.keys.driver(driver_id), self.keys.seen()],
            args=["", "", "", "", driver_id, self._cell_prefix, now_ms, earned_cents],
        )
        return str(result)

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
            ),
            (offer_id, int(ttl_s * 1000), min_seen_ms, "" if fence is None else fence),
        )
        return int(ok) == 1

    async def release_offer(self, *, offer_id: str, driver_id: str, trip_id: str) -> None:
        k = self.keys
        await self._release(
            keys=[k.driver_offer(driver_id), k.trip_offer(trip_id), k.offer_deadlines()],
            args=[offer_id],
        )

    async def open_sockets(self, driver_id: str) -> int:
        """How many sockets of this driver are open, across every api process."""
        value = await self.redis.hget(self.keys.driver(driver_id), "conns")
        return int(value) if value else 0

    async def offer_held_by(self, driver_id: str) -> str | None:
        value = await self.redis.get(self.keys.driver_offer(driver_id))
        return str(value) if value else None

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
        # ``cells.disk_by_ring`` hands out the same tuples for the same disk.
        key = tuple(r if isinstance(r, tuple) else tuple(r) for r in rings)
        disk = self._cell_args.get(key)
        if disk is None:
            if len(self._cell_args) > CELL_ARGS_CACHE:
                self._cell_args.clear()
            disk = self._cell_args[key] = pack_disk(key)
        if not disk.count or want <= 0:
            return []
        origin = pickup or disk.origin
        args: list[str | int | float] = [
            self._cell_prefix,
            self._driver_prefix,
            self._offer_prefix,
            min_seen_ms,
            want,
            repr(origin.lat),
            repr(origin.lng),
            self._circumradius_m,
            repr(radius_m if radius_m is not None else 1e9),
            disk.count,
            len(disk.rings) // 2,
            *disk.rings,
        ]
        flat = await self._search_batcher.submit((), args, tail=(disk.tail, 1))
        found = []
        for i in range(0, len(flat), 6):
            position = LatLng(float(flat[i + 1]), float(flat[i + 2]))
            found.append(
                Candidate(
                    flat[i],
                    eta_s(position),
                    position,
                    int(flat[i + 3]) if flat[i + 3] else None,
                    int(flat[i + 4]),
                )
            )
        return found

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

    async def reap_stale(self, *, cutoff_ms: int, limit: int = 1000) -> list[str]:
        result = await self._reap(
            keys=[self.keys.seen()],
            args=[cutoff_ms, limit, self._driver_prefix, self._cell_prefix],
        )
        return [str(x) for x in result]

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
