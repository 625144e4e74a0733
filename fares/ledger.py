"""Zero commission, cost recovery and patronage: the co-op's double-entry books in
PostgreSQL. The arithmetic (accounts, journals, fees, dues, patronage, what a close
posts) is pure and lives in ``fares.journals``; this module posts, budgets, reads and
closes.

A trip belongs to the period it completed in, or the next open one if that is closed.
How the pieces fit is in ``docs/accounts.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.errors import BudgetNotFound, InvalidInput, PeriodClosed, PeriodNotStarted
from core.fare_terms import CostRecoveryMode
from core.models import (
    Budget,
    BudgetLine,
    ClosedPeriod,
    LedgerJournal,
    LedgerPosting,
    Member,
    PatronageShare,
)
from fares import audit, rules
from fares.accounts import Period
from fares.journals import (
    FUND,
    BudgetLineTerms,
    ClosePlan,
    JournalDraft,
    cancellation_journal,
    per_trip_fee_cents,
    plan_close,
    split_equally,
    trip_journal,
)

# pg_advisory_xact_lock key of the books: "coopbook" in ASCII. Posting a trip takes it
# shared; publishing a budget and closing a period take it exclusive, so a trip is never
# posted into a period while it is being closed.
BOOKS_LOCK_KEY = 0x636F6F70626F6F6B


# -- periods --------------------------------------------------------------------------------


def next_period(period: Period) -> Period:
    return Period.of(period.ends_at)


async def _lock_books(db: AsyncSession, *, shared: bool) -> None:
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await db.execute(text(f"SELECT {fn}(:key)"), {"key": BOOKS_LOCK_KEY})


async def is_closed(db: AsyncSession, *, period: Period) -> bool:
    return await db.get(ClosedPeriod, str(period)) is not None


async def open_period(db: AsyncSession, *, at: datetime) -> Period:
    """The period a money event at ``at`` is posted into: its month, or the first
    open month after it if that one is closed."""
    period = Period.of(at)
    closed = set(
        await db.scalars(select(ClosedPeriod.period).where(ClosedPeriod.period >= str(period)))
    )
    while str(period) in closed:
        period = next_period(period)
    return period


async def _write(db: AsyncSession, *, period: Period, draft: JournalDraft) -> LedgerJournal:
    row = LedgerJournal(
        period=str(period),
        kind=draft.kind,
        trip_id=draft.trip_id,
        member_id=draft.member_id,
        memo=draft.memo,
    )
    db.add(row)
    await db.flush()
    db.add_all(
        LedgerPosting(journal_id=row.id, account=p.account, amount_cents=p.amount_cents)
        for p in draft.postings
    )
    return row


async def post_trip_completion(
    db: AsyncSession,
    *,
    trip_id: str,
    rider_id: str,
    driver_id: str,
    total_cents: int,
    cost_recovery_cents: int,
    completed_at: datetime,
) -> Period:
    """Post a completed trip's fare, in the completion's own transaction, into the
    period it completed in (or the next open one); returns that period. The audit log
    gets each period's trip totals when it closes (``period.closed``), not an entry per
    trip: the ledger row is the trip's record, and the log stays the co-op's decisions."""
    draft = trip_journal(
        trip_id=trip_id,
        rider_id=rider_id,
        driver_id=driver_id,
        total_cents=total_cents,
        cost_recovery_cents=cost_recovery_cents,
    )
    return await _post(db, draft=draft, at=completed_at)


async def post_cancellation_fee(
    db: AsyncSession,
    *,
    trip_id: str,
    rider_id: str,
    driver_id: str,
    fee_cents: int,
    cancelled_at: datetime,
) -> Period:
    """Post a late cancellation's fee, in the cancellation's own transaction, like a
    completed trip: into the period it happened in (or the next open one)."""
    draft = cancellation_journal(
        trip_id=trip_id, rider_id=rider_id, driver_id=driver_id, fee_cents=fee_cents
    )
    return await _post(db, draft=draft, at=cancelled_at)


async def _post(db: AsyncSession, *, draft: JournalDraft, at: datetime) -> Period:
    await _lock_books(db, shared=True)
    period = await open_period(db, at=at)
    await _write(db, period=period, draft=draft)
    return period


# -- budgets --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetView:
    period: str
    status: str  # open | closed
    lines: list[BudgetLineTerms]
    expected_trips: int
    total_cents: int
    cost_recovery_mode: CostRecoveryMode
    per_trip_fee_cents: int | None  # under per_trip
    dues: dict[str, int] | None  # under dues: member id → share
    published_at: datetime


async def _lines(db: AsyncSession, *, period: Period) -> list[BudgetLineTerms]:
    rows = await db.scalars(
        select(BudgetLine)
        .where(BudgetLine.period == str(period))
        .order_by(BudgetLine.position, BudgetLine.id)
    )
    return [BudgetLineTerms(r.label, r.amount_cents, r.carried_from) for r in rows]


async def _active_members(db: AsyncSession) -> list[str]:
    return sorted(await db.scalars(select(Member.id).where(Member.status == "active")))


async def budget(db: AsyncSession, *, period: Period) -> BudgetView:
    row = await db.get(Budget, str(period))
    if row is None:
        raise BudgetNotFound(f"no budget published for {period}")
    lines = await _lines(db, period=period)
    total = sum(line.amount_cents for line in lines)
    mode = (await rules.current(db)).cost_recovery_mode
    return BudgetView(
        period=str(period),
        status="closed" if await is_closed(db, period=period) else "open",
        lines=lines,
        expected_trips=row.expected_trips,
        total_cents=total,
        cost_recovery_mode=mode,
        per_trip_fee_cents=per_trip_fee_cents(total, row.expected_trips)
        if mode == "per_trip"
        else None,
        dues=split_equally(total, await _active_members(db)) if mode == "dues" else None,
        published_at=row.published_at,
    )


async def publish_budget(
    db: AsyncSession,
    *,
    period: Period,
    lines: Sequence[tuple[str, int]],
    expected_trips: int,
) -> BudgetView:
    """Publish (or replace) a period's budget. Lines carried from a closed period stay."""
    if expected_trips < 1:
        raise InvalidInput("expected_trips must be at least 1")
    if any(amount < 0 for _, amount in lines):
        raise InvalidInput("a budget line is a cost: amount_cents must not be negative")
    await _lock_books(db, shared=False)
    if await is_closed(db, period=period):
        raise PeriodClosed(f"{period} is closed; its budget cannot change")
    carried = [line for line in await _lines(db, period=period) if line.carried_from]
    await db.execute(
        delete(BudgetLine).where(
            BudgetLine.period == str(period), BudgetLine.carried_from.is_(None)
        )
    )
    row = await db.get(Budget, str(period))
    if row is None:
        db.add(Budget(period=str(period), expected_trips=expected_trips))
    else:
        row.expected_trips = expected_trips
        row.published_at = utcnow()
    await db.flush()
    db.add_all(
        BudgetLine(period=str(period), position=len(carried) + i, label=label, amount_cents=c)
        for i, (label, c) in enumerate(lines)
    )
    await db.flush()
    db.expire_all()
    view = await budget(db, period=period)
    await audit.append(
        db,
        kind="budget.published",
        payload={
            "period": str(period),
            "lines": len(view.lines),
            "total_cents": view.total_cents,
            "carried_cents": sum(line.amount_cents for line in carried),
            "expected_trips": expected_trips,
            "cost_recovery_mode": view.cost_recovery_mode,
            "per_trip_fee_cents": per_trip_fee_cents(view.total_cents, expected_trips),
        },
    )
    return view


