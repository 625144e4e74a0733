"""dispatch.offers, service by service, against real PostgreSQL and Redis: making a
batch's offers, accepting (once, whoever races), declining, expiring, withdrawing, and
putting Redis back from PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import update

from core.auth import Principal
from core.clock import now_ms
from core.errors import NotYourOffer, OfferExpired, OfferNotFound, OfferWithdrawn
from core.models import Offer
from dispatch import offers, trips
from dispatch.batch.types import Assignment
from tests.fixtures.world import World, east


async def frames_of(world: World, driver_id: str) -> list[dict[str, object]]:
    """The driver's durable events, as its socket would replay them."""
    raw, _, _ = await world.rt.bus.missed_since("driver", driver_id, 0)
    return [json.loads(f) for f in raw]


async def queued(world: World, trip_id: str) -> bool:
    score = await world.rt.redis.zscore(world.rt.keys.pending(trips.DEFAULT_REGION), trip_id)
    return score is not None


async def excluded(world: World, trip_id: str) -> set[str]:
    return {str(d) for d in await world.rt.redis.smembers(world.rt.keys.trip_excluded(trip_id))}


async def test_a_batch_becomes_offers_reserved_and_pushed(world: World) -> None:
    d1, d2 = await world.member(at=east(100)), await world.member(at=east(200))
    t1, t2 = await world.request(east(0)), await world.request(east(50))
    made = await offers.make_batch(
        world.rt, [Assignment(t1.id, d1, 40), Assignment(t2.id, d2, 70)], region="default"
    )
    assert {(o.trip_id, o.driver_id, o.pickup_eta_s) for o in made} == {
        (t1.id, d1, 40),
        (t2.id, d2, 70),
    }
    assert {o.status for o in made} == {"pending"}
    for offer in made:
        assert await world.rt.presence.offer_held_by(offer.driver_id) == offer.id
        assert not await queued(world, offer.trip_id)  # out of the queue while offered
    [frame] = [f for f in await frames_of(world, d1) if f["type"] == "offer"]
    assert frame["offer_id"] == next(o.id for o in made if o.driver_id == d1)
    assert frame["pickup_eta_s"] == 40


async def test_a_taken_driver_or_trip_is_not_offered_twice(world: World) -> None:
    driver = await world.member(at=east(100))
    t1, t2 = await world.request(east(0)), await world.request(east(10))
    first = await world.offer(t1.id, driver)
    # The same driver for another trip, and another driver for the same trip: dropped.
    other = await world.member(at=east(150))
    again = await offers.make_batch(
        world.rt, [Assignment(t2.id, driver, 60), Assignment(t1.id, other, 60)], region="default"
    )
    assert again == []
    assert await world.pending_offers([t1.id, t2.id]) == {t1.id: driver}
    assert await world.rt.presence.offer_held_by(other) is None  # nothing left reserved
    assert first.status == "pending"


async def test_an_offline_driver_is_not_offered(world: World) -> None:
    driver = await world.member(at=east(100))
    await world.rt.presence.set_status(driver, "offline", now_ms=now_ms())
    trip = await world.request(east(0))
    assert (
        await offers.make_batch(world.rt, [Assignment(trip.id, driver, 60)], region="default") == []
    )
    assert await world.rt.presence.offer_held_by(driver) is None


async def test_accept_assigns_the_trip_and_puts_the_driver_on_it(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver, pickup_eta_s=42)
    async with world.rt.unit_of_work() as db:
        assigned = await offers.accept(db, world.rt, offer_id=offer.id, driver_id=driver)
    assert assigned.status == "assigned" and assigned.driver_id == driver
    assert assigned.pickup_eta_s == 42
    assert (await world.offer_row(offer.id)).status == "accepted"
    state = await world.rt.presence.state(driver)
    assert state.status == "on_trip" and state.trip_id == trip.id
    assert await world.rt.presence.offer_held_by(driver) is None
    assert any(f["type"] == "trip.assigned" for f in await frames_of(world, driver))
    # An answered offer cannot be answered again.
    async with world.rt.unit_of_work() as db:
        with pytest.raises(OfferWithdrawn):
            await offers.accept(db, world.rt, offer_id=offer.id, driver_id=driver)
    async with world.rt.unit_of_work() as db:
        with pytest.raises(OfferWithdrawn):
            await offers.decline(db, world.rt, offer_id=offer.id, driver_id=driver)


async def test_of_racing_accepts_exactly_one_wins(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)

    async def accept() -> str:
        try:
            async with world.rt.unit_of_work() as db:
                await offers.accept(db, world.rt, offer_id=offer.id, driver_id=driver)
        except OfferWithdrawn:
            return "refused"
        return "won"

    outcomes = await asyncio.gather(*(accept() for _ in range(5)))
    assert sorted(outcomes) == ["refused"] * 4 + ["won"]
    assert (await world.trip(trip.id)).driver_id == driver


