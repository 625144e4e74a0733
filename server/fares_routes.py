"""Fare rules, readable by anyone."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fares import rules
from fares.pricing import FareRuleTerms
from web.deps import Session

router = APIRouter(tags=["fares"])


class FareRuleOut(BaseModel):
    version: int
    base_cents: int
    per_km_cents: int
    per_minute_cents: int
    minimum_cents: int
    cancellation_fee_cents: int
    currency: str
    cost_recovery_mode: str
    fairness_weight: float = Field(
        ge=0, le=1, description="The dispatcher's fairness weight, a bylaw set by vote."
    )
    adopted_at: datetime | None
    proposal_id: str | None


def _out(t: FareRuleTerms) -> FareRuleOut:
    return FareRuleOut(
        version=t.version,
        base_cents=t.base_cents,
        per_km_cents=t.per_km_cents,
        per_minute_cents=t.per_minute_cents,
        minimum_cents=t.minimum_cents,
        cancellation_fee_cents=t.cancellation_fee_cents,
        currency=t.currency,
        cost_recovery_mode=t.cost_recovery_mode,
        fairness_weight=t.fairness_weight,
        adopted_at=t.adopted_at,
        proposal_id=t.proposal_id,
    )


@router.get("/v1/fares/rules/current")
async def current_rule(db: Session) -> FareRuleOut:
    return _out(await rules.current(db))


@router.get("/v1/fares/rules")
async def all_rules(db: Session) -> list[FareRuleOut]:
    return [_out(t) for t in await rules.all_versions(db)]