async def current_fee_cents(db: AsyncSession, *, mode: CostRecoveryMode, at: datetime) -> int:
    """The per-trip fee for a trip requested at ``at``: the published budget of the
    open period over its expected trips; zero under ``dues`` or with no budget."""
    if mode != "per_trip":
        return 0
    period = await open_period(db, at=at)
    row = await db.get(Budget, str(period))
    if row is None:
        return 0
    total = sum(line.amount_cents for line in await _lines(db, period=period))
    return per_trip_fee_cents(total, row.expected_trips)


# -- reading the books ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatronageLine:
    driver_id: str
    trips: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class PeriodReport:
    period: str
    status: str
    cost_recovery_mode: str | None  # as closed; None while open
    trips: int
    fares_cents: int
    driver_earnings_cents: int
    cost_recovery_cents: int
    dues_cents: int
    costs_cents: int
    surplus_cents: int
    carried_cents: int
    carried_to: str | None
    patronage: list[PatronageLine]
    # Late cancellations' fees: rider to member, outside cost recovery and patronage.
    cancellations: int = 0
    cancellation_fees_cents: int = 0


async def _postings(
    db: AsyncSession, *, period: Period, kind: str, member_id: str | None = None
) -> list[tuple[int, str, str | None, str, int]]:
    """(journal id, kind, trip id, account, amount) of a period's journals of a kind."""
    stmt = (
        select(
            LedgerJournal.id,
            LedgerJournal.kind,
            LedgerJournal.trip_id,
            LedgerPosting.account,
            LedgerPosting.amount_cents,
        )
        .join(LedgerPosting, LedgerPosting.journal_id == LedgerJournal.id)
        .where(LedgerJournal.period == str(period), LedgerJournal.kind == kind)
        .order_by(LedgerJournal.id, LedgerPosting.id)
    )
    if member_id is not None:
        stmt = stmt.where(LedgerJournal.member_id == member_id)
    return [(int(j), k, t, a, int(c)) for j, k, t, a, c in (await db.execute(stmt)).all()]


