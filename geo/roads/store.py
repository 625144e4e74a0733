"""The road graph and its all-pairs free-flow table, built once per OSM file and recipe
and cached under ``$XDG_CACHE_HOME/coopride/roads/`` (default ``~/.cache``), keyed by
the file's SHA-256 and the recipe (``BUILD_VERSION`` and the constants that shape the
graph), so a stale cache is never read. The table is memory-mapped: a lookup is an
array read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from geo.roads.graph import ACCESS_MPS, MAX_SNAP_M, SNAP_GRID_M, RoadGraph
from geo.roads.osm import FREE_FLOW_KMH, KERBSIDE_CLASSES, build_graph, default_osm_path

# Bump when anything that shapes the graph or its times changes: it is part of the
# cache key, so a stale cache is never read.
BUILD_VERSION = 1
# Free-flow times are stored in tenths of a second as uint16 (max 6,553.5 s).
TABLE_SCALE = 10.0


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


def load_graph(osm_path: Path | None = None, *, cache_dir: Path | None = None) -> RoadGraph:
    """The graph for ``osm_path`` (default: the data folder's extract), built once and
    then read from the cache."""
    osm_path = osm_path or default_osm_path()
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
    graph: RoadGraph, osm_path: Path | None = None, *, cache_dir: Path | None = None
) -> npt.NDArray[np.uint16]:
    """Free-flow seconds × TABLE_SCALE from every node to every node (row = from),
    rounded up, memory-mapped read-only from the cache (built on first use)."""
    osm_path = osm_path or default_osm_path()
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
