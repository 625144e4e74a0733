"""Fare rule versions: which one is current, and the one a trip was quoted under."""

from __future__ import annotations

from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import FareRule
from fares.pricing import CostRecoveryMode, FareRuleTerms


def terms_of(row: FareRule) -> FareRuleTerms:
    return FareRuleTerms(
        version=row.version,
        base_cents=row.base_cents,
        per_km_cents=row.per_km_cents,
        per_minute_cents=row.per_minute_cents,
        minimum_cents=row.minimum_cents,
        cancellation_fee_cents=row.cancellation_fee_cents,
        currency=row.currency,
        cost_recovery_mode=cast(CostRecoveryMode, row.cost_recovery_mode),
        adopted_at=row.adopted_at,
        proposal_id=row.proposal_id,
        fairness_weight_permille=row.fairness_weight_permille,
    )


async def current(db: AsyncSession) -> FareRuleTerms:
    row = await db.scalar(select(FareRule).order_by(FareRule.version.desc()).limit(1))
    if row is None:
        raise NotFound("no fare rule has been adopted")
    return terms_of(row)


async def by_version(db: AsyncSession, *, version: int) -> FareRuleTerms:
    row = await db.get(FareRule, version)
    if row is None:
        raise NotFound(f"no fare rule version {version}")
    return terms_of(row)


async def all_versions(db: AsyncSession) -> list[FareRuleTerms]:
    rows = await db.scalars(select(FareRule).order_by(FareRule.version.desc()))
    return [terms_of(r) for r in rows]
