from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base

TRACE_KINDS = ("track", "arrived", "started", "completed", "cancelled")


class TripTracePoint(Base):
    """Where the driver was during a trip: positions sampled from its location frames
    (``track``), and where it stood when it arrived, started and completed. Written when
    the trip ends, in the same transaction; live positions never reach PostgreSQL."""

    __tablename__ = "trip_trace"
    __table_args__ = (
        CheckConstraint(f"kind IN {TRACE_KINDS}", name="kind"),
        Index("ix_trip_trace_trip_at", "trip_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    trip_id: Mapped[str] = mapped_column(ForeignKey("trips.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[Any] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
