"""The drivable road network as arrays: a directed graph of kerbside-snappable nodes and
timed edges, with the rules for snapping a point to it. Built from OpenStreetMap by
``geo.roads.osm`` and cached by ``geo.roads.store``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from geo.point import EARTH_RADIUS_M

# Between a point and the node it snaps to: a short walk of the car along the kerb,
# at a slow street speed.
ACCESS_MPS = 20.0 / 3.6
# A point further than this from any kerbside node is not on this map (river, park,
# or just outside the extract): the road model does not cover it.
MAX_SNAP_M = 120.0
# Points closer than this to the extract's edge are not covered either: roads there
# are cut off, so routes near the edge would be wrong.
EDGE_MARGIN_M = 150.0
# The snap grid's cell size: a point snaps to the node nearest its grid cell's centre,
# at most half a diagonal (3.5 m) from the exact nearest node.
SNAP_GRID_M = 5.0

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def _local_xy(lat: Floats, lng: Floats, lat0: float) -> tuple[Floats, Floats]:
    """Equirectangular metres around ``lat0``: exact enough over a few kilometres."""
    k = math.pi / 180.0 * EARTH_RADIUS_M
    return lng * k * math.cos(math.radians(lat0)), lat * k


@dataclass(frozen=True, slots=True)
class RoadGraph:
    """The largest strongly connected part of the drivable network: from every node you
    can drive to every other. Node ``i`` is OSM node ``osm_id[i]``; edges are parallel
    arrays, sorted by (``edge_from``, ``edge_to``), with no duplicates."""

    osm_id: Ints
    lat: Floats
    lng: Floats
    edge_from: Ints
    edge_to: Ints
    edge_length_m: Floats
    edge_time_s: Floats
    edge_way: Ints
    # (south, west, north, east) of the extract.
    bounds: tuple[float, float, float, float]
    # Node index nearest each SNAP_GRID_M cell's centre (-1: no kerbside node near).
    snap_grid: npt.NDArray[np.int32]

    @property
    def node_count(self) -> int:
        return int(self.osm_id.size)

    @property
    def max_speed_mps(self) -> float:
        """The fastest any edge (or the access walk) is driven at free flow."""
        return max(float(np.max(self.edge_length_m / self.edge_time_s)), ACCESS_MPS)

    def time_matrix(self) -> Any:
        """Free-flow seconds as a scipy CSR matrix (row = from, column = to)."""
        from scipy.sparse import csr_matrix

        n = self.node_count
        return csr_matrix((self.edge_time_s, (self.edge_from, self.edge_to)), shape=(n, n))

    def node_of(self, osm_node_id: int) -> int | None:
        """The node index of an OSM node id, if it is in the graph."""
        hits = np.nonzero(self.osm_id == osm_node_id)[0]
        return int(hits[0]) if hits.size else None

    def edge_index(self, u: int, v: int) -> int | None:
        """The edge u → v (node indices), if there is one."""
        lo = int(np.searchsorted(self.edge_from, u, side="left"))
        hi = int(np.searchsorted(self.edge_from, u, side="right"))
        hits = np.nonzero(self.edge_to[lo:hi] == v)[0]
        return lo + int(hits[0]) if hits.size else None

    def snap_many(self, lat: Floats, lng: Floats) -> tuple[Ints, Floats]:
        """For each point, the kerbside node nearest it and the metres to it; node -1
        where the graph does not cover the point (within EDGE_MARGIN_M of the
        extract's edge, or further than MAX_SNAP_M from any kerbside node)."""
        south, west, north, east = self.bounds
        rows, cols = self.snap_grid.shape
        k = math.pi / 180.0 * EARTH_RADIUS_M
        kx = k * math.cos(math.radians((south + north) / 2.0))
        y = (np.asarray(lat, dtype=np.float64) - south) * k
        x = (np.asarray(lng, dtype=np.float64) - west) * kx
        inner = (
            (y >= EDGE_MARGIN_M)
            & (y <= (north - south) * k - EDGE_MARGIN_M)
            & (x >= EDGE_MARGIN_M)
            & (x <= (east - west) * kx - EDGE_MARGIN_M)
        )
        row = np.clip(np.where(inner, y, 0.0) // SNAP_GRID_M, 0, rows - 1).astype(np.int64)
        col = np.clip(np.where(inner, x, 0.0) // SNAP_GRID_M, 0, cols - 1).astype(np.int64)
        node = np.where(inner, self.snap_grid[row, col], -1).astype(np.int64)
        safe = np.maximum(node, 0)
        offset = np.hypot(
            (np.asarray(lng) - self.lng[safe]) * kx, (np.asarray(lat) - self.lat[safe]) * k
        )
        node = np.where((node >= 0) & (offset <= MAX_SNAP_M), node, -1)
        return node, np.where(node >= 0, offset, np.inf)

    def shortest_paths(self, sources: Iterable[int]) -> tuple[Floats, Floats]:
        """Free-flow fastest routes from each source to every node: (seconds, metres),
        each ``len(sources) × node_count``. Metres are along the fastest route."""
        from scipy.sparse.csgraph import dijkstra

        src = np.asarray(list(sources), dtype=np.int64)
        times, pred = dijkstra(self.time_matrix(), indices=src, return_predecessors=True)
        return np.asarray(times, dtype=np.float64), self._lengths_along(pred)

    def _lengths_along(self, pred: npt.NDArray[np.int32]) -> Floats:
        """Metres from each row's source along its shortest-path tree, by pointer
        jumping: each pass doubles how far up the tree every node has summed."""
        n = self.node_count
        parent = pred.astype(np.int64)
        has_parent = parent >= 0
        keys = self.edge_from * n + self.edge_to
        child = np.broadcast_to(np.arange(n, dtype=np.int64), parent.shape)
        wanted = np.where(has_parent, parent * n + child, 0)
        idx = np.clip(np.searchsorted(keys, wanted), 0, keys.size - 1)
        acc = np.where(has_parent, self.edge_length_m[idx], 0.0)
        up = np.where(has_parent, parent, -1)
        rows = np.arange(parent.shape[0])[:, None]
        while np.any(up >= 0):
            safe = np.where(up >= 0, up, 0)
            acc = acc + np.where(up >= 0, acc[rows, safe], 0.0)
            up = np.where(up >= 0, up[rows, safe], -1)
        return np.asarray(acc, dtype=np.float64)
