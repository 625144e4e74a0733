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

import asyncio
import hashlib
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.bulk_redis import (
    BulkScriptRunner,
    pack,
    pack_args,
    pack_ascii_args,
    pack_with_tail,
)
from core.keys import Keys
from dispatch.batch.types import Candidate
from geo import cells
from geo.point import LatLng

# Shared by every script that changes whether a driver is available in a cell: its
# GEO set (candidate search reads it), and the set of cells that have any available
# driver (``<cell prefix without the colon>#avail``), so a search skips empty cells
# without a call. Prepended to the scripts below.
_GEO_HELPERS = """
local function geo_add(cp, cell, lng, lat, id)
  redis.call('GEOADD', cp .. cell .. ':g', lng, lat, id)
  redis.call('SADD', string.sub(cp, 1, -2) .. '#avail', cell)
end
local function geo_rem(cp, cell, id)
  local key = cp .. cell .. ':g'
  if redis.call('ZREM', key, id) == 1 and redis.call('ZCARD', key) == 0 then
    redis.call('SREM', string.sub(cp, 1, -2) .. '#avail', cell)
  end
end
"""

# A trip's trace keeps one position per 10 s of the driver's clock (enough to draw the
# route on a receipt and to settle a dispute), at most 5,000 (14 hours).
TRACE_EVERY_MS = 10_000
TRACE_MAX = 5_000

# KEYS: driver hash. ARGV: driver, lat, lng, ts_ms, acc, heading, speed, cell, now_ms,
# status to assume if none is stored; then the same for every call: cell-key prefix,
# trace-key prefix, trace sampling interval (ms), seen key, rate-limit burst, refill per
# ms (so they are packed once); then the rider forward, all empty when there is none:
# the trip the caller believes the driver is on, its target as 'tlat,tlng', the rider's
# channel, the frame to publish there.
# First the driver's rate limit: a token bucket in the driver's own hash (rl_t tokens,
# rl_at when counted), so it costs no extra key and no extra round trip. Every frame
# that reaches the script spends a token, a stale one too; with none left the frame is
# dropped ('limited', with the ms until the next token) and nothing else changes.
# While the driver is on a trip, one position per interval is appended to the trip's
# trace (PostgreSQL gets it when the trip ends). And if the driver is still on the trip
# the caller believed, heading for the same target, the caller's frame for the rider
# (the position and the ETA computed for that target) is published here, so the frame
# costs no second round trip; otherwise the caller publishes it itself.
_LOCATION = (
    _GEO_HELPERS
    + """
local h = redis.call('HMGET', KEYS[1], 'ts', 'cell', 'status', 'trip', 'rider', 'tlat',
                     'tlng', 'trace_ts', 'rl_t', 'rl_at')
local now = tonumber(ARGV[9])
local burst, refill = tonumber(ARGV[15]), tonumber(ARGV[16])
local tokens = tonumber(h[9] or ARGV[15])
local counted_at = tonumber(h[10] or ARGV[9])
if now > counted_at then tokens = math.min(burst, tokens + (now - counted_at) * refill) end
if tokens < 1 then
  return {'limited', tostring(math.ceil((1 - tokens) / refill)), '', '', '', '', '', ''}
end
tokens = tostring(tokens - 1)
if now < counted_at then now = counted_at end
local prev_ts = tonumber(h[1] or '0')
local ts = tonumber(ARGV[4])
if ts <= prev_ts then
  redis.call('HSET', KEYS[1], 'rl_t', tokens, 'rl_at', now)
  return {'stale', tostring(prev_ts), '', '', '', '', '', ''}
end
-- No status at all means Redis lost the driver (a restart): take the status the
-- driver's socket last asked for, so the next frame restores it.
local status = h[3] or ARGV[10]
local restored = ''
if not h[3] then
  restored = '1'
  -- The socket sending this frame is open, whatever count Redis forgot.
  redis.call('HSETNX', KEYS[1], 'conns', 1)
end
local cp = ARGV[11]
redis.call('HSET', KEYS[1], 'lat', ARGV[2], 'lng', ARGV[3], 'ts', ARGV[4], 'acc', ARGV[5],
           'hdg', ARGV[6], 'spd', ARGV[7], 'cell', ARGV[8], 'seen', ARGV[9],
           'status', status, 'rl_t', tokens, 'rl_at', now)
if status ~= 'offline' then
  if h[2] and h[2] ~= ARGV[8] then
    redis.call('ZREM', cp .. h[2], ARGV[1])
    geo_rem(cp, h[2], ARGV[1])
  end
  redis.call('ZADD', cp .. ARGV[8], ARGV[9], ARGV[1])
  redis.call('ZADD', ARGV[14], ARGV[9], ARGV[1])
  if status == 'available' and math.abs(tonumber(ARGV[2])) <= 85 then
    geo_add(cp, ARGV[8], ARGV[3], ARGV[2], ARGV[1])
  end
end
if h[4] and ts - tonumber(h[8] or '0') >= tonumber(ARGV[13]) then
  local trace = ARGV[12] .. h[4]
  redis.call('RPUSH', trace, ARGV[4] .. ',' .. ARGV[2] .. ',' .. ARGV[3])
  redis.call('LTRIM', trace, -"""
    + str(TRACE_MAX)
    + """, -1)
  redis.call('EXPIRE', trace, 86400)
  redis.call('HSET', KEYS[1], 'trace_ts', ARGV[4])
end
local forwarded = ''
if h[4] and h[4] == ARGV[17] and (h[6] or '') .. ',' .. (h[7] or '') == ARGV[18] then
  redis.call('PUBLISH', ARGV[19], ARGV[20])
  forwarded = '1'
end
return {'ok', status, h[4] or '', h[5] or '', h[6] or '', h[7] or '', restored, forwarded}
"""
)

