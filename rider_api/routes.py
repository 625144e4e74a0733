"""Rider HTTP routes: translate, call a service, return a schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from core import identity
from core.ratelimit import Limit
from dispatch import trips
from dispatch.views import fare_view, point_of, receipt_view, trip_view
from geo.point import LatLng
from rider_api.schemas import (
    Credentials,
    RiderOut,
    RiderSignUp,
    TracePoint,
    TripOrder,
    TripRequest,
    TripTrace,
)
from web.deps import CurrentPrincipal, CurrentRider, RuntimeDep, Session
from web.schemas import QuoteOut, ReceiptOut, TripOut, TripPage

router = APIRouter(tags=["riders"])


def _points(body: TripRequest) -> tuple[LatLng, LatLng]:
    return (
        LatLng.checked(body.pickup.lat, body.pickup.lng),
        LatLng.checked(body.dropoff.lat, body.dropoff.lng),
    )


def client_address(request: Request) -> str:
    """The peer address as the server saw it. Behind a reverse proxy named in
    ``COOP_TRUSTED_PROXIES`` (``coopride serve --forwarded-allow-ips``), uvicorn has
    already put the phone's address here from the proxy's ``X-Forwarded-For``; a header
    from anyone else is ignored, so a client cannot forge it (docs/deployment.md)."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/v1/riders",
    operation_id="signUpRider",
    status_code=status.HTTP_201_CREATED,
    responses={429: {"description": "too many sign-ups from this address"}},
)
async def sign_up(body: RiderSignUp, db: Session, rt: RuntimeDep, request: Request) -> Credentials:
    await rt.limits.hit(
        Limit.per_minute("sign-ups", rt.settings.signup_rate_per_min), client_address(request)
    )
    rider, token = await identity.sign_up_rider(
        db, settings=rt.settings, name=body.name, phone=body.phone
    )
    return Credentials(id=rider.id, token=token)


@router.get("/v1/riders/me", operation_id="getRiderProfile")
async def me(who: CurrentRider, db: Session) -> RiderOut:
    rider = await identity.get_rider(db, rider_id=who.subject_id)
    return RiderOut(id=rider.id, name=rider.name, phone=rider.phone)


@router.post(
    "/v1/quotes", operation_id="createQuote", responses={429: {"description": "too many quotes"}}
)
async def quote(body: TripRequest, who: CurrentRider, db: Session, rt: RuntimeDep) -> QuoteOut:
    await rt.limits.hit(Limit.per_minute("quotes", rt.settings.quote_rate_per_min), who.subject_id)
    pickup, dropoff = _points(body)
    q = await trips.quote(db, rt, pickup=pickup, dropoff=dropoff, rider_id=who.subject_id)
    return QuoteOut.model_validate(
        {
            "fare": fare_view(q.fare),
            "distance_m": q.distance_m,
            "duration_s": q.duration_s,
            "pickup_eta_s": q.pickup_eta_s,
            "fare_rule_version": q.rule.version,
            "quote_id": q.quote_id,
            "quote_expires_at": q.quote_expires_at,
        }
    )


@router.post(
    "/v1/trips",
    operation_id="requestTrip",
    status_code=status.HTTP_201_CREATED,
    responses={429: {"description": "too many trip requests"}},
)
async def request_trip(
    body: TripOrder,
    who: CurrentRider,
    db: Session,
    rt: RuntimeDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> TripOut:
    pickup, dropoff = _points(body)
    # A retry with the same Idempotency-Key is free: it asks for the same trip.
    await rt.limits.hit(
        Limit.per_minute("trip-requests", rt.settings.trip_request_rate_per_min),
        who.subject_id,
        dedupe=idempotency_key,
    )
    trip, created = await trips.request(
        db,
        rt,
        rider_id=who.subject_id,
        pickup=pickup,
        dropoff=dropoff,
        idempotency_key=idempotency_key,
        quote_id=body.quote_id,
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return TripOut.model_validate(trip_view(trip))


@router.get("/v1/trips/{trip_id}", operation_id="getTrip")
async def get_trip(trip_id: str, who: CurrentPrincipal, db: Session) -> TripOut:
    trip = await trips.get(db, trip_id=trip_id, who=who)
    return TripOut.model_validate(trip_view(trip))


@router.post("/v1/trips/{trip_id}/cancel", operation_id="cancelTrip")
async def cancel_trip(trip_id: str, who: CurrentPrincipal, db: Session, rt: RuntimeDep) -> TripOut:
    who.require("rider", "driver")
    trip = await trips.cancel(db, rt, trip_id=trip_id, who=who)
    return TripOut.model_validate(trip_view(trip))


@router.get("/v1/trips/{trip_id}/receipt", operation_id="getTripReceipt")
async def receipt(trip_id: str, who: CurrentPrincipal, db: Session) -> ReceiptOut:
    trip = await trips.receipt_trip(db, trip_id=trip_id, who=who)
    return ReceiptOut.model_validate(receipt_view(trip))


@router.get("/v1/riders/me/trips", operation_id="listRiderTrips")
async def my_trips(
    who: CurrentRider,
    db: Session,
    cursor: str | None = Query(None, max_length=64),
    limit: int = Query(20, ge=1, le=100),
) -> TripPage:
    rows, next_cursor = await trips.list_for_rider(
        db, rider_id=who.subject_id, cursor=cursor, limit=limit
    )
    return TripPage(
        items=[TripOut.model_validate(trip_view(t)) for t in rows], next_cursor=next_cursor
    )


@router.get("/v1/trips/{trip_id}/trace", operation_id="getTripTrace")
async def trip_trace(trip_id: str, who: CurrentPrincipal, db: Session) -> TripTrace:
    """Where the car went: positions sampled during the trip (about one per 10 s) and
    where it stood on arrival, start and completion. Recorded when the trip ends."""
    points = await trips.trace_of(db, trip_id=trip_id, who=who)
    return TripTrace(
        trip_id=trip_id,
        points=[TracePoint(at=p.at, kind=p.kind, **point_of(p.position)) for p in points],
    )
