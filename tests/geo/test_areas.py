"""geo.areas.parse_polygon, geo.point.LatLng.checked and geo.cells.rings_to_cover."""

from __future__ import annotations

import math
from typing import Any

import pytest
from shapely.geometry import Polygon

from core.errors import InvalidCoordinates, InvalidPolygon
from geo import cells
from geo.areas import MAX_VERTICES, parse_polygon
from geo.point import LatLng
from tests.fixtures.geometry import destination

# Midtown Manhattan, GeoJSON order [lng, lat].
MIDTOWN_RING = [
    [-74.00, 40.74],
    [-73.97, 40.74],
    [-73.97, 40.77],
    [-74.00, 40.77],
    [-74.00, 40.74],
]


def polygon(*rings: list[Any]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def circle(
    n_distinct: int, *, lng: float = -73.985, lat: float = 40.755, r: float = 0.01
) -> list[list[float]]:
    ring = [
        [
            lng + r * math.cos(2 * math.pi * i / n_distinct),
            lat + r * math.sin(2 * math.pi * i / n_distinct),
        ]
        for i in range(n_distinct)
    ]
    return [*ring, ring[0]]


# -- parse_polygon: accepted -----------------------------------------------------------


def test_valid_polygon_is_accepted() -> None:
    p = parse_polygon(polygon(MIDTOWN_RING))
    assert isinstance(p, Polygon)
    assert p.is_valid
    assert p.bounds == (-74.00, 40.74, -73.97, 40.77)
    assert p.area == pytest.approx(0.03 * 0.03)


def test_polygon_with_a_hole_and_altitudes_is_accepted() -> None:
    hole = [[-73.99, 40.75], [-73.98, 40.75], [-73.98, 40.76], [-73.99, 40.76], [-73.99, 40.75]]
    with_altitude = [[*pos, 10.0] for pos in MIDTOWN_RING]
    p = parse_polygon(polygon(with_altitude, hole))
    assert len(p.interiors) == 1
    assert p.area == pytest.approx(0.03 * 0.03 - 0.01 * 0.01)


def test_tuples_and_ints_are_accepted() -> None:
    ring = [(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]
    assert parse_polygon(polygon(ring)).area == pytest.approx(1.0)


def test_exactly_max_vertices_is_accepted() -> None:
    ring = circle(MAX_VERTICES - 1)
    assert len(ring) == MAX_VERTICES
    assert parse_polygon(polygon(ring)).is_valid


# -- parse_polygon: refused ------------------------------------------------------------


def refused(geojson: Any) -> InvalidPolygon:
    with pytest.raises(InvalidPolygon) as info:
        parse_polygon(geojson)
    assert info.value.slug == "invalid-polygon"
    return info.value


def test_bow_tie_is_refused() -> None:
    # Self-intersecting, with non-zero signed area so only the validity check can catch it.
    bow_tie = [[0, 0], [2, 2], [2, 0], [0, 3], [0, 0]]
    error = refused(polygon(bow_tie))
    assert "Self-intersection" in str(error)
    # The symmetric one (zero area) is refused too.
    refused(polygon([[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]))


def test_hole_outside_the_shell_is_refused() -> None:
    outside = [[-73.90, 40.80], [-73.89, 40.80], [-73.89, 40.81], [-73.90, 40.81], [-73.90, 40.80]]
    refused(polygon(MIDTOWN_RING, outside))


def test_unclosed_ring_is_refused() -> None:
    error = refused(polygon([*MIDTOWN_RING[:-1], [-74.0, 40.741]]))
    assert "closed" in str(error)


@pytest.mark.parametrize(
    "ring",
    [[], [[0, 0]], [[0, 0], [0, 0]], [[0, 0], [1, 0], [0, 0]]],
)
def test_too_few_positions_are_refused(ring: list[list[int]]) -> None:
    assert "at least 4" in str(refused(polygon(ring)))


def test_degenerate_ring_without_area_is_refused() -> None:
    refused(polygon([[0, 0], [1, 1], [2, 2], [0, 0]]))
    refused(polygon([[5, 5], [5, 5], [5, 5], [5, 5]]))


@pytest.mark.parametrize(
    "bad", [[-181, 40.75], [181, 40.75], [-73.98, 90.5], [-73.98, -91], [-180.0001, 0]]
)
def test_out_of_range_coordinates_are_refused(bad: list[float]) -> None:
    ring = [MIDTOWN_RING[0], bad, MIDTOWN_RING[2], MIDTOWN_RING[3], MIDTOWN_RING[0]]
    assert "range" in str(refused(polygon(ring)))


def test_swapped_lat_lng_is_refused_when_out_of_range() -> None:
    # [lat, lng] by mistake: -73.98 as a latitude is fine, but 140 is not a latitude.
    ring = [[40.74, 140.0], [40.77, 140.0], [40.77, 140.1], [40.74, 140.1], [40.74, 140.0]]
    assert "range" in str(refused(polygon(ring)))


@pytest.mark.parametrize(
    "position",
    [
        ["-73.98", 40.75],
        [-73.98, "40.75"],
        [None, 40.75],
        [True, 40.75],
        [-73.98, False],
        [-73.98],
        [],
        "-73.98,40.75",
        None,
        {"lng": -73.98, "lat": 40.75},
        [[-73.98, 40.75]],
    ],
)
def test_non_numeric_positions_are_refused(position: Any) -> None:
    ring = [MIDTOWN_RING[0], position, MIDTOWN_RING[2], MIDTOWN_RING[3], MIDTOWN_RING[0]]
    refused(polygon(ring))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_coordinates_are_refused(value: float) -> None:
    for position in ([value, 40.75], [-73.98, value]):
        ring = [MIDTOWN_RING[0], position, MIDTOWN_RING[2], MIDTOWN_RING[3], MIDTOWN_RING[0]]
        refused(polygon(ring))


def test_huge_integer_coordinate_is_refused_not_crashed() -> None:
    """JSON bodies are parsed with the standard json module, which turns a long run of
    digits into an int of any size; such a coordinate must be an InvalidPolygon (422),
    not an OverflowError (500)."""
    huge = 10**400
    ring = [MIDTOWN_RING[0], [huge, 40.75], MIDTOWN_RING[2], MIDTOWN_RING[3], MIDTOWN_RING[0]]
    refused(polygon(ring))


@pytest.mark.parametrize(
    "geojson",
    [
        None,
        "Polygon",
        [MIDTOWN_RING],
        {},
        {"type": "MultiPolygon", "coordinates": [[MIDTOWN_RING]]},
        {"type": "polygon", "coordinates": [MIDTOWN_RING]},
        {"type": "Polygon"},
        {"type": "Polygon", "coordinates": []},
        {"type": "Polygon", "coordinates": "[[...]]"},
        {"type": "Polygon", "coordinates": MIDTOWN_RING[0]},
        {"type": "Polygon", "coordinates": [None]},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [MIDTOWN_RING]}},
    ],
)
def test_wrong_types_are_refused(geojson: Any) -> None:
    refused(geojson)


def test_more_than_max_vertices_is_refused() -> None:
    ring = circle(MAX_VERTICES)
    assert len(ring) == MAX_VERTICES + 1
    assert "vertices" in str(refused(polygon(ring)))


def test_vertex_limit_counts_every_ring() -> None:
    shell = circle(MAX_VERTICES // 2, r=0.02)
    hole = circle(MAX_VERTICES // 2, r=0.005)
    assert len(shell) + len(hole) > MAX_VERTICES
    assert "vertices" in str(refused(polygon(shell, hole)))


# -- LatLng.checked --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lng"),
    [(40.75, -73.99), (0, 0), (90, 180), (-90, -180), (90.0, -180.0), (1, 2.5)],
)
def test_checked_accepts_valid_points(lat: float, lng: float) -> None:
    p = LatLng.checked(lat, lng)
    assert p == LatLng(float(lat), float(lng))
    assert type(p.lat) is float and type(p.lng) is float


@pytest.mark.parametrize(
    ("lat", "lng"),
    [
        (90.0001, 0),
        (-90.0001, 0),
        (0, 180.0001),
        (0, -180.0001),
        (-73.99, 40.75 + 200),
        (1e308, 0),
        (math.nan, 0),
        (0, math.nan),
        (math.inf, 0),
        (0, -math.inf),
        (True, 0),
        (0, False),
        ("40.75", -73.99),
        (40.75, "-73.99"),
        (None, -73.99),
        (40.75, None),
        ([40.75], -73.99),
        (complex(1, 0), 0),
    ],
)
def test_checked_rejects_bad_input(lat: object, lng: object) -> None:
    with pytest.raises(InvalidCoordinates):
        LatLng.checked(lat, lng)


def test_checked_rejects_a_huge_integer() -> None:
    """ "A point from untrusted input": an int too large for a float is out of range,
    and must say so with InvalidCoordinates rather than escape as OverflowError."""
    with pytest.raises(InvalidCoordinates):
        LatLng.checked(10**400, 0)


# -- rings_to_cover --------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [7, 8, 9])
def test_rings_to_cover_grows_with_radius(resolution: int) -> None:
    radii = [0, 10, 100, 500, 1_000, 2_000, 4_000, 8_000, 16_000]
    ks = [cells.rings_to_cover(r, resolution) for r in radii]
    assert all(k >= 1 for k in ks)
    assert ks == sorted(ks)
    assert ks[-1] > ks[0]
    # Doubling a radius well beyond one cell spacing needs more rings.
    for small, large in [(2_000, 4_000), (4_000, 8_000), (8_000, 16_000)]:
        assert cells.rings_to_cover(large, resolution) > cells.rings_to_cover(small, resolution)


def test_rings_to_cover_needs_more_rings_for_finer_cells() -> None:
    assert (
        cells.rings_to_cover(4_000, 9)
        > cells.rings_to_cover(4_000, 8)
        > cells.rings_to_cover(4_000, 7)
    )


@pytest.mark.parametrize("radius_m", [1_000, 2_000, 2_700, 4_000, 4_400, 6_000])
def test_rings_to_cover_covers_the_radius_in_every_direction(radius_m: int) -> None:
    """The docstring's promise: k rings around the centre cell cover at least
    ``radius_m`` from it in every direction (checked from the cell's centre, every 2°)."""
    resolution = 8
    centre_cell = cells.cell_of(LatLng(40.7549, -73.9840), resolution)
    centre = cells.center(centre_cell)
    k = cells.rings_to_cover(radius_m, resolution)
    disk = {c for ring in cells.disk_by_ring(centre_cell, k) for c in ring}
    uncovered = [
        bearing
        for bearing in range(0, 360, 2)
        if cells.cell_of(destination(centre, radius_m, bearing), resolution) not in disk
    ]
    assert not uncovered, f"k={k} rings leave {radius_m} m uncovered at bearings {uncovered[:6]}"
