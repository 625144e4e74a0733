"""Road-network travel times over the Midtown Manhattan OpenStreetMap extract.

Map data © OpenStreetMap contributors, ODbL 1.0.

The extract becomes a directed graph of drivable ways (``osm``: one-way streets have one
edge per segment, two-way streets two), each edge taking ``length / speed`` seconds at
free flow for its highway class, capped by a ``maxspeed`` tag. The graph (``graph``) and
its all-pairs table of free-flow times are built once per file and cached (``store``);
a route's time at a given hour is its free-flow time times that hour's congestion
factor (``router``). The speeds and congestion factors are assumptions (see
``docs/eta.md``), not measurements.

``osmium`` (pyosmium) builds the graph and ``scipy`` routes; neither is imported until a
graph is built or a route is asked for, so importing this package stays cheap.
"""

from geo.roads.graph import ACCESS_MPS, EDGE_MARGIN_M, MAX_SNAP_M, SNAP_GRID_M, RoadGraph
from geo.roads.osm import (
    FREE_FLOW_KMH,
    KERBSIDE_CLASSES,
    OSM_CREDIT,
    build_graph,
    default_osm_path,
    parse_maxspeed_kmh,
)
from geo.roads.router import MIN_CONGESTION, RoadLeg, RoadRouter, congestion_factor
from geo.roads.store import BUILD_VERSION, TABLE_SCALE, cache_root, load_graph, load_time_table

__all__ = [
    "ACCESS_MPS",
    "BUILD_VERSION",
    "EDGE_MARGIN_M",
    "FREE_FLOW_KMH",
    "KERBSIDE_CLASSES",
    "MAX_SNAP_M",
    "MIN_CONGESTION",
    "OSM_CREDIT",
    "SNAP_GRID_M",
    "TABLE_SCALE",
    "RoadGraph",
    "RoadLeg",
    "RoadRouter",
    "build_graph",
    "cache_root",
    "congestion_factor",
    "default_osm_path",
    "load_graph",
    "load_time_table",
    "parse_maxspeed_kmh",
]