# KEYS: driver hash, seen. ARGV: driver, new status, cell-key prefix, now_ms.
# Coming online from offline starts a shift: idle since now, nothing earned yet (the
# fairness term of the dispatcher reads both).
# Going online puts a driver with a known position back in its cell, scored by when that
# position was taken (an old one stays too stale to dispatch on until the next frame);
# offline takes it out. A driver on a trip stays on_trip (the trip decides, not the app).
_STATUS = (
    _GEO_HELPERS
    + """
local h = redis.call('HMGET', KEYS[1], 'cell', 'status', 'seen', 'lat', 'lng')
local current = h[2] or 'offline'
if current == 'on_trip' then return current end
if current == 'offline' and ARGV[2] == 'available' then
  redis.call('HSET', KEYS[1], 'idle', ARGV[4], 'shift', 0, 'shift_start', ARGV[4])
end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[2] == 'offline' then
  if h[1] then
    redis.call('ZREM', ARGV[3] .. h[1], ARGV[1])
    geo_rem(ARGV[3], h[1], ARGV[1])
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif h[1] and h[3] then
  redis.call('ZADD', ARGV[3] .. h[1], h[3], ARGV[1])
  redis.call('ZADD', KEYS[2], h[3], ARGV[1])
  if math.abs(tonumber(h[4])) <= 85 then
    geo_add(ARGV[3], h[1], h[5], h[4], ARGV[1])
  end
end
return ARGV[2]
"""
)

# KEYS: driver hash, seen. ARGV: +1 or -1, driver, cell-key prefix. Counts the driver's
# open sockets (a phone and a tablet, or an old socket a reconnect has not closed yet);
# the last one closing takes the driver offline, unless on a trip, in the same step.
# Returns the new count.
_CONNECTIONS = (
    _GEO_HELPERS
    + """
local n = redis.call('HINCRBY', KEYS[1], 'conns', ARGV[1])
if n < 0 then redis.call('HSET', KEYS[1], 'conns', 0); n = 0 end
if n == 0 and tonumber(ARGV[1]) < 0 then
  local h = redis.call('HMGET', KEYS[1], 'status', 'cell')
  if h[1] ~= 'on_trip' then
    redis.call('HSET', KEYS[1], 'status', 'offline')
    if h[2] then
      redis.call('ZREM', ARGV[3] .. h[2], ARGV[2])
      geo_rem(ARGV[3], h[2], ARGV[2])
    end
    redis.call('ZREM', KEYS[2], ARGV[2])
  end
end
return n
"""
)

