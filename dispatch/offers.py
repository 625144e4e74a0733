"""Offers: one trip offered to one driver, for ``COOP_OFFER_TIMEOUT_S``.

Two records, two jobs. Redis holds the live *reservation* (a driver key and a trip key
set together, or not at all, by one Lua script), so a driver never holds two offers and
a trip never has two. PostgreSQL holds the *decision*: an offer row changes from
``pending`` only with the row locked, and the trip moves to ``assigned`` only from
``requested``; so of any number of racing accepts, exactly one wins and every other gets
``offer-expired`` / ``offer-withdrawn``.

    pending -> accepted | declined | expired | withdrawn
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import iso, now_ms, utcnow
from core.errors import NotYourOffer, OfferExpired, OfferNotFound, OfferWithdrawn
from core.events import Event
from core.ids import new_id
from core.models import Offer, Trip, TripEvent
from dispatch.runtime import Runtime, after_commit, emit
from dispatch.views import point_of, trip_view

# The reservation outlives the offer by this much, so the expiry job (not the TTL) ends
# a normal offer; the TTL only frees a driver whose dispatcher died mid-offer.
RESERVATION_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class Match:
    trip_id: str
    driver_id: str
    pickup_eta_s: int


def offer_frame(offer: Offer, trip: Trip) -> dict[str, object]:
    view = trip_view(trip)
    return {
        "type": "offer",
        "offer_id": offer.id,
        "trip_id": trip.id,
        "pickup": view["pickup"],
        "dropoff": view["dropoff"],
        "pickup_eta_s": offer.pickup_eta_s,
        "trip_distance_m": trip.distance_m,
        "trip_duration_s": trip.duration_s,
        "fare": view["fare"],
        "expires_at": iso(offer.expires_at),
    }


async def _requeue(rt: Runtime, *, trip: Trip, requested_at: datetime, driver_id: str) -> None:
    """Back to its region's queue, at its original place, with this driver excluded."""
    k = rt.keys
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.sadd(k.trip_excluded(trip.id), driver_id)
        pipe.expire(k.trip_excluded(trip.id), int(rt.settings.trip_request_timeout_s) + 60)
        pipe.zadd(k.pending(trip.region), {trip.id: int(requested_at.timestamp() * 1000)}, nx=True)
        await pipe.execute()


async def make_batch(
    rt: Runtime, matches: Sequence[Match], *, region: str, fence: int | None = None
) -> list[Offer]:
    """Turn a batch's matches into offers and push each to its driver.

    Reservations for the whole batch go to Redis in one round trip; a match whose
    driver or trip was taken meanwhile, or every match once ``fence`` is no longer the
    region's (another dispatcher leads now), is dropped. The offer rows for the rest are
    written in one transaction, with their trips locked in id order; Redis bookkeeping
    and the offer frames follow the commit. Nothing stays reserved for a match that did
    not become an offer."""
    if not matches:
        return []
    ttl_s = rt.settings.offer_timeout_s + RESERVATION_GRACE_S
    min_seen = now_ms() - int(rt.settings.driver_stale_s * 1000)
    ids = [new_id("ofr") for _ in matches]
    reserved = await asyncio.gather(
        *(
            rt.presence.reserve_offer(
                offer_id=offer_id,
                driver_id=m.driver_id,
                trip_id=m.trip_id,
                ttl_s=ttl_s,
                min_seen_ms=min_seen,
                region=region,
                fence=fence,
            )
            for m, offer_id in zip(matches, ids, strict=True)
        )
    )
    held = [(m, oid) for m, oid, ok in zip(matches, ids, reserved, strict=True) if ok]
    if not held:
        return []

    async def release(pairs: Sequence[tuple[Match, str]]) -> None:
        await asyncio.gather(
            *(
                rt.presence.release_offer(offer_id=oid, driver_id=m.driver_id, trip_id=m.trip_id)
                for m, oid in pairs
            )
        )

    made: list[tuple[Offer, Trip]] = []
    try:
        async with rt.unit_of_work() as db:
            trip_ids = sorted({m.trip_id for m, _ in held})
            rows = await db.scalars(
                select(Trip).where(Trip.id.in_(trip_ids)).order_by(Trip.id).with_for_update()
            )
            trips = {t.id: t for t in rows}
            expires_at = utcnow() + timedelta(seconds=rt.settings.offer_timeout_s)
            dropped = []
            for m, oid in held:
                trip = trips.get(m.trip_id)
                if trip is None or trip.status != "requested":
                    dropped.append((m, oid))
                    continue
                offer = Offer(
                    id=oid,
                    trip_id=trip.id,
                    driver_id=m.driver_id,
                    status="pending",
                    pickup_eta_s=m.pickup_eta_s,
                    expires_at=expires_at,
                )
                db.add(offer)
                made.append((offer, trip))
            await db.flush()
            deadline_ms = int(expires_at.timestamp() * 1000)

            async def bookkeeping() -> None:
                async with rt.redis.pipeline(transaction=False) as pipe:
                    for _, trip in made:
                        pipe.zrem(rt.keys.pending(trip.region), trip.id)
                    if made:
                        pipe.zadd(rt.keys.offer_deadlines(), {o.id: deadline_ms for o, _ in made})
                    await pipe.execute()
                await release(dropped)

            after_commit(db, bookkeeping)
            for offer, trip in made:
                emit(db, Event("driver", offer.driver_id, offer_frame(offer, trip)))
    except BaseException:
        # Nothing was written: give every reservation back (the next batch retries).
        await release(held)
        raise
    return [offer for offer, _ in made]


