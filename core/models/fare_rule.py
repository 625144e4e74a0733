from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from core.fare_terms import COST_RECOVERY_MODES, TERM_FIELDS, FareTerms, Kind
from core.models.base import Base


class FareTermsColumns:
    """The columns of ``core.fare_terms.FareTerms``, one per field, generated from it (so
    a new field needs only its migration): amounts and per-mille as integers, the
    currency and the cost-recovery mode as short strings. Mixed into ``fare_rules`` and
    ``proposals``, which also take ``fare_terms_checks()``.

    Read and write them through ``terms_of`` and ``FareTerms.payload()``, not by name:
    the columns are not typed attributes of the mapped classes."""


_COLUMN_TYPES: dict[Kind, Any] = {
    Kind.CENTS: Integer,
    Kind.PERMILLE: Integer,
    Kind.CURRENCY: lambda: String(3),
    Kind.MODE: lambda: String(16),
}

for _field in TERM_FIELDS:
    # A mapped_column on a mixin is copied into each class that mixes it in.
    setattr(
        FareTermsColumns,
        _field.name,
        mapped_column(_field.name, _COLUMN_TYPES[_field.term.kind](), nullable=False),
    )


def fare_terms_checks() -> tuple[CheckConstraint, ...]:
    """The checks every table of fare terms carries: amounts not negative, a known
    mode, per-mille within 0..1000. Named as migration 0002 named them."""
    cents = [f.name for f in TERM_FIELDS if f.term.kind is Kind.CENTS]
    checks = [
        CheckConstraint(" AND ".join(f"{c} >= 0" for c in cents), name="non_negative"),
        *(
            CheckConstraint(f"{f.name} IN {COST_RECOVERY_MODES}", name="mode")
            for f in TERM_FIELDS
            if f.term.kind is Kind.MODE
        ),
        *(
            CheckConstraint(f"{f.name} BETWEEN 0 AND 1000", name=f.name.removesuffix("_permille"))
            for f in TERM_FIELDS
            if f.term.kind is Kind.PERMILLE
        ),
    ]
    return tuple(checks)


def terms_of(row: object) -> FareTerms:
    """The terms a ``fare_rules`` or ``proposals`` row holds."""
    return FareTerms(**{f.name: getattr(row, f.name) for f in TERM_FIELDS})


class FareRule(FareTermsColumns, Base):
    """One immutable version of the fare rule. The highest version is current."""

    __tablename__ = "fare_rules"
    __table_args__ = fare_terms_checks()

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    adopted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The proposal whose adoption created this version (None for the opening rule); a
    # proposal creates at most one version.
    proposal_id: Mapped[str | None] = mapped_column(
        ForeignKey("proposals.id"), unique=True, default=None
    )
