"""Fares set by member vote: proposals, ballots, tallies, and closing at the deadline.

- Any member in good standing proposes a rule (the fare numbers plus the bylaw fields:
  cost-recovery mode and the dispatcher's fairness weight) with a rationale and a
  closing time at least ``COOP_VOTE_MIN_WINDOW_S`` away.
- The members in good standing at that moment are the proposal's voters (a snapshot in
  ``proposal_voters``), and the quorum is fixed then too.
- One member, one ballot: a later ballot replaces the earlier one (an upsert on
  ``(proposal_id, member_id)``). Voting ends at ``closes_at``.
- At ``closes_at`` the dispatcher's job (``close_due_proposals``) closes it, in one
  transaction: adopted when ballots cast ≥ quorum × eligible voters and yes > no (a tie
  is rejected), which creates the next rule version, effective at once.
- Every step is appended to the audit log (``fares.audit``) in the same transaction, and
  members hear of new proposals and results on their sockets after the commit.

Tallying and deciding are pure functions over frozen dataclasses (``fares.voting``);
this module is the I/O around them. ``docs/governance.md`` explains the rules.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import identity
from core.clock import iso, utcnow
from core.db import outbox, unit_of_work
from core.errors import (
    CoopError,
    InvalidInput,
    NotEligible,
    ProposalNotFound,
    VotingClosed,
)
from core.events import Event
from core.fare_terms import (
    FareRuleTerms,
    FareTerms,
    wire_view,
)
from core.ids import new_id
from core.models import Ballot, FareRule, Member, Proposal, ProposalVoter
from core.models.fare_rule import terms_of
from core.settings import Settings
from fares import audit, rules
from fares.voting import (
    CHOICES,
    Choice,
    RuleDraft,
    Tally,
    check_window,
    complete_rule,
    decide,
    quorum_ballots,
    quorum_permille,
)

log = logging.getLogger(__name__)

Status = Literal["open", "adopted", "rejected"]
STATUSES: tuple[Status, ...] = ("open", "adopted", "rejected")

# Due proposals closed per call; more than this wait for the dispatcher's next tick.
CLOSE_BATCH = 50

Publish = Callable[[list[Any]], Awaitable[Any]]


# -- records and views ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    id: str
    status: Status
    rule: FareTerms
    rationale: str
    proposer_id: str
    opens_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    eligible_voters: int
    tally: Tally
    quorum_permille: int
    quorum_ballots: int
    result_reason: str | None
    fare_rule_version: int | None


@dataclass(frozen=True, slots=True)
class BallotRecord:
    proposal_id: str
    member_id: str
    choice: Choice
    cast_at: datetime
    replaced: Choice | None = None


def proposal_view(p: ProposalRecord) -> dict[str, Any]:
    """A ``Proposal`` as the contract shows it, in HTTP answers and socket frames alike."""
    return {
        "id": p.id,
        "status": p.status,
        "rule": wire_view(p.rule),
        "rationale": p.rationale,
        "proposer_id": p.proposer_id,
        "opens_at": iso(p.opens_at),
        "closes_at": iso(p.closes_at),
        "closed_at": iso(p.closed_at),
        "eligible_voters": p.eligible_voters,
        "tally": p.tally.payload(),
        "quorum": p.quorum_permille / 1000,
        "quorum_ballots": p.quorum_ballots,
        "result_reason": p.result_reason,
        "fare_rule_version": p.fare_rule_version,
    }


def rule_adopted_payload(rule: FareRuleTerms) -> dict[str, Any]:
    """The audit payload of ``rule.adopted`` (the same shape the migration seeded)."""
    return {
        "version": rule.version,
        "proposal_id": rule.proposal_id,
        **rule.terms().payload(),
        "adopted_at": audit.format_at(rule.adopted_at) if rule.adopted_at else None,
    }


def _record(row: Proposal, t: Tally, version: int | None) -> ProposalRecord:
    return ProposalRecord(
        id=row.id,
        status=cast(Status, row.status),
        rule=terms_of(row),
        rationale=row.rationale,
        proposer_id=row.proposer_id,
        opens_at=row.opens_at,
        closes_at=row.closes_at,
        closed_at=row.closed_at,
        eligible_voters=row.eligible_voters,
        tally=t,
        quorum_permille=row.quorum_permille,
        quorum_ballots=row.quorum_ballots,
        result_reason=row.result_reason,
        fare_rule_version=version,
    )


async def _tallies(db: AsyncSession, ids: list[str]) -> dict[str, Tally]:
    if not ids:
        return {}
    rows = await db.execute(
        select(Ballot.proposal_id, Ballot.choice, func.count())
        .where(Ballot.proposal_id.in_(ids))
        .group_by(Ballot.proposal_id, Ballot.choice)
    )
    counts: dict[str, dict[str, int]] = {}
    for proposal_id, choice, n in rows:
        counts.setdefault(proposal_id, {})[choice] = int(n)
    return {
        pid: Tally(yes=c.get("yes", 0), no=c.get("no", 0), abstain=c.get("abstain", 0))
        for pid, c in counts.items()
    }


async def _records(db: AsyncSession, rows: list[Proposal]) -> list[ProposalRecord]:
    """Records with live tallies for open proposals and the frozen one for closed."""
    ids = [r.id for r in rows]
    live = await _tallies(db, [r.id for r in rows if r.status == "open"])
    versions: dict[str, int] = {}
    if ids:
        found = await db.execute(
            select(FareRule.proposal_id, FareRule.version).where(FareRule.proposal_id.in_(ids))
        )
        versions = {str(pid): int(v) for pid, v in found}
    out = []
    for r in rows:
        if r.status == "open":
            t = live.get(r.id, Tally())
        else:
            t = Tally(yes=r.yes_count or 0, no=r.no_count or 0, abstain=r.abstain_count or 0)
        out.append(_record(r, t, versions.get(r.id)))
    return out


def _notify(db: AsyncSession, member_ids: Iterable[str], frame: dict[str, Any]) -> None:
    """Queue ``frame`` for each member's driver socket, sent once the transaction
    commits (``core.db.unit_of_work`` / ``dispatch.runtime.emit``)."""
    box = outbox(db)
    for member_id in member_ids:
        box.append(Event("driver", member_id, frame))


async def _active_member_ids(db: AsyncSession) -> list[str]:
    rows = await db.scalars(select(Member.id).where(Member.status == "active").order_by(Member.id))
    return list(rows.all())


# -- services ----------------------------------------------------------------------------


async def open_proposal(
    db: AsyncSession,
    *,
    settings: Settings,
    proposer_id: str,
    rule: RuleDraft,
    rationale: str,
    closes_at: datetime,
    now: datetime | None = None,
) -> ProposalRecord:
    """A member proposes a rule. The members in good standing now become its voters."""
    now = now or utcnow()
    await identity.get_member(db, member_id=proposer_id)
    fields = complete_rule(rule, await rules.current(db))
    check_window(opens_at=now, closes_at=closes_at, min_window_s=settings.vote_min_window_s)
    voters = await _active_member_ids(db)
    q = quorum_permille(settings.vote_quorum)
    row = Proposal(
        id=new_id("prp"),
        status="open",
        proposer_id=proposer_id,
        rationale=rationale,
        **fields.payload(),
        opens_at=now,
        closes_at=closes_at,
        eligible_voters=len(voters),
        quorum_permille=q,
        quorum_ballots=quorum_ballots(eligible_voters=len(voters), quorum_permille=q),
    )
    db.add(row)
    await db.flush()
    if voters:
        await db.execute(
            insert(ProposalVoter), [{"proposal_id": row.id, "member_id": m} for m in voters]
        )
    await audit.append(
        db,
        kind="proposal.opened",
        payload={
            "proposal_id": row.id,
            "proposer_id": proposer_id,
            "rationale": rationale,
            "rule": fields.payload(),
            "opens_at": audit.format_at(now),
            "closes_at": audit.format_at(closes_at),
            "eligible_voters": len(voters),
            "eligible_member_ids": voters,
            "quorum_permille": q,
            "quorum_ballots": row.quorum_ballots,
        },
    )
    record = _record(row, Tally(), None)
    _notify(db, voters, {"type": "proposal.opened", "proposal": proposal_view(record)})
    log.info("proposal opened", extra={"proposal_id": row.id, "eligible_voters": len(voters)})
    return record


async def get_proposal(db: AsyncSession, *, proposal_id: str) -> ProposalRecord:
    row = await db.get(Proposal, proposal_id)
    if row is None:
        raise ProposalNotFound(f"no proposal {proposal_id}")
    return (await _records(db, [row]))[0]


async def list_proposals(
    db: AsyncSession, *, status: Status | None, cursor: str | None, limit: int
) -> tuple[list[ProposalRecord], str | None]:
    """Newest first; the cursor is the last id of the previous page (ids sort by time)."""
    stmt = select(Proposal)
    if status is not None:
        stmt = stmt.where(Proposal.status == status)
    if cursor:
        stmt = stmt.where(Proposal.id < cursor)
    rows = list((await db.scalars(stmt.order_by(Proposal.id.desc()).limit(limit + 1))).all())
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return await _records(db, rows[:limit]), next_cursor


async def list_ballots(db: AsyncSession, *, proposal_id: str) -> list[BallotRecord]:
    """Every member's current ballot on a proposal: ballots are not secret."""
    if await db.get(Proposal, proposal_id) is None:
        raise ProposalNotFound(f"no proposal {proposal_id}")
    rows = await db.scalars(
        select(Ballot).where(Ballot.proposal_id == proposal_id).order_by(Ballot.cast_at)
    )
    return [
        BallotRecord(b.proposal_id, b.member_id, cast(Choice, b.choice), b.cast_at) for b in rows
    ]