async def _locked_offer(db: AsyncSession, *, offer_id: str, driver_id: str) -> tuple[Offer, Trip]:
    """The offer and its trip, both locked, trip first: every path that locks both
    (accept, decline, cancel, expiry) takes them in that order, so none can deadlock."""
    found = await db.execute(select(Offer.trip_id, Offer.driver_id).where(Offer.id == offer_id))
    row = found.first()
    if row is None:
        raise OfferNotFound(f"no offer {offer_id}")
    if row.driver_id != driver_id:
        raise NotYourOffer(f"offer {offer_id} was made to another driver")
    trip = await db.get(Trip, row.trip_id, with_for_update=True)
    offer = await db.get(Offer, offer_id, with_for_update=True, populate_existing=True)
    assert trip is not None and offer is not None
    if offer.status == "expired":
        raise OfferExpired(f"offer {offer_id} expired at {iso(offer.expires_at)}")
    if offer.status != "pending":
        raise OfferWithdrawn(f"offer {offer_id} is {offer.status}")
    return offer, trip


async def accept(db: AsyncSession, rt: Runtime, *, offer_id: str, driver_id: str) -> Trip:
    offer, trip = await _locked_offer(db, offer_id=offer_id, driver_id=driver_id)
    now = utcnow()
    if now >= offer.expires_at:
        raise OfferExpired(f"offer {offer_id} expired at {iso(offer.expires_at)}")
    if trip.status != "requested":
        # The cancel or expiry that ended the trip withdraws this offer itself.
        raise OfferWithdrawn(f"trip {trip.id} is {trip.status}")
    offer.status, offer.responded_at = "accepted", now
    trip.status, trip.driver_id, trip.assigned_at = "assigned", driver_id, now
    trip.pickup_eta_s = offer.pickup_eta_s
    db.add(TripEvent(trip_id=trip.id, status="assigned", actor_role="driver", actor_id=driver_id))
    await db.flush()
    pickup = point_of(trip.pickup)

    async def bookkeeping() -> None:
        # On the trip first, then free the reservation: in between the driver must not
        # look available to a dispatcher reserving its next batch.
        await rt.presence.set_trip(
            driver_id,
            trip_id=trip.id,
            rider_id=trip.rider_id,
            target_lat=pickup["lat"],
            target_lng=pickup["lng"],
        )
        await rt.presence.release_offer(offer_id=offer.id, driver_id=driver_id, trip_id=trip.id)
        await rt.redis.delete(rt.keys.trip_excluded(trip.id))

    after_commit(db, bookkeeping)
    view = trip_view(trip)
    emit(db, Event("driver", driver_id, {"type": "trip.assigned", "trip": view}))
    emit(db, Event("rider", trip.rider_id, {"type": "trip.updated", "trip": view}))
    return trip


async def decline(db: AsyncSession, rt: Runtime, *, offer_id: str, driver_id: str) -> Offer:
    offer, trip = await _locked_offer(db, offer_id=offer_id, driver_id=driver_id)
    offer.status, offer.responded_at = "declined", utcnow()
    requested_at, still_open = trip.requested_at, trip.status == "requested"

    async def bookkeeping() -> None:
        await rt.presence.release_offer(offer_id=offer.id, driver_id=driver_id, trip_id=trip.id)
        if still_open:
            await _requeue(rt, trip=trip, requested_at=requested_at, driver_id=driver_id)

    after_commit(db, bookkeeping)
    return offer


async def withdraw_for_trip(db: AsyncSession, rt: Runtime, *, trip: Trip) -> None:
    """The trip is gone (cancelled, expired): withdraw its pending offer, if any."""
    offer = await db.scalar(
        select(Offer).where(Offer.trip_id == trip.id, Offer.status == "pending").with_for_update()
    )
    if offer is None:
        return
    offer.status, offer.responded_at = "withdrawn", utcnow()
    offer_id, driver_id = offer.id, offer.driver_id

    async def bookkeeping() -> None:
        await rt.presence.release_offer(offer_id=offer_id, driver_id=driver_id, trip_id=trip.id)

    after_commit(db, bookkeeping)
    emit(db, Event("driver", driver_id, {"type": "offer.withdrawn", "offer_id": offer_id}))


async def expire_due(rt: Runtime, *, limit: int = 500) -> int:
    """Expire every offer past its deadline: the driver is told, the trip goes back to
    the queue without that driver. Safe to run from any number of processes: the row
    changes from ``pending`` once."""
    due = [
        str(x)
        for x in await rt.redis.zrangebyscore(rt.keys.offer_deadlines(), "-inf", now_ms(), 0, limit)
    ]
    expired = 0
    for offer_id in due:
        async with rt.unit_of_work() as db:
            trip_id = await db.scalar(select(Offer.trip_id).where(Offer.id == offer_id))
            trip = None if trip_id is None else await db.get(Trip, trip_id, with_for_update=True)
            row = (
                await db.execute(
                    update(Offer)
                    .where(Offer.id == offer_id, Offer.status == "pending")
                    .values(status="expired", responded_at=utcnow())
                    .returning(Offer.driver_id)
                )
            ).first()
            if row is None or trip is None:
                await rt.redis.zrem(rt.keys.offer_deadlines(), offer_id)
                continue
            driver_id = row.driver_id
            requested_at, still_open = trip.requested_at, trip.status == "requested"

            async def bookkeeping(
                offer_id: str = offer_id,
                driver_id: str = driver_id,
                trip: Trip = trip,
                requested_at: datetime = requested_at,
                still_open: bool = still_open,
            ) -> None:
                await rt.presence.release_offer(
                    offer_id=offer_id, driver_id=driver_id, trip_id=trip.id
                )
                if still_open:
                    await _requeue(rt, trip=trip, requested_at=requested_at, driver_id=driver_id)

            after_commit(db, bookkeeping)
            emit(db, Event("driver", driver_id, {"type": "offer.expired", "offer_id": offer_id}))
        expired += 1
    return expired
