"""fares.governance against real PostgreSQL and Redis: proposals, ballots, closing at the
deadline, adoption, and quotes pinned to the version they were made under.

Adopting a rule changes the current rule for everyone, so these tests run in a database
of their own (``tests.fixtures.isolated``). Time is passed in (``now=``) rather than waited
for: a proposal closing in an hour is closed by calling the job "an hour from now".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from core import identity
from core.clock import utcnow
from core.errors import (
    ClosesTooSoon,
    InvalidInput,
    MemberNotFound,
    MemberRemoved,
    NotEligible,
    ProposalNotFound,
    QuoteInvalid,
    VotingClosed,
)
from core.events import Event
from core.models import AuditEntry, Ballot, FareRule, Member
from core.settings import Settings
from dispatch import trips
from dispatch.runtime import Runtime
from fares import audit, governance, rules
from fares.governance import ProposalRecord
from fares.pricing import price
from fares.quotes import PinnedQuote, sign_quote
from fares.voting import RuleDraft, Tally, complete_rule
from geo.point import LatLng
from tests.fixtures.isolated import isolated_database

MIN_WINDOW_S = 60
HOUR = timedelta(hours=1)
MIDTOWN = LatLng(40.7549, -73.9840)
CHELSEA = LatLng(40.7465, -74.0014)

RAISE: RuleDraft = {
    "base_cents": 400,
    "per_km_cents": 150,
    "per_minute_cents": 40,
    "minimum_cents": 900,
    "cancellation_fee_cents": 600,
    "currency": "USD",
    "cost_recovery_mode": "per_trip",
    "fairness_weight_permille": 300,
}
# The same prices, and the fairness weight left out (it keeps the current value).
PRICES_ONLY: RuleDraft = {k: v for k, v in RAISE.items() if k != "fairness_weight_permille"}


@pytest.fixture(scope="module")
def governance_db(base_settings: Settings) -> Iterator[str]:
    with isolated_database(base_settings.database_url, "gov") as url:
        yield url


def governance_settings(settings: Settings, database_url: str) -> Settings:
    return settings.model_copy(
        update={
            "database_url": database_url,
            "vote_min_window_s": MIN_WINDOW_S,
            "vote_quorum": 0.5,
        }
    )


@pytest.fixture
async def rt(settings: Settings, governance_db: str) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(governance_settings(settings, governance_db))
    await runtime.start()
    try:
        yield runtime
        # Leave nothing open for the next test's closing job to adopt by surprise.
        await governance.close_due_proposals(runtime.sessions, now=utcnow() + timedelta(days=400))
    finally:
        await runtime.close()


async def members(rt: Runtime, n: int) -> list[str]:
    """``n`` new members, the only ones in good standing (earlier tests' are suspended)."""
    async with rt.unit_of_work() as db:
        await db.execute(update(Member).where(Member.status == "active").values(status="suspended"))
        made = [
            await identity.admit_member(
                db, settings=rt.settings, name=f"M{i}", phone="+1 555 0100", plate="T1", seats=4
            )
            for i in range(n)
        ]
    return [m.id for m, _token in made]


async def propose(
    rt: Runtime, proposer: str, *, rule: RuleDraft = RAISE, window: timedelta = HOUR
) -> ProposalRecord:
    async with rt.unit_of_work() as db:
        return await governance.open_proposal(
            db,
            settings=rt.settings,
            proposer_id=proposer,
            rule=rule,
            rationale="Fuel went up; the per-km rate has not moved in two years.",
            closes_at=utcnow() + window,
        )


async def vote(
    rt: Runtime, proposal: ProposalRecord, member: str, choice: str, now: datetime | None = None
) -> governance.BallotRecord:
    async with rt.unit_of_work() as db:
        return await governance.cast_ballot(
            db,
            proposal_id=proposal.id,
            member_id=member,
            choice=choice,  # type: ignore[arg-type]
            now=now,
        )


async def close(rt: Runtime, proposal: ProposalRecord) -> ProposalRecord:
    """Run the closing job as of the proposal's deadline; return the proposal."""
    await governance.close_due_proposals(rt.sessions, publish=rt.flush, now=proposal.closes_at)
    return await fetch(rt, proposal)


async def fetch(rt: Runtime, proposal: ProposalRecord) -> ProposalRecord:
    async with rt.sessions() as db:
        return await governance.get_proposal(db, proposal_id=proposal.id)


async def current_version(rt: Runtime) -> int:
    async with rt.sessions() as db:
        return (await rules.current(db)).version


async def audit_entries(rt: Runtime, kind: str, proposal_id: str) -> list[AuditEntry]:
    async with rt.sessions() as db:
        rows = await db.scalars(
            select(AuditEntry)
            .where(AuditEntry.kind == kind, AuditEntry.payload["proposal_id"].astext == proposal_id)
            .order_by(AuditEntry.seq)
        )
        return list(rows.all())


async def driver_frames(rt: Runtime, member_id: str) -> list[dict[str, Any]]:
    frames, _complete, _from = await rt.bus.missed_since("driver", member_id, 0)
    return [json.loads(f) for f in frames]


async def assert_chain_verifies(rt: Runtime) -> None:
    async with rt.sessions() as db:
        assert isinstance(await audit.verify_stored(db), audit.Verified)


# -- a full vote ---------------------------------------------------------------------------


async def test_a_full_vote_adopts_the_rule_and_changes_the_next_quote(rt: Runtime) -> None:
    a, b, c, d = await members(rt, 4)
    before = await current_version(rt)
    async with rt.sessions() as db:
        quote_before = await trips.quote(db, rt, pickup=MIDTOWN, dropoff=CHELSEA)
    assert quote_before.rule.version == before

    p = await propose(rt, a)
    assert p.status == "open" and p.eligible_voters == 4
    assert (p.quorum_permille, p.quorum_ballots) == (500, 2)
    assert p.rule == complete_rule(RAISE, quote_before.rule)
    # Every member in good standing hears of it on their socket.
    for m in (a, b, c, d):
        opened = [f for f in await driver_frames(rt, m) if f["type"] == "proposal.opened"]
        assert opened[-1]["proposal"]["id"] == p.id
        assert opened[-1]["proposal"]["rule"]["fairness_weight"] == 0.3

    await vote(rt, p, a, "yes")
    await vote(rt, p, b, "yes")
    await vote(rt, p, c, "no")
    live = await fetch(rt, p)
    assert live.status == "open" and live.tally == Tally(yes=2, no=1)

    published: list[Any] = []

    async def publish(items: list[Any]) -> None:
        published.extend(items)
        await rt.flush(items)

    closed = await governance.close_due_proposals(rt.sessions, publish=publish, now=p.closes_at)
    assert [r.id for r in closed] == [p.id]
    done = await fetch(rt, p)
    assert done.status == "adopted" and done.fare_rule_version == before + 1
    assert done.tally == Tally(yes=2, no=1) and done.closed_at == p.closes_at
    assert done.result_reason is not None and "2 yes, 1 no" in done.result_reason
    frames = [e for e in published if isinstance(e, Event)]
    assert sorted(e.recipient_id for e in frames) == sorted([a, b, c, d])
    assert {e.frame["type"] for e in frames} == {"proposal.closed"}
    assert frames[0].frame["proposal"]["fare_rule_version"] == before + 1

    # The new version is current at once, with the numbers voted, and prices quotes.
    async with rt.sessions() as db:
        now_current = await rules.current(db)
        after = await trips.quote(db, rt, pickup=MIDTOWN, dropoff=CHELSEA)
    assert now_current.version == before + 1 and now_current.proposal_id == p.id
    assert now_current.terms() == done.rule
    assert now_current.fairness_weight == 0.3
    assert after.rule.version == before + 1
    assert after.fare == price(
        now_current,
        distance_m=after.distance_m,
        duration_s=after.duration_s,
        cost_recovery_fee_cents=after.fare.cost_recovery_cents,
    )
    assert after.fare.total_cents > quote_before.fare.total_cents

    kinds = [e.kind for e in await audit_entries(rt, "proposal.closed", p.id)]
    assert kinds == ["proposal.closed"]
    adopted = await audit_entries(rt, "rule.adopted", p.id)
    assert [e.payload["version"] for e in adopted] == [before + 1]
    await assert_chain_verifies(rt)

    # Closing again does nothing.
    again = await governance.close_due_proposals(rt.sessions, now=p.closes_at + HOUR)
    assert p.id not in {r.id for r in again}
    assert await current_version(rt) == before + 1


async def test_a_vote_short_of_quorum_is_rejected(rt: Runtime) -> None:
    a, b, _c, _d, _e = await members(rt, 5)
    before = await current_version(rt)
    p = await propose(rt, a)
    assert p.quorum_ballots == 3  # ⌈0.5 × 5⌉
    await vote(rt, p, a, "yes")
    await vote(rt, p, b, "yes")
    done = await close(rt, p)
    assert done.status == "rejected" and done.fare_rule_version is None
    assert done.result_reason is not None and done.result_reason.startswith("quorum not met")
    assert await current_version(rt) == before
    assert await audit_entries(rt, "rule.adopted", p.id) == []


async def test_a_tie_is_rejected(rt: Runtime) -> None:
    a, b, c, d = await members(rt, 4)
    before = await current_version(rt)
    p = await propose(rt, a)
    for member, choice in ((a, "yes"), (b, "yes"), (c, "no"), (d, "no")):
        await vote(rt, p, member, choice)
    done = await close(rt, p)
    assert done.status == "rejected" and done.tally == Tally(yes=2, no=2)
    assert done.result_reason is not None and done.result_reason.startswith("tie")
    assert await current_version(rt) == before


async def test_a_recast_ballot_replaces_the_earlier_one(rt: Runtime) -> None:
    a, b, c = await members(rt, 3)
    p = await propose(rt, a)
    first = await vote(rt, p, b, "no")
    assert first.replaced is None
    second = await vote(rt, p, b, "yes")
    assert second.replaced == "no"
    await vote(rt, p, c, "abstain")
    assert (await fetch(rt, p)).tally == Tally(yes=1, no=0, abstain=1)
    async with rt.sessions() as db:
        ballots = await governance.list_ballots(db, proposal_id=p.id)
    assert {(x.member_id, x.choice) for x in ballots} == {(b, "yes"), (c, "abstain")}
    # Both ballots are on the record, who and when.
    cast = await audit_entries(rt, "ballot.cast", p.id)
    assert [(e.payload["member_id"], e.payload["choice"], e.payload["replaces"]) for e in cast] == [
        (b, "no", None),
        (b, "yes", "no"),
        (c, "abstain", None),
    ]
    done = await close(rt, p)
    assert done.status == "adopted" and done.tally == Tally(yes=1, abstain=1)


async def test_only_members_of_the_snapshot_vote(rt: Runtime) -> None:
    a, b = await members(rt, 2)
    p = await propose(rt, a)
    assert p.eligible_voters == 2
    # Admitted during the vote: a member, but not one who may swing it.
    async with rt.unit_of_work() as db:
        late, _ = await identity.admit_member(
            db, settings=rt.settings, name="Late", phone="+1 555 0101", plate="T2", seats=4
        )
    with pytest.raises(NotEligible):
        await vote(rt, p, late.id, "yes")
    # Not a member at all (a rider's id, a made-up id).
    async with rt.unit_of_work() as db:
        rider, _ = await identity.sign_up_rider(
            db, settings=rt.settings, name="Rider", phone="+1 555 0102"
        )
    for outsider in (rider.id, "drv_nobody"):
        with pytest.raises(MemberNotFound):
            await vote(rt, p, outsider, "yes")
    # No longer in good standing.
    async with rt.unit_of_work() as db:
        await db.execute(update(Member).where(Member.id == b).values(status="suspended"))
    with pytest.raises(MemberRemoved):
        await vote(rt, p, b, "yes")
    assert (await fetch(rt, p)).tally == Tally()
    async with rt.sessions() as db:
        count = select(func.count()).select_from(Ballot).where(Ballot.proposal_id == p.id)
        assert await db.scalar(count) == 0


async def test_no_voting_after_closes_at(rt: Runtime) -> None:
    a, b = await members(rt, 2)
    p = await propose(rt, a)
    with pytest.raises(VotingClosed):
        await vote(rt, p, b, "yes", now=p.closes_at)
    await vote(rt, p, b, "no", now=p.closes_at - timedelta(milliseconds=1))
    done = await close(rt, p)
    assert done.status == "rejected" and done.tally == Tally(no=1)
    with pytest.raises(VotingClosed):
        await vote(rt, p, a, "yes", now=p.opens_at)


async def test_concurrent_ballots_from_one_member_count_once(rt: Runtime) -> None:
    a, b = await members(rt, 2)
    p = await propose(rt, a)
    choices = ["yes", "no", "abstain"] * 4
    await asyncio.gather(*(vote(rt, p, b, choice) for choice in choices))
    async with rt.sessions() as db:
        rows = (await db.scalars(select(Ballot).where(Ballot.proposal_id == p.id))).all()
    assert len(rows) == 1 and (await fetch(rt, p)).tally.cast == 1
    cast = await audit_entries(rt, "ballot.cast", p.id)
    assert len(cast) == len(choices)
    # They went one at a time: each replaced exactly the one recorded before it, and the
    # ballot that stands is the last one recorded.
    assert [e.payload["replaces"] for e in cast] == [None] + [
        e.payload["choice"] for e in cast[:-1]
    ]
    assert rows[0].choice == cast[-1].payload["choice"]


async def test_a_ballot_racing_the_close_is_in_the_tally_or_refused(rt: Runtime) -> None:
    a, b, c = await members(rt, 3)
    for _ in range(5):
        p = await propose(rt, a)
        await vote(rt, p, a, "yes")
        await vote(rt, p, c, "no")

        async def ballot(p: ProposalRecord) -> bool:
            try:
                await vote(rt, p, b, "yes", now=p.closes_at - timedelta(microseconds=1))
            except VotingClosed:
                return False
            return True

        counted, _ = await asyncio.gather(
            ballot(p),
            governance.close_due_proposals(rt.sessions, now=p.closes_at),
        )
        done = await close(rt, p)  # a closer that skipped the locked row retries
        assert done.status != "open"
        assert done.tally.yes == 1 + counted
        assert done.status == ("adopted" if counted else "rejected")


async def wait_for_a_lock_wait(rt: Runtime) -> None:
    """Until some transaction of this database waits for a row lock (bounded)."""
    deadline = asyncio.get_running_loop().time() + 10
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while asyncio.get_running_loop().time() < deadline:
        async with rt.sessions() as db:
            if await db.scalar(query):
                return
        await asyncio.sleep(0.01)  # polling a condition, with a deadline
    raise AssertionError("no transaction ever waited for the lock")


async def test_a_ballot_waiting_on_a_closing_proposal_is_refused(rt: Runtime) -> None:
    a, b, c = await members(rt, 3)
    p = await propose(rt, a)
    await vote(rt, p, a, "yes")
    await vote(rt, p, c, "no")
    async with rt.unit_of_work() as db:
        closing = await governance.close_proposal(db, proposal_id=p.id, now=p.closes_at)
        assert closing is not None and closing.status == "rejected"
        # Cast before the deadline, but the proposal's row is already being closed.
        late = asyncio.create_task(
            vote(rt, p, b, "yes", now=p.closes_at - timedelta(microseconds=1))
        )
        await wait_for_a_lock_wait(rt)
    with pytest.raises(VotingClosed):
        await late
    done = await fetch(rt, p)
    assert done.status == "rejected" and done.tally == Tally(yes=1, no=1)


async def test_closing_happens_exactly_once_with_two_dispatchers(
    rt: Runtime, settings: Settings, governance_db: str
) -> None:
    a, b, c = await members(rt, 3)
    before = await current_version(rt)
    proposals = []
    for _ in range(6):
        p = await propose(rt, a)
        await vote(rt, p, b, "yes")
        await vote(rt, p, c, "yes")
        proposals.append(p)
    mine = {p.id for p in proposals}
    deadline = max(p.closes_at for p in proposals)

    other = Runtime.create(governance_settings(settings, governance_db))
    await other.start()
    try:
        first, second = await asyncio.gather(
            governance.close_due_proposals(rt.sessions, publish=rt.flush, now=deadline),
            governance.close_due_proposals(other.sessions, publish=other.flush, now=deadline),
        )
    finally:
        await other.close()
    closed_by_first = {r.id for r in first} & mine
    closed_by_second = {r.id for r in second} & mine
    assert closed_by_first | closed_by_second == mine
    assert not closed_by_first & closed_by_second

    async with rt.sessions() as db:
        versions = (
            await db.scalars(select(FareRule.version).where(FareRule.proposal_id.in_(mine)))
        ).all()
    assert sorted(versions) == list(range(before + 1, before + 7))
    for p in proposals:
        assert len(await audit_entries(rt, "proposal.closed", p.id)) == 1
        assert len(await audit_entries(rt, "rule.adopted", p.id)) == 1
        assert (await fetch(rt, p)).status == "adopted"
    await assert_chain_verifies(rt)


# -- opening ---------------------------------------------------------------------------------


async def test_a_vote_must_stay_open_the_minimum_window(rt: Runtime) -> None:
    (a,) = await members(rt, 1)
    with pytest.raises(ClosesTooSoon):
        await propose(rt, a, window=timedelta(seconds=MIN_WINDOW_S - 1))
    with pytest.raises(InvalidInput, match="currency"):
        await propose(rt, a, rule={**RAISE, "currency": "EUR"})
    with pytest.raises(MemberNotFound):
        await propose(rt, "drv_nobody")
    p = await propose(rt, a, window=timedelta(seconds=MIN_WINDOW_S + 1))
    assert p.status == "open"


async def test_left_out_bylaws_keep_their_current_values(rt: Runtime) -> None:
    (a,) = await members(rt, 1)
    async with rt.sessions() as db:
        current = await rules.current(db)
    p = await propose(rt, a, rule={**PRICES_ONLY, "cost_recovery_mode": "dues"})
    assert p.rule.fairness_weight_permille == current.fairness_weight_permille
    assert p.rule.cost_recovery_mode == "dues"


async def test_unknown_proposals(rt: Runtime) -> None:
    (a,) = await members(rt, 1)
    async with rt.sessions() as db:
        with pytest.raises(ProposalNotFound):
            await governance.get_proposal(db, proposal_id="prp_nope")
        with pytest.raises(ProposalNotFound):
            await governance.cast_ballot(db, proposal_id="prp_nope", member_id=a, choice="yes")


async def test_listing_shows_open_proposals_with_live_tallies(rt: Runtime) -> None:
    a, b = await members(rt, 2)
    p = await propose(rt, a)
    q = await propose(rt, b)
    await vote(rt, p, b, "no")
    async with rt.sessions() as db:
        page, _cursor = await governance.list_proposals(db, status="open", cursor=None, limit=50)
        first, cursor = await governance.list_proposals(db, status=None, cursor=None, limit=1)
        second, _ = await governance.list_proposals(db, status=None, cursor=cursor, limit=1)
    by_id = {r.id: r for r in page}
    assert by_id[p.id].tally == Tally(no=1) and by_id[q.id].tally == Tally()
    assert all(r.status == "open" for r in page)
    assert [r.id for r in first + second] == [q.id, p.id]


# -- quotes are honoured across an adoption ----------------------------------------------------


async def adopt(rt: Runtime, rule: RuleDraft) -> int:
    members_ = await members(rt, 1)
    p = await propose(rt, members_[0], rule=rule)
    await vote(rt, p, members_[0], "yes")
    done = await close(rt, p)
    assert done.fare_rule_version is not None
    return done.fare_rule_version


async def rider(rt: Runtime) -> str:
    async with rt.unit_of_work() as db:
        made, _ = await identity.sign_up_rider(
            db, settings=rt.settings, name="Rider", phone="+1 555 0103"
        )
    return made.id


async def test_a_trip_is_charged_the_version_it_was_quoted_under(rt: Runtime) -> None:
    riders = [await rider(rt) for _ in range(3)]
    async with rt.sessions() as db:
        quoted = await trips.quote(db, rt, pickup=MIDTOWN, dropoff=CHELSEA, rider_id=riders[0])
    assert quoted.quote_id is not None
    async with rt.unit_of_work() as db:
        mid_trip, _ = await trips.request(
            db, rt, rider_id=riders[1], pickup=MIDTOWN, dropoff=CHELSEA, idempotency_key=None
        )
    old = quoted.rule.version
    assert mid_trip.fare_rule_version == old

    new = await adopt(
        rt,
        {
            **PRICES_ONLY,
            "base_cents": 999,
            "per_km_cents": 999,
            "per_minute_cents": 99,
            "minimum_cents": 2000,
        },
    )
    assert new > old

    async with rt.unit_of_work() as db:
        pinned, _ = await trips.request(
            db,
            rt,
            rider_id=riders[0],
            pickup=MIDTOWN,
            dropoff=CHELSEA,
            idempotency_key=None,
            quote_id=quoted.quote_id,
        )
        unpinned, _ = await trips.request(
            db, rt, rider_id=riders[2], pickup=MIDTOWN, dropoff=CHELSEA, idempotency_key=None
        )
    assert pinned.fare_rule_version == old
    assert pinned.fare_total_cents == quoted.fare.total_cents
    assert unpinned.fare_rule_version == new
    assert unpinned.fare_total_cents > pinned.fare_total_cents
    # A trip requested before the adoption keeps its fare: it is never re-priced.
    async with rt.sessions() as db:
        again = await trips.trips_by_ids(db, [mid_trip.id])
    assert again[0].fare_rule_version == old
    assert again[0].fare_total_cents == mid_trip.fare_total_cents


async def test_a_quote_id_must_be_the_riders_own_for_the_same_points(rt: Runtime) -> None:
    owner, other = await rider(rt), await rider(rt)
    async with rt.sessions() as db:
        quoted = await trips.quote(db, rt, pickup=MIDTOWN, dropoff=CHELSEA, rider_id=owner)
    assert quoted.quote_id is not None
    expired, _ = sign_quote(
        secret=rt.settings.jwt_secret,
        rider_id=owner,
        pickup=MIDTOWN,
        dropoff=CHELSEA,
        pinned=PinnedQuote(quoted.rule.version, 0),
        now_s=int(utcnow().timestamp()) - 3600,
    )
    attempts = [
        (other, MIDTOWN, CHELSEA, quoted.quote_id),
        (owner, CHELSEA, MIDTOWN, quoted.quote_id),
        (owner, MIDTOWN, CHELSEA, expired),
        (owner, MIDTOWN, CHELSEA, "garbage"),
    ]
    for rider_id, pickup, dropoff, quote_id in attempts:
        with pytest.raises(QuoteInvalid):
            async with rt.unit_of_work() as db:
                await trips.request(
                    db,
                    rt,
                    rider_id=rider_id,
                    pickup=pickup,
                    dropoff=dropoff,
                    idempotency_key=None,
                    quote_id=quote_id,
                )
