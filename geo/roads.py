"""Road-network travel times over the Midtown Manhattan OpenStreetMap extract.

Map data © OpenStreetMap contributors, ODbL 1.0
(``../shared/data/manhattan_midtown_osm_2025-01-25.osm.pbf``).

The extract becomes a directed graph of drivable ways: one-way streets have one edge per
segment, two-way streets two. Each edge takes ``length / speed`` seconds at free flow,
with a typical Manhattan speed for its highway class, capped by a ``maxspeed`` tag. A
route's time at a given hour is its free-flow time times that hour's congestion factor.
Both tables below are assumptions (see ``docs/eta.md``), not measurements: nothing in this
checkout observes how long a drive took.

Building the graph (~1 s) and the all-pairs table of free-flow times (a few seconds,
~80 MB) happens once per OSM file and recipe; both are cached under
``$XDG_CACHE_HOME/coopride/roads/`` (default ``~/.cache``), keyed by the file's SHA-256
and :data:`BUILD_VERSION`, and the table is memory-mapped, so a lookup is an array read.

Needs ``osmium`` (pyosmium) to build and ``scipy`` to route; neither is imported until
a graph is built or a route is asked for, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from geo.point import EARTH_RADIUS_M, LatLng

OSM_CREDIT = "© OpenStreetMap contributors"
DEFAULT_OSM_PATH = (
    Path(__file__).resolve().parent.parent
    / ".."
    / "shared"
    / "data"
    / "manhattan_midtown_osm_2025-01-25.osm.pbf"
)

# Bump when anything that shapes the graph or its times changes: it is part of the
# cache key, so a stale cache is never read.
BUILD_VERSION = 1

# Free-flow speeds in km/h by OSM highway class: what a car averages on an empty Midtown
# street at night, stops at red lights included (avenues have linked signals, cross
# streets stop more often). The posted limit in Manhattan is 25 mph (40 km/h) except on
# the FDR Drive and the West Side Highway.
FREE_FLOW_KMH: dict[str, float] = {
    "motorway": 64.0,
    "motorway_link": 40.0,
    "trunk": 40.0,
    "trunk_link": 30.0,
    "primary": 30.0,
    "primary_link": 25.0,
    "secondary": 28.0,
    "secondary_link": 25.0,
    "tertiary": 24.0,
    "tertiary_link": 20.0,
    "unclassified": 20.0,
    "residential": 20.0,
    "living_street": 10.0,
    "service": 10.0,
}
# Classes where a rider can stand: points snap only to nodes on these. Nobody is picked
# up on the FDR Drive, a ramp or inside a tunnel.
KERBSIDE_CLASSES = frozenset(
    {
        "trunk",
        "primary",
        "secondary",
        "tertiary",
        "unclassified",
        "residential",
        "living_street",
        "service",
    }
)
# OSM convention: these are one-way unless tagged otherwise.
IMPLIED_ONEWAY = frozenset({"motorway", "motorway_link"})

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
# Free-flow times are stored in tenths of a second as uint16 (max 6,553.5 s).
TABLE_SCALE = 10.0

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def _local_xy(lat: Floats, lng: Floats, lat0: float) -> tuple[Floats, Floats]:
    """Equirectangular metres around ``lat0``: exact enough over a few kilometres."""
    k = math.pi / 180.0 * EARTH_RADIUS_M
    return lng * k * math.cos(math.radians(lat0)), lat * k


def parse_maxspeed_kmh(value: str | None) -> float | None:
    """``"25 mph"`` → 40.2; ``"40"`` (OSM default unit) → 40.0; anything else → None."""
    if not value:
        return None
    text = value.strip().lower()
    factor = 1.0
    if text.endswith("mph"):
        factor, text = 1.609344, text[:-3].strip()
    elif text.endswith("km/h"):
        text = text[:-4].strip()
    try:
        speed = float(text) * factor
    except ValueError:
        return None
    return speed if speed > 0 else None


def _drivable(tags: Any) -> str | None:
    """The highway class if a car may use this way, else None."""
    highway = tags.get("highway")
    if highway not in FREE_FLOW_KMH or tags.get("area") == "yes":
        return None
    if tags.get("oneway") in ("reversible", "alternating"):
        return None  # direction changes by time of day: not safe to route on
    motor = tags.get("motor_vehicle") or tags.get("motorcar")
    if motor in ("no", "private"):
        return None
    if tags.get("access") in ("no", "private") and motor not in (
        "yes",
        "designated",
        "permissive",
        "destination",
        "customers",
    ):
        return None
    if tags.get("service") == "emergency_access":
        return None
    return str(highway)


def _directions(tags: Any, highway: str) -> tuple[bool, bool]:
    """(forward allowed, backward allowed) along the way's node order."""
    oneway = tags.get("oneway")
    if oneway in ("yes", "true", "1"):
        return True, False
    if oneway in ("-1", "reverse"):
        return False, True
    if oneway is None and (highway in IMPLIED_ONEWAY or tags.get("junction") == "roundabout"):
        return True, False
    return True, True


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coopride" / "roads"


