"""H3 cells. The only module that imports h3; everywhere else a cell is a ``str``."""

from __future__ import annotations

import functools
import math

import h3

from geo.point import LatLng


def cell_of(point: LatLng, resolution: int) -> str:
    return str(h3.latlng_to_cell(point.lat, point.lng, resolution))


def ring(cell: str, k: int) -> list[str]:
    """The cells exactly ``k`` steps from ``cell`` (the cell itself for k = 0)."""
    return [str(c) for c in h3.grid_ring(cell, k)]


@functools.lru_cache(maxsize=20_000)
def disk_by_ring(cell: str, k_max: int) -> tuple[tuple[str, ...], ...]:
    """Rings 0..k_max around ``cell``: ring k lists the cells at grid distance k.
    Cached and immutable: the same disk is the same object for every search from it."""
    return tuple(tuple(ring(cell, k)) for k in range(k_max + 1))


def parent(cell: str, resolution: int) -> str:
    return str(h3.cell_to_parent(cell, resolution))


def center(cell: str) -> LatLng:
    lat, lng = h3.cell_to_latlng(cell)
    return LatLng(float(lat), float(lng))


def boundary(cell: str) -> list[tuple[float, float]]:
    return [(float(lat), float(lng)) for lat, lng in h3.cell_to_boundary(cell)]


def edge_length_m(resolution: int) -> float:
    return float(h3.average_hexagon_edge_length(resolution, unit="m"))


def rings_to_cover(radius_m: float, resolution: int) -> int:
    """Grid distance k such that a disk of k rings around the cell holding a point covers
    every point within ``radius_m`` of it, in every direction.

    A k-ring disk reaches only ``1.5 × edge × k`` across its flat sides (not the
    ``√3 × edge × k`` between centres), and the point itself may lie up to one edge from
    its cell's centre; H3 cells also vary a little in size, hence the 10% margin."""
    edge_m = edge_length_m(resolution)
    return max(1, math.ceil((radius_m * 1.1 + edge_m) / (1.5 * edge_m)))
