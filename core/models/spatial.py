"""PostGIS points as plain numbers. With the tables' own column types, the only place
that knows how GeoAlchemy2 writes and reads a ``geography(Point)``: services pass
latitudes and longitudes, and never import GeoAlchemy2 (an import contract says so).
Polygons are ``geo.areas``'s, the service-area repository."""

from __future__ import annotations

from typing import Any

from geoalchemy2 import Geometry, WKTElement
from geoalchemy2.shape import to_shape
from sqlalchemy import ColumnElement, cast, func

SRID = 4326


def point_value(lat: float, lng: float) -> WKTElement:
    """The value to store in a ``geography(Point)`` column (``repr`` keeps every digit)."""
    return WKTElement(f"POINT({lng!r} {lat!r})", srid=SRID)


def lat_lng(value: Any) -> tuple[float, float]:
    """A stored point (as a row holds it) as ``(lat, lng)``."""
    p = to_shape(value)
    return float(p.y), float(p.x)


def lat_lng_columns(column: Any) -> tuple[ColumnElement[float], ColumnElement[float]]:
    """SQL expressions for a point column's latitude and longitude, to select them as
    numbers without loading the geography."""
    geometry = cast(column, Geometry)
    return func.ST_Y(geometry), func.ST_X(geometry)
