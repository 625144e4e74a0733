"""A disk of H3 rings packed for the candidate search script, once per disk.

Pure: cells in, bytes and numbers out, no Redis. A city has a few thousand pickup cells
and each disk is reused by every search from its cell, so everything about a disk that
does not depend on where in the centre cell the pickup is, or on who is online, is
packed here once: the GEO set key of every cell (the script's KEYS: it touches no key it
was not given), the cells with their centres as one binary argument of fixed records,
and per ring the lower bound the script's ring walk stops on. A search then sends
mostly these bytes as they are.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.bulk_redis import pack_args
from geo import cells
from geo.point import LatLng

# A cell as the search script reads it with ``struct.unpack('<c15dd', ...)``: every H3
# cell name is 15 hex characters, then its centre's lat and lng as little-endian doubles.
CELL_RECORD = struct.Struct("<15sdd")

# The script computes distances as here: equirectangular at the pickup's latitude, with
# this many metres per degree (the mean Earth radius's).
M_PER_DEGREE = 111195.0

Rings = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class PackedCell:
    """One cell as a disk's packing needs it: its centre, its record, its GEO key."""

    centre: LatLng
    record: bytes  # a ``CELL_RECORD``
    key: bytes  # the cell's GEO set key, packed (a RESP bulk)


@dataclass(frozen=True, slots=True)
class PackedDisk:
    """A disk of rings as the search script takes it."""

    keys: bytes  # per cell its GEO set's key, packed (RESP bulks), in record order
    meta: bytes  # cell count, ring count, per ring (cells, ``later`` m), packed
    tail: bytes  # the last argument, packed: per cell a ``CELL_RECORD``
    count: int  # cells
    rings: tuple[int | float, ...]  # per ring: its cells, ``later`` in metres
    origin: LatLng  # the centre cell's centre


EMPTY = PackedDisk(b"", b"", b"", 0, (), LatLng(0.0, 0.0))


def pack_cell(cell: str, *, geo_key: Callable[[str], str]) -> PackedCell:
    if len(cell) != 15:
        raise ValueError("H3 cell names are 15 characters")
    centre = cells.center(cell)  # ValueError for a name that is no cell
    record = CELL_RECORD.pack(cell.encode(), centre.lat, centre.lng)
    return PackedCell(centre, record, pack_args(geo_key(cell)))


def pack_disk(
    rings: Sequence[Sequence[str]],
    *,
    geo_key: Callable[[str], str],
    cell: Callable[[str], PackedCell] | None = None,
) -> PackedDisk:
    """Pack a disk's cells with their centres and their GEO keys (``geo_key(cell)``),
    and for each ring the distance from the centre cell's centre to the nearest centre
    in that ring or any later one: what the script's stopping bound needs, independent
    of where in the centre cell the pickup is. Distances as the script computes them
    (equirectangular at the centre's latitude), less 0.5% and 1 m so rounding can only
    make the bound looser. A ring without cells counts as infinitely far. ``cell``
    packs one cell (``pack_cell`` by default; ``DiskCache`` remembers them, as
    neighbouring disks share most of their cells)."""
    flat = [c for ring in rings for c in ring]
    if not flat:
        return EMPTY
    one = cell or functools.partial(pack_cell, geo_key=geo_key)
    packed = [one(c) for c in flat]
    origin = packed[0].centre
    kx = math.cos(math.radians(origin.lat)) * M_PER_DEGREE
    nearest: list[float] = []
    i = 0
    for ring in rings:
        ds = [
            math.hypot((p.centre.lng - origin.lng) * kx, (p.centre.lat - origin.lat) * M_PER_DEGREE)
            for p in packed[i : i + len(ring)]
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
    return PackedDisk(
        keys=b"".join(p.key for p in packed),
        meta=pack_args(len(flat), len(rings), *meta),
        tail=pack_args(b"".join(p.record for p in packed)),
        count=len(flat),
        rings=tuple(meta),
        origin=origin,
    )


class DiskCache:
    """Packed disks by their rings, built on first use. ``cells.disk_by_ring`` hands out
    the same tuples for the same disk, so a lookup hashes a tuple it has seen; past
    ``limit`` disks the cache starts again (a city has a few thousand pickup cells).
    Packed cells are kept too: the first search from a new pickup cell packs a disk
    whose cells were nearly all packed for its neighbours' disks already, so it costs
    little more than the searches after it."""

    def __init__(self, *, geo_key: Callable[[str], str], limit: int) -> None:
        self._geo_key = geo_key
        self._limit = limit
        self._disks: dict[Rings, PackedDisk] = {}
        self._cells: dict[str, PackedCell] = {}

    def __len__(self) -> int:
        return len(self._disks)

    def get(self, rings: Sequence[Sequence[str]]) -> PackedDisk:
        key = tuple(r if isinstance(r, tuple) else tuple(r) for r in rings)
        disk = self._disks.get(key)
        if disk is None:
            if len(self._disks) >= self._limit:
                self._disks.clear()
                self._cells.clear()
            disk = self._disks[key] = pack_disk(key, geo_key=self._geo_key, cell=self._cell)
        return disk

    def _cell(self, cell: str) -> PackedCell:
        packed = self._cells.get(cell)
        if packed is None:
            packed = self._cells[cell] = pack_cell(cell, geo_key=self._geo_key)
        return packed
