"""Offers: one trip offered to one driver, for ``COOP_OFFER_TIMEOUT_S``.

Two records, two jobs. Redis holds the live *reservation* (a driver key and a trip key
set together, or not at all, by one Lua script), so a driver never holds two offers and
a trip never has two. PostgreSQL holds the *decision*: an offer row changes from
``pending`` only with the row locked, and the trip moves to ``assigned`` only from
``requested``; so of any number of racing accepts, exactly one wins and every other gets
``offer-expired`` / ``offer-withdrawn``. The moves an offer may make are
``dispatch.offer_states``'s table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import iso, now_ms, utcnow
from core.errors import NotYourOffer, OfferExpired, OfferNotFound, OfferWithdrawn
from core.events import Event
from core.ids import can_exist, new_id
from core.models import Offer, Trip, TripEvent
from dispatch import legs, offer_states, trip_states
from dispatch.batch.types import Assignment
from dispatch.presence import Gone
from dispatch.runtime import Runtime, after_commit, emit
from dispatch.views import trip_view

# The reservation outlives the offer by this much, so the expiry job (not the TTL) ends
# a normal offer; the TTL only frees a driver whose dispatcher died mid-offer.
RESERVATION_GRACE_S = 5.0


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
    rt: Runtime, matches: Sequence[Assignment], *, region: str, fence: int | None = None
) -> list[Offer]:
    """Turn a batch's assignments into offers and push each to its driver.

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

    async def release(pairs: Sequence[tuple[Assignment, str]]) -> None:
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
            busy, offered = await _already_engaged(
                db, driver_ids=[m.driver_id for m, _ in held], trip_ids=trip_ids
            )
            expires_at = utcnow() + timedelta(seconds=rt.settings.offer_timeout_s)
            dropped = []
            for m, oid in held:
                trip = trips.get(m.trip_id)
                if (
                    trip is None
                    or trip.status != "requested"
                    or m.driver_id in busy
                    or m.trip_id in offered
                ):
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


async def _already_engaged(
    db: AsyncSession, *, driver_ids: Sequence[str], trip_ids: Sequence[str]
) -> tuple[set[str], set[str]]:
    """The drivers and trips PostgreSQL says are taken although Redis let us reserve
    them: a pending offer or an active trip that the live index forgot (Redis lost its
    data and the driver's next frame put it back as available). Such a match is dropped
    instead of failing the whole batch on a unique index."""
    busy_drivers: set[str] = set()
    offered_trips: set[str] = set()
    pending = await db.execute(
        select(Offer.driver_id, Offer.trip_id).where(
            Offer.status == "pending",
            or_(Offer.driver_id.in_(driver_ids), Offer.trip_id.in_(trip_ids)),
        )
    )
    for driver_id, trip_id in pending:
        busy_drivers.add(driver_id)
        offered_trips.add(trip_id)
    on_trip = await db.scalars(
        select(Trip.driver_id).where(
            Trip.driver_id.in_(driver_ids), Trip.status.in_(trip_states.DRIVER_ACTIVE)
        )
    )
    busy_drivers.update(d for d in on_trip if d is not None)
    return busy_drivers, offered_trips


async def _locked_offer(
    db: AsyncSession, *, offer_id: str, driver_id: str, target: str
) -> tuple[Offer, Trip]:
    """The offer and its trip, both locked, trip first: every path that locks both
    (accept, decline, cancel, expiry) takes them in that order, so none can deadlock.
    Refused unless the offer may move to ``target`` (``offer_states``)."""
    if not can_exist(offer_id):
        raise OfferNotFound(f"no offer {offer_id!r}")
    found = await db.execute(select(Offer.trip_id, Offer.driver_id).where(Offer.id == offer_id))
    row = found.first()
    if row is None:
        raise OfferNotFound(f"no offer {offer_id}")
    if row.driver_id != driver_id:
        raise NotYourOffer(f"offer {offer_id} was made to another driver")
    trip = await db.get(Trip, row.trip_id, with_for_update=True)
    offer = await db.get(Offer, offer_id, with_for_update=True, populate_existing=True)
    assert trip is not None and offer is not None
    offer_states.check(offer_id, offer.status, target)
    return offer, trip


