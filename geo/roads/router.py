"""Point-to-point routes over the road graph: snap both ends, read the all-pairs table,
scale by the hour's congestion. What ``geo.eta.road`` asks on the dispatcher's hot
path."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from geo.point import EARTH_RADIUS_M, LatLng
from geo.roads.graph import ACCESS_MPS, EDGE_MARGIN_M, MAX_SNAP_M, SNAP_GRID_M, Floats, RoadGraph
from geo.roads.osm import default_osm_path
from geo.roads.store import TABLE_SCALE, load_graph, load_time_table

# Travel-time multiplier by hour of day (local time), Monday-Friday and Saturday-Sunday:
# 1.0 is free flow. Midtown is as slow at midday as at the peaks; NYC DOT reports
# Midtown averages of roughly 5-9 mph (8-14 km/h) in the working day, which these
# factors give on avenues and cross streets alike.
# fmt: off
WEEKDAY_CONGESTION: tuple[float, ...] = (
    1.05, 1.0, 1.0, 1.0, 1.0, 1.05, 1.25, 1.6,     # 00-07
    1.9, 1.9, 1.85, 1.85, 1.9, 1.9, 1.95, 2.0,     # 08-15
    2.05, 2.1, 2.05, 1.8, 1.55, 1.4, 1.3, 1.15,    # 16-23
)
WEEKEND_CONGESTION: tuple[float, ...] = (
    1.15, 1.1, 1.05, 1.0, 1.0, 1.0, 1.05, 1.1,     # 00-07
    1.2, 1.35, 1.5, 1.65, 1.7, 1.75, 1.75, 1.75,   # 08-15
    1.75, 1.7, 1.65, 1.6, 1.5, 1.4, 1.3, 1.2,      # 16-23
)
# fmt: on
HOURS_PER_WEEK = 168


def congestion_factor(hour_of_week: int) -> float:
    """Hour of week counts from Monday 00:00 local time (0..167)."""
    day, hour = divmod(hour_of_week % HOURS_PER_WEEK, 24)
    return (WEEKEND_CONGESTION if day >= 5 else WEEKDAY_CONGESTION)[hour]


MIN_CONGESTION = min(min(WEEKDAY_CONGESTION), min(WEEKEND_CONGESTION))


@dataclass(frozen=True, slots=True)
class RoadLeg:
    """A free-flow route between two points: multiply ``free_flow_s`` by the hour's
    congestion factor for the time."""

    distance_m: float
    free_flow_s: float


class RoadRouter:
    """Point-to-point free-flow routes: snap both ends, read the all-pairs table."""

    # Origins whose shortest-path tree is kept for ``leg`` (distances): quotes repeat
    # pickups (the same rider asking twice, hotels, stations).
    TREES_KEPT = 64

    def __init__(self, graph: RoadGraph, table: npt.NDArray[np.uint16]) -> None:
        self.graph = graph
        self.table = table
        self._table = np.asarray(table)  # a plain view: faster scalar reads than memmap
        self.max_speed_mps = graph.max_speed_mps
        south, west, north, east = graph.bounds
        k = math.pi / 180.0 * EARTH_RADIUS_M
        self.diameter_m = math.hypot(
            (east - west) * k * math.cos(math.radians(south)), (north - south) * k
        )
        self._matrix = graph.time_matrix()
        # Plain Python copies for the scalar snap (numpy scalar reads cost ~100 ns each).
        self._south, self._west = south, west
        self._k, self._kx = k, k * math.cos(math.radians((south + north) / 2.0))
        self._y_min, self._x_min = EDGE_MARGIN_M, EDGE_MARGIN_M
        self._y_max = (north - south) * self._k - EDGE_MARGIN_M
        self._x_max = (east - west) * self._kx - EDGE_MARGIN_M
        self._rows, self._cols = (int(n) for n in graph.snap_grid.shape)
        self._grid: list[int] = graph.snap_grid.ravel().tolist()
        self._lat: list[float] = graph.lat.tolist()
        self._lng: list[float] = graph.lng.tolist()
        self._trees: OrderedDict[int, tuple[Floats, npt.NDArray[np.int32]]] = OrderedDict()
        self._edge_length = {
            (int(a), int(b)): float(m)
            for a, b, m in zip(graph.edge_from, graph.edge_to, graph.edge_length_m, strict=True)
        }

    @classmethod
    def load(cls, osm_path: Path | None = None, *, cache_dir: Path | None = None) -> RoadRouter:
        osm_path = osm_path or default_osm_path()
        graph = load_graph(osm_path, cache_dir=cache_dir)
        return cls(graph, load_time_table(graph, osm_path, cache_dir=cache_dir))

    def snap(self, point: LatLng) -> tuple[int, float] | None:
        """:meth:`RoadGraph.snap_many` for one point, with plain Python numbers: this is
        on the dispatcher's hot path (two per ETA)."""
        y = (point.lat - self._south) * self._k
        x = (point.lng - self._west) * self._kx
        if not (self._y_min <= y <= self._y_max and self._x_min <= x <= self._x_max):
            return None
        node = self._grid[
            min(int(y // SNAP_GRID_M), self._rows - 1) * self._cols
            + min(int(x // SNAP_GRID_M), self._cols - 1)
        ]
        if node < 0:
            return None
        offset_m = math.hypot(
            (point.lng - self._lng[node]) * self._kx, (point.lat - self._lat[node]) * self._k
        )
        return (node, offset_m) if offset_m <= MAX_SNAP_M else None

    def covers(self, point: LatLng) -> bool:
        return self.snap(point) is not None

    def free_flow_s(self, origin: LatLng, destination: LatLng) -> float | None:
        """Seconds at free flow, access to and from the snapped nodes included; None
        when either end is not covered."""
        a = self.snap(origin)
        if a is None:
            return None
        b = self.snap(destination)
        if b is None:
            return None
        return self._table.item(a[0], b[0]) / TABLE_SCALE + (a[1] + b[1]) / ACCESS_MPS

    def leg(self, origin: LatLng, destination: LatLng) -> RoadLeg | None:
        a = self.snap(origin)
        b = self.snap(destination)
        if a is None or b is None:
            return None
        seconds = self._table.item(a[0], b[0]) / TABLE_SCALE + (a[1] + b[1]) / ACCESS_MPS
        return RoadLeg(self.route_m(a[0], b[0]) + a[1] + b[1], seconds)

    def route_m(self, a: int, b: int) -> float:
        """Metres along the fastest route from node ``a`` to node ``b``."""
        pred = self._tree(a)[1]
        metres, node = 0.0, b
        while node != a:
            up = int(pred[node])
            metres += self._edge_length[(up, node)]
            node = up
        return metres

    def _tree(self, a: int) -> tuple[Floats, npt.NDArray[np.int32]]:
        tree = self._trees.get(a)
        if tree is not None:
            self._trees.move_to_end(a)
            return tree
        from scipy.sparse.csgraph import dijkstra

        times, pred = dijkstra(self._matrix, indices=a, return_predecessors=True)
        tree = (np.asarray(times, dtype=np.float64), pred)
        self._trees[a] = tree
        if len(self._trees) > self.TREES_KEPT:
            self._trees.popitem(last=False)
        return tree