def _cache_dir(osm_path: Path, cache_dir: Path | None) -> Path:
    recipe = repr(
        (
            BUILD_VERSION,
            sorted(FREE_FLOW_KMH.items()),
            sorted(KERBSIDE_CLASSES),
            MAX_SNAP_M,
            SNAP_GRID_M,
            ACCESS_MPS,
        )
    )
    key = hashlib.sha256((_sha256(osm_path) + recipe).encode()).hexdigest()[:20]
    return (cache_dir or cache_root()) / key


def build_graph(osm_path: Path = DEFAULT_OSM_PATH) -> RoadGraph:
    """Parse the extract into a :class:`RoadGraph` (no cache; see :func:`load_graph`)."""
    import osmium
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    reader = osmium.io.Reader(str(osm_path), osmium.osm.osm_entity_bits.NOTHING)
    box = reader.header().box()
    reader.close()
    bounds = (
        float(box.bottom_left.lat),
        float(box.bottom_left.lon),
        float(box.top_right.lat),
        float(box.top_right.lon),
    )

    index: dict[int, int] = {}
    osm_ids: list[int] = []
    lats: list[float] = []
    lngs: list[float] = []
    kerbside: list[bool] = []
    frm: list[int] = []
    to: list[int] = []
    speed: list[float] = []
    way: list[int] = []

    processor = (
        osmium.FileProcessor(str(osm_path))
        .with_locations()
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    for obj in processor:
        if not isinstance(obj, osmium.osm.Way):
            continue
        highway = _drivable(obj.tags)
        if highway is None:
            continue
        limit = parse_maxspeed_kmh(obj.tags.get("maxspeed"))
        kmh = min(FREE_FLOW_KMH[highway], limit) if limit else FREE_FLOW_KMH[highway]
        at_kerb = highway in KERBSIDE_CLASSES and obj.tags.get("tunnel") not in ("yes",)
        ids: list[int] = []
        for node in obj.nodes:
            if not node.location.valid():
                ids.append(-1)
                continue
            i = index.get(node.ref)
            if i is None:
                i = index[node.ref] = len(osm_ids)
                osm_ids.append(node.ref)
                lats.append(node.location.lat)
                lngs.append(node.location.lon)
                kerbside.append(False)
            kerbside[i] = kerbside[i] or at_kerb
            ids.append(i)
        forward, backward = _directions(obj.tags, highway)
        for a, b in itertools.pairwise(ids):
            if a < 0 or b < 0 or a == b:
                continue
            if forward:
                frm.append(a)
                to.append(b)
                speed.append(kmh / 3.6)
                way.append(obj.id)
            if backward:
                frm.append(b)
                to.append(a)
                speed.append(kmh / 3.6)
                way.append(obj.id)

    lat = np.asarray(lats, dtype=np.float64)
    lng = np.asarray(lngs, dtype=np.float64)
    u = np.asarray(frm, dtype=np.int64)
    v = np.asarray(to, dtype=np.int64)
    lat0 = (bounds[0] + bounds[2]) / 2.0
    x, y = _local_xy(lat, lng, lat0)
    length = np.hypot(x[u] - x[v], y[u] - y[v])
    time_s = np.maximum(length, 0.1) / np.asarray(speed)

    # Keep the fastest of parallel edges, then the largest strongly connected component.
    n = lat.size
    order = np.lexsort((time_s, v, u))
    u, v, length, time_s = u[order], v[order], length[order], time_s[order]
    ways = np.asarray(way, dtype=np.int64)[order]
    first = np.ones(u.size, dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    u, v, length, time_s, ways = u[first], v[first], length[first], time_s[first], ways[first]
    matrix = csr_matrix((time_s, (u, v)), shape=(n, n))
    _, label = connected_components(matrix, directed=True, connection="strong")
    keep = label == np.bincount(label).argmax()
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[keep] = np.arange(int(keep.sum()))
    inside = keep[u] & keep[v]
    u, v = new_index[u[inside]], new_index[v[inside]]
    length, time_s, ways = length[inside], time_s[inside], ways[inside]
    order = np.lexsort((v, u))

    kerb = np.asarray(kerbside, dtype=bool)[keep]
    lat, lng = lat[keep], lng[keep]
    x, y = _local_xy(lat, lng, lat0)
    south, west, north, east = bounds
    x_west, y_south = _local_xy(np.array([south]), np.array([west]), lat0)
    x_east, y_north = _local_xy(np.array([north]), np.array([east]), lat0)
    cols = math.ceil((x_east[0] - x_west[0]) / SNAP_GRID_M)
    rows = math.ceil((y_north[0] - y_south[0]) / SNAP_GRID_M)
    gx = x_west[0] + (np.arange(cols) + 0.5) * SNAP_GRID_M
    gy = y_south[0] + (np.arange(rows) + 0.5) * SNAP_GRID_M
    kerb_nodes = np.nonzero(kerb)[0]
    tree = cKDTree(np.column_stack([x[kerb_nodes], y[kerb_nodes]]))
    mesh_x, mesh_y = np.meshgrid(gx, gy)
    dist, nearest = tree.query(np.column_stack([mesh_x.ravel(), mesh_y.ravel()]))
    grid = np.where(dist <= MAX_SNAP_M + SNAP_GRID_M, kerb_nodes[nearest], -1)

    return RoadGraph(
        osm_id=np.asarray(osm_ids, dtype=np.int64)[keep],
        lat=lat,
        lng=lng,
        edge_from=u[order],
        edge_to=v[order],
        edge_length_m=length[order],
        edge_time_s=time_s[order],
        edge_way=ways[order],
        bounds=bounds,
        snap_grid=grid.reshape(rows, cols).astype(np.int32),
    )


def _atomic_save(target: Path, write: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_graph(osm_path: Path = DEFAULT_OSM_PATH, *, cache_dir: Path | None = None) -> RoadGraph:
    """The graph for ``osm_path``, built once and then read from the cache."""
    folder = _cache_dir(osm_path, cache_dir)
    path = folder / "graph.npz"
    if not path.exists():
        graph = build_graph(osm_path)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    osm_id=graph.osm_id,
                    lat=graph.lat,
                    lng=graph.lng,
                    edge_from=graph.edge_from,
                    edge_to=graph.edge_to,
                    edge_length_m=graph.edge_length_m,
                    edge_time_s=graph.edge_time_s,
                    edge_way=graph.edge_way,
                    bounds=np.asarray(graph.bounds),
                    snap_grid=graph.snap_grid,
                )

        _atomic_save(path, write)
        return graph
    with np.load(path) as data:
        b = data["bounds"]
        return RoadGraph(
            osm_id=data["osm_id"],
            lat=data["lat"],
            lng=data["lng"],
            edge_from=data["edge_from"],
            edge_to=data["edge_to"],
            edge_length_m=data["edge_length_m"],
            edge_time_s=data["edge_time_s"],
            edge_way=data["edge_way"],
            bounds=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            snap_grid=data["snap_grid"],
        )


def load_time_table(
    graph: RoadGraph, osm_path: Path = DEFAULT_OSM_PATH, *, cache_dir: Path | None = None
) -> npt.NDArray[np.uint16]:
    """Free-flow seconds × TABLE_SCALE from every node to every node (row = from),
    rounded up, memory-mapped read-only from the cache (built on first use)."""
    from scipy.sparse.csgraph import dijkstra

    path = _cache_dir(osm_path, cache_dir) / "free_flow_ds.npy"
    if not path.exists():
        n = graph.node_count
        matrix = graph.time_matrix()

        def write(tmp: str) -> None:
            table = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint16, shape=(n, n))
            for start in range(0, n, 512):
                rows = np.arange(start, min(start + 512, n))
                times = dijkstra(matrix, indices=rows)
                if not np.all(np.isfinite(times)):
                    raise ValueError("road graph is not strongly connected")
                scaled = np.ceil(times * TABLE_SCALE)
                if scaled.max() > np.iinfo(np.uint16).max:
                    raise ValueError("a free-flow route is longer than the table can hold")
                table[start : start + rows.size] = scaled.astype(np.uint16)
            table.flush()
            del table

        _atomic_save(path, write)
    table: npt.NDArray[np.uint16] = np.load(path, mmap_mode="r")
    return table


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
    def load(
        cls, osm_path: Path = DEFAULT_OSM_PATH, *, cache_dir: Path | None = None
    ) -> RoadRouter:
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
