"""The co-op's public record: the hash-chained audit log, readable by anyone signed in
(``fares.audit``; how to verify it is in ``docs/governance.md``), and its accounts:
budgets, period closes and patronage (``fares.ledger``, ``docs/accounts.md``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from core.clock import utcnow
from fares import audit, ledger
from fares.accounts import Period
from web.deps import CurrentOperator, CurrentPrincipal, Session
from web.schemas import RequestIn

router = APIRouter(tags=["coop"])


class AuditEntryOut(BaseModel):
    seq: int
    at: str = Field(description="Exactly the string that was hashed (ISO 8601, UTC).")
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str = Field(
        description='sha256_hex(prev_hash + JCS({"seq", "at", "kind", "payload"})), '
        "JCS being RFC 8785 canonical JSON; the first prev_hash is 64 zeros."
    )


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null when this page is the end "
        "(as on GET /v1/riders/me/trips)."
    )
    next_after: int | None = Field(
        description="The same, as the seq to pass as ?after=; null when this page is the end."
    )


@router.get("/v1/coop/audit", operation_id="listAuditEntries")
async def audit_log(
    who: CurrentPrincipal,
    db: Session,
    after: int = Query(0, ge=0, description="Entries with seq greater than this."),
    cursor: str | None = Query(
        None,
        pattern=r"^[0-9]{1,18}$",
        description="A page's next_cursor: the page after it (takes the place of after).",
    ),
    limit: int = Query(500, ge=1, le=1000, description="Entries per page (default 500)."),
) -> AuditPage:
    start = int(cursor) if cursor is not None else after
    # One more than asked: whether it comes says if there is a next page, so the last page
    # says so (null) even when the log ends exactly at a page's end.
    entries = await audit.entries_after(db, after=start, limit=limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    items = [
        AuditEntryOut(
            seq=e.seq, at=e.at, kind=e.kind, payload=e.payload, prev_hash=e.prev_hash, hash=e.hash
        )
        for e in entries
    ]
    next_after = entries[-1].seq if more else None
    return AuditPage(
        items=items,
        next_cursor=None if next_after is None else str(next_after),
        next_after=next_after,
    )


# -- accounts ------------------------------------------------------------------------------


class BudgetLineIn(RequestIn):
    label: str = Field(min_length=1, max_length=200)
    amount_cents: int = Field(ge=0, le=10**12)


class BudgetIn(RequestIn):
    lines: list[BudgetLineIn] = Field(max_length=200)
    expected_trips: int = Field(ge=1, le=10**9)


class BudgetLineOut(BaseModel):
    label: str
    amount_cents: int
    carried_from: str | None = Field(
        description="The closed period whose deficit (or undistributed surplus) this carries."
    )


class DuesShare(BaseModel):
    driver_id: str
    amount_cents: int


class BudgetOut(BaseModel):
    period: str
    status: str = Field(description="open | closed (a closed period's budget is immutable)")
    lines: list[BudgetLineOut]
    expected_trips: int
    total_cents: int
    cost_recovery_mode: str = Field(description="The current fare rule's: per_trip | dues")
    per_trip_fee_cents: int | None = Field(
        description="per_trip: total over expected trips, rounded up to the cent"
    )
    dues: list[DuesShare] | None = Field(
        description="dues: an equal share per active member; the shares sum to the total"
    )
    published_at: datetime

    @classmethod
    def of(cls, view: ledger.BudgetView) -> BudgetOut:
        return cls(
            period=view.period,
            status=view.status,
            lines=[
                BudgetLineOut(
                    label=x.label, amount_cents=x.amount_cents, carried_from=x.carried_from
                )
                for x in view.lines
            ],
            expected_trips=view.expected_trips,
            total_cents=view.total_cents,
            cost_recovery_mode=view.cost_recovery_mode,
            per_trip_fee_cents=view.per_trip_fee_cents,
            dues=None
            if view.dues is None
            else [DuesShare(driver_id=m, amount_cents=c) for m, c in view.dues.items()],
            published_at=view.published_at,
        )


class PatronageOut(BaseModel):
    driver_id: str
    trips: int
    amount_cents: int


class PeriodOut(BaseModel):
    period: str
    status: str = Field(description="open | closed")
    cost_recovery_mode: str | None = Field(description="The mode it was closed under")
    trips: int
    fares_cents: int
    driver_earnings_cents: int
    cost_recovery_cents: int = Field(description="Per-trip fees collected")
    dues_cents: int
    costs_cents: int
    surplus_cents: int = Field(description="cost recovery + dues - costs; negative: deficit")
    carried_cents: int = Field(description="Carried into the next period's budget as a line")
    carried_to: str | None
    patronage: list[PatronageOut]
    cancellations: int = Field(0, description="Late cancellations that cost the rider a fee")
    cancellation_fees_cents: int = Field(
        0, description="Their fees, paid rider to member in full (not cost recovery)"
    )

    @classmethod
    def of(cls, r: ledger.PeriodReport) -> PeriodOut:
        return cls(
            period=r.period,
            status=r.status,
            cost_recovery_mode=r.cost_recovery_mode,
            trips=r.trips,
            fares_cents=r.fares_cents,
            driver_earnings_cents=r.driver_earnings_cents,
            cost_recovery_cents=r.cost_recovery_cents,
            dues_cents=r.dues_cents,
            costs_cents=r.costs_cents,
            surplus_cents=r.surplus_cents,
            carried_cents=r.carried_cents,
            carried_to=r.carried_to,
            patronage=[
                PatronageOut(driver_id=p.driver_id, trips=p.trips, amount_cents=p.amount_cents)
                for p in r.patronage
            ],
            cancellations=r.cancellations,
            cancellation_fees_cents=r.cancellation_fees_cents,
        )


@router.put("/v1/coop/budgets/{period}", operation_id="publishBudget")
async def publish_budget(
    period: str, body: BudgetIn, who: CurrentOperator, db: Session
) -> BudgetOut:
    view = await ledger.publish_budget(
        db,
        period=Period.parse(period),
        lines=[(x.label, x.amount_cents) for x in body.lines],
        expected_trips=body.expected_trips,
    )
    return BudgetOut.of(view)


@router.get("/v1/coop/budgets/{period}", operation_id="getBudget")
async def get_budget(period: str, who: CurrentPrincipal, db: Session) -> BudgetOut:
    return BudgetOut.of(await ledger.budget(db, period=Period.parse(period)))


@router.post("/v1/coop/periods/{period}/close", operation_id="closePeriod")
async def close_period(period: str, who: CurrentOperator, db: Session) -> PeriodOut:
    report = await ledger.close_period(db, period=Period.parse(period), now=utcnow())
    return PeriodOut.of(report)


@router.get("/v1/coop/periods/{period}", operation_id="getPeriod")
async def get_period(period: str, who: CurrentPrincipal, db: Session) -> PeriodOut:
    return PeriodOut.of(await ledger.period_report(db, period=Period.parse(period)))
