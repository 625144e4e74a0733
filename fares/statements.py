"""What a member's account moved by in a period, line by line, read straight from the
ledger (``GET /v1/drivers/me/statement``), and which period a trip's money went to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import LedgerJournal, LedgerPosting
from fares.accounts import Period
from fares.journals import FUND, member_account
from fares.ledger import is_closed


@dataclass(frozen=True, slots=True)
class StatementLine:
    kind: str  # trip | cancellation | dues | patronage
    journal_id: int
    trip_id: str | None
    fare_cents: int
    cost_recovery_cents: int
    amount_cents: int  # what the member's account moved by: + owed to them, - they owe
    posted_at: datetime


@dataclass(frozen=True, slots=True)
class Statement:
    period: str
    status: str
    lines: list[StatementLine]
    trips: int
    fares_cents: int
    driver_earnings_cents: int
    cost_recovery_cents: int
    dues_cents: int
    patronage_cents: int
    net_cents: int
    cancellations: int = 0
    cancellation_fees_cents: int = 0


async def statement(db: AsyncSession, *, member_id: str, period: Period) -> Statement:
    """A member's lines for a period, straight from the ledger: each trip (fare, fee,
    earnings), each late cancellation's fee, dues charged and patronage paid; the net is
    the account's movement."""
    own = member_account(member_id)
    stmt = (
        select(LedgerJournal, LedgerPosting.account, LedgerPosting.amount_cents)
        .join(LedgerPosting, LedgerPosting.journal_id == LedgerJournal.id)
        .where(LedgerJournal.period == str(period), LedgerJournal.member_id == member_id)
        .order_by(LedgerJournal.id, LedgerPosting.id)
    )
    journals: dict[int, tuple[LedgerJournal, list[tuple[str, int]]]] = {}
    for j, account, amount in (await db.execute(stmt)).all():
        journals.setdefault(j.id, (j, []))[1].append((account, int(amount)))
    lines: list[StatementLine] = []
    for j, postings in journals.values():
        moved = -sum(c for a, c in postings if a == own)
        fare = sum(c for a, c in postings if a.startswith("rider:"))
        fee = -sum(c for a, c in postings if a == FUND) if j.kind == "trip" else 0
        lines.append(StatementLine(j.kind, j.id, j.trip_id, fare, fee, moved, j.posted_at))
    trip_lines = [line for line in lines if line.kind == "trip"]
    cancel_lines = [line for line in lines if line.kind == "cancellation"]
    return Statement(
        period=str(period),
        status="closed" if await is_closed(db, period=period) else "open",
        lines=lines,
        trips=len(trip_lines),
        fares_cents=sum(line.fare_cents for line in trip_lines),
        driver_earnings_cents=sum(line.amount_cents for line in trip_lines),
        cost_recovery_cents=sum(line.cost_recovery_cents for line in trip_lines),
        dues_cents=-sum(line.amount_cents for line in lines if line.kind == "dues"),
        patronage_cents=sum(line.amount_cents for line in lines if line.kind == "patronage"),
        net_cents=sum(line.amount_cents for line in lines),
        cancellations=len(cancel_lines),
        cancellation_fees_cents=sum(line.amount_cents for line in cancel_lines),
    )


async def trip_period(db: AsyncSession, *, trip_id: str) -> str | None:
    """The period a trip's money was posted into: at completion, or at a cancellation
    that cost a fee (None otherwise)."""
    found: str | None = await db.scalar(
        select(LedgerJournal.period).where(LedgerJournal.trip_id == trip_id)
    )
    return found
