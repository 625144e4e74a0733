"""Fare rules, readable by anyone."""

from __future__ import annotations

from fastapi import APIRouter

from fares import rules
from web.deps import Session
from web.schemas import FareRuleOut

router = APIRouter(tags=["fares"])


@router.get("/v1/fares/rules/current", operation_id="getCurrentFareRule")
async def current_rule(db: Session) -> FareRuleOut:
    return FareRuleOut.of(await rules.current(db))


@router.get("/v1/fares/rules", operation_id="listFareRules")
async def all_rules(db: Session) -> list[FareRuleOut]:
    return [FareRuleOut.of(t) for t in await rules.all_versions(db)]
