"""Fare proposals, the voters each one may hear from, and their ballots
(``fares.governance``, ``docs/governance.md``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base
from core.models.fare_rule import FareTermsColumns, fare_terms_checks

PROPOSAL_STATUSES = ("open", "adopted", "rejected")
BALLOT_CHOICES = ("yes", "no", "abstain")


class Proposal(FareTermsColumns, Base):
    """A proposed fare rule, open for member ballots until ``closes_at``.

    The rule's numbers are columns of their own (``FareTermsColumns``, with the same
    checks as ``fare_rules``), so adopting a proposal copies them into the next rule
    version as they were voted.
    ``eligible_voters`` and the quorum are fixed when the proposal opens; the final
    tally is frozen into the row when it closes."""

    __tablename__ = "proposals"
    __table_args__ = (
        CheckConstraint(f"status IN {PROPOSAL_STATUSES}", name="status"),
        *fare_terms_checks(),
        CheckConstraint("closes_at > opens_at", name="window"),
        CheckConstraint(
            "eligible_voters >= 0 AND quorum_permille BETWEEN 0 AND 1000 "
            "AND quorum_ballots BETWEEN 0 AND eligible_voters",
            name="quorum",
        ),
        # Closed exactly when it carries a result.
        CheckConstraint(
            "(status = 'open') = (closed_at IS NULL AND result_reason IS NULL)",
            name="closed_has_result",
        ),
        # What the closing job scans: open proposals by deadline.
        Index(
            "ix_proposals_open_closes_at",
            "closes_at",
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_proposals_status_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    proposer_id: Mapped[str] = mapped_column(ForeignKey("members.id"))
    rationale: Mapped[str] = mapped_column(Text)

    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    eligible_voters: Mapped[int] = mapped_column(Integer)
    quorum_permille: Mapped[int] = mapped_column(Integer)
    quorum_ballots: Mapped[int] = mapped_column(Integer)

    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    result_reason: Mapped[str | None] = mapped_column(Text, default=None)
    yes_count: Mapped[int | None] = mapped_column(Integer, default=None)
    no_count: Mapped[int | None] = mapped_column(Integer, default=None)
    abstain_count: Mapped[int | None] = mapped_column(Integer, default=None)


class ProposalVoter(Base):
    """The snapshot of members in good standing when a proposal opened: exactly these
    may vote on it, so members admitted during a vote cannot swing it."""

    __tablename__ = "proposal_voters"

    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), primary_key=True)


class Ballot(Base):
    """A member's current ballot on a proposal: one row per (proposal, member), so a
    later ballot replaces the earlier one (an upsert) and nobody is counted twice. The
    history of every ballot cast is in the audit log."""

    __tablename__ = "ballots"
    __table_args__ = (
        CheckConstraint(f"choice IN {BALLOT_CHOICES}", name="choice"),
        # Only a voter of the proposal's snapshot can hold a ballot on it.
        ForeignKeyConstraint(
            ["proposal_id", "member_id"],
            ["proposal_voters.proposal_id", "proposal_voters.member_id"],
            name="fk_ballots_voter_proposal_voters",
        ),
    )

    proposal_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    choice: Mapped[str] = mapped_column(String(8))
    cast_at: Mapped[datetime]
