"""OpenStreetMap to road graph: which ways a car may use, in which directions, at what
free-flow speed, and the build itself.

Map data © OpenStreetMap contributors, ODbL 1.0 (the Midtown Manhattan extract,
``default_osm_path()``). The speeds below are assumptions (``docs/eta.md``), not
measurements. Needs ``osmium`` (pyosmium) and ``scipy``, imported only when a graph is
built.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.data import DataFile, data_path
from geo.roads.graph import (
    MAX_SNAP_M,
    SNAP_GRID_M,
    RoadGraph,
    _local_xy,
)

OSM_CREDIT = "© OpenStreetMap contributors"


def default_osm_path() -> Path:
    """The Midtown extract in the data folder (``COOP_DATA_DIR``; core/data.py), or a
    one-line :class:`core.data.MissingDataError` naming it."""
    return data_path(DataFile.ROADS)


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


def build_graph(osm_path: Path | None = None) -> RoadGraph:
    """Parse the extract into a :class:`RoadGraph` (no cache; see :func:`load_graph`)."""
    osm_path = osm_path or default_osm_path()
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
