"""Zero commission, cost recovery and patronage: the co-op's double-entry books.

Pure arithmetic first (no I/O, property-tested in ``tests/fares/test_ledger.py``): the
per-trip fee, equal dues, patronage by largest remainder, and the journals a trip and a
period close post. Then the services that read and write PostgreSQL.

Sign convention: a posting's ``amount_cents`` is a debit when positive and a credit when
negative, so a journal balances when its postings sum to zero; the database refuses to
commit one that does not (migration 0004). Accounts:

- ``rider:<id>``            what the rider paid (debited with the fare)
- ``member:<id>``           what the co-op owes the member (credited with earnings and
                            patronage, debited with dues)
- ``coop:cost_recovery``    the cost-recovery fund (credited with fees and dues, debited
                            with costs paid and patronage)
- ``coop:suppliers``        the outside world the budget's costs are paid to

A trip belongs to the period it completed in, or the next open one if that is closed.
How the pieces fit is in ``docs/accounts.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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

FUND = "coop:cost_recovery"
SUPPLIERS = "coop:suppliers"
# pg_advisory_xact_lock key of the books: "coopbook" in ASCII. Posting a trip takes it
# shared; publishing a budget and closing a period take it exclusive, so a trip is never
# posted into a period while it is being closed.
BOOKS_LOCK_KEY = 0x636F6F70626F6F6B


def rider_account(rider_id: str) -> str:
    return f"rider:{rider_id}"


def member_account(member_id: str) -> str:
    return f"member:{member_id}"


# -- pure arithmetic ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount_cents: int  # > 0 debit, < 0 credit


@dataclass(frozen=True, slots=True)
class JournalDraft:
    kind: str  # trip | cancellation | dues | cost | patronage
    postings: tuple[Posting, ...]
    member_id: str | None = None
    trip_id: str | None = None
    memo: str = ""


def journal(
    kind: str,
    entries: Iterable[tuple[str, int]],
    *,
    member_id: str | None = None,
    trip_id: str | None = None,
    memo: str = "",
) -> JournalDraft:
    """A balanced journal from ``(account, amount)`` pairs; zero amounts are left out.
    An unbalanced one is a programming error, refused here before the database would."""
    postings = tuple(Posting(a, c) for a, c in entries if c != 0)
    if sum(p.amount_cents for p in postings) != 0:
        raise ValueError(f"unbalanced {kind} journal: {postings}")
    return JournalDraft(kind, postings, member_id=member_id, trip_id=trip_id, memo=memo)


def per_trip_fee_cents(budget_cents: int, expected_trips: int) -> int:
    """The budget over the expected trips, rounded up to the cent (a credit balance
    leaves nothing to recover)."""
    if expected_trips < 1:
        raise ValueError("expected_trips must be at least 1")
    return -(-max(budget_cents, 0) // expected_trips)


def allocate(total_cents: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total_cents`` in proportion to ``weights`` by largest remainder: every
    share is the floor of its exact quota, and the cents left over go one each to the
    largest remainders (ties by key). The shares always sum to ``total_cents``."""
    if total_cents < 0 or any(w < 0 for w in weights.values()):
        raise ValueError("the total and the weights must not be negative")
    weight = sum(weights.values())
    if weight == 0:
        if total_cents:
            raise ValueError("cannot allocate over zero weight")
        return {k: 0 for k in weights}
    shares = {k: total_cents * w // weight for k, w in weights.items()}
    left = total_cents - sum(shares.values())
    by_remainder = sorted(weights, key=lambda k: (-(total_cents * weights[k] % weight), k))
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares


def split_equally(total_cents: int, member_ids: Sequence[str]) -> dict[str, int]:
    """Dues: an equal share per member, the odd cents to the first members by id."""
    return allocate(max(total_cents, 0), {m: 1 for m in member_ids}) if member_ids else {}


def trip_journal(
    *, trip_id: str, rider_id: str, driver_id: str, total_cents: int, cost_recovery_cents: int
) -> JournalDraft:
    """The rider pays the fare; the member earns all of it but the cost-recovery fee,
    which goes to the fund. No commission: there is no account for one."""
    if not 0 <= cost_recovery_cents <= total_cents:
        raise ValueError("the fee must be part of the fare")
    return journal(
        "trip",
        [
            (rider_account(rider_id), total_cents),
            (member_account(driver_id), -(total_cents - cost_recovery_cents)),
            (FUND, -cost_recovery_cents),
        ],
        member_id=driver_id,
        trip_id=trip_id,
    )


def cancellation_journal(
    *, trip_id: str, rider_id: str, driver_id: str, fee_cents: int
) -> JournalDraft:
    """A rider's late cancellation: the whole fee goes to the member who was on the way."""
    if fee_cents <= 0:
        raise ValueError("a cancellation journal needs a positive fee")
    return journal(
        "cancellation",
        [(rider_account(rider_id), fee_cents), (member_account(driver_id), -fee_cents)],
        member_id=driver_id,
        trip_id=trip_id,
        memo="cancellation fee",
    )


@dataclass(frozen=True, slots=True)
class BudgetLineTerms:
    label: str
    amount_cents: int
    carried_from: str | None = None


@dataclass(frozen=True, slots=True)
class ClosePlan:
    costs_cents: int  # every line of the budget, carried ones included
    paid_out_cents: int  # the lines paid to suppliers (not carried ones)
    cost_recovery_cents: int
    dues: dict[str, int]
    surplus_cents: int  # cost recovery + dues - costs; negative for a deficit
    patronage: dict[str, int]
    carry_cents: int  # the line the next period inherits (deficit > 0, credit < 0)
    journals: list[JournalDraft] = field(default_factory=list)

    @property
    def dues_cents(self) -> int:
        return sum(self.dues.values())


def plan_close(
    *,
    mode: CostRecoveryMode,
    lines: Sequence[BudgetLineTerms],
    cost_recovery_cents: int,
    trips_by_member: Mapping[str, int],
    active_members: Sequence[str],
) -> ClosePlan:
    """What closing a period posts. The budget's own lines are paid to suppliers from
    the fund; under ``dues`` each active member is charged an equal share of the budget;
    a surplus goes back to the members in proportion to their trips (patronage), and
    what cannot be shared (a deficit, or a surplus with no trips) carries as a line into
    the next period's budget."""
    costs = sum(line.amount_cents for line in lines)
    paid_out = sum(line.amount_cents for line in lines if line.carried_from is None)
    dues = split_equally(costs, sorted(active_members)) if mode == "dues" else {}
    surplus = cost_recovery_cents + sum(dues.values()) - costs
    weights = {m: n for m, n in trips_by_member.items() if n > 0}
    patronage = allocate(surplus, weights) if surplus > 0 and weights else {}
    carry = 0 if patronage else -surplus
    journals = [
        journal("dues", [(member_account(m), c), (FUND, -c)], member_id=m, memo="dues")
        for m, c in sorted(dues.items())
        if c
    ]
    if paid_out:
        journals.append(journal("cost", [(FUND, paid_out), (SUPPLIERS, -paid_out)], memo="costs"))
    journals += [
        journal("patronage", [(FUND, c), (member_account(m), -c)], member_id=m, memo="patronage")
        for m, c in sorted(patronage.items())
        if c
    ]
    return ClosePlan(
        costs, paid_out, cost_recovery_cents, dues, surplus, patronage, carry, journals
    )


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
