"""dispatch.trips, service by service, against real PostgreSQL and Redis: quoting,
requesting (idempotently, one active trip a rider), who may see and move a trip, the
driver's steps, cancellation fees, expiry, re-queueing, the recorded route and
reconciling the live index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from core.auth import Principal
from core.clock import now_ms
from core.errors import (
    ActiveTripExists,
    IdempotencyKeyReused,
    IllegalTransition,
    NotYourTrip,
    ReceiptNotReady,
    TripNotFound,
)
from core.models import LedgerPosting, Trip
from dispatch import offers, trips
from fares import rules
from fares.journals import member_account
from tests.fixtures.live_index import online_at
from tests.fixtures.world import World, east


def rider(trip: Trip) -> Principal:
    return Principal("rider", trip.rider_id)


def driver(driver_id: str) -> Principal:
    return Principal("driver", driver_id)


async def assigned(world: World, *, at_m: float = 100) -> tuple[Trip, str]:
    """A trip with a driver on the way to it."""
    driver_id = await world.member(at=east(at_m))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver_id)
    async with world.rt.unit_of_work() as db:
        await offers.accept(db, world.rt, offer_id=offer.id, driver_id=driver_id)
    return await world.trip(trip.id), driver_id


async def advance(world: World, trip: Trip, driver_id: str, target: str) -> Trip:
    async with world.rt.unit_of_work() as db:
        return await trips.advance(
            db, world.rt, trip_id=trip.id, driver_id=driver_id, target=target
        )


async def test_a_quote_prices_with_the_current_rule_and_the_nearest_driver(world: World) -> None:
    async with world.rt.sessions() as db:
        nobody = await trips.quote(db, world.rt, pickup=east(0), dropoff=east(3000))
        current = await rules.current(db)
    assert nobody.pickup_eta_s is None and nobody.quote_id is None
    assert nobody.rule.version == current.version
    assert nobody.fare.platform_commission_cents == 0
    assert nobody.fare.total_cents >= current.minimum_cents
    near = await world.member(at=east(300))
    await world.member(at=east(900))
    rider_id = await world.rider()
    async with world.rt.sessions() as db:
        q = await trips.quote(db, world.rt, pickup=east(0), dropoff=east(3000), rider_id=rider_id)
    assert (await world.rt.presence.state(near)).status == "available"
    assert q.pickup_eta_s == world.rt.eta.seconds(east(300), east(0))
    assert q.quote_id is not None and q.fare == nobody.fare
    # The trip is estimated by the trip model (learned from real trips by default).
    trip_leg = world.rt.trip_eta.leg(east(0), east(3000))
    assert (q.distance_m, q.duration_s) == (trip_leg.distance_m, trip_leg.duration_s)
    assert trip_leg != world.rt.eta.leg(east(0), east(3000))


async def test_a_request_is_stored_queued_and_idempotent(world: World) -> None:
    trip = await world.request(east(0), idempotency_key="k-1")
    assert trip.status == "requested" and trip.fare_total_cents > 0
    assert await world.rt.redis.zscore(world.rt.keys.pending(trip.region), trip.id) is not None
    async with world.rt.unit_of_work() as db:
        again, created = await trips.request(
            db,
            world.rt,
            rider_id=trip.rider_id,
            pickup=east(0),
            dropoff=east(3000),
            idempotency_key="k-1",
        )
    assert (again.id, created) == (trip.id, False)
    async with world.rt.unit_of_work() as db:
        with pytest.raises(IdempotencyKeyReused):
            await trips.request(
                db,
                world.rt,
                rider_id=trip.rider_id,
                pickup=east(10),
                dropoff=east(3000),
                idempotency_key="k-1",
            )
    async with world.rt.unit_of_work() as db:
        with pytest.raises(ActiveTripExists):
            await trips.request(
                db,
                world.rt,
                rider_id=trip.rider_id,
                pickup=east(0),
                dropoff=east(3000),
                idempotency_key=None,
            )


async def test_who_may_see_a_trip(world: World) -> None:
    trip, driver_id = await assigned(world)
    stranger = await world.rider()
    async with world.rt.sessions() as db:
        assert (await trips.get(db, trip_id=trip.id, who=rider(trip))).id == trip.id
        assert (await trips.get(db, trip_id=trip.id, who=driver(driver_id))).id == trip.id
        assert (await trips.get(db, trip_id=trip.id, who=Principal("operator", "op"))).id
        with pytest.raises(NotYourTrip):
            await trips.get(db, trip_id=trip.id, who=Principal("rider", stranger))
        with pytest.raises(TripNotFound):
            await trips.get(db, trip_id="trp_nope", who=rider(trip))
        with pytest.raises(ReceiptNotReady):
            await trips.receipt_trip(db, trip_id=trip.id, who=rider(trip))


async def test_the_driver_moves_the_trip_to_completed_and_is_paid(world: World) -> None:
    trip, driver_id = await assigned(world)
    stranger = await world.member()
    async with world.rt.unit_of_work() as db:
        with pytest.raises(NotYourTrip):
            await trips.advance(db, world.rt, trip_id=trip.id, driver_id=stranger, target="arrived")
    async with world.rt.unit_of_work() as db:
        with pytest.raises(IllegalTransition):
            await trips.advance(
                db, world.rt, trip_id=trip.id, driver_id=driver_id, target="completed"
            )
    assert (await advance(world, trip, driver_id, "arrived")).arrived_at is not None
    started = await advance(world, trip, driver_id, "in_progress")
    # Heading for the drop-off now: positions sent to the rider carry that ETA.
    state = await world.rt.presence.state(driver_id)
    assert state.status == "on_trip" and state.trip_id == trip.id
    # Positions while on the trip are sampled into its route.
    await online_at(world.rt, driver_id, east(1500), ts=now_ms())
    done = await advance(world, started, driver_id, "completed")
    assert done.status == "completed" and done.completed_at is not None
    assert (await world.rt.presence.state(driver_id)).status == "available"
    async with world.rt.sessions() as db:
        postings = (
            await db.execute(
                select(LedgerPosting.account, LedgerPosting.amount_cents).where(
                    LedgerPosting.account == member_account(driver_id)
                )
            )
        ).all()
        route = await trips.trace_of(db, trip_id=trip.id, who=rider(trip))
        receipt = await trips.receipt_trip(db, trip_id=trip.id, who=rider(trip))
    earned = done.fare_total_cents - done.cost_recovery_cents
    assert [amount for _, amount in postings] == [-earned]
    assert receipt.id == trip.id
    kinds = [p.kind for p in route]
    assert kinds[0] == "arrived" and kinds[-1] == "completed" and "started" in kinds


async def test_a_rider_who_cancels_after_the_driver_arrived_pays_the_driver(
    world: World,
) -> None:
    trip, driver_id = await assigned(world)
    await advance(world, trip, driver_id, "arrived")
    async with world.rt.unit_of_work() as db:
        cancelled = await trips.cancel(db, world.rt, trip_id=trip.id, who=rider(trip))
        fee = (await rules.by_version(db, version=trip.fare_rule_version)).cancellation_fee_cents
    assert cancelled.status == "cancelled" and cancelled.cancelled_by == "rider"
    assert cancelled.cancellation_fee_cents == fee > 0
    assert (await world.rt.presence.state(driver_id)).status == "available"
    async with world.rt.sessions() as db:
        paid = await db.scalars(
            select(LedgerPosting.amount_cents).where(
                LedgerPosting.account == member_account(driver_id)
            )
        )
        assert list(paid) == [-fee]
        receipt = await trips.receipt_trip(db, trip_id=trip.id, who=rider(trip))
    assert receipt.cancellation_fee_cents == fee


async def test_cancelling_before_a_driver_accepts_is_free_and_only_the_driver_on_it_may(
    world: World,
) -> None:
    trip = await world.request(east(0))
    other = await world.member()
    async with world.rt.unit_of_work() as db:
        with pytest.raises(NotYourTrip):
            await trips.cancel(db, world.rt, trip_id=trip.id, who=driver(other))
    async with world.rt.unit_of_work() as db:
        cancelled = await trips.cancel(db, world.rt, trip_id=trip.id, who=rider(trip))
    assert cancelled.cancellation_fee_cents == 0
    assert await world.rt.redis.zscore(world.rt.keys.pending(trip.region), trip.id) is None
    async with world.rt.unit_of_work() as db:
        with pytest.raises(IllegalTransition):
            await trips.cancel(db, world.rt, trip_id=trip.id, who=rider(trip))


async def test_a_request_nobody_took_expires(world: World) -> None:
    trip = await world.request(east(0))
    await trips.expire_unmatched(world.rt)
    assert (await world.trip(trip.id)).status == "requested"  # not old enough
    too_old = trip.requested_at - timedelta(seconds=world.rt.settings.trip_request_timeout_s + 1)
    async with world.rt.unit_of_work() as db:
        await db.execute(update(Trip).where(Trip.id == trip.id).values(requested_at=too_old))
    assert await trips.expire_unmatched(world.rt) >= 1
    expired = await world.trip(trip.id)
    assert expired.status == "expired" and expired.expired_at is not None
    assert await world.rt.redis.zscore(world.rt.keys.pending(trip.region), trip.id) is None


async def test_the_queue_is_rebuilt_from_postgresql(world: World) -> None:
    trip = await world.request(east(0))
    await world.rt.redis.delete(world.rt.keys.pending(trip.region))
    assert await trips.requeue_open(world.rt) >= 1
    score = await world.rt.redis.zscore(world.rt.keys.pending(trip.region), trip.id)
    assert score == int(trip.requested_at.timestamp() * 1000)


async def test_sync_presence_follows_postgresql(world: World) -> None:
    trip, driver_id = await assigned(world)
    await world.rt.presence.clear_trip(driver_id, now_ms=now_ms())  # Redis forgot
    async with world.rt.sessions() as db:
        active = await trips.sync_presence(db, world.rt, driver_id=driver_id)
    assert active is not None and active.id == trip.id
    state = await world.rt.presence.state(driver_id)
    assert state.status == "on_trip" and state.trip_id == trip.id


def test_an_idempotency_key_lives_24_hours() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert timedelta(hours=24) == trips.IDEMPOTENCY_KEY_TTL
    made = Trip(requested_at=now - timedelta(hours=23, minutes=59))
    assert not trips.key_expired(made, now=now)
    assert trips.key_expired(Trip(requested_at=now - timedelta(hours=24)), now=now)
    assert trips.key_expired(Trip(requested_at=now - timedelta(days=90)), now=now)