# Returns the ``want`` available drivers nearest the pickup in straight line, nearest
# first, as (id, lat, lng, idle-since ms, shift cents, distance m) tuples.
#
# Each cell has, beside its sorted set of online drivers, a GEO set of its *available*
# ones (``<cell key>:g``), kept in step by every script that changes a driver's status.
# The disk is walked ring by ring, nearest ring first. Before a ring, a lower bound on
# the distance from the pickup to anything in that ring *or any later one* (``later``,
# the nearest centre of those rings seen from the disk's centre cell, less a
# circumradius and the pickup's own offset from that centre) is compared with the
# ``want``-th best found so far: once it is farther, no later cell can improve the
# answer and the walk stops, so a dense area touches a few dozen cells of a 271-cell
# disk. Within a ring, one SMISMEMBER says which cells have any available driver; a cell
# is skipped when even its nearest possible point (centre distance minus circumradius)
# is farther than the current ``want``-th best or than the cap; otherwise GEOSEARCH
# (C, sorted by distance) yields its nearest few within that bound, and only those are
# read to check freshness and held offers.
#
# ARGV: cell prefix, driver prefix, offer prefix, min_seen_ms, want, pickup lat, lng,
# circumradius, cap, cell count n, ring count R; then per ring (cells, later); then the
# cells as one binary string of fixed records (``_CELL_RECORD``: the 15-character cell
# name, centre lat, centre lng as little-endian doubles), ring by ring, the disk's centre
# cell first. Only the rings the walk reaches are decoded, and Redis parses 15 arguments
# instead of a thousand.
_CANDIDATES = """
local want = tonumber(ARGV[5])
local min_seen = tonumber(ARGV[4])
local plat, plng = tonumber(ARGV[6]), tonumber(ARGV[7])
local circum, cap = tonumber(ARGV[8]), tonumber(ARGV[9])
local rings = tonumber(ARGV[11])
local blob = ARGV[12 + rings * 2]
local kx = math.cos(math.rad(plat)) * 111195.0
local function dist(lat, lng)
  local x = (lng - plng) * kx
  local y = (lat - plat) * 111195.0
  return math.sqrt(x * x + y * y)
end
local best = {}
local function worst()
  if #best < want then return cap end
  return best[#best][6]
end
local avail = string.sub(ARGV[1], 1, -2) .. '#avail'
local _, olat, olng = struct.unpack('<c15dd', blob, 1)
local offset = dist(olat, olng)
local done_cells = 0
for r = 1, rings do
  local size = tonumber(ARGV[10 + r * 2])
  local later = tonumber(ARGV[11 + r * 2])
  if later - circum - offset > worst() then break end
  local names, bounds = {}, {}
  for j = 1, size do
    local name, lat, lng = struct.unpack('<c15dd', blob, (done_cells + j - 1) * 31 + 1)
    names[j] = name
    bounds[j] = dist(lat, lng) - circum
  end
  done_cells = done_cells + size
  local occupied = redis.call('SMISMEMBER', avail, unpack(names))
  for j = 1, size do
    if occupied[j] == 1 and bounds[j] <= worst() then
      local geo = ARGV[1] .. names[j] .. ':g'
      local count = want + 2
      local done = 0
      while true do
        local radius = math.max(worst(), 1)
        local found = redis.call('GEOSEARCH', geo, 'FROMLONLAT', plng, plat,
                                 'BYRADIUS', radius, 'm', 'ASC', 'COUNT', count, 'WITHCOORD')
        for i = done + 1, #found do
          local id = found[i][1]
          local lng, lat = tonumber(found[i][2][1]), tonumber(found[i][2][2])
          local d = dist(lat, lng)
          if d <= worst() and (#best < want or d < best[#best][6]) then
            local h = redis.call('HMGET', ARGV[2] .. id, 'status', 'seen', 'idle', 'shift',
                                 'lat', 'lng')
            if h[1] == 'available' and tonumber(h[2] or '0') >= min_seen
               and redis.call('EXISTS', ARGV[3] .. id) == 0 then
              local pos = #best + 1
              while pos > 1 and best[pos - 1][6] > d do pos = pos - 1 end
              table.insert(best, pos, {id, h[5], h[6], h[3] or '', h[4] or '0', d})
              if #best > want then table.remove(best) end
            end
          end
        end
        -- Fewer than asked for: the cell has nothing more within the bound. A full page
        -- whose last driver is no nearer than the current worst: nothing further in this
        -- cell can make the cut. Otherwise (the nearest were busy or stale) read on.
        if #found < count then break end
        local last = found[#found][2]
        if dist(tonumber(last[2]), tonumber(last[1])) >= worst() then break end
        done = #found
        count = count * 4
      end
    end
  end
end
local out = {}
for _, b in ipairs(best) do
  for k = 1, 5 do out[#out + 1] = b[k] end
  out[#out + 1] = tostring(b[6])
end
return out
"""

