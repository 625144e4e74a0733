"""dispatch.presence.disk: a disk of H3 rings packed for the candidate search script.
Pure (no Redis): the byte layout the script unpacks, and the per-ring stopping bounds
the ring walk relies on to never miss a nearer driver."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.keys import Keys
from dispatch.presence.disk import (
    CELL_RECORD,
    EMPTY,
    M_PER_DEGREE,
    DiskCache,
    PackedDisk,
    pack_disk,
)
from geo import cells
from geo.point import LatLng, haversine_m

MIDTOWN = LatLng(40.7549, -73.9840)
KEYS = Keys("coop:")


def geo_key(cell: str) -> str:
    return KEYS.cell_geo(8, cell)


def pack(rings: Sequence[Sequence[str]]) -> PackedDisk:
    return pack_disk(rings, geo_key=geo_key)


def unbulk_all(packed: bytes) -> list[bytes]:
    """The RESP bulk strings ``packed`` holds, back to back (``$<len>\\r\\n<data>\\r\\n``)."""
    out = []
    while packed:
        header, rest = packed.split(b"\r\n", 1)
        assert header.startswith(b"$")
        size = int(header[1:])
        assert rest[size : size + 2] == b"\r\n"
        out.append(rest[:size])
        packed = rest[size + 2 :]
    return out


def unbulk(packed: bytes) -> bytes:
    """The one RESP bulk string ``packed`` holds."""
    [data] = unbulk_all(packed)
    return data


def equirectangular_m(origin: LatLng, p: LatLng) -> float:
    """A distance as the search script computes it: flat, at the origin's latitude."""
    kx = math.cos(math.radians(origin.lat)) * M_PER_DEGREE
    return math.hypot((p.lng - origin.lng) * kx, (p.lat - origin.lat) * M_PER_DEGREE)


def test_the_blob_is_one_record_per_cell_ring_by_ring_centre_first() -> None:
    centre = cells.cell_of(MIDTOWN, 8)
    rings = cells.disk_by_ring(centre, 3)
    disk = pack(rings)

    flat = [c for ring in rings for c in ring]
    assert disk.count == len(flat) == 1 + 6 + 12 + 18
    blob = unbulk(disk.tail)
    assert CELL_RECORD.size == 31  # the script's '<c15dd' stride
    assert len(blob) == CELL_RECORD.size * len(flat)
    for i, cell in enumerate(flat):
        name, lat, lng = CELL_RECORD.unpack_from(blob, i * CELL_RECORD.size)
        assert name.decode() == cell
        assert LatLng(lat, lng) == cells.center(cell)  # the doubles, bit for bit
    assert blob[:15].decode() == centre
    assert disk.origin == cells.center(centre)
    # Per ring, its size then its bound, in ring order; packed after the counts.
    assert disk.rings[0::2] == (1, 6, 12, 18)
    meta = unbulk_all(disk.meta)
    assert [int(x) for x in meta[:2]] == [37, 4]
    assert [float(x) for x in meta[2:]] == list(disk.rings)
    # The GEO key of every cell, in record order: the script's KEYS after the five
    # region-wide ones.
    assert [k.decode() for k in unbulk_all(disk.keys)] == [KEYS.cell_geo(8, c) for c in flat]


def test_later_bounds_never_exceed_the_nearest_centre_of_that_ring_or_any_later_one() -> None:
    centre = cells.cell_of(MIDTOWN, 8)
    rings = cells.disk_by_ring(centre, 9)
    disk = pack(rings)
    origin = cells.center(centre)
    later = list(disk.rings[1::2])
    assert later[0] == 0.0  # the centre cell itself is at distance 0
    for r in range(len(rings)):
        true_floor = min(
            equirectangular_m(origin, cells.center(c)) for ring in rings[r:] for c in ring
        )
        assert later[r] <= true_floor
        # Only a rounding margin looser: a bound much lower would make the walk visit
        # rings it need not.
        assert later[r] >= true_floor * 0.99 - 2.0
    assert later == sorted(later)


