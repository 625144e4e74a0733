"""Periods and a member's earnings for one, read from the ledger (``fares.ledger``).

A period is a calendar month in UTC (``YYYY-MM``); a trip belongs to the period in
which it completed, or to the next open one if that period was already closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidPeriod
from core.models import LedgerJournal, LedgerPosting, Trip

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Period:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        m = _PERIOD.match(text)
        if m is None:
            raise InvalidPeriod(f"{text!r} is not a period (YYYY-MM)")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, moment: datetime) -> Period:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def starts_at(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def ends_at(self) -> datetime:
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return datetime(year, month, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Earnings:
    period: str
    trips: int
    fares_cents: int
    driver_earnings_cents: int
    cost_recovery_cents: int
    platform_commission_cents: int
    currency: str | None
    cancellations: int = 0
    cancellation_fees_cents: int = 0


async def driver_earnings(db: AsyncSession, *, driver_id: str, period: Period) -> Earnings:
    """Read from the ledger (``fares.ledger``): the member's trip and cancellation-fee
    journals posted into the period, so the figures reconcile with the books to the cent."""
    rows = (
        await db.execute(
            select(
                LedgerJournal.id,
                LedgerJournal.kind,
                LedgerPosting.account,
                LedgerPosting.amount_cents,
                Trip.currency,
            )
            .join(LedgerPosting, LedgerPosting.journal_id == LedgerJournal.id)
            .join(Trip, Trip.id == LedgerJournal.trip_id)
            .where(
                LedgerJournal.kind.in_(("trip", "cancellation")),
                LedgerJournal.member_id == driver_id,
                LedgerJournal.period == str(period),
            )
        )
    ).all()
    own = f"member:{driver_id}"
    trips = [(j, a, int(c)) for j, k, a, c, _ in rows if k == "trip"]
    cancels = [(j, a, int(c)) for j, k, a, c, _ in rows if k == "cancellation"]
    fares = sum(c for _, a, c in trips if a.startswith("rider:"))
    earnings = -sum(c for _, a, c in trips if a == own)
    return Earnings(
        period=str(period),
        trips=len({j for j, *_ in trips}),
        fares_cents=fares,
        driver_earnings_cents=earnings,
        cost_recovery_cents=fares - earnings,
        platform_commission_cents=0,
        currency=min((str(c) for *_, c in rows), default=None),
        cancellations=len({j for j, *_ in cancels}),
        cancellation_fees_cents=-sum(c for _, a, c in cancels if a == own),
    )