# KEYS: seen. ARGV: cutoff_ms, limit, driver-key prefix, cell-key prefix.
_REAP = (
    _GEO_HELPERS
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  local cell = redis.call('HGET', ARGV[3] .. id, 'cell')
  if cell then
    redis.call('ZREM', ARGV[4] .. cell, id)
    geo_rem(ARGV[4], cell, id)
  end
  redis.call('ZREM', KEYS[1], id)
end
return ids
"""
)

# KEYS: driver hash, seen. ARGV: trip, rider, target lat, target lng (empty trip clears
# it), driver id, cell-key prefix, now_ms, cents earned by the trip that ended. The
# target is where the driver is heading (pickup, then drop-off), so each position
# streamed to the rider can carry an ETA without a database read. A trip that ends
# while none of the driver's sockets is open leaves the driver offline: a driver
# nobody can reach must not be offered the next trip.
_TRIP = (
    _GEO_HELPERS
    + """
if ARGV[1] == '' then
  local h = redis.call('HMGET', KEYS[1], 'status', 'conns', 'cell', 'lat', 'lng')
  redis.call('HDEL', KEYS[1], 'trip', 'rider', 'tlat', 'tlng')
  redis.call('HSET', KEYS[1], 'idle', ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'shift', ARGV[8])
  if h[1] ~= 'on_trip' then return h[1] or 'offline' end
  if tonumber(h[2] or '0') > 0 then
    redis.call('HSET', KEYS[1], 'status', 'available')
    if h[3] and h[4] and math.abs(tonumber(h[4])) <= 85 then
      geo_add(ARGV[6], h[3], h[5], h[4], ARGV[5])
    end
    return 'available'
  end
  redis.call('HSET', KEYS[1], 'status', 'offline')
  if h[3] then
    redis.call('ZREM', ARGV[6] .. h[3], ARGV[5])
    geo_rem(ARGV[6], h[3], ARGV[5])
  end
  redis.call('ZREM', KEYS[2], ARGV[5])
  return 'offline'
end
local cell = redis.call('HGET', KEYS[1], 'cell')
if cell then geo_rem(ARGV[6], cell, ARGV[5]) end
redis.call('HSET', KEYS[1], 'status', 'on_trip', 'trip', ARGV[1], 'rider', ARGV[2],
           'tlat', ARGV[3], 'tlng', ARGV[4])
return 'on_trip'
"""
)

# KEYS: driver offer key, trip offer key, driver hash, region fence. ARGV: offer id,
# ttl ms, min_seen_ms, the caller's fence ('' for none). Both keys or neither: a driver
# never holds two offers and a trip never has two. A dispatcher whose leadership has
# passed to another (the fence moved on) reserves nothing.
_RESERVE = """
if ARGV[4] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[4] then return -1 end
if redis.call('HGET', KEYS[3], 'status') ~= 'available' then return 0 end
if tonumber(redis.call('HGET', KEYS[3], 'seen') or '0') < tonumber(ARGV[3]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: driver offer key, trip offer key, deadlines. ARGV: offer id. Deletes only keys
# that still name this offer, so a late release never frees someone else's reservation.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


CELL_ARGS_CACHE = 50_000


# A cell as ``_CANDIDATES`` reads it with ``struct.unpack('<c15dd', ...)``: every H3
# cell name is 15 hex characters.
_CELL_RECORD = struct.Struct("<15sdd")


@dataclass(frozen=True, slots=True)
class _PackedDisk:
    """A disk of rings as ``_CANDIDATES`` takes it, built once per disk."""

    tail: bytes  # the last argument, packed: per cell a ``_CELL_RECORD``
    count: int  # cells
    rings: tuple[int | float, ...]  # per ring: its cells, ``later`` in metres
    origin: LatLng  # the centre cell's centre


def _pack_disk(rings: Sequence[Sequence[str]]) -> _PackedDisk:
    """Pack a disk's cells with their centres, and for each ring the distance from the
    centre cell's centre to the nearest centre in that ring or any later one: what the
    script's stopping bound needs, independent of where in the centre cell the pickup
    is. Distances as the script computes them (equirectangular at the centre's
    latitude), less 0.5% and 1 m so rounding can only make the bound looser."""
    flat = [c for ring in rings for c in ring]
    if not flat:
        return _PackedDisk(b"", 0, (), LatLng(0.0, 0.0))
    if any(len(c) != 15 for c in flat):
        raise ValueError("H3 cell names are 15 characters")
    centres = [cells.center(c) for c in flat]
    origin = centres[0]
    kx = math.cos(math.radians(origin.lat)) * 111195.0
    nearest: list[float] = []
    i = 0
    for ring in rings:
        ds = [
            math.hypot((c.lng - origin.lng) * kx, (c.lat - origin.lat) * 111195.0)
            for c in centres[i : i + len(ring)]
        ]
        nearest.append(min(ds, default=math.inf))
        i += len(ring)
    later: list[float] = []
    floor = math.inf
    for d in reversed(nearest):
        floor = min(floor, d)
        later.append(max(floor * 0.995 - 1.0, 0.0))
    later.reverse()
    meta: list[int | float] = []
    for ring, bound in zip(rings, later, strict=True):
        meta += [len(ring), round(bound, 1)]
    blob = b"".join(
        _CELL_RECORD.pack(c.encode(), p.lat, p.lng) for c, p in zip(flat, centres, strict=True)
    )
    return _PackedDisk(pack_args(blob), len(flat), tuple(meta), origin)


class ScriptBatcher:
    """Runs one Lua script for many callers, one pipeline per event-loop turn.

    Each caller awaits its own result; whatever arrived while a pipeline was in flight
    goes in the next one, so batches grow with load and a lone frame is sent at once.
    Calls go out as raw ``EVALSHA`` (``core.bulk_redis``); after a Redis restart forgets
    the script, the batch is retried once with the script loaded again.
    """

    MAX_BATCH = 512

    def __init__(self, runner: BulkScriptRunner, script: str) -> None:
        self._runner = runner
        self._script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._running = False
        self._heads: dict[tuple[int, int], bytes] = {}

    async def submit(
        self, keys: Sequence[str], args: Sequence[Any], *, tail: tuple[bytes, int] | None = None
    ) -> Any:
        """Run the script with ``keys`` and ``args`` (followed by ``tail``, arguments
        already packed with ``core.bulk_redis.pack_args``, and their count)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if tail is None:
            # The hot path (a location frame): EVALSHA, the sha and the key count are the
            # same for every call of this script and size; only the rest is packed here.
            variable = pack_ascii_args([*keys, *(str(a) for a in args)])
            if variable is None:
                command = pack("EVALSHA", self.sha, len(keys), *keys, *args)
            else:
                command = self._head(len(keys), len(keys) + len(args)) + variable
        else:
            command = pack_with_tail(("EVALSHA", self.sha, len(keys), *keys, *args), *tail)
        self._pending.append((command, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def submit_command(self, command: bytes) -> Any:
        """Run an ``EVALSHA`` of this script that the caller packed itself."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _head(self, key_count: int, arg_count: int) -> bytes:
        head = self._heads.get((key_count, arg_count))
        if head is None:
            head = self._heads[(key_count, arg_count)] = b"*%d\r\n" % (3 + arg_count) + pack_args(
                "EVALSHA", self.sha, key_count
            )
        return head

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
                try:
                    results = await self._run([command for command, _ in batch])
                except Exception as exc:  # every waiter hears of the failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(ConnectionError(f"redis: {exc!r}"))
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, hiredis.ReplyError):
                        future.set_exception(ResponseError(str(result)))
                    else:
                        future.set_result(result)
        finally:
            self._running = False

    async def _run(self, commands: list[bytes]) -> list[Any]:
        results = await self._runner.run(commands)
        if any(
            isinstance(r, hiredis.ReplyError) and str(r).startswith("NOSCRIPT") for r in results
        ):
            await self._runner.run([pack("SCRIPT", "LOAD", self._script)])
            results = await self._runner.run(commands)
        return results


_NO_FORWARD = ("", "", "", "")


@dataclass(frozen=True, slots=True)
class LocationResult:
    accepted: bool
    status: str
    trip_id: str | None
    rider_id: str | None
    last_ts_ms: int | None = None
    target_lat: float | None = None
    target_lng: float | None = None
    # Set when the driver's location rate limit dropped the frame: ms until the next.
    retry_after_ms: int | None = None
    # Redis held no status for the driver (it lost its data, or the driver has never
    # sent one): the frame assumed the socket's status; the caller re-checks the trip.
    restored: bool = False
    # The target as Redis holds it ('tlat,tlng'), to pass back as the next frame's
    # ``RiderForward.target``; and whether this frame's forward was published.
    target: str = ","
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class RiderForward:
    """A location frame's position for the rider, published by the location script itself
    when the driver is still on ``trip_id`` heading for ``target`` (as the previous
    frame's ``LocationResult`` said), so an on-trip frame is one round trip too."""

    trip_id: str
    target: str
    channel: str
    frame: str


@dataclass(frozen=True, slots=True)
class DriverState:
    driver_id: str
    status: str
    lat: float | None
    lng: float | None
    ts_ms: int | None
    seen_ms: int | None
    cell: str | None
    trip_id: str | None
    heading: float | None = None
    speed_mps: float | None = None


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
        self._cell_args: dict[tuple[tuple[str, ...], ...], _PackedDisk] = {}
        self._batcher = ScriptBatcher(bulk, _LOCATION)
        self._location_constants = (
            self._cell_prefix,
            keys.trace(""),
            TRACE_EVERY_MS,
            keys.seen(),
            location_burst,
            repr(location_rate_per_s / 1000),
        )
        # EVALSHA sha 1 <key> <10 args> <6 constants> <4 forward>: 24 parts.
        self._location_head = b"*24\r\n" + pack_args("EVALSHA", self._batcher.sha, 1)
        self._location_tail = pack_args(*self._location_constants)
        self._search_batcher = ScriptBatcher(bulk_search, _CANDIDATES)
        self._reserve_batcher = ScriptBatcher(bulk_search, _RESERVE)
        self._status = redis.register_script(_STATUS)
        self._reap = redis.register_script(_REAP)
        self._trip = redis.register_script(_TRIP)
        self._connections = redis.register_script(_CONNECTIONS)
        self._release = redis.register_script(_RELEASE)

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
            disk = self._cell_args[key] = _pack_disk(key)
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
