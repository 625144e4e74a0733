"""Coordinates, validated once at the edge."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import InvalidCoordinates


@dataclass(frozen=True, slots=True)
class LatLng:
    lat: float
    lng: float

    @classmethod
    def checked(cls, lat: object, lng: object) -> LatLng:
        """A point from untrusted input: numbers (not bools), finite, in WGS84 range."""
        lat_f, lng_f = finite_number(lat, "lat"), finite_number(lng, "lng")
        if not -90.0 <= lat_f <= 90.0:
            raise InvalidCoordinates(f"lat {lat_f} is outside [-90, 90]")
        if not -180.0 <= lng_f <= 180.0:
            raise InvalidCoordinates(f"lng {lng_f} is outside [-180, 180]")
        return cls(lat_f, lng_f)


def finite_number(value: object, name: str) -> float:
    """A float from untrusted JSON: a number (not a bool), finite, and not an integer too
    large to be one (``float(10**400)`` overflows)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCoordinates(f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidCoordinates(f"{name} is out of range") from None
    if not math.isfinite(number):
        raise InvalidCoordinates(f"{name} must be finite")
    return number


EARTH_RADIUS_M = 6_371_008.8


def haversine_m(a: LatLng, b: LatLng) -> float:
    """Great-circle distance in metres."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi = phi2 - phi1
    dlmb = math.radians(b.lng - a.lng)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def toward(a: LatLng, b: LatLng, metres: float) -> LatLng:
    """``metres`` along the straight line from ``a`` to ``b`` (``b`` if nearer): how a
    simulated car moves between two position reports."""
    d = haversine_m(a, b)
    if d <= metres or d == 0:
        return b
    f = metres / d
    return LatLng(a.lat + (b.lat - a.lat) * f, a.lng + (b.lng - a.lng) * f)