async def accept(db: AsyncSession, rt: Runtime, *, offer_id: str, driver_id: str) -> Trip:
    offer, trip = await _locked_offer(db, offer_id=offer_id, driver_id=driver_id, target="accepted")
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
    to_pickup = legs.current(trip)

    async def bookkeeping() -> None:
        # On the trip first, then free the reservation: in between the driver must not
        # look available to a dispatcher reserving its next batch.
        await legs.follow(rt, to_pickup)
        await rt.presence.release_offer(offer_id=offer.id, driver_id=driver_id, trip_id=trip.id)
        await rt.redis.delete(rt.keys.trip_excluded(trip.id))

    after_commit(db, bookkeeping)
    view = trip_view(trip)
    emit(db, Event("driver", driver_id, {"type": "trip.assigned", "trip": view}))
    emit(db, Event("rider", trip.rider_id, {"type": "trip.updated", "trip": view}))
    return trip


async def decline(db: AsyncSession, rt: Runtime, *, offer_id: str, driver_id: str) -> Offer:
    offer, trip = await _locked_offer(db, offer_id=offer_id, driver_id=driver_id, target="declined")
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
        select(Offer)
        .where(Offer.trip_id == trip.id, Offer.status.in_(offer_states.sources_of("withdrawn")))
        .with_for_update()
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
            if not await _end_unanswered(db, rt, offer_id=offer_id, trip=trip, status="expired"):
                await rt.redis.zrem(rt.keys.offer_deadlines(), offer_id)
                continue
        expired += 1
    return expired


async def _end_unanswered(
    db: AsyncSession, rt: Runtime, *, offer_id: str, trip: Trip | None, status: str
) -> bool:
    """End a pending offer its driver did not answer (``expired``, or ``withdrawn`` from
    a driver who vanished), its trip already locked: the driver is told
    (``offer.<status>``) and, once committed, the reservation is freed and a trip still
    open goes back to the queue without that driver. False when the offer was no longer
    pending (another process ended it first) or its trip is gone."""
    row = (
        await db.execute(
            update(Offer)
            .where(Offer.id == offer_id, Offer.status.in_(offer_states.sources_of(status)))
            .values(status=status, responded_at=utcnow())
            .returning(Offer.driver_id)
        )
    ).first()
    if row is None or trip is None:
        return False
    driver_id: str = row.driver_id
    requested_at, still_open = trip.requested_at, trip.status == "requested"

    async def bookkeeping() -> None:
        await rt.presence.release_offer(offer_id=offer_id, driver_id=driver_id, trip_id=trip.id)
        if still_open:
            await _requeue(rt, trip=trip, requested_at=requested_at, driver_id=driver_id)

    after_commit(db, bookkeeping)
    emit(db, Event("driver", driver_id, {"type": f"offer.{status}", "offer_id": offer_id}))
    return True