async def cast_ballot(
    db: AsyncSession,
    *,
    proposal_id: str,
    member_id: str,
    choice: Choice,
    now: datetime | None = None,
) -> BallotRecord:
    """A member votes; a later ballot replaces the earlier one.

    Locks, in this order (the closing job takes the first and the last in the same
    order, so they cannot deadlock): the proposal row FOR SHARE, so the proposal cannot
    close while the ballot is being cast and a ballot that commits is always in the
    final tally; the member's voter row FOR UPDATE, so one member's concurrent ballots
    go one at a time; the audit chain."""
    now = now or utcnow()
    if choice not in CHOICES:
        raise InvalidInput(f"choice must be one of {', '.join(CHOICES)}")
    await identity.get_member(db, member_id=member_id)
    proposal = await db.scalar(
        select(Proposal)
        .where(Proposal.id == proposal_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    if proposal is None:
        raise ProposalNotFound(f"no proposal {proposal_id}")
    if proposal.status != "open" or now >= proposal.closes_at:
        raise VotingClosed(f"voting on {proposal_id} closed at {iso(proposal.closes_at)}")
    voter = await db.scalar(
        select(ProposalVoter.member_id)
        .where(ProposalVoter.proposal_id == proposal_id, ProposalVoter.member_id == member_id)
        .with_for_update()
    )
    if voter is None:
        raise NotEligible(
            f"member {member_id} was not in good standing when {proposal_id} opened "
            f"({iso(proposal.opens_at)})"
        )
    previous = await db.scalar(
        select(Ballot.choice).where(
            Ballot.proposal_id == proposal_id, Ballot.member_id == member_id
        )
    )
    upsert = pg_insert(Ballot).values(
        proposal_id=proposal_id, member_id=member_id, choice=choice, cast_at=now
    )
    await db.execute(
        upsert.on_conflict_do_update(
            index_elements=[Ballot.proposal_id, Ballot.member_id],
            set_={"choice": upsert.excluded.choice, "cast_at": upsert.excluded.cast_at},
        )
    )
    await audit.append(
        db,
        kind="ballot.cast",
        payload={
            "proposal_id": proposal_id,
            "member_id": member_id,
            "choice": choice,
            "cast_at": audit.format_at(now),
            "replaces": previous,
        },
    )
    return BallotRecord(proposal_id, member_id, choice, now, cast(Choice | None, previous))


async def close_proposal(
    db: AsyncSession, *, proposal_id: str, now: datetime | None = None
) -> ProposalRecord | None:
    """Close one proposal whose deadline has passed: tally, decide, adopt the rule if it
    won, record it all in the audit log and tell every member, in the caller's
    transaction. None when the proposal is not due, already closed, or being closed (or
    voted on) by another transaction right now.

    Exactly once: the row is claimed with ``SELECT … WHERE status = 'open' AND
    closes_at <= now FOR UPDATE SKIP LOCKED``. Another closer either skips the locked
    row or, once this transaction commits, no longer finds it open. A ballot in flight
    holds the row FOR SHARE, so the claim waits for the next tick and the tally that
    follows includes it."""
    now = now or utcnow()
    row = await db.scalar(
        select(Proposal)
        .where(
            Proposal.id == proposal_id,
            Proposal.status == "open",
            Proposal.closes_at <= now,
        )
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if row is None:
        return None
    t = (await _tallies(db, [row.id])).get(row.id, Tally())
    outcome = decide(t, eligible_voters=row.eligible_voters, quorum_ballots=row.quorum_ballots)
    row.status = outcome.status
    row.result_reason = outcome.reason
    row.closed_at = now
    row.yes_count, row.no_count, row.abstain_count = t.yes, t.no, t.abstain
    await db.flush()
    # Rule versions are numbered under the chain lock, so two proposals adopted at the
    # same moment get consecutive versions in the order the log records them.
    await audit.lock_chain(db)
    await audit.append(
        db,
        kind="proposal.closed",
        payload={
            "proposal_id": row.id,
            "status": outcome.status,
            "reason": outcome.reason,
            "tally": t.payload(),
            "eligible_voters": row.eligible_voters,
            "quorum_ballots": row.quorum_ballots,
            "closed_at": audit.format_at(now),
        },
    )
    version = None
    if outcome.status == "adopted":
        latest = await db.scalar(select(func.max(FareRule.version)))
        rule_row = FareRule(
            version=int(latest or 0) + 1,
            **terms_of(row).payload(),
            adopted_at=now,
            proposal_id=row.id,
        )
        db.add(rule_row)
        await db.flush()
        version = rule_row.version
        await audit.append(
            db, kind="rule.adopted", payload=rule_adopted_payload(rules.rule_of(rule_row))
        )
    record = _record(row, t, version)
    _notify(
        db,
        await _active_member_ids(db),
        {"type": "proposal.closed", "proposal": proposal_view(record)},
    )
    log.info(
        "proposal closed",
        extra={"proposal_id": row.id, "status": outcome.status, "fare_rule_version": version},
    )
    return record


async def close_due_proposals(
    sessions: async_sessionmaker[AsyncSession],
    *,
    publish: Publish | None = None,
    now: datetime | None = None,
    limit: int = CLOSE_BATCH,
) -> list[ProposalRecord]:
    """The dispatcher's job: close every proposal past its deadline, each in its own
    transaction (one failing does not hold up the others), publishing each one's events
    with ``publish`` after its commit. Safe to run from any number of processes at once:
    each proposal is closed exactly once. Returns the proposals this call closed."""
    now = now or utcnow()
    async with sessions() as db:
        due = list(
            (
                await db.scalars(
                    select(Proposal.id)
                    .where(Proposal.status == "open", Proposal.closes_at <= now)
                    .order_by(Proposal.closes_at, Proposal.id)
                    .limit(limit)
                )
            ).all()
        )
    closed = []
    for proposal_id in due:
        try:
            async with unit_of_work(sessions, publish) as db:
                record = await close_proposal(db, proposal_id=proposal_id, now=now)
        except (CoopError, SQLAlchemyError) as exc:
            log.warning(
                "closing a proposal failed", extra={"proposal_id": proposal_id, "error": repr(exc)}
            )
            continue
        if record is not None:
            closed.append(record)
    return closed
