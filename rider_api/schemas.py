from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from web.schemas import Point, RequestIn


class RiderSignUp(RequestIn):
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=3, max_length=32, pattern=r"^\+?[0-9 ()\-]{3,32}$")


class Credentials(BaseModel):
    id: str
    token: str


class RiderOut(BaseModel):
    id: str
    name: str
    phone: str


class TripRequest(RequestIn):
    pickup: Point
    dropoff: Point


class TripOrder(TripRequest):
    """``POST /v1/trips``: the points, and optionally the quote they were priced at."""

    quote_id: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="From POST /v1/quotes: price the trip as that quote was (its fare "
        "rule version), if it is yours, for these points, and not expired.",
    )


class TracePoint(BaseModel):
    at: datetime
    kind: str = Field(description="track | arrived | started | completed | cancelled")
    lat: float
    lng: float


class TripTrace(BaseModel):
    trip_id: str
    points: list[TracePoint]