async def restore_pending(rt: Runtime) -> int:
    """Put every pending offer back into Redis: its deadline (so the expiry job ends it)
    and its reservation (so the driver and the trip are not offered again meanwhile).

    PostgreSQL decides what is pending; Redis only tracks it. After Redis lost its data,
    or a dispatcher died between committing offers and its Redis bookkeeping, a pending
    offer would otherwise never expire and its trip would never be re-queued (the
    re-queue skips trips with a pending offer). Idempotent: ``ZADD NX``, and each
    reservation key (with the driver's held-offers entry) only where none is held."""
    async with rt.sessions() as db:
        rows = (
            await db.execute(
                select(Offer.id, Offer.driver_id, Offer.trip_id, Offer.expires_at).where(
                    Offer.status == "pending"
                )
            )
        ).all()
    if not rows:
        return 0
    now = now_ms()
    await rt.redis.zadd(
        rt.keys.offer_deadlines(),
        {offer_id: int(expires_at.timestamp() * 1000) for offer_id, _, _, expires_at in rows},
        nx=True,
    )
    restores = []
    for offer_id, driver_id, trip_id, expires_at in rows:
        ttl_ms = int(expires_at.timestamp() * 1000) - now + int(RESERVATION_GRACE_S * 1000)
        if ttl_ms > 0:
            restores.append(
                rt.presence.restore_offer(
                    offer_id=offer_id, driver_id=driver_id, trip_id=trip_id, ttl_ms=ttl_ms
                )
            )
    await asyncio.gather(*restores)  # one round trip for all of them
    return len(rows)


async def orphan_held(rt: Runtime, *, driver_id: str) -> str | None:
    """The driver's last socket closed: the offer it holds, if any, is withdrawn unless
    a socket comes back within ``COOP_OFFER_DISCONNECT_GRACE_S``."""
    held = await rt.presence.offer_held_by(driver_id)
    if held is not None:
        due_ms = now_ms() + int(rt.settings.offer_disconnect_grace_s * 1000)
        await rt.redis.zadd(rt.keys.offers_orphaned(), {held: due_ms})
    return held


async def orphan_gone(rt: Runtime, gone: Sequence[Gone]) -> int:
    """Drivers whose last socket went with an api process that died (its lease ran out,
    ``Presence.reap_lapsed_processes``): an offer each holds is withdrawn unless a socket
    comes back within the grace, counted from when that lease ran out (the socket was
    last known open then). Returns how many offers were orphaned; two round trips."""
    if not gone:
        return 0
    async with rt.redis.pipeline(transaction=False) as pipe:
        for g in gone:
            pipe.get(rt.keys.driver_offer(g.driver_id))
        held = await pipe.execute()
    grace_ms = int(rt.settings.offer_disconnect_grace_s * 1000)
    due = {str(h): g.since_ms + grace_ms for g, h in zip(gone, held, strict=True) if h}
    if due:
        await rt.redis.zadd(rt.keys.offers_orphaned(), due)
    return len(due)


async def adopt_held(rt: Runtime, *, driver_id: str) -> None:
    """A socket of the driver opened: the offer it holds is no longer orphaned."""
    held = await rt.presence.offer_held_by(driver_id)
    if held is not None:
        await rt.redis.zrem(rt.keys.offers_orphaned(), held)


async def withdraw_orphaned(rt: Runtime, *, limit: int = 500) -> int:
    """Withdraw the offers whose driver has had no socket open for the grace period: the
    driver is told (``offer.withdrawn``, replayed when it reconnects), the trip goes
    back to the queue without that driver. An offer whose driver came back meanwhile,
    or that ended another way, just leaves the set."""
    key = rt.keys.offers_orphaned()
    due = [str(x) for x in await rt.redis.zrangebyscore(key, "-inf", now_ms(), 0, limit)]
    withdrawn = 0
    for offer_id in due:
        async with rt.unit_of_work() as db:
            found = (
                await db.execute(
                    select(Offer.trip_id, Offer.driver_id).where(
                        Offer.id == offer_id, Offer.status == "pending"
                    )
                )
            ).first()
            if found is None or await rt.presence.open_sockets(found.driver_id) > 0:
                await rt.redis.zrem(key, offer_id)
                continue
            # Trip first, then the offer: the lock order of every other path.
            trip = await db.get(Trip, found.trip_id, with_for_update=True)
            if not await _end_unanswered(db, rt, offer_id=offer_id, trip=trip, status="withdrawn"):
                await rt.redis.zrem(key, offer_id)
                continue
            after_commit(db, partial(rt.redis.zrem, key, offer_id))
        withdrawn += 1
    return withdrawn
