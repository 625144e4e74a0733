from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base

COST_RECOVERY_MODES = ("per_trip", "dues")


class FareRule(Base):
    """One immutable version of the fare rule. The highest version is current."""

    __tablename__ = "fare_rules"
    __table_args__ = (
        CheckConstraint(
            "base_cents >= 0 AND per_km_cents >= 0 AND per_minute_cents >= 0 "
            "AND minimum_cents >= 0 AND cancellation_fee_cents >= 0",
            name="non_negative",
        ),
        CheckConstraint(f"cost_recovery_mode IN {COST_RECOVERY_MODES}", name="mode"),
        CheckConstraint("fairness_weight_permille BETWEEN 0 AND 1000", name="fairness_weight"),
    )

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    base_cents: Mapped[int] = mapped_column(Integer)
    per_km_cents: Mapped[int] = mapped_column(Integer)
    per_minute_cents: Mapped[int] = mapped_column(Integer)
    minimum_cents: Mapped[int] = mapped_column(Integer)
    cancellation_fee_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    cost_recovery_mode: Mapped[str] = mapped_column(String(16))
    # The dispatcher's fairness weight (0..1), a bylaw the members vote on like the
    # fare, kept in per-mille so that no float enters the rule or the audit log.
    fairness_weight_permille: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    adopted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The proposal whose adoption created this version (None for the opening rule); a
    # proposal creates at most one version.
    proposal_id: Mapped[str | None] = mapped_column(
        ForeignKey("proposals.id"), unique=True, default=None
    )
