"""Trips: quote, request, read, cancel, and the driver's arrived/start/complete.

Every status change locks the trip row, checks the move against ``trip_states`` and
records it in ``trip_events``; events to the phones go out after the commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from core.clock import now_ms, utcnow
from core.errors import (
    ActiveTripExists,
    IdempotencyKeyReused,
    NotYourTrip,
    OutsideServiceArea,
    ReceiptNotReady,
    TripNotFound,
)
from core.events import Event
from core.fare_terms import FareRuleTerms
from core.ids import new_id
from core.models import Offer, Trip, TripEvent, TripTracePoint
from core.models.spatial import point_value
from dispatch import candidates, eta_feedback, legs, offers, traces, trip_states
from dispatch.runtime import Runtime, after_commit, emit
from dispatch.views import fare_of, trip_view
from fares import ledger, quotes, rules
from fares.pricing import Fare, cancellation_fee, price
from geo.point import LatLng

DEFAULT_REGION = "default"


@dataclass(frozen=True, slots=True)
class Quote:
    fare: Fare
    rule: FareRuleTerms
    distance_m: int
    duration_s: int
    pickup_eta_s: int | None
    # With a rider: the token that pins this quote's rule version and fee for the trip
    # requested on it (``fares.quotes``), and when it stops doing so.
    quote_id: str | None = None
    quote_expires_at: datetime | None = None


def _wkt(point: LatLng) -> Any:
    return point_value(point.lat, point.lng)


async def cost_recovery_fee_cents(db: AsyncSession, *, rule: FareRuleTerms) -> int:
    """The per-trip cost-recovery fee: the published budget of the period the trip is
    requested in over its expected trips (``fares.ledger``); zero under ``dues`` or
    until the co-op publishes a budget for the period."""
    return await ledger.current_fee_cents(db, mode=rule.cost_recovery_mode, at=utcnow())


async def nearest_pickup_eta_s(rt: Runtime, pickup: LatLng) -> int | None:
    found = await candidates.search(
        rt.presence,
        rt.eta,
        pickup,
        want=1,
        max_pickup_eta_s=rt.settings.max_pickup_eta_s,
        min_seen_ms=now_ms() - int(rt.settings.driver_stale_s * 1000),
    )
    return found[0].pickup_eta_s if found else None


async def quote(
    db: AsyncSession,
    rt: Runtime,
    *,
    pickup: LatLng,
    dropoff: LatLng,
    rider_id: str | None = None,
    pinned: quotes.PinnedQuote | None = None,
) -> Quote:
    """Price a ride with the current rule, or with the rule version and fee ``pinned`` by
    an earlier quote. For a ``rider_id``, the quote carries a ``quote_id`` pinning them."""
    if not await rt.areas.contains(pickup):
        raise OutsideServiceArea()
    if pinned is None:
        rule = await rules.current(db)
        fee = await cost_recovery_fee_cents(db, rule=rule)
    else:
        rule = await rules.by_version(db, version=pinned.fare_rule_version)
        fee = pinned.cost_recovery_fee_cents
    leg = rt.trip_eta.leg(pickup, dropoff)
    fare = price(
        rule, distance_m=leg.distance_m, duration_s=leg.duration_s, cost_recovery_fee_cents=fee
    )
    eta = await nearest_pickup_eta_s(rt, pickup)
    q = Quote(fare, rule, leg.distance_m, leg.duration_s, eta)
    if rider_id is not None:
        token, expires_at = quotes.sign_quote(
            secret=rt.settings.jwt_secret,
            rider_id=rider_id,
            pickup=pickup,
            dropoff=dropoff,
            pinned=quotes.PinnedQuote(rule.version, fee),
        )
        q = replace(q, quote_id=token, quote_expires_at=expires_at)
    return q


def _fingerprint(pickup: LatLng, dropoff: LatLng) -> str:
    canonical = f"{pickup.lat!r},{pickup.lng!r};{dropoff.lat!r},{dropoff.lng!r}"
    return hashlib.sha256(canonical.encode()).hexdigest()


# How long an Idempotency-Key names the trip it made, counted from the trip's
# ``requested_at`` (the key's time: the key is stored on the trip it made). A phone
# retries within seconds or minutes (a lost answer, a reconnect); a day also covers an
# app woken from the background the next morning, and is how long the rate limiter
# remembers a charged key (``docs/live-index.md``). Older, the key is a new request: an
# app that reuses keys (a counter, a date) must not get a months-old finished trip back.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


def key_expired(trip: Trip, *, now: datetime) -> bool:
    """Whether the Idempotency-Key stored on ``trip`` no longer names it."""
    return trip.requested_at <= now - IDEMPOTENCY_KEY_TTL


async def _by_idempotency_key(db: AsyncSession, *, rider_id: str, key: str) -> Trip | None:
    trip: Trip | None = await db.scalar(
        select(Trip).where(Trip.rider_id == rider_id, Trip.idempotency_key == key)
    )
    return trip


def _replay(trip: Trip, fingerprint: str) -> Trip:
    if trip.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used with another pickup/dropoff")
    return trip


async def request(
    db: AsyncSession,
    rt: Runtime,
    *,
    rider_id: str,
    pickup: LatLng,
    dropoff: LatLng,
    idempotency_key: str | None,
    quote_id: str | None = None,
) -> tuple[Trip, bool]:
    """A new trip in ``requested``, queued for dispatch; or, for a repeated
    Idempotency-Key younger than ``IDEMPOTENCY_KEY_TTL``, the trip that key already made
    (``created`` is False); the same key with other points is ``IdempotencyKeyReused``.
    With a ``quote_id`` from this rider's quote for these points, priced as that quote
    was."""
    fingerprint = _fingerprint(pickup, dropoff)
    if idempotency_key is not None:
        existing = await _by_idempotency_key(db, rider_id=rider_id, key=idempotency_key)
        if existing is not None:
            if not key_expired(existing, now=utcnow()):
                return _replay(existing, fingerprint), False
            # Expired: the old trip lets go of the key (in this transaction, so a failed
            # request keeps it), and the unique index then lets the new trip take it. Two
            # requests racing here both clear it; the index picks one new trip, and the
            # other replays it below.
            existing.idempotency_key = None
            await db.flush()
    pinned = None
    if quote_id is not None:
        pinned = quotes.read_quote(
            quote_id,
            secret=rt.settings.jwt_secret,
            rider_id=rider_id,
            pickup=pickup,
            dropoff=dropoff,
        )
    q = await quote(db, rt, pickup=pickup, dropoff=dropoff, pinned=pinned)
    trip = Trip(
        id=new_id("trp"),
        rider_id=rider_id,
        status="requested",
        region=DEFAULT_REGION,
        pickup=_wkt(pickup),
        dropoff=_wkt(dropoff),
        requested_at=utcnow(),
        fare_rule_version=q.rule.version,
        distance_m=q.distance_m,
        duration_s=q.duration_s,
        pickup_eta_s=q.pickup_eta_s,
        currency=q.fare.currency,
        fare_total_cents=q.fare.total_cents,
        base_cents=q.fare.base_cents,
        distance_cents=q.fare.distance_cents,
        time_cents=q.fare.time_cents,
        minimum_topup_cents=q.fare.minimum_topup_cents,
        cost_recovery_cents=q.fare.cost_recovery_cents,
        platform_commission_cents=q.fare.platform_commission_cents,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
    )
    try:
        async with db.begin_nested():
            db.add(trip)
            db.add(
                TripEvent(
                    trip_id=trip.id, status="requested", actor_role="rider", actor_id=rider_id
                )
            )
            await db.flush()
    except IntegrityError:
        # Either a concurrent request with the same key won (return its trip) or the
        # rider already has an active trip. The unique indexes decide, not a pre-check.
        if idempotency_key is not None:
            existing = await _by_idempotency_key(db, rider_id=rider_id, key=idempotency_key)
            if existing is not None:
                return _replay(existing, fingerprint), False
        raise ActiveTripExists("finish or cancel the current trip first") from None
    score = int(trip.requested_at.timestamp() * 1000)

    async def enqueue() -> None:
        await rt.redis.zadd(rt.keys.pending(trip.region), {trip.id: score}, nx=True)

    after_commit(db, enqueue)
    emit(db, Event("rider", rider_id, {"type": "trip.updated", "trip": trip_view(trip)}))
    return trip, True


async def _can_see(db: AsyncSession, trip: Trip, who: Principal) -> bool:
    if who.role == "operator":
        return True
    if who.role == "rider":
        return trip.rider_id == who.subject_id
    if trip.driver_id == who.subject_id:
        return True
    offered = await db.scalar(
        select(Offer.id).where(Offer.trip_id == trip.id, Offer.driver_id == who.subject_id)
    )
    return offered is not None


def _is_party(trip: Trip, who: Principal) -> bool:
    """The trip's rider, its assigned driver, or an operator: who may see what happened
    on it (the receipt's split, the route driven). A driver merely offered the trip may
    see the trip, not another member's earnings or whereabouts."""
    return who.role == "operator" or who.subject_id in (trip.rider_id, trip.driver_id)


async def get(db: AsyncSession, *, trip_id: str, who: Principal, lock: bool = False) -> Trip:
    trip = await db.get(Trip, trip_id, with_for_update=lock)
    if trip is None:
        raise TripNotFound(f"no trip {trip_id}")
    if not await _can_see(db, trip, who):
        raise NotYourTrip(f"trip {trip_id} is not yours")
    return trip


def _stamp(trip: Trip, target: str, at: datetime) -> None:
    trip_states.check(trip.status, target)
    trip.status = target
    setattr(trip, trip_states.STAMP[target], at)


async def cancel(db: AsyncSession, rt: Runtime, *, trip_id: str, who: Principal) -> Trip:
    """Cancel a trip. A rider who cancels after the grace period, or once the driver has
    arrived, pays the trip's rule's cancellation fee to that driver, posted to the ledger
    in this same transaction (``fares.pricing.cancellation_fee``)."""
    trip = await get(db, trip_id=trip_id, who=who, lock=True)
    if who.role == "driver" and trip.driver_id != who.subject_id:
        raise NotYourTrip("only the assigned driver may cancel")
    was, now = trip.status, utcnow()
    _stamp(trip, "cancelled", now)
    trip.cancelled_by = who.role
    db.add(
        TripEvent(trip_id=trip.id, status="cancelled", actor_role=who.role, actor_id=who.subject_id)
    )
    await offers.withdraw_for_trip(db, rt, trip=trip)
    if trip.driver_id is not None:
        await traces.record(db, rt, trip=trip, kind="cancelled", final=True)
        rule = await rules.by_version(db, version=trip.fare_rule_version)
        trip.cancellation_fee_cents = cancellation_fee(
            rule,
            status=was,
            cancelled_by=who.role,
            assigned_at=trip.assigned_at,
            now=now,
            grace_s=rt.settings.cancellation_grace_s,
        )
    await db.flush()
    if trip.cancellation_fee_cents and trip.driver_id is not None:
        await ledger.post_cancellation_fee(
            db,
            trip_id=trip.id,
            rider_id=trip.rider_id,
            driver_id=trip.driver_id,
            fee_cents=trip.cancellation_fee_cents,
            cancelled_at=now,
        )
    _release_after(db, rt, trip)
    view = trip_view(trip)
    emit(db, Event("rider", trip.rider_id, {"type": "trip.updated", "trip": view}))
    if trip.driver_id is not None:
        emit(db, Event("driver", trip.driver_id, {"type": "trip.cancelled", "trip": view}))
    return trip


async def trace_of(db: AsyncSession, *, trip_id: str, who: Principal) -> list[TripTracePoint]:
    """A finished trip's recorded positions, oldest first (who may see the trip may see
    where it went)."""
    trip = await get(db, trip_id=trip_id, who=who)
    if not _is_party(trip, who):
        raise NotYourTrip(f"trip {trip_id} was not driven by you")
    rows = await db.scalars(
        select(TripTracePoint)
        .where(TripTracePoint.trip_id == trip_id)
        .order_by(TripTracePoint.at, TripTracePoint.id)
    )
    return list(rows.all())


def _release_after(db: AsyncSession, rt: Runtime, trip: Trip) -> None:
    """After commit: the trip leaves the queue and its driver is free again."""
    trip_id, region, driver_id = trip.id, trip.region, trip.driver_id
    # What the member earned counts towards its shift (the dispatcher's fairness term).
    earned = fare_of(trip).driver_earnings_cents if trip.status == "completed" else 0

    async def release() -> None:
        await rt.redis.zrem(rt.keys.pending(region), trip_id)
        await rt.redis.delete(rt.keys.trip_excluded(trip_id))
        if driver_id is not None:
            await rt.presence.clear_trip(driver_id, now_ms=now_ms(), earned_cents=earned)

    after_commit(db, release)


async def advance(
    db: AsyncSession, rt: Runtime, *, trip_id: str, driver_id: str, target: str
) -> Trip:
    """The assigned driver moves the trip on: ``arrived``, ``in_progress``, ``completed``."""
    trip = await db.get(Trip, trip_id, with_for_update=True)
    if trip is None:
        raise TripNotFound(f"no trip {trip_id}")
    if trip.driver_id != driver_id:
        raise NotYourTrip(f"trip {trip_id} is not assigned to you")
    _stamp(trip, target, utcnow())
    db.add(TripEvent(trip_id=trip.id, status=target, actor_role="driver", actor_id=driver_id))
    await traces.record(db, rt, trip=trip, kind=traces.KIND[target], final=target == "completed")
    await db.flush()
    if target == "completed":
        await ledger.post_trip_completion(
            db,
            trip_id=trip.id,
            rider_id=trip.rider_id,
            driver_id=driver_id,
            total_cents=trip.fare_total_cents,
            cost_recovery_cents=trip.cost_recovery_cents,
            completed_at=trip.completed_at or utcnow(),
        )
        _release_after(db, rt, trip)
        after_commit(db, partial(eta_feedback.record, rt, trip))
    elif target == "in_progress":
        after_commit(db, partial(legs.follow, rt, legs.current(trip)))
    emit(db, Event("rider", trip.rider_id, {"type": "trip.updated", "trip": trip_view(trip)}))
    return trip


async def receipt_trip(db: AsyncSession, *, trip_id: str, who: Principal) -> Trip:
    """A completed trip, or a cancelled one that cost the rider a fee: both moved money."""
    trip = await get(db, trip_id=trip_id, who=who)
    if not _is_party(trip, who):
        raise NotYourTrip(f"trip {trip_id} was not driven by you")
    charged = trip.status == "cancelled" and trip.cancellation_fee_cents > 0
    if trip.status != "completed" and not charged:
        raise ReceiptNotReady(f"trip {trip_id} is {trip.status}")
    return trip


async def list_for_rider(
    db: AsyncSession, *, rider_id: str, cursor: str | None, limit: int
) -> tuple[list[Trip], str | None]:
    """Newest first; the cursor is the last id of the previous page (ids sort by time)."""
    stmt = select(Trip).where(Trip.rider_id == rider_id)
    if cursor:
        stmt = stmt.where(Trip.id < cursor)
    rows = list((await db.scalars(stmt.order_by(Trip.id.desc()).limit(limit + 1))).all())
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor


async def expire_unmatched(rt: Runtime, *, limit: int = 500) -> int:
    """Requests that waited longer than ``COOP_TRIP_REQUEST_TIMEOUT_S`` expire; the rider
    is told. Conditional on ``requested``, so it races safely with an accept."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.trip_request_timeout_s)
    async with rt.unit_of_work() as db:
        rows = (
            await db.scalars(
                select(Trip)
                .where(Trip.status == "requested")
                .where(Trip.requested_at < cutoff)
                .order_by(Trip.requested_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for trip in rows:
            _stamp(trip, "expired", utcnow())
            db.add(TripEvent(trip_id=trip.id, status="expired", actor_role="system"))
            await offers.withdraw_for_trip(db, rt, trip=trip)
            _release_after(db, rt, trip)
            emit(
                db, Event("rider", trip.rider_id, {"type": "trip.updated", "trip": trip_view(trip)})
            )
        await db.flush()
    return len(rows)


async def requeue_open(rt: Runtime) -> int:
    """Rebuild the queue from PostgreSQL: every ``requested`` trip without a pending offer
    (after a Redis restart, or a crash between commit and enqueue)."""
    async with rt.sessions() as db:
        pending_offer = select(Offer.trip_id).where(Offer.status == "pending")
        rows = (
            await db.execute(
                select(Trip.id, Trip.region, Trip.requested_at)
                .where(Trip.status == "requested")
                .where(Trip.id.not_in(pending_offer))
            )
        ).all()
    if not rows:
        return 0
    async with rt.redis.pipeline(transaction=False) as pipe:
        for trip_id, region, requested_at in rows:
            pipe.zadd(
                rt.keys.pending(region), {trip_id: int(requested_at.timestamp() * 1000)}, nx=True
            )
        await pipe.execute()
    return len(rows)


async def trips_by_ids(db: AsyncSession, ids: list[str]) -> list[Trip]:
    rows = await db.scalars(select(Trip).where(Trip.id.in_(ids)))
    return list(rows.all())


async def mark_stale_queue_entries(rt: Runtime, region: str, ids: list[str]) -> None:
    if ids:
        await rt.redis.zrem(rt.keys.pending(region), *ids)


async def active_for_driver(db: AsyncSession, *, driver_id: str) -> Trip | None:
    """The trip a driver is on (assigned, arrived or in progress), if any."""
    trip: Trip | None = await db.scalar(
        select(Trip).where(Trip.driver_id == driver_id, Trip.status.in_(trip_states.DRIVER_ACTIVE))
    )
    return trip


async def sync_presence(db: AsyncSession, rt: Runtime, *, driver_id: str) -> Trip | None:
    """Make the live index agree with PostgreSQL about the driver's trip: on its active
    trip (heading for the pickup, or the drop-off once started), or free. Run when a
    driver's socket connects, so a lost or stale Redis state (a crash between a commit
    and its bookkeeping, a Redis restart) heals itself instead of stranding the driver
    as on a trip that has ended."""
    trip = await active_for_driver(db, driver_id=driver_id)
    if trip is not None:
        await legs.follow(rt, legs.current(trip))
    elif (await rt.presence.state(driver_id)).status == "on_trip":
        await rt.presence.clear_trip(driver_id, now_ms=now_ms())
    return trip