async def test_only_the_driver_offered_may_answer(world: World) -> None:
    driver, stranger = await world.member(at=east(100)), await world.member()
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    async with world.rt.unit_of_work() as db:
        with pytest.raises(NotYourOffer):
            await offers.accept(db, world.rt, offer_id=offer.id, driver_id=stranger)
        with pytest.raises(OfferNotFound):
            await offers.accept(db, world.rt, offer_id="ofr_nope", driver_id=driver)
        with pytest.raises(OfferNotFound):
            await offers.decline(db, world.rt, offer_id="ofr_\x00", driver_id=driver)
    assert (await world.offer_row(offer.id)).status == "pending"


async def test_an_offer_past_its_time_cannot_be_accepted(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    async with world.rt.unit_of_work() as db:
        await db.execute(
            update(Offer).where(Offer.id == offer.id).values(expires_at=trip.requested_at)
        )
    async with world.rt.unit_of_work() as db:
        with pytest.raises(OfferExpired):
            await offers.accept(db, world.rt, offer_id=offer.id, driver_id=driver)
    assert (await world.trip(trip.id)).status == "requested"


async def test_decline_requeues_the_trip_without_that_driver(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    async with world.rt.unit_of_work() as db:
        await offers.decline(db, world.rt, offer_id=offer.id, driver_id=driver)
    assert (await world.offer_row(offer.id)).status == "declined"
    assert await queued(world, trip.id)
    assert await excluded(world, trip.id) == {driver}
    assert await world.rt.presence.offer_held_by(driver) is None


async def test_an_unanswered_offer_expires_and_the_trip_moves_on(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    assert await offers.expire_due(world.rt) == 0  # not due yet
    await world.rt.redis.zadd(world.rt.keys.offer_deadlines(), {offer.id: now_ms() - 1})
    assert await offers.expire_due(world.rt) == 1
    assert await offers.expire_due(world.rt) == 0  # once
    assert (await world.offer_row(offer.id)).status == "expired"
    assert {"type": "offer.expired", "offer_id": offer.id}.items() <= next(
        f for f in await frames_of(world, driver) if f["type"] == "offer.expired"
    ).items()
    assert await queued(world, trip.id) and await excluded(world, trip.id) == {driver}
    async with world.rt.unit_of_work() as db:
        with pytest.raises(OfferExpired):
            await offers.accept(db, world.rt, offer_id=offer.id, driver_id=driver)


async def test_cancelling_the_trip_withdraws_its_offer(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    async with world.rt.unit_of_work() as db:
        await trips.cancel(db, world.rt, trip_id=trip.id, who=Principal("rider", trip.rider_id))
    assert (await world.offer_row(offer.id)).status == "withdrawn"
    assert any(f["type"] == "offer.withdrawn" for f in await frames_of(world, driver))
    assert await world.rt.presence.offer_held_by(driver) is None
    assert not await queued(world, trip.id)


async def test_a_vanished_drivers_offer_is_withdrawn_after_the_grace(world: World) -> None:
    driver = await world.member(at=east(100))  # one socket open
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    assert await world.rt.presence.disconnected(driver) == 0
    assert await offers.orphan_held(world.rt, driver_id=driver) == offer.id
    assert await offers.withdraw_orphaned(world.rt) == 0  # still within the grace
    orphaned = world.rt.keys.offers_orphaned()
    await world.rt.redis.zadd(orphaned, {offer.id: now_ms() - 1})
    assert await offers.withdraw_orphaned(world.rt) == 1
    assert (await world.offer_row(offer.id)).status == "withdrawn"
    assert await world.rt.redis.zscore(orphaned, offer.id) is None
    assert await queued(world, trip.id) and await excluded(world, trip.id) == {driver}


async def test_a_driver_back_within_the_grace_keeps_the_offer(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    await world.rt.presence.disconnected(driver)
    await offers.orphan_held(world.rt, driver_id=driver)
    await world.rt.presence.connected(driver)
    await offers.adopt_held(world.rt, driver_id=driver)
    await world.rt.redis.zadd(world.rt.keys.offers_orphaned(), {offer.id: now_ms() - 1})
    assert await offers.withdraw_orphaned(world.rt) == 0  # a socket is open again
    assert (await world.offer_row(offer.id)).status == "pending"


async def test_redis_gets_pending_offers_back_from_postgresql(world: World) -> None:
    driver = await world.member(at=east(100))
    trip = await world.request(east(0))
    offer = await world.offer(trip.id, driver)
    keys = world.rt.keys
    await world.rt.redis.delete(
        keys.driver_offer(driver), keys.trip_offer(trip.id), keys.offer_deadlines()
    )
    assert await world.rt.presence.offer_held_by(driver) is None
    assert await offers.restore_pending(world.rt) >= 1
    assert await world.rt.presence.offer_held_by(driver) == offer.id
    assert await world.rt.redis.zscore(keys.offer_deadlines(), offer.id) is not None
    # Restoring again changes nothing (NX).
    assert await offers.restore_pending(world.rt) >= 1
    assert await world.rt.presence.offer_held_by(driver) == offer.id
