"""Fare governance over HTTP: members propose rules and vote; anyone signed in reads
proposals, live tallies and ballots (``fares.governance``, ``docs/governance.md``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from fares import governance
from web.deps import CurrentDriver, CurrentPrincipal, RuntimeDep, Session

router = APIRouter(tags=["governance"])

# $10,000 per part: far above any fare, low enough that a typo cannot become a vote and
# that every fare priced under the rule fits the trips table's integer columns.
MAX_CENTS = 1_000_000

Cents = Annotated[int, Field(ge=0, le=MAX_CENTS, strict=True)]


def _permille(weight: float) -> int | None:
    """A weight as written (0.25, not 0.25000000000000001) in per-mille; None when it
    has more than 3 decimals. The bylaws are kept in per-mille: no float is stored."""
    exact = Decimal(repr(weight)) * 1000
    return int(exact) if exact == exact.to_integral_value() else None


class FareRuleFieldsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_cents: Cents
    per_km_cents: Cents
    per_minute_cents: Cents
    minimum_cents: Cents
    cancellation_fee_cents: Cents
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="Must be the current rule's.")
    cost_recovery_mode: Literal["per_trip", "dues"]
    fairness_weight: float | None = Field(
        None,
        ge=0,
        le=1,
        strict=True,
        allow_inf_nan=False,
        description="The dispatcher's fairness weight in [0, 1], to 3 decimals; "
        "left out, it keeps the current rule's value.",
    )

    @field_validator("fairness_weight")
    @classmethod
    def _three_decimals(cls, value: float | None) -> float | None:
        if value is not None and _permille(value) is None:
            raise ValueError("fairness_weight has at most 3 decimals")
        return value

    def draft(self) -> governance.RuleDraft:
        weight = None if self.fairness_weight is None else _permille(self.fairness_weight)
        return governance.RuleDraft(
            base_cents=self.base_cents,
            per_km_cents=self.per_km_cents,
            per_minute_cents=self.per_minute_cents,
            minimum_cents=self.minimum_cents,
            cancellation_fee_cents=self.cancellation_fee_cents,
            currency=self.currency,
            cost_recovery_mode=self.cost_recovery_mode,
            fairness_weight_permille=weight,
        )


class ProposalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
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


class FareRuleFieldsOut(BaseModel):
    base_cents: int
    per_km_cents: int
    per_minute_cents: int
    minimum_cents: int
    cancellation_fee_cents: int
    currency: str
    cost_recovery_mode: Literal["per_trip", "dues"]
    fairness_weight: float


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


class BallotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
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


@router.post("/v1/fares/proposals", status_code=201)
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


@router.get("/v1/fares/proposals")
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


@router.get("/v1/fares/proposals/{proposal_id}")
async def get_proposal(proposal_id: str, who: CurrentPrincipal, db: Session) -> ProposalOut:
    return _out(await governance.get_proposal(db, proposal_id=proposal_id))


@router.post("/v1/fares/proposals/{proposal_id}/ballots", status_code=201)
async def cast_ballot(
    proposal_id: str, body: BallotIn, who: CurrentDriver, db: Session
) -> BallotOut:
    ballot = await governance.cast_ballot(
        db, proposal_id=proposal_id, member_id=who.subject_id, choice=body.choice
    )
    return _ballot(ballot)


@router.get("/v1/fares/proposals/{proposal_id}/ballots")
async def list_ballots(proposal_id: str, who: CurrentPrincipal, db: Session) -> BallotList:
    ballots = await governance.list_ballots(db, proposal_id=proposal_id)
    return BallotList(items=[_ballot(b) for b in ballots])
