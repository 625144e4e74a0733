"""H3 cells. The only module that imports h3; everywhere else a cell is a ``str``."""

from __future__ import annotations

import h3

from geo.point import LatLng


def cell_of(point: LatLng, resolution: int) -> str:
    return str(h3.latlng_to_cell(point.lat, point.lng, resolution))


def ring(cell: str, k: int) -> list[str]:
    """The cells exactly ``k`` steps from ``cell`` (the cell itself for k = 0)."""
    return [str(c) for c in h3.grid_ring(cell, k)]


def disk_by_ring(cell: str, k_max: int) -> list[list[str]]:
    """Rings 0..k_max around ``cell``: ring k lists the cells at grid distance k."""
    return [ring(cell, k) for k in range(k_max + 1)]


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
    """Grid distance k such that a disk of k rings covers at least ``radius_m`` from the
    centre cell in every direction. Neighbouring centres are ``√3 × edge`` apart."""
    spacing_m = 3**0.5 * edge_length_m(resolution)
    return max(1, int(radius_m / spacing_m) + 1)
