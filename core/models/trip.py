from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base

TRIP_STATUSES = (
    "requested",
    "assigned",
    "arrived",
    "in_progress",
    "completed",
    "cancelled",
    "expired",
)
RIDER_ACTIVE = "('requested', 'assigned', 'arrived', 'in_progress')"
DRIVER_ACTIVE = "('assigned', 'arrived', 'in_progress')"


class Trip(Base):
    """A trip and the fare it was quoted at. The fare columns are filled at request time
    (upfront pricing) with the rule version then current, and never re-priced."""

    __tablename__ = "trips"
    __table_args__ = (
        CheckConstraint(f"status IN {TRIP_STATUSES}", name="status"),
        CheckConstraint("platform_commission_cents = 0", name="zero_commission"),
        # The five parts of the contract's breakdown add up to the total; a minimum-fare
        # top-up is already inside base_cents (minimum_topup_cents says how much).
        CheckConstraint(
            "fare_total_cents = base_cents + distance_cents + time_cents "
            "+ cost_recovery_cents + platform_commission_cents",
            name="fare_parts_add_up",
        ),
        CheckConstraint("minimum_topup_cents BETWEEN 0 AND base_cents", name="topup"),
        CheckConstraint("cancellation_fee_cents >= 0", name="cancellation_fee_cents"),
        # A rider has at most one active trip; a retry with the same Idempotency-Key is
        # the same trip. The database enforces both, so concurrent requests cannot race.
        Index(
            "uq_trips_rider_active",
            "rider_id",
            unique=True,
            postgresql_where=text(f"status IN {RIDER_ACTIVE}"),
        ),
        Index(
            "uq_trips_driver_active",
            "driver_id",
            unique=True,
            postgresql_where=text(f"status IN {DRIVER_ACTIVE}"),
        ),
        Index(
            "uq_trips_rider_idempotency_key",
            "rider_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_trips_status_requested_at", "status", "requested_at"),
        Index("ix_trips_rider_requested_at", "rider_id", "requested_at"),
        Index("ix_trips_driver_completed_at", "driver_id", "completed_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rider_id: Mapped[str] = mapped_column(ForeignKey("riders.id"))
    driver_id: Mapped[str | None] = mapped_column(ForeignKey("members.id"), default=None)
    status: Mapped[str] = mapped_column(String(16), default="requested")
    region: Mapped[str] = mapped_column(String(32))
    pickup: Mapped[Any] = mapped_column(Geography("POINT", srid=4326, spatial_index=True))
    dropoff: Mapped[Any] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))

    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    assigned_at: Mapped[datetime | None] = mapped_column(default=None)
    arrived_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    expired_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(16), default=None)

    fare_rule_version: Mapped[int] = mapped_column(ForeignKey("fare_rules.version"))
    distance_m: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[int] = mapped_column(Integer)
    pickup_eta_s: Mapped[int | None] = mapped_column(Integer, default=None)
    currency: Mapped[str] = mapped_column(String(3))
    fare_total_cents: Mapped[int] = mapped_column(Integer)
    base_cents: Mapped[int] = mapped_column(Integer)
    distance_cents: Mapped[int] = mapped_column(Integer)
    time_cents: Mapped[int] = mapped_column(Integer)
    minimum_topup_cents: Mapped[int] = mapped_column(Integer, default=0)
    cost_recovery_cents: Mapped[int] = mapped_column(Integer)
    platform_commission_cents: Mapped[int] = mapped_column(Integer, default=0)
    # What the rider was charged for cancelling after a driver was on the way (0: free).
    cancellation_fee_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)


class TripEvent(Base):
    """The state history of a trip: one row per status change, never updated."""

    __tablename__ = "trip_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    trip_id: Mapped[str] = mapped_column(ForeignKey("trips.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor_role: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(40), default=None)
