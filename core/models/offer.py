from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base

OFFER_STATUSES = ("pending", "accepted", "declined", "expired", "withdrawn")


class Offer(Base):
    """An offer of one trip to one driver. Redis holds the live reservation; this row is
    the record, and its partial unique indexes are the last line against a driver holding
    two offers or a trip having two."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint(f"status IN {OFFER_STATUSES}", name="status"),
        Index(
            "uq_offers_trip_pending",
            "trip_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "uq_offers_driver_pending",
            "driver_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_offers_driver_created_at", "driver_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    trip_id: Mapped[str] = mapped_column(ForeignKey("trips.id"), index=True)
    driver_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    pickup_eta_s: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    responded_at: Mapped[datetime | None] = mapped_column(default=None)
