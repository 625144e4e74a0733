"""Trip and offer outcomes, counted and logged once, after the commit that made them.

Every trip status change sends its rider a ``trip.updated`` event, and every offer that
ends without an answer sends its driver ``offer.expired`` or ``offer.withdrawn``; those
events leave only after their transaction commits (``Runtime.flush``). Reading the
outcomes off them counts each change exactly once, never for a rolled-back one, and
keeps the metrics out of the state machines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from core import metrics
from core.events import Event

log = logging.getLogger("coopride.trips")

_OFFER_ENDS = {"offer.expired": "expired", "offer.withdrawn": "withdrawn"}


def observe(events: Iterable[Event]) -> None:
    for event in events:
        kind = event.frame.get("type")
        if event.audience == "rider" and kind == "trip.updated":
            trip = event.frame.get("trip") or {}
            status = str(trip.get("status"))
            metrics.TRIPS.labels(status).inc()
            log.info(
                "trip status",
                extra={
                    "trip_id": trip.get("id"),
                    "status": status,
                    "rider_id": trip.get("rider_id"),
                    "driver_id": trip.get("driver_id"),
                },
            )
        elif event.audience == "driver" and kind in _OFFER_ENDS:
            metrics.OFFERS.labels(_OFFER_ENDS[kind]).inc()
            log.info(
                "offer ended",
                extra={"offer_id": event.frame.get("offer_id"), "outcome": _OFFER_ENDS[kind]},
            )
