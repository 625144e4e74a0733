"""The co-op's books, as far as they go today: a member's earnings for a period.

A period is a calendar month in UTC (``YYYY-MM``); a trip belongs to the period in
which it completed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidPeriod
from core.models import Trip

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


async def driver_earnings(db: AsyncSession, *, driver_id: str, period: Period) -> Earnings:
    row = (
        await db.execute(
            select(
                func.count(Trip.id),
                func.coalesce(func.sum(Trip.fare_total_cents), 0),
                func.coalesce(func.sum(Trip.cost_recovery_cents), 0),
                func.coalesce(func.sum(Trip.platform_commission_cents), 0),
                func.min(Trip.currency),
            ).where(
                Trip.driver_id == driver_id,
                Trip.status == "completed",
                Trip.completed_at >= period.starts_at,
                Trip.completed_at < period.ends_at,
            )
        )
    ).one()
    trips, fares, recovery, commission = (int(v) for v in row[:4])
    return Earnings(
        period=str(period),
        trips=trips,
        fares_cents=fares,
        driver_earnings_cents=fares - recovery - commission,
        cost_recovery_cents=recovery,
        platform_commission_cents=commission,
        currency=row[4],
    )