@settings(max_examples=60, deadline=None)
@given(
    lat=st.floats(-70.0, 70.0),
    lng=st.floats(-179.0, 179.0),
    resolution=st.integers(6, 10),
    k=st.integers(0, 6),
)
def test_later_bounds_hold_anywhere_and_against_the_true_distance(
    lat: float, lng: float, resolution: int, k: int
) -> None:
    """Wherever the disk is: each ring's bound is no more than the nearest centre of that
    ring or any later one, by the script's flat distance and by the great-circle one."""
    centre = cells.cell_of(LatLng(lat, lng), resolution)
    rings = cells.disk_by_ring(centre, k)
    disk = pack(rings)
    origin = cells.center(centre)
    later = disk.rings[1::2]
    assert len(later) == len(rings)
    for r in range(len(rings)):
        beyond = [cells.center(c) for ring in rings[r:] for c in ring]
        assert later[r] <= min(equirectangular_m(origin, p) for p in beyond)
        assert later[r] <= min(haversine_m(origin, p) for p in beyond) * 1.001


def test_a_later_empty_ring_does_not_lower_the_bound_of_the_rings_before_it() -> None:
    """A ring with no cells (the caller cut it) is 'infinitely far': the bound before it
    is the nearest centre of the rings that have cells."""
    centre = cells.cell_of(MIDTOWN, 8)
    full = cells.disk_by_ring(centre, 2)
    disk = pack([full[0], full[1], ()])
    assert disk.count == 7
    assert disk.rings[0::2] == (1, 6, 0)
    assert math.isinf(disk.rings[5])  # nothing there: the walk stops before it
    assert disk.rings[:4] == pack(full[:2]).rings
    assert disk.rings[3] > 0.0


def test_an_empty_disk_packs_to_nothing() -> None:
    assert pack([]) is EMPTY
    assert pack([[]]) is EMPTY
    assert EMPTY.count == 0 and EMPTY.rings == ()
    assert EMPTY.tail == EMPTY.keys == EMPTY.meta == b""


@pytest.mark.parametrize(
    "bad",
    [
        "8828308281fffff0",  # 16 characters
        "8828308281ffff",  # 14
        "zzzzzzzzzzzzzzz",  # 15, not hex
        "000000000000000",  # 15 hex, not a cell
    ],
)
def test_a_bad_cell_name_is_refused(bad: str) -> None:
    good = cells.cell_of(MIDTOWN, 8)
    with pytest.raises(ValueError):
        pack([[good], [bad]])


def test_the_same_disk_packs_the_same() -> None:
    centre = cells.cell_of(MIDTOWN, 8)
    rings = cells.disk_by_ring(centre, 4)
    assert pack(rings) == pack([list(r) for r in rings])


def test_the_cache_packs_each_disk_once_and_hands_out_the_same_object() -> None:
    packed: list[str] = []

    def counting_geo_key(cell: str) -> str:
        packed.append(cell)
        return geo_key(cell)

    cache = DiskCache(geo_key=counting_geo_key, limit=3)
    home = cells.cell_of(MIDTOWN, 8)
    rings = cells.disk_by_ring(home, 2)
    first = cache.get(rings)
    assert first == pack(rings)
    assert len(packed) == first.count == 19
    # The same disk (the same tuples, or equal lists) is the same packed object.
    assert cache.get(rings) is first
    assert cache.get([list(r) for r in rings]) is first
    assert len(packed) == 19 and len(cache) == 1
    # Another disk is packed on its own, from the cells packed already: a neighbour's
    # one-ring disk lies inside this two-ring one, so no cell is packed again.
    others = [cells.disk_by_ring(c, 1) for c in cells.ring(home, 1)[:3]]
    for other in others[:2]:
        assert cache.get(other) == pack(other)
        assert cache.get(other).origin == cells.center(other[0][0])
    assert len(packed) == 19
    assert len(cache) == 3
    # Past the limit the cache starts again.
    cache.get(others[2])
    assert len(cache) == 1
    again = cache.get(rings)
    assert again == first and again is not first  # packed anew after the reset
