"""Fare rule versions: which one is current, and the one a trip was quoted under."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.fare_terms import FareRuleTerms
from core.models import FareRule
from core.models.fare_rule import terms_of


def rule_of(row: FareRule) -> FareRuleTerms:
    return FareRuleTerms(
        **terms_of(row).payload(),
        version=row.version,
        adopted_at=row.adopted_at,
        proposal_id=row.proposal_id,
    )


async def current(db: AsyncSession) -> FareRuleTerms:
    row = await db.scalar(select(FareRule).order_by(FareRule.version.desc()).limit(1))
    if row is None:
        raise NotFound("no fare rule has been adopted")
    return rule_of(row)


async def by_version(db: AsyncSession, *, version: int) -> FareRuleTerms:
    row = await db.get(FareRule, version)
    if row is None:
        raise NotFound(f"no fare rule version {version}")
    return rule_of(row)


async def all_versions(db: AsyncSession) -> list[FareRuleTerms]:
    rows = await db.scalars(select(FareRule).order_by(FareRule.version.desc()))
    return [rule_of(r) for r in rows]
