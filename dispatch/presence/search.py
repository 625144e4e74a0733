"""Candidate search: the ``want`` available, fresh, unreserved drivers nearest a pickup
among the cells of a disk of H3 rings, by one Lua script (``lua/candidates.lua``) in
one round trip.

The script's KEYS are the five region-wide keys it reads (cells with available drivers,
``seen``, held offers, positions, fairness) and the GEO set of every cell of the disk;
with the cells' records and the rings' stopping bounds, the disk's part is packed once
per disk (``disk.DiskCache``), so a search packs six numbers and sends the rest as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.bulk_redis import BulkScriptRunner, pack_args
from core.keys import Keys
from core.script_batcher import ScriptBatcher
from dispatch.batch.types import Candidate
from dispatch.presence import scripts
from dispatch.presence.disk import DiskCache
from geo import cells
from geo.point import LatLng

# Packed disks kept (a city has a few thousand pickup cells; each disk packs to ~20 KB
# at the default 271 cells).
CELL_ARGS_CACHE = 50_000

# Without a radius: nothing is too far.
_NO_CAP_M = 1e9


class CandidateSearch:
    def __init__(self, keys: Keys, resolution: int, runner: BulkScriptRunner) -> None:
        # A hexagon's circumradius is its edge length; 2% for H3's size variation.
        self._circumradius_m = round(cells.edge_length_m(resolution) * 1.02, 1)
        self._disks = DiskCache(
            geo_key=lambda cell: keys.cell_geo(resolution, cell), limit=CELL_ARGS_CACHE
        )
        self._batcher = ScriptBatcher(runner, scripts.CANDIDATES)
        self._region_keys = pack_args(
            keys.available_cells(resolution),
            keys.seen(),
            keys.held_offers(),
            keys.positions(),
            keys.fairness(),
        )

    async def __call__(
        self,
        rings: Sequence[Sequence[str]],
        *,
        min_seen_ms: int,
        want: int,
        eta_s: Callable[[LatLng], int],
        pickup: LatLng | None,
        radius_m: float | None,
    ) -> list[Candidate]:
        disk = self._disks.get(rings)
        if not disk.count or want <= 0:
            return []
        origin = pickup or disk.origin
        variable = pack_args(
            min_seen_ms,
            want,
            repr(origin.lat),
            repr(origin.lng),
            repr(radius_m if radius_m is not None else _NO_CAP_M),
            self._circumradius_m,
        )
        key_count = 5 + disk.count
        # EVALSHA sha n <keys> <6 args> <cells, rings, 2 per ring> <cell records>
        head = self._batcher.head(key_count, key_count + 6 + 2 + len(disk.rings) + 1)
        command = head + self._region_keys + disk.keys + variable + disk.meta + disk.tail
        flat = await self._batcher.submit_command(command)
        found = []
        for i in range(0, len(flat), 3):
            lat, lng = flat[i + 1].split(",")
            position = LatLng(float(lat), float(lng))
            idle, _, shift = flat[i + 2].partition(",")
            found.append(
                Candidate(
                    flat[i], eta_s(position), position, int(idle) if idle else None, int(shift or 0)
                )
            )
        return found
