"""geo.roads: the Midtown road graph built from the real OSM extract (© OpenStreetMap
contributors). The graph and its all-pairs table are built once (a few seconds) into the
user cache, as the app would, and reused by later runs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import osmium
import pytest

from geo import roads
from geo.point import LatLng, haversine_m

OSM = roads.default_osm_path()
HERALD_SQUARE = LatLng(40.7498, -73.9877)
EMPIRE_STATE = LatLng(40.7484, -73.9857)
GRAND_CENTRAL = LatLng(40.7527, -73.9772)


@pytest.fixture(scope="module")
def router() -> roads.RoadRouter:
    return roads.RoadRouter.load(OSM)


def _ways(name: str) -> Iterator[tuple[int, str | None, list[int]]]:
    """(way id, oneway tag, node ids) of the drivable ways with this name, read from the
    extract itself."""
    for way in osmium.FileProcessor(str(OSM), osmium.osm.WAY):
        if way.tags.get("name") == name and way.tags.get("highway") in roads.FREE_FLOW_KMH:
            yield way.id, way.tags.get("oneway"), [n.ref for n in way.nodes]


def _segments(router: roads.RoadRouter, name: str) -> list[tuple[int, int, str | None]]:
    out = []
    for _, oneway, refs in _ways(name):
        nodes = [router.graph.node_of(r) for r in refs]
        for u, v in itertools.pairwise(nodes):
            if u is not None and v is not None and u != v:
                out.append((u, v, oneway))
    return out


def test_one_way_street_has_edges_only_in_its_direction(router: roads.RoadRouter) -> None:
    # West 44th Street is one-way (westbound) all along Midtown: tagged oneway=yes.
    segments = _segments(router, "West 44th Street")
    assert len(segments) >= 10
    for u, v, oneway in segments:
        assert oneway == "yes"
        assert router.graph.edge_index(u, v) is not None
        assert router.graph.edge_index(v, u) is None


def test_one_way_block_is_quick_one_way_and_a_detour_the_other(
    router: roads.RoadRouter,
) -> None:
    u, v, _ = max(
        _segments(router, "West 44th Street"),
        key=lambda s: float(router.graph.edge_length_m[router.graph.edge_index(s[0], s[1])]),
    )
    with_traffic = router.table[u, v] / roads.TABLE_SCALE
    against = router.table[v, u] / roads.TABLE_SCALE
    assert against > 1.5 * with_traffic  # round the block


def test_two_way_street_has_both_directions(router: roads.RoadRouter) -> None:
    two_way = [s for s in _segments(router, "West 34th Street") if s[2] in (None, "no")]
    assert len(two_way) >= 10
    for u, v, _ in two_way:
        assert router.graph.edge_index(u, v) is not None
        assert router.graph.edge_index(v, u) is not None


def test_route_is_never_faster_than_straight_line_at_top_speed(
    router: roads.RoadRouter,
) -> None:
    graph = router.graph
    rng = np.random.default_rng(7)
    a = rng.integers(0, graph.node_count, 3000)
    b = rng.integers(0, graph.node_count, 3000)
    route_s = np.asarray(router.table)[a, b] / roads.TABLE_SCALE
    for i, j, seconds in zip(a.tolist(), b.tolist(), route_s.tolist(), strict=True):
        straight = haversine_m(
            LatLng(graph.lat[i], graph.lng[i]), LatLng(graph.lat[j], graph.lng[j])
        )
        assert seconds >= straight / graph.max_speed_mps * 0.995


def test_points_route_with_access_and_congestion(router: roads.RoadRouter) -> None:
    free_flow = router.free_flow_s(EMPIRE_STATE, GRAND_CENTRAL)
    assert free_flow is not None
    leg = router.leg(EMPIRE_STATE, GRAND_CENTRAL)
    assert leg is not None and leg.free_flow_s == free_flow
    straight = haversine_m(EMPIRE_STATE, GRAND_CENTRAL)
    assert straight * 1.0 <= leg.distance_m <= straight * 2.0
    # 1 km across Midtown: a few minutes at night, longer at the evening peak.
    assert 60 < free_flow < 600
    tuesday_18h, tuesday_3h = 24 + 18, 24 + 3
    assert roads.congestion_factor(tuesday_18h) > 1.5 * roads.congestion_factor(tuesday_3h)


def test_leg_distance_follows_the_fastest_route(router: roads.RoadRouter) -> None:
    graph = router.graph
    sources = [0, graph.node_count // 2]
    times, lengths = graph.shortest_paths(sources)
    for row, a in enumerate(sources):
        for b in (5, graph.node_count // 3, graph.node_count - 1):
            assert router.route_m(a, b) == pytest.approx(lengths[row, b], rel=1e-9)
            assert math.ceil(times[row, b] * roads.TABLE_SCALE - 1e-6) == router.table[a, b]


def test_scalar_snap_matches_vectorised_snap(router: roads.RoadRouter) -> None:
    rng = np.random.default_rng(3)
    lat = rng.uniform(40.735, 40.760, 5000)
    lng = rng.uniform(-74.015, -73.962, 5000)
    nodes, offsets = router.graph.snap_many(lat, lng)
    assert 0.3 < float(np.mean(nodes >= 0)) < 0.95
    for i in range(lat.size):
        snapped = router.snap(LatLng(float(lat[i]), float(lng[i])))
        if nodes[i] < 0:
            assert snapped is None
        else:
            assert snapped is not None
            assert snapped[0] == nodes[i]
            assert snapped[1] == pytest.approx(offsets[i])


@pytest.mark.parametrize(
    "point",
    [
        LatLng(40.7550, -74.0090),  # the Hudson
        LatLng(40.7450, -73.9680),  # the East River
        LatLng(40.7000, -73.8000),  # Queens
        LatLng(40.7800, -73.9650),  # Central Park, north of the extract
        LatLng(40.7580, -73.9855),  # Times Square: 110 m from the extract's north edge
    ],
)
def test_points_off_the_map_are_not_covered(router: roads.RoadRouter, point: LatLng) -> None:
    assert not router.covers(point)
    assert router.free_flow_s(point, HERALD_SQUARE) is None


def test_landmarks_are_covered(router: roads.RoadRouter) -> None:
    for point in (HERALD_SQUARE, EMPIRE_STATE, GRAND_CENTRAL):
        snapped = router.snap(point)
        assert snapped is not None and snapped[1] < 100.0  # a building door, mid-block


def test_graph_is_cached_by_file_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = roads.load_graph(OSM, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*/graph.npz"))) == 1

    def no_build(path: Path) -> roads.RoadGraph:
        raise AssertionError("rebuilt despite the cache")

    monkeypatch.setattr(roads, "build_graph", no_build)
    again = roads.load_graph(OSM, cache_dir=tmp_path)
    assert np.array_equal(first.edge_time_s, again.edge_time_s)
    assert again.bounds == first.bounds


@pytest.mark.parametrize(
    ("tag", "kmh"),
    [("25 mph", 40.2336), ("40", 40.0), ("30 km/h", 30.0), ("none", None), (None, None)],
)
def test_maxspeed_tags(tag: str | None, kmh: float | None) -> None:
    parsed = roads.parse_maxspeed_kmh(tag)
    assert parsed == (None if kmh is None else pytest.approx(kmh))
