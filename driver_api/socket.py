"""The driver socket: the phone streams its status and position and answers offers; the
server pushes offers and trip events (``docs/websocket.md``).

Location frames never touch PostgreSQL: each is validated, then written to the live
index by one Lua script (one Redis round trip). While the driver is on a trip, the
position is forwarded to the rider with an ETA to the driver's next stop, by the same
script (two round trips at the first frame of a leg this process did not see start).
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket

from core import identity, metrics
from core.clock import now_ms
from core.errors import (
    CoopError,
    RateLimited,
    StaleLocation,
)
from core.events import CLOSE_FORBIDDEN, encode
from dispatch import guidance, offers, trips
from dispatch.presence import RiderForward, TripLeg
from dispatch.runtime import Runtime
from geo import cells
from geo.point import LatLng
from web.frames import (
    AcceptFrame,
    ClientFrames,
    DeclineFrame,
    DriverClientFrame,
    LocationFrame,
    LocationLimits,
    StatusFrame,
)
from web.runtime import ApiRuntime
from web.sockets import Frames, error_frame, open_socket, send, serve_socket

router = APIRouter()


def _rider_frame(rt: Runtime, trip_id: str, point: LatLng, target: LatLng | None) -> dict[str, Any]:
    return {
        "type": "driver.location",
        "trip_id": trip_id,
        "lat": point.lat,
        "lng": point.lng,
        "eta_s": None if target is None else rt.eta.seconds(point, target),
    }


async def handle_location(
    rt: Runtime, driver_id: str, frame: LocationFrame, *, assumed_status: str = "offline"
) -> None:
    """A ``location`` frame its model has checked (``web.frames.LocationFrame``, with the
    clock and the limits of ``location_limits``): into the live index, and on to the
    rider while on a trip."""
    point = LatLng(frame.lat, frame.lng)
    now = now_ms()
    ts_ms = now if frame.ts_ms is None else frame.ts_ms
    accuracy, heading, speed = frame.accuracy_m, frame.heading, frame.speed_mps

    def for_rider(leg: TripLeg) -> RiderForward:
        """This position for the rider of ``leg``, with the ETA to its target: the
        location script publishes it if the driver is on that leg (the index computes it
        again for the leg Redis holds when its hint was out of date)."""
        frame_out = _rider_frame(rt, leg.trip_id, point, leg.target_point)
        return RiderForward(
            leg.trip_id, leg.target, rt.keys.channel("rider", leg.rider_id), encode(frame_out)
        )

    result = await rt.presence.update_location(
        driver_id,
        lat=point.lat,
        lng=point.lng,
        ts_ms=ts_ms,
        accuracy_m=accuracy,
        heading=heading,
        speed_mps=speed,
        cell=cells.cell_of(point, rt.presence.resolution),
        now_ms=now,
        assumed_status=assumed_status,
        forward=for_rider,
    )
    if result.retry_after_ms is not None:
        raise RateLimited(
            f"at most {rt.settings.location_burst} location frames at once and "
            f"{rt.settings.location_rate_per_s:g} per second after; this one was dropped",
            retry_after_s=-(-result.retry_after_ms // 1000),
        )
    if not result.accepted:
        raise StaleLocation(f"ts {ts_ms} is not after the last one taken ({result.last_ts_ms})")
    metrics.LOCATION_FRAMES.inc()
    if result.restored:
        # Redis had forgotten this driver (a restart): the frame put it back with the
        # status its socket asked for, but PostgreSQL says whether it is on a trip.
        async with rt.sessions() as db:
            await trips.sync_presence(db, rt, driver_id=driver_id)
        # On a trip: positions reach the rider again from the next frame on.


def location_limits(rt: Runtime) -> LocationLimits:
    """What a ``location`` frame is checked against now (its validation context)."""
    return LocationLimits(
        now_ms=now_ms(),
        max_clock_skew_s=rt.settings.max_clock_skew_s,
        max_accuracy_m=rt.settings.max_location_accuracy_m,
    )


DRIVER_FRAMES = ClientFrames.of(DriverClientFrame)


class DriverSession:
    """One driver socket's frames (``location``, ``status``, ``accept``, ``decline``) and
    what the socket remembers between them."""

    def __init__(self, rt: ApiRuntime, driver_id: str) -> None:
        self.rt = rt
        self.driver_id = driver_id
        # What this socket last asked for; restores the driver if Redis forgets it.
        self.wanted_status = "offline"
        # Gone online without a known position: the first position gets a demand.map.
        self.advice_due = False

    def frames(self) -> Frames:
        return Frames(
            DRIVER_FRAMES,
            {
                "location": self.location,
                "status": self.status,
                "accept": self.accept,
                "decline": self.decline,
            },
            context=lambda: location_limits(self.rt),
        )

    async def location(self, frame: LocationFrame) -> None:
        await handle_location(self.rt, self.driver_id, frame, assumed_status=self.wanted_status)
        if self.advice_due:
            self.advice_due = False
            await self._advise_if_idle()

    async def _advise_if_idle(self) -> bool:
        """A ``demand.map`` now, if the driver is idle at a known position (it just
        became so); False when it is not."""
        live = await self.rt.presence.state(self.driver_id)
        if live.status != "available" or live.lat is None or live.lng is None:
            return False
        await guidance.push_to(self.rt, self.driver_id, LatLng(live.lat, live.lng))
        return True

    async def status(self, frame: StatusFrame) -> None:
        rt, driver_id = self.rt, self.driver_id
        wanted = frame.status
        self.wanted_status = "available" if wanted == "online" else "offline"
        await rt.presence.set_status(driver_id, self.wanted_status, now_ms=now_ms())
        if wanted == "online":
            self.advice_due = not await self._advise_if_idle()
        else:
            self.advice_due = False
        if wanted == "offline":
            held = await rt.presence.offer_held_by(driver_id)
            if held is not None:
                try:
                    async with rt.unit_of_work() as db:
                        await offers.decline(db, rt, offer_id=held, driver_id=driver_id)
                except CoopError:
                    pass  # the offer ended meanwhile; nothing to give back

    async def accept(self, frame: AcceptFrame) -> None:
        async with self.rt.unit_of_work() as db:
            await offers.accept(db, self.rt, offer_id=frame.offer_id, driver_id=self.driver_id)
        metrics.OFFERS.labels("accepted").inc()

    async def decline(self, frame: DeclineFrame) -> None:
        async with self.rt.unit_of_work() as db:
            await offers.decline(db, self.rt, offer_id=frame.offer_id, driver_id=self.driver_id)
        metrics.OFFERS.labels("declined").inc()


@router.websocket("/v1/drivers/ws")
async def driver_socket(ws: WebSocket) -> None:
    opened = await open_socket(ws, "driver")
    if opened is None:
        return
    rt, who = opened
    driver_id = who.subject_id
    try:
        async with rt.sessions() as db:
            await identity.get_member(db, member_id=driver_id)
            await trips.sync_presence(db, rt, driver_id=driver_id)
    except CoopError as exc:
        await send(ws, error_frame(exc))
        await ws.close(CLOSE_FORBIDDEN, exc.slug)
        return

    session = DriverSession(rt, driver_id)
    await rt.presence.connected(driver_id)
    with contextlib.suppress(Exception):
        await offers.adopt_held(rt, driver_id=driver_id)
    try:
        await serve_socket(rt, ws, audience="driver", who=who, frames=session.frames())
    finally:
        # A driver with no socket open cannot hear an offer, so the last socket closing
        # takes it offline (a driver on a trip stays on it), and an offer it holds is
        # withdrawn unless a socket comes back within the grace period. The app sends
        # `status` again when it reconnects.
        with contextlib.suppress(Exception):
            if await rt.presence.disconnected(driver_id) == 0:
                await offers.orphan_held(rt, driver_id=driver_id)
