"""The co-op's books (``fares.ledger``, ``docs/accounts.md``): budgets, a double-entry
ledger, and closed periods with their patronage.

The ledger is journals of postings; a posting's ``amount_cents`` is positive for a debit
and negative for a credit, so a journal balances exactly when its postings sum to zero.
A deferred constraint trigger (migration 0004) checks that at commit, whoever writes;
another refuses any change to a posted journal and any journal into a closed period.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base

JOURNAL_KINDS = ("trip", "dues", "cost", "patronage", "cancellation")
PERIOD_CHECK = "period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'"


class Budget(Base):
    """A period's published operating budget. Replaced by a later PUT until the period
    closes; lines carried from an earlier period's deficit survive the replacement."""

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint(PERIOD_CHECK, name="period"),
        CheckConstraint("expected_trips >= 1", name="expected_trips"),
    )

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    expected_trips: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(server_default=func.now())


class BudgetLine(Base):
    __tablename__ = "budget_lines"
    __table_args__ = (
        # Operators' lines are costs (never negative); a carried line may be a credit.
        CheckConstraint("carried_from IS NOT NULL OR amount_cents >= 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(ForeignKey("budgets.period"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    # The closed period whose deficit (or undistributed surplus) this line carries.
    carried_from: Mapped[str | None] = mapped_column(String(7), default=None)


class LedgerJournal(Base):
    """One balanced money event: a trip's fare, a dues charge, the costs paid, a
    patronage payout. ``period`` is the open period it was posted into."""

    __tablename__ = "ledger_journals"
    __table_args__ = (
        CheckConstraint(PERIOD_CHECK, name="period"),
        CheckConstraint(f"kind IN {JOURNAL_KINDS}", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    # A trip is posted once (unique); the member a journal concerns, for statements.
    trip_id: Mapped[str | None] = mapped_column(ForeignKey("trips.id"), unique=True, default=None)
    member_id: Mapped[str | None] = mapped_column(ForeignKey("members.id"), default=None)
    memo: Mapped[str] = mapped_column(String(200), default="")
    posted_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LedgerPosting(Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (CheckConstraint("amount_cents <> 0", name="non_zero"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    journal_id: Mapped[int] = mapped_column(ForeignKey("ledger_journals.id"), index=True)
    # ``rider:<id>``, ``member:<id>``, ``coop:cost_recovery``, ``coop:suppliers``.
    account: Mapped[str] = mapped_column(String(80), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)


class ClosedPeriod(Base):
    """A closed period and what closing it found; immutable (trigger)."""

    __tablename__ = "closed_periods"
    __table_args__ = (CheckConstraint(PERIOD_CHECK, name="period"),)

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    cost_recovery_mode: Mapped[str] = mapped_column(String(16))
    costs_cents: Mapped[int] = mapped_column(BigInteger)
    surplus_cents: Mapped[int] = mapped_column(BigInteger)
    carried_to: Mapped[str | None] = mapped_column(String(7), default=None)
    closed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PatronageShare(Base):
    __tablename__ = "patronage_shares"

    period: Mapped[str] = mapped_column(ForeignKey("closed_periods.period"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), primary_key=True)
    trips: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
