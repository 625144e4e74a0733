"""Fare governance over HTTP: members propose rules and vote; anyone signed in reads
proposals, live tallies and ballots (``fares.governance``, ``docs/governance.md``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from fares import governance
from web.deps import CurrentDriver, CurrentPrincipal, RuntimeDep, Session
from web.schemas import FareRuleFieldsIn, FareRuleFieldsOut, RequestIn

router = APIRouter(tags=["governance"])


class ProposalIn(RequestIn):
    rule: FareRuleFieldsIn
    rationale: str = Field(min_length=1, max_length=4000)
    closes_at: AwareDatetime = Field(
        description="At least COOP_VOTE_MIN_WINDOW_S from now, at most 90 days."
    )

    @field_validator("rationale")
    @classmethod
    def _text(cls, value: str) -> str:
        # Stored as PostgreSQL text (no NUL) and hashed into the audit log as UTF-8.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("rationale must be valid Unicode text") from exc
        if "\x00" in value:
            raise ValueError("rationale must not contain NUL characters")
        return value


class TallyOut(BaseModel):
    yes: int
    no: int
    abstain: int


class ProposalOut(BaseModel):
    id: str
    status: Literal["open", "adopted", "rejected"]
    rule: FareRuleFieldsOut
    rationale: str
    proposer_id: str
    opens_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    eligible_voters: int = Field(description="Members in good standing when it opened.")
    tally: TallyOut = Field(description="Live while open; final once closed.")
    quorum: float = Field(description="The fraction of eligible voters who must vote.")
    quorum_ballots: int = Field(description="Ballots needed: ⌈quorum × eligible_voters⌉.")
    result_reason: str | None
    fare_rule_version: int | None = Field(description="The rule version its adoption created.")


class ProposalPage(BaseModel):
    items: list[ProposalOut]
    next_cursor: str | None


class BallotIn(RequestIn):
    choice: Literal["yes", "no", "abstain"]


class BallotOut(BaseModel):
    proposal_id: str
    member_id: str
    choice: Literal["yes", "no", "abstain"]
    cast_at: datetime
    replaced: Literal["yes", "no", "abstain"] | None = Field(
        None, description="The member's earlier ballot that this one replaced."
    )


class BallotList(BaseModel):
    items: list[BallotOut]


def _out(record: governance.ProposalRecord) -> ProposalOut:
    return ProposalOut.model_validate(governance.proposal_view(record))


def _ballot(b: governance.BallotRecord) -> BallotOut:
    return BallotOut(
        proposal_id=b.proposal_id,
        member_id=b.member_id,
        choice=b.choice,
        cast_at=b.cast_at,
        replaced=b.replaced,
    )


@router.post("/v1/fares/proposals", operation_id="proposeFareRule", status_code=201)
async def propose(body: ProposalIn, who: CurrentDriver, db: Session, rt: RuntimeDep) -> ProposalOut:
    record = await governance.open_proposal(
        db,
        settings=rt.settings,
        proposer_id=who.subject_id,
        rule=body.rule.draft(),
        rationale=body.rationale,
        closes_at=body.closes_at,
    )
    return _out(record)


@router.get("/v1/fares/proposals", operation_id="listFareProposals")
async def list_proposals(
    who: CurrentPrincipal,
    db: Session,
    status: Literal["open", "adopted", "rejected"] | None = Query(None),
    cursor: str | None = Query(None, max_length=64),
    limit: int = Query(50, ge=1, le=200),
) -> ProposalPage:
    records, next_cursor = await governance.list_proposals(
        db, status=status, cursor=cursor, limit=limit
    )
    return ProposalPage(items=[_out(r) for r in records], next_cursor=next_cursor)


@router.get("/v1/fares/proposals/{proposal_id}", operation_id="getFareProposal")
async def get_proposal(proposal_id: str, who: CurrentPrincipal, db: Session) -> ProposalOut:
    return _out(await governance.get_proposal(db, proposal_id=proposal_id))


@router.post(
    "/v1/fares/proposals/{proposal_id}/ballots", operation_id="castBallot", status_code=201
)
async def cast_ballot(
    proposal_id: str, body: BallotIn, who: CurrentDriver, db: Session
) -> BallotOut:
    ballot = await governance.cast_ballot(
        db, proposal_id=proposal_id, member_id=who.subject_id, choice=body.choice
    )
    return _ballot(ballot)


@router.get("/v1/fares/proposals/{proposal_id}/ballots", operation_id="listBallots")
async def list_ballots(proposal_id: str, who: CurrentPrincipal, db: Session) -> BallotList:
    ballots = await governance.list_ballots(db, proposal_id=proposal_id)
    return BallotList(items=[_ballot(b) for b in ballots])
