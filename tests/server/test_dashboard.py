"""The dashboard's pure helpers."""

from __future__ import annotations

from datetime import UTC, datetime

from geo import cells
from geo.point import LatLng
from server.dashboard import LiveDriver, OpenRequest, deciles, supply_cells


def test_deciles_run_from_the_least_to_the_most() -> None:
    assert deciles([]) == []
    assert deciles([5]) == [5] * 11
    values = list(range(101))[::-1]
    assert deciles(values) == list(range(0, 101, 10))
    d = deciles([0, 0, 0, 900])
    assert d[0] == 0 and d[-1] == 900 and d == sorted(d) and len(d) == 11


def test_supply_counts_drivers_and_requests_per_cell() -> None:
    here, there = LatLng(40.7549, -73.9840), LatLng(40.7050, -74.0120)
    at = datetime.now(UTC)
    drivers = [
        LiveDriver("a", here.lat, here.lng, "available", None),
        LiveDriver("b", here.lat, here.lng, "on_trip", (there.lat, there.lng)),
    ]
    requests = [
        OpenRequest("t1", there.lat, there.lng, at),
        OpenRequest("t2", here.lat, here.lng, at),
    ]
    counts = supply_cells(drivers, requests, 8)
    assert counts == {cells.cell_of(here, 8): (2, 1), cells.cell_of(there, 8): (0, 1)}
    assert sum(d for d, _ in counts.values()) == 2 and sum(r for _, r in counts.values()) == 2
    assert list(counts) == sorted(counts)


def test_the_page_allows_images_from_the_tile_server_only_when_one_is_set() -> None:
    from core.settings import Settings
    from server.ops import _headers

    plain = _headers(Settings())["Content-Security-Policy"]
    assert "img-src 'self' data:;" in plain
    tiled = _headers(Settings(ops_tile_url="https://{s}.tiles.example.org/{z}/{x}/{y}.png"))[
        "Content-Security-Policy"
    ]
    assert "img-src 'self' data: https://*.tiles.example.org;" in tiled
    assert "connect-src 'self'" in tiled
    odd = _headers(Settings(ops_tile_url="file:///tiles/{z}/{x}/{y}.png"))
    assert "img-src 'self' data:;" in odd["Content-Security-Policy"]
