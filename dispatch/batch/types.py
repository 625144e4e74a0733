"""The values a dispatch batch is made of. Everything else in ``dispatch.batch`` imports
these; they import nothing of the batch's.

A driver found for a request is a ``Candidate`` from the live index (``dispatch.presence``
builds it, pickup ETA included) to the planner, and becomes an ``Assignment`` when the
planner gives it the trip; ``dispatch.offers`` turns that into the offer. Two changes of
type between the index and an offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geo.point import LatLng

Policy = Literal["greedy", "batched"]
POLICIES: tuple[Policy, ...] = ("greedy", "batched")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A driver who could take a request: its pickup ETA by the dispatcher's model and,
    as the live index holds them, where it is and what fairness reads (idle since, in
    ms on the server's clock, and what it earned this shift)."""

    driver_id: str
    pickup_eta_s: int
    position: LatLng | None = None
    idle_since_ms: int | None = None
    shift_cents: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    """A queued trip and its candidates, nearest (by pickup ETA) first."""

    trip_id: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class DriverStats:
    # Seconds since the driver's last trip ended, or since going online if later.
    idle_s: int
    shift_earnings_cents: int


@dataclass(frozen=True, slots=True)
class Assignment:
    """The planner's decision: this trip is offered to this driver."""

    trip_id: str
    driver_id: str
    pickup_eta_s: int