async def _trips_by_member(db: AsyncSession, *, period: Period) -> dict[str, int]:
    rows = await db.execute(
        select(LedgerJournal.member_id, func.count())
        .where(LedgerJournal.period == str(period), LedgerJournal.kind == "trip")
        .group_by(LedgerJournal.member_id)
    )
    return {str(m): int(n) for m, n in rows.all()}


def _sum(rows: Iterable[tuple[int, str, str | None, str, int]], account: str) -> int:
    """The credit balance of ``account`` (or of every ``member:`` account) in ``rows``."""
    if account == "member:":
        return -sum(c for *_, a, c in rows if a.startswith("member:"))
    return -sum(c for *_, a, c in rows if a == account)


async def period_report(db: AsyncSession, *, period: Period) -> PeriodReport:
    trip_rows = await _postings(db, period=period, kind="trip")
    dues_rows = await _postings(db, period=period, kind="dues")
    cancel_rows = await _postings(db, period=period, kind="cancellation")
    fares = sum(c for *_, a, c in trip_rows if a.startswith("rider:"))
    recovery = _sum(trip_rows, FUND)
    dues = _sum(dues_rows, FUND)
    closed = await db.get(ClosedPeriod, str(period))
    if closed is not None:
        shares = await db.scalars(
            select(PatronageShare)
            .where(PatronageShare.period == str(period))
            .order_by(PatronageShare.member_id)
        )
        patronage = [PatronageLine(s.member_id, s.trips, s.amount_cents) for s in shares]
        costs, surplus = closed.costs_cents, closed.surplus_cents
    else:
        patronage = []
        costs = sum(line.amount_cents for line in await _lines(db, period=period))
        surplus = recovery + dues - costs
    carried = 0 if (closed is None or patronage) else -surplus
    return PeriodReport(
        period=str(period),
        status="open" if closed is None else "closed",
        cost_recovery_mode=None if closed is None else closed.cost_recovery_mode,
        trips=len({j for j, *_ in trip_rows}),
        fares_cents=fares,
        driver_earnings_cents=_sum(trip_rows, "member:"),
        cost_recovery_cents=recovery,
        dues_cents=dues,
        costs_cents=costs,
        surplus_cents=surplus,
        carried_cents=carried,
        carried_to=None if closed is None else closed.carried_to,
        patronage=patronage,
        cancellations=len({j for j, *_ in cancel_rows}),
        cancellation_fees_cents=_sum(cancel_rows, "member:"),
    )


