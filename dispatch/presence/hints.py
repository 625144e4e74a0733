"""What this process last saw stored for each driver, so its scripts can declare keys
that depend on data in Redis.

The cell a driver leaves is its hash's ``cell``; the trace a frame extends is its hash's
``trip``. A script may touch only keys it was given (``docs/live-index.md``), so the
caller declares the keys of the cell and trip it *believes* are stored. A script that
finds otherwise changes nothing and replies ``moved`` with what is stored; the call is
sent again at once with the right keys, and the hint is right from then on. It is out
of date only after another process, or another device of the same driver, changed the
driver's cell or trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from redis.exceptions import RedisError

from core.bulk_redis import pack_args
from core.keys import Keys

# Drivers this process keeps a hint for, and cells it keeps the keys of; past that, the
# map starts again (a forgotten hint costs one retried call).
HINTS_MAX = 200_000
# A call is sent again while the driver's cell or trip keeps changing under it: once
# is the rule (the hint was old); more takes frames of one driver racing each other.
MAX_TRIES = 8

Reply = list[Any]


class KeptMoving(RedisError):
    """A driver's stored cell or trip changed under every one of ``MAX_TRIES`` calls; the
    operation was not done. Transient: the socket answers ``service-unavailable``."""


class Hint(NamedTuple):
    """A driver's cell, and its trip, rider and target ('tlat,tlng'), as last seen
    stored; empty when none or unknown."""

    cell: str = ""
    trip: str = ""
    rider: str = ""
    target: str = ","


UNKNOWN = Hint()


class Hints:
    def __init__(self, keys: Keys, resolution: int) -> None:
        self._keys = keys
        self._resolution = resolution
        # Read directly on the hot path (a location frame); written through ``remember``.
        self.by_driver: dict[str, Hint] = {}
        self._cell_keys: dict[str, tuple[str, str]] = {}
        self._cell_bulks: dict[str, bytes] = {}
        # Calls sent again after a ``moved`` reply (each one round trip more).
        self.retries = 0

    def get(self, driver_id: str) -> Hint:
        return self.by_driver.get(driver_id, UNKNOWN)

    def remember(self, driver_id: str, hint: Hint) -> None:
        if len(self.by_driver) >= HINTS_MAX and driver_id not in self.by_driver:
            self.by_driver.clear()
        self.by_driver[driver_id] = hint

    def cell_keys(self, cell: str) -> tuple[str, str]:
        """The cell's sorted set of online drivers and GEO set of available ones."""
        pair = self._cell_keys.get(cell)
        if pair is None:
            if len(self._cell_keys) >= HINTS_MAX:
                self._cell_keys.clear()
            pair = self._cell_keys[cell] = (
                self._keys.cell(self._resolution, cell),
                self._keys.cell_geo(self._resolution, cell),
            )
        return pair

    def cell_bulks(self, cell: str) -> bytes:
        """The cell's two keys packed as a command's arguments (a location frame's)."""
        bulks = self._cell_bulks.get(cell)
        if bulks is None:
            if len(self._cell_bulks) >= HINTS_MAX:
                self._cell_bulks.clear()
            bulks = self._cell_bulks[cell] = pack_args(*self.cell_keys(cell))
        return bulks

    def declared(self, cell: str) -> list[str]:
        """The keys to declare for a believed cell: none when there is no idea."""
        return list(self.cell_keys(cell)) if cell else []

    async def settle(self, driver_id: str, call: Callable[[str], Awaitable[Reply]]) -> Reply:
        """Run ``call(believed cell)`` for a script that may touch the driver's stored
        cell (its reply: kind, value, stored cell, ...), again with the stored cell
        while the reply is ``moved``. The hint keeps the cell the last reply named."""
        cell = self.get(driver_id).cell
        for _ in range(MAX_TRIES):
            reply = await call(cell)
            stored = str(reply[2])
            hint = self.get(driver_id)
            if hint.cell != stored:
                self.remember(driver_id, hint._replace(cell=stored))
            if reply[0] != "moved":
                return reply
            self.retries += 1
            cell = stored
        raise KeptMoving(f"driver {driver_id}: cell changed under {MAX_TRIES} calls")
