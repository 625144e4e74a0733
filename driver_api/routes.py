"""Driver (member) HTTP routes: admission by operators, profile, trip progress, earnings."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from core import identity
from core.clock import utcnow
from core.errors import PositionUnknown
from dispatch import demand_forecast, guidance, trips
from dispatch.views import trip_view
from driver_api.schemas import (
    Credentials,
    DemandMapOut,
    DispatchDecision,
    DispatchLog,
    DriverOut,
    EarningsOut,
    MemberAdmission,
    StatementLineOut,
    StatementOut,
    VehicleOut,
)
from fares import accounts, rules, statements
from geo.point import LatLng
from web.deps import CurrentDriver, CurrentOperator, RuntimeDep, Session
from web.schemas import TripOut

router = APIRouter(tags=["drivers"])


@router.post("/v1/drivers", operation_id="admitDriver", status_code=status.HTTP_201_CREATED)
async def admit(
    body: MemberAdmission, who: CurrentOperator, db: Session, rt: RuntimeDep
) -> Credentials:
    member, token = await identity.admit_member(
        db,
        settings=rt.settings,
        name=body.name,
        phone=body.phone,
        plate=body.vehicle.plate,
        seats=body.vehicle.seats,
    )
    return Credentials(id=member.id, token=token)


@router.get("/v1/drivers/me", operation_id="getDriverProfile")
async def me(who: CurrentDriver, db: Session, rt: RuntimeDep) -> DriverOut:
    member = await identity.get_member(db, member_id=who.subject_id)
    live = await rt.presence.state(member.id)
    offer = await rt.presence.offer_held_by(member.id)
    active = await trips.active_for_driver(db, driver_id=member.id)
    return DriverOut(
        id=member.id,
        name=member.name,
        phone=member.phone,
        status=member.status,
        vehicles=[VehicleOut(id=v.id, plate=v.plate, seats=v.seats) for v in member.vehicles],
        live_status=live.status,
        holds_offer=offer is not None,
        active_trip=None if active is None else TripOut.model_validate(trip_view(active)),
    )


async def _advance(
    trip_id: str, who: CurrentDriver, db: Session, rt: RuntimeDep, target: str
) -> TripOut:
    trip = await trips.advance(db, rt, trip_id=trip_id, driver_id=who.subject_id, target=target)
    return TripOut.model_validate(trip_view(trip))


@router.post("/v1/trips/{trip_id}/arrived", operation_id="markTripArrived")
async def arrived(trip_id: str, who: CurrentDriver, db: Session, rt: RuntimeDep) -> TripOut:
    return await _advance(trip_id, who, db, rt, "arrived")


@router.post("/v1/trips/{trip_id}/start", operation_id="startTrip")
async def start(trip_id: str, who: CurrentDriver, db: Session, rt: RuntimeDep) -> TripOut:
    return await _advance(trip_id, who, db, rt, "in_progress")


@router.post("/v1/trips/{trip_id}/complete", operation_id="completeTrip")
async def complete(trip_id: str, who: CurrentDriver, db: Session, rt: RuntimeDep) -> TripOut:
    done = await _advance(trip_id, who, db, rt, "completed")
    # The driver is idle at the drop-off: where to wait next (best effort, advice only).
    await guidance.push_to(rt, who.subject_id, LatLng(done.dropoff.lat, done.dropoff.lng))
    return done


def _period(text: str | None) -> accounts.Period:
    """The ``period`` query parameter, this month (UTC) when absent."""
    return accounts.Period.parse(text) if text is not None else accounts.Period.of(utcnow())


@router.get("/v1/drivers/me/earnings", operation_id="getDriverEarnings")
async def earnings(
    who: CurrentDriver,
    db: Session,
    period: str | None = Query(None, description="YYYY-MM; defaults to this month (UTC)"),
) -> EarningsOut:
    p = _period(period)
    e = await accounts.driver_earnings(db, driver_id=who.subject_id, period=p)
    rule = await rules.current(db)
    return EarningsOut(
        period=e.period,
        trips=e.trips,
        fares_cents=e.fares_cents,
        driver_earnings_cents=e.driver_earnings_cents,
        cost_recovery_cents=e.cost_recovery_cents,
        platform_commission_cents=e.platform_commission_cents,
        currency=e.currency or rule.currency,
        cancellations=e.cancellations,
        cancellation_fees_cents=e.cancellation_fees_cents,
    )


@router.get("/v1/drivers/me/statement", operation_id="getDriverStatement")
async def statement(
    who: CurrentDriver,
    db: Session,
    period: str | None = Query(None, description="YYYY-MM; defaults to this month (UTC)"),
) -> StatementOut:
    """The member's lines for a period from the ledger: trips, fees, dues, patronage."""
    p = _period(period)
    st = await statements.statement(db, member_id=who.subject_id, period=p)
    rule = await rules.current(db)
    return StatementOut(
        period=st.period,
        status=st.status,
        currency=rule.currency,
        lines=[StatementLineOut.model_validate(line, from_attributes=True) for line in st.lines],
        trips=st.trips,
        fares_cents=st.fares_cents,
        driver_earnings_cents=st.driver_earnings_cents,
        cost_recovery_cents=st.cost_recovery_cents,
        dues_cents=st.dues_cents,
        patronage_cents=st.patronage_cents,
        net_cents=st.net_cents,
        cancellations=st.cancellations,
        cancellation_fees_cents=st.cancellation_fees_cents,
    )


@router.get("/v1/drivers/me/dispatch-log", operation_id="getDriverDispatchLog")
async def dispatch_log(
    who: CurrentDriver,
    rt: RuntimeDep,
    limit: int = Query(50, ge=1, le=200),
) -> DispatchLog:
    """Why did I (not) get that trip? Every dispatch decision of the last day in which
    this member was a candidate, newest first: its pickup ETA and fairness bonus, the
    outcome, and the winner's ETA and bonus when someone else got the trip."""
    items = await rt.presence.dispatch_log(who.subject_id, limit=limit)
    return DispatchLog(items=[DispatchDecision.model_validate_json(i) for i in items])


@router.get("/v1/drivers/me/demand-map", operation_id="getDemandMap")
async def demand_map(
    who: CurrentDriver,
    rt: RuntimeDep,
    limit: int = Query(
        demand_forecast.DEFAULT_LIMIT,
        ge=1,
        le=demand_forecast.MAX_LIMIT,
        description="how many cells to list, best first",
    ),
) -> DemandMapOut:
    """Where to wait: the cells within a few minutes' drive of your last position,
    ranked by drive time plus the expected wait for a rider there (forecast demand from
    the co-op's last four weeks at this hour of the week, against the idle drivers
    already there). Advice only: dispatch never depends on it. 409 ``position-unknown``
    until you have sent a location."""
    live = await rt.presence.state(who.subject_id)
    if live.lat is None or live.lng is None:
        raise PositionUnknown("send a location frame on the driver socket first")
    origin = LatLng(live.lat, live.lng)
    idle_in = live.cell if live.status == "available" else None
    found = await guidance.demand_map(rt, origin, idle_in=idle_in, limit=limit)
    return DemandMapOut.model_validate(found.body())
