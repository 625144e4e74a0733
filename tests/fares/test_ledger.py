"""The books: pure arithmetic under hypothesis, then the database's own guarantees.

Property tests run any sequence of trips, fees, budgets and closes through the pure
planner (``fares.ledger``) and keep a ledger in memory: every journal balances, no cent
is created or lost, patronage sums to the surplus exactly, and what is not shared is
carried. The database tests run in a database of their own (closing a period moves every
later trip into the next one) against real PostgreSQL and Redis.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from core import identity
from core.clock import utcnow
from core.errors import PeriodClosed, PeriodNotStarted
from core.models import LedgerPosting, Trip
from core.settings import Settings
from dispatch import trips
from dispatch.runtime import Runtime
from fares import accounts, journals, ledger, statements
from fares.accounts import Period
from fares.journals import (
    BudgetLineTerms,
    allocate,
    per_trip_fee_cents,
    plan_close,
    split_equally,
)
from geo.point import LatLng
from tests.fixtures.isolated import isolated_database

MIDTOWN = LatLng(40.7549, -73.9840)
CHELSEA = LatLng(40.7465, -74.0014)
MEMBERS = ["drv_a", "drv_b", "drv_c", "drv_d"]

# -- pure -----------------------------------------------------------------------------------


@given(
    st.integers(0, 10**9),
    st.dictionaries(st.sampled_from(MEMBERS), st.integers(0, 10**4), min_size=1),
)
def test_allocation_adds_up_and_is_fair(total: int, weights: dict[str, int]) -> None:
    if sum(weights.values()) == 0:
        weights = {**weights, "drv_a": 1}
    shares = allocate(total, weights)
    assert sum(shares.values()) == total
    weight = sum(weights.values())
    for k, w in weights.items():
        exact_floor = total * w // weight
        assert exact_floor <= shares[k] <= exact_floor + 1


@given(st.integers(0, 10**9), st.lists(st.sampled_from(MEMBERS), unique=True, min_size=1))
def test_dues_are_equal_to_the_cent(total: int, members: list[str]) -> None:
    dues = split_equally(total, members)
    assert sum(dues.values()) == total
    assert max(dues.values()) - min(dues.values()) <= 1


@given(st.integers(-(10**6), 10**9), st.integers(1, 10**6))
def test_the_fee_recovers_the_budget_rounding_up(total: int, expected: int) -> None:
    fee = per_trip_fee_cents(total, expected)
    assert fee * expected >= total
    assert fee == 0 or (fee - 1) * expected < total


trip_op = st.tuples(
    st.just("trip"), st.sampled_from(MEMBERS), st.integers(0, 20_000), st.integers(0, 2_000)
)
budget_op = st.tuples(
    st.just("budget"),
    st.lists(st.integers(0, 500_000), max_size=4),
    st.integers(1, 50),
    st.sampled_from(["per_trip", "dues"]),
)
close_op = st.tuples(st.just("close"), st.lists(st.sampled_from(MEMBERS), unique=True))
cancel_op = st.tuples(st.just("cancel"), st.sampled_from(MEMBERS), st.integers(1, 5_000))


@given(st.lists(st.one_of(trip_op, budget_op, close_op, cancel_op), max_size=60))
def test_any_sequence_of_trips_fees_and_closes_keeps_the_books(ops: list[tuple[Any, ...]]) -> None:
    balances: Counter[str] = Counter()
    carried: list[BudgetLineTerms] = []  # lines the open period inherited
    lines: list[BudgetLineTerms] = []
    mode = "per_trip"
    expected = 10
    fund_collected = 0
    trips_by_member: Counter[str] = Counter()
    period = 0

    def post(draft: journals.JournalDraft) -> None:
        assert sum(p.amount_cents for p in draft.postings) == 0
        assert all(p.amount_cents != 0 for p in draft.postings)
        for p in draft.postings:
            balances[p.account] += p.amount_cents

    for op in ops:
        if op[0] == "budget":
            _, amounts, expected, mode = op
            lines = [BudgetLineTerms(f"line {i}", c) for i, c in enumerate(amounts)]
        elif op[0] == "trip":
            _, member, ride, fee_wanted = op
            total = sum(x.amount_cents for x in carried + lines)
            fee = min(fee_wanted, per_trip_fee_cents(total, expected)) if mode == "per_trip" else 0
            draft = journals.trip_journal(
                trip_id=f"t{period}",
                rider_id="r1",
                driver_id=member,
                total_cents=ride + fee,
                cost_recovery_cents=fee,
            )
            post(draft)
            fund_collected += fee
            trips_by_member[member] += 1
        elif op[0] == "cancel":
            # A late cancellation's fee: rider to member whole; not cost recovery, and not
            # a trip for patronage.
            _, member, fee = op
            before = balances[journals.FUND]
            post(
                journals.cancellation_journal(
                    trip_id="c", rider_id="r1", driver_id=member, fee_cents=fee
                )
            )
            assert balances[journals.FUND] == before
        else:
            _, active = op
            plan = plan_close(
                mode=mode,  # type: ignore[arg-type]
                lines=carried + lines,
                cost_recovery_cents=fund_collected,
                trips_by_member=trips_by_member,
                active_members=active,
            )
            for draft in plan.journals:
                post(draft)
            assert plan.surplus_cents == fund_collected + plan.dues_cents - plan.costs_cents
            if plan.patronage:
                assert sum(plan.patronage.values()) == plan.surplus_cents > 0
                assert plan.carry_cents == 0
            else:
                assert plan.carry_cents == -plan.surplus_cents
            carried = (
                [BudgetLineTerms("carried", plan.carry_cents, f"p{period}")]
                if plan.carry_cents
                else []
            )
            lines, fund_collected, trips_by_member = [], 0, Counter()
            period += 1
            # The fund holds exactly what the next period inherits, no cent more or less.
            assert -balances[journals.FUND] == -plan.carry_cents
        # No cent is created or lost: every account together always sums to zero.
        assert sum(balances.values()) == 0
        assert balances.get("coop:commission", 0) == 0


# -- against the database ----------------------------------------------------------------


@pytest.fixture(scope="module")
def books_db(base_settings: Settings) -> Iterator[str]:
    with isolated_database(base_settings.database_url, "books") as url:
        yield url


@pytest.fixture
async def rt(settings: Settings, books_db: str) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(settings.model_copy(update={"database_url": books_db}))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.close()


async def complete_trip(rt: Runtime, *, driver_id: str) -> Trip:
    """Request a trip, put the member on it, and complete it through ``trips.advance``."""
    async with rt.unit_of_work() as db:
        rider, _ = await identity.sign_up_rider(
            db, settings=rt.settings, name="R", phone="+1 555 0199"
        )
        trip, _ = await trips.request(
            db, rt, rider_id=rider.id, pickup=MIDTOWN, dropoff=CHELSEA, idempotency_key=None
        )
        now = utcnow()
        await db.execute(
            update(Trip)
            .where(Trip.id == trip.id)
            .values(
                driver_id=driver_id,
                status="in_progress",
                assigned_at=now,
                arrived_at=now,
                started_at=now,
            )
        )
    async with rt.unit_of_work() as db:
        done = await trips.advance(db, rt, trip_id=trip.id, driver_id=driver_id, target="completed")
    return done


async def test_the_database_refuses_an_unbalanced_journal(rt: Runtime) -> None:
    async with rt.sessions() as db:
        journal_id = await db.scalar(
            text(
                "INSERT INTO ledger_journals (period, kind, memo) "
                "VALUES ('2001-01', 'cost', 'x') RETURNING id"
            )
        )
        db.add(LedgerPosting(journal_id=journal_id, account=journals.FUND, amount_cents=100))
        db.add(LedgerPosting(journal_id=journal_id, account=journals.SUPPLIERS, amount_cents=-99))
        await db.flush()  # the check is deferred: it runs at commit
        with pytest.raises(DBAPIError, match="does not balance"):
            await db.commit()


async def test_trips_fees_close_and_patronage_in_the_database(rt: Runtime) -> None:
    async with rt.unit_of_work() as db:
        made = [
            await identity.admit_member(
                db, settings=rt.settings, name=f"M{i}", phone="+1 555 0100", plate="T", seats=4
            )
            for i in range(2)
        ]
    a, b = (m.id for m, _ in made)
    period = Period.of(utcnow())
    async with rt.unit_of_work() as db:
        view = await ledger.publish_budget(
            db, period=period, lines=[("insurance", 1000), ("app", 1001)], expected_trips=10
        )
    assert view.per_trip_fee_cents == 201  # 2001 / 10, rounded up

    done = [await complete_trip(rt, driver_id=d) for d in (a, a, b)]
    assert all(t.cost_recovery_cents == 201 for t in done)
    async with rt.sessions() as db:
        earned = await accounts.driver_earnings(db, driver_id=a, period=period)
        assert earned.trips == 2 and earned.cost_recovery_cents == 402
        assert earned.driver_earnings_cents == sum(t.fare_total_cents - 201 for t in done[:2])
        open_report = await ledger.period_report(db, period=period)
        assert open_report.status == "open" and open_report.surplus_cents == 603 - 2001

    async with rt.unit_of_work() as db:
        closed = await ledger.close_period(db, period=period, now=utcnow())
    assert closed.status == "closed" and closed.surplus_cents == 603 - 2001
    assert closed.patronage == [] and closed.carried_cents == 2001 - 603
    nxt = ledger.next_period(period)
    assert closed.carried_to == str(nxt)
    async with rt.unit_of_work() as db:
        again = await ledger.close_period(db, period=period, now=utcnow())
    assert again == closed  # idempotent, and nothing new was posted

    async with rt.unit_of_work() as db:
        with pytest.raises(PeriodClosed):
            await ledger.publish_budget(db, period=period, lines=[], expected_trips=1)
    # The next period inherited the deficit; a trip completing now lands there.
    async with rt.unit_of_work() as db:
        await ledger.publish_budget(db, period=nxt, lines=[("fuel", 2)], expected_trips=1)
    late = [await complete_trip(rt, driver_id=d) for d in (b, a, b)]
    assert all(t.cost_recovery_cents == 2001 - 603 + 2 for t in late)
    async with rt.sessions() as db:
        assert await statements.trip_period(db, trip_id=late[0].id) == str(nxt)
        statement = await statements.statement(db, member_id=b, period=nxt)
        assert statement.trips == 2 and statement.cost_recovery_cents == 2 * 1400
        # Every journal ever posted balances, and so does the whole ledger.
        assert await db.scalar(select(func.coalesce(func.sum(LedgerPosting.amount_cents), 0))) == 0

    # Closing the next period: the surplus (fees collected over the carried deficit and
    # its own cost) goes back to the members in proportion to their trips.
    async with rt.unit_of_work() as db:
        # As of the day it begins: a month cannot be closed before that.
        with pytest.raises(PeriodNotStarted):
            await ledger.close_period(db, period=nxt, now=utcnow())
    async with rt.unit_of_work() as db:
        report = await ledger.close_period(db, period=nxt, now=nxt.starts_at)
    assert report.surplus_cents == 3 * 1400 - 1400
    shares = {p.driver_id: (p.trips, p.amount_cents) for p in report.patronage}
    assert shares == {a: (1, 933), b: (2, 1867)}  # 2800 by 1:2, the odd cent by remainder
    async with rt.sessions() as db:
        statement = await statements.statement(db, member_id=b, period=nxt)
        assert statement.patronage_cents == 1867
        assert statement.net_cents == statement.driver_earnings_cents + 1867

    # The database refuses to post into a closed period, whoever asks.
    async with rt.sessions() as db:
        with pytest.raises(DBAPIError, match="period closed"):
            await db.execute(
                text("INSERT INTO ledger_journals (period, kind, memo) VALUES (:p, 'cost', 'x')"),
                {"p": str(period)},
            )


async def test_balances_by_account_reconcile(rt: Runtime) -> None:
    async with rt.sessions() as db:
        rows = (
            await db.execute(
                select(LedgerPosting.account, func.sum(LedgerPosting.amount_cents)).group_by(
                    LedgerPosting.account
                )
            )
        ).all()
    by_account: defaultdict[str, int] = defaultdict(int)
    for account, amount in rows:
        by_account[account] = int(amount)
    assert sum(by_account.values()) == 0
