from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base

MEMBER_STATUSES = ("active", "suspended", "removed")


class Member(Base):
    """A driver: a member of the co-op, admitted by its operators."""

    __tablename__ = "members"
    __table_args__ = (CheckConstraint(f"status IN {MEMBER_STATUSES}", name="status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    admitted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    removed_at: Mapped[datetime | None] = mapped_column(default=None)

    vehicles: Mapped[list[Vehicle]] = relationship(back_populates="member", lazy="selectin")


class Vehicle(Base):
    __tablename__ = "vehicles"
    __table_args__ = (CheckConstraint("seats BETWEEN 1 AND 16", name="seats"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), index=True)
    plate: Mapped[str] = mapped_column(String(20))
    seats: Mapped[int] = mapped_column(Integer)

    member: Mapped[Member] = relationship(back_populates="vehicles")