async def close_period(db: AsyncSession, *, period: Period, now: datetime) -> PeriodReport:
    """Close ``period``: pay its costs from the fund, charge dues (under ``dues``), pay a
    surplus back as patronage or carry what remains into the next open period. Closing a
    closed period changes nothing and answers the same. The running month may be closed
    early: trips completing after that land in the next open period."""
    await _lock_books(db, shared=False)
    if await is_closed(db, period=period):
        return await period_report(db, period=period)
    if period.starts_at > now:
        raise PeriodNotStarted(f"{period} has not begun")
    mode = (await rules.current(db)).cost_recovery_mode
    lines = await _lines(db, period=period)
    trips_by_member = await _trips_by_member(db, period=period)
    recovery = _sum(await _postings(db, period=period, kind="trip"), FUND)
    plan = plan_close(
        mode=mode,
        lines=lines,
        cost_recovery_cents=recovery,
        trips_by_member=trips_by_member,
        active_members=await _active_members(db) if mode == "dues" else [],
    )
    for draft in plan.journals:
        await _write(db, period=period, draft=draft)
    carried_to: Period | None = None
    if plan.carry_cents:
        carried_to = next_period(period)
        while await is_closed(db, period=carried_to):
            carried_to = next_period(carried_to)
        await _carry(db, from_period=period, to_period=carried_to, amount_cents=plan.carry_cents)
    db.add(
        ClosedPeriod(
            period=str(period),
            cost_recovery_mode=mode,
            costs_cents=plan.costs_cents,
            surplus_cents=plan.surplus_cents,
            carried_to=None if carried_to is None else str(carried_to),
        )
    )
    await db.flush()
    db.add_all(
        PatronageShare(period=str(period), member_id=m, trips=trips_by_member[m], amount_cents=c)
        for m, c in plan.patronage.items()
    )
    await db.flush()
    report = await period_report(db, period=period)
    await _audit_close(db, report=report, mode=mode, plan=plan, carried_to=carried_to, now=now)
    return report


async def _carry(
    db: AsyncSession, *, from_period: Period, to_period: Period, amount_cents: int
) -> None:
    row = await db.get(Budget, str(to_period))
    if row is None:
        previous = await db.get(Budget, str(from_period))
        expected = previous.expected_trips if previous is not None else 1
        db.add(Budget(period=str(to_period), expected_trips=expected))
        await db.flush()
    position = await db.scalar(
        select(func.count()).select_from(BudgetLine).where(BudgetLine.period == str(to_period))
    )
    what = "deficit" if amount_cents > 0 else "undistributed surplus"
    db.add(
        BudgetLine(
            period=str(to_period),
            position=int(position or 0),
            label=f"{what} carried from {from_period}",
            amount_cents=amount_cents,
            carried_from=str(from_period),
        )
    )
    await db.flush()


async def _audit_close(
    db: AsyncSession,
    *,
    report: PeriodReport,
    mode: str,
    plan: ClosePlan,
    carried_to: Period | None,
    now: datetime,
) -> None:
    p = report.period
    if plan.paid_out_cents:
        await audit.append(
            db, kind="costs.paid", payload={"period": p, "amount_cents": plan.paid_out_cents}
        )
    if plan.dues:
        await audit.append(
            db,
            kind="dues.charged",
            payload={"period": p, "members": len(plan.dues), "total_cents": plan.dues_cents},
        )
    for member_id, amount in sorted(plan.patronage.items()):
        await audit.append(
            db,
            kind="patronage.paid",
            payload={"period": p, "driver_id": member_id, "amount_cents": amount},
        )
    await audit.append(
        db,
        kind="period.closed",
        payload={
            "period": p,
            "cost_recovery_mode": mode,
            "trips": report.trips,
            "fares_cents": report.fares_cents,
            "driver_earnings_cents": report.driver_earnings_cents,
            "cancellations": report.cancellations,
            "cancellation_fees_cents": report.cancellation_fees_cents,
            "costs_cents": plan.costs_cents,
            "cost_recovery_cents": plan.cost_recovery_cents,
            "dues_cents": plan.dues_cents,
            "surplus_cents": plan.surplus_cents,
            "patronage_cents": sum(plan.patronage.values()),
            "patronage_members": len(plan.patronage),
            "carried_cents": plan.carry_cents,
            "carried_to": "" if carried_to is None else str(carried_to),
        },
        now=now,
    )
