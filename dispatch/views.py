"""Domain rows to the JSON the contract promises (the same dicts go into socket frames)."""

from __future__ import annotations

from typing import Any

from core.clock import iso
from core.models import Trip
from core.models.spatial import lat_lng
from fares.pricing import Fare
from geo.point import LatLng


def latlng_of(geography: Any) -> LatLng:
    return LatLng(*lat_lng(geography))


def point_of(geography: Any) -> dict[str, float]:
    lat, lng = lat_lng(geography)
    return {"lat": lat, "lng": lng}


def fare_view(fare: Fare) -> dict[str, Any]:
    """The contract's ``Fare``. ``breakdown`` holds the parts and nothing else, so a UI
    that sums it gets ``total_cents``; the minimum-fare top-up, already inside
    ``base_cents``, is said beside it, where nobody adds it twice."""
    return {
        "total_cents": fare.total_cents,
        "currency": fare.currency,
        "minimum_topup_cents": fare.minimum_topup_cents,
        "breakdown": {
            "base_cents": fare.base_cents,
            "distance_cents": fare.distance_cents,
            "time_cents": fare.time_cents,
            "cost_recovery_cents": fare.cost_recovery_cents,
            "platform_commission_cents": fare.platform_commission_cents,
        },
    }


def fare_of(trip: Trip) -> Fare:
    return Fare(
        total_cents=trip.fare_total_cents,
        currency=trip.currency,
        base_cents=trip.base_cents,
        distance_cents=trip.distance_cents,
        time_cents=trip.time_cents,
        cost_recovery_cents=trip.cost_recovery_cents,
        platform_commission_cents=trip.platform_commission_cents,
        minimum_topup_cents=trip.minimum_topup_cents,
    )


def trip_view(trip: Trip) -> dict[str, Any]:
    return {
        "id": trip.id,
        "status": trip.status,
        "rider_id": trip.rider_id,
        "driver_id": trip.driver_id,
        "pickup": point_of(trip.pickup),
        "dropoff": point_of(trip.dropoff),
        "requested_at": iso(trip.requested_at),
        "assigned_at": iso(trip.assigned_at),
        "arrived_at": iso(trip.arrived_at),
        "started_at": iso(trip.started_at),
        "completed_at": iso(trip.completed_at),
        "cancelled_at": iso(trip.cancelled_at),
        "expired_at": iso(trip.expired_at),
        "cancelled_by": trip.cancelled_by,
        "cancellation_fee_cents": trip.cancellation_fee_cents,
        "fare": fare_view(fare_of(trip)),
        "fare_rule_version": trip.fare_rule_version,
        "pickup_eta_s": trip.pickup_eta_s,
        "distance_m": trip.distance_m,
        "duration_s": trip.duration_s,
    }


def receipt_view(trip: Trip) -> dict[str, Any]:
    """What the rider paid and where each cent went. A completed trip's fare; or, for a
    late cancellation, its fee, which goes to the driver whole."""
    if trip.status == "cancelled":
        return _cancellation_receipt(trip)
    fare = fare_of(trip)
    return {
        "trip_id": trip.id,
        "kind": "trip",
        "total_cents": fare.total_cents,
        "currency": fare.currency,
        "driver_earnings_cents": fare.driver_earnings_cents,
        "cost_recovery_cents": fare.cost_recovery_cents,
        "platform_commission_cents": fare.platform_commission_cents,
        "distance_m": trip.distance_m,
        "duration_s": trip.duration_s,
        "fare_rule_version": trip.fare_rule_version,
        "minimum_topup_cents": fare.minimum_topup_cents,
        "breakdown": fare_view(fare)["breakdown"],
        "driver_id": trip.driver_id,
        "completed_at": iso(trip.completed_at),
        "cancelled_at": None,
    }


def _cancellation_receipt(trip: Trip) -> dict[str, Any]:
    fee = trip.cancellation_fee_cents
    return {
        "trip_id": trip.id,
        "kind": "cancellation",
        "total_cents": fee,
        "currency": trip.currency,
        "driver_earnings_cents": fee,
        "cost_recovery_cents": 0,
        "platform_commission_cents": 0,
        "distance_m": 0,
        "duration_s": 0,
        "fare_rule_version": trip.fare_rule_version,
        "minimum_topup_cents": 0,
        "breakdown": {
            "base_cents": 0,
            "distance_cents": 0,
            "time_cents": 0,
            "cost_recovery_cents": 0,
            "platform_commission_cents": 0,
            "cancellation_fee_cents": fee,
        },
        "driver_id": trip.driver_id,
        "completed_at": None,
        "cancelled_at": iso(trip.cancelled_at),
    }
