"""The demo city: phones that play a city through a real server's HTTP API and sockets.

A Manhattan service area, a fleet of member drivers who go online, stream their
position, take offers after a human delay, drive to the pickup and the drop-off and
complete the trip, and riders who arrive following a real demand file (the April 2014
NYC pickups, ``data/``) at ``speedup`` times real speed, quote, request, watch their
trip and fetch the receipt. Time on the road is compressed by the same factor, so a
10-minute trip takes 30 s at the default speed-up.

Nothing here reaches inside the server: the phones only speak HTTP and WebSocket, so
the city also proves the whole stack works. ``coopride demo`` (``server/demo.py``) runs
it beside the server; the load test uses its service area.

One module of about 500 lines on purpose: the driver's and the rider's phones share the
city's clock, tally and stop, and their choreography reads best side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from core import progress
from core.auth import issue_token
from core.settings import Settings
from geo.eta import DEFAULT_MODEL
from geo.point import LatLng, toward
from simulation.demand import RideRequest, build_requests, driver_starts, read_demand

log = logging.getLogger(__name__)

# Earlier runs' demo members, phone → member id: the city reuses them.
KnownMembers = Callable[[], Awaitable[dict[str, str]]]

# Manhattan below 125th Street, river to river: where the demo's riders are served.
MANHATTAN = {
    "type": "Polygon",
    "coordinates": [
        [
            [-74.0200, 40.7000],
            [-73.9700, 40.7000],
            [-73.9300, 40.7900],
            [-73.9300, 40.8150],
            [-73.9600, 40.8150],
            [-74.0200, 40.7500],
            [-74.0200, 40.7000],
        ]
    ],
}
DEMO_PHONE_PREFIX = "+1 555 90"
# Phones report every 4 s of real time; the demo's drivers do too while idle, and once a
# second (of real time) while moving, so the map moves smoothly.
IDLE_REPORT_S = 4.0
MOVING_REPORT_S = 1.0
HUMAN_DELAY_S = (0.5, 2.5)
FINAL = frozenset({"completed", "cancelled", "expired"})


@dataclass
class Tally:
    """What the demo saw, from the phones' side."""

    requested: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    fares_cents: int = 0
    driver_earnings_cents: int = 0
    cost_recovery_cents: int = 0
    commission_cents: int = 0
    offers: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def line(self, online: int) -> str:
        o = self.outcomes
        return (
            f"drivers online {online:>3} | requested {self.requested:>4} | completed "
            f"{o['completed']:>4} | expired {o['expired']:>3} | cancelled {o['cancelled']:>3}"
            f" | fares ${self.fares_cents / 100:,.2f}"
            f" (drivers ${self.driver_earnings_cents / 100:,.2f},"
            f" commission ${self.commission_cents / 100:,.2f})"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "completed": self.outcomes["completed"],
            "expired": self.outcomes["expired"],
            "cancelled": self.outcomes["cancelled"],
            "unfinished": self.requested - sum(self.outcomes.values()),
            "offers": self.offers,
            "fares_cents": self.fares_cents,
            "driver_earnings_cents": self.driver_earnings_cents,
            "cost_recovery_cents": self.cost_recovery_cents,
            "platform_commission_cents": self.commission_cents,
            "errors": dict(self.errors),
        }


class DemoCity:
    def __init__(
        self,
        settings: Settings,
        base_url: str,
        *,
        drivers: int,
        speedup: float,
        riders_per_minute: float,
        seed: int,
        demand: Path,
        known_members: KnownMembers,
    ) -> None:
        self.settings = settings
        self.known_members = known_members
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://", 1)
        self.fleet = drivers
        self.speedup = speedup
        self.riders_per_minute = riders_per_minute
        self.rng = random.Random(seed)
        self.seed = seed
        self.demand = demand
        self.tally = Tally()
        self.online = 0
        # Once stopping, riders cancel and sockets close: what fails then is the stop
        # itself, not the city, and is not counted.
        self.stopping = False
        self.server_exiting: Callable[[], bool] = lambda: False
        self.operator = {"Authorization": f"Bearer {settings.operator_token}"}
        # Straight-line speed on the road: what the ETA model assumes, compressed.
        self.metres_per_real_s = DEFAULT_MODEL.speed_mps / DEFAULT_MODEL.detour_factor * speedup

    def is_stopping(self) -> bool:
        return self.stopping or self.server_exiting()

    # -- seeding -----------------------------------------------------------------------

    async def seed_city(self, http: httpx.AsyncClient) -> list[tuple[str, str]]:
        areas = (await http.get("/v1/operator/service-areas", headers=self.operator)).json()
        if not areas:
            r = await http.post(
                "/v1/operator/service-areas",
                headers=self.operator,
                json={"name": "Manhattan (demo)", "polygon": MANHATTAN},
            )
            r.raise_for_status()
            _say("seeding: service area 'Manhattan (demo)' created")
        else:
            _say(f"seeding: {len(areas)} service area(s) already defined")
        rule = (await http.get("/v1/fares/rules/current")).json()
        _say(
            f"seeding: fare rule v{rule['version']} (base {rule['base_cents']}¢, "
            f"{rule['per_km_cents']}¢/km, {rule['per_minute_cents']}¢/min, "
            f"minimum {rule['minimum_cents']}¢, commission 0)"
        )
        return await self._members(http)

    async def _members(self, http: httpx.AsyncClient) -> list[tuple[str, str]]:
        """The demo's drivers, admitted once and reused by later runs (whose tokens the
        city issues again: it holds the server's secret, as the co-op's own demo)."""
        known = await self.known_members()
        members: list[tuple[str, str]] = []

        def say() -> None:
            again = sum(1 for m in members if m[0] in known.values())
            _say(f"seeding: members {len(members)}/{self.fleet} ({again} from earlier runs)")

        # On a terminal a bar counts them; elsewhere a line every ten. Then the total.
        lines = not progress.shown()
        with progress.bar("[demo] seeding: members", total=self.fleet) as advance:
            for n in range(self.fleet):
                members.append(await self._member(http, n, known))
                advance()
                if lines and len(members) % 10 == 0 and len(members) < self.fleet:
                    say()
        say()
        return members

    async def _member(
        self, http: httpx.AsyncClient, n: int, known: dict[str, str]
    ) -> tuple[str, str]:
        """Demo driver ``n``: its member id and a token."""
        phone = f"{DEMO_PHONE_PREFIX}{n:02d}" if n < 100 else f"{DEMO_PHONE_PREFIX}{n}"
        if phone in known:
            member_id = known[phone]
            token = issue_token(
                secret=self.settings.jwt_secret,
                role="driver",
                subject_id=member_id,
                ttl_s=self.settings.token_ttl_s,
            )
        else:
            r = await http.post(
                "/v1/drivers",
                headers=self.operator,
                json={
                    "name": f"Demo driver {n + 1}",
                    "phone": phone,
                    "vehicle": {"plate": f"DEMO{n + 1:03d}", "seats": 4},
                },
            )
            r.raise_for_status()
            member_id, token = r.json()["id"], r.json()["token"]
        return member_id, token

    def requests(self) -> list[RideRequest]:
        """Riders to replay: the real demand file's peak (the CLI checked it is there)."""
        if not progress.shown():  # else a spinner says it
            _say(f"reading the demand file {self.demand.name} …")
        with progress.bar(f"[demo] reading the demand file {self.demand.name}", total=None):
            rows = read_demand(self.demand)
            replay = build_requests(rows, seed=self.seed)
        inside = [r for r in replay if _in_demo_area(r.pickup) and _in_demo_area(r.dropoff)]
        return inside

    # -- drivers -------------------------------------------------------------------------

    async def driver(self, token: str, start: LatLng, stop: asyncio.Event) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        position = start
        async with (
            httpx.AsyncClient(base_url=self.base_url, headers=auth, timeout=10) as http,
            connect(f"{self.ws_url}/v1/drivers/ws", additional_headers=auth, open_timeout=20) as ws,
        ):
            frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            reader = asyncio.create_task(self._read(ws, frames))
            # A trip left over from a run that was killed: finish or give it up first.
            left = (await http.get("/v1/drivers/me")).json().get("active_trip")
            if left is not None:
                step = "complete" if left["status"] == "in_progress" else "cancel"
                await http.post(f"/v1/trips/{left['id']}/{step}")
            self.online += 1
            try:
                await ws.send(orjson.dumps({"type": "status", "status": "online"}).decode())
                await self._report(ws, position)
                while not stop.is_set():
                    try:
                        frame = await asyncio.wait_for(frames.get(), IDLE_REPORT_S)
                    except TimeoutError:
                        position = toward(position, _wander(position, self.rng), 30.0)
                        await self._report(ws, position)
                        continue
                    if frame.get("type") == "offer" and not _expired(frame["expires_at"]):
                        self.tally.offers += 1
                        await asyncio.sleep(self.rng.uniform(*HUMAN_DELAY_S))
                        await ws.send(
                            orjson.dumps({"type": "accept", "offer_id": frame["offer_id"]}).decode()
                        )
                    elif frame.get("type") == "trip.assigned":
                        # A reconnecting phone is sent the events it never acked, so an
                        # assignment may be from an earlier run: drive it only if it is
                        # still this driver's trip, as a real app would check.
                        current = await http.get(f"/v1/trips/{frame['trip']['id']}")
                        if current.status_code == 200 and current.json()["status"] == "assigned":
                            position = await self._drive(
                                http, ws, frames, current.json(), position, stop
                            )
                    if "event_id" in frame:
                        await ws.send(
                            orjson.dumps({"type": "ack", "event_id": frame["event_id"]}).decode()
                        )
            finally:
                self.online -= 1
                reader.cancel()
                with contextlib.suppress(Exception):
                    await ws.send(orjson.dumps({"type": "status", "status": "offline"}).decode())

    async def _read(self, ws: ClientConnection, frames: asyncio.Queue[dict[str, Any]]) -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame.get("type") == "error":
                self.tally.errors[str(frame.get("code"))] += 1
            frames.put_nowait(frame)

    async def _report(self, ws: ClientConnection, where: LatLng) -> None:
        await ws.send(
            orjson.dumps(
                {
                    "type": "location",
                    "lat": round(float(where.lat), 6),
                    "lng": round(float(where.lng), 6),
                    "accuracy_m": 6,
                }
            ).decode()
        )

    async def _drive(
        self,
        http: httpx.AsyncClient,
        ws: ClientConnection,
        frames: asyncio.Queue[dict[str, Any]],
        trip: dict[str, Any],
        position: LatLng,
        stop: asyncio.Event,
    ) -> LatLng:
        """Drive the trip through the real API; give up if the rider cancels."""
        pickup = LatLng(trip["pickup"]["lat"], trip["pickup"]["lng"])
        dropoff = LatLng(trip["dropoff"]["lat"], trip["dropoff"]["lng"])
        for target, then in ((pickup, ("arrived", "start")), (dropoff, ("complete",))):
            while position != target and not stop.is_set():
                await asyncio.sleep(MOVING_REPORT_S)
                position = toward(position, target, self.metres_per_real_s * MOVING_REPORT_S)
                await self._report(ws, position)
                if _cancelled(frames):
                    return position
            for step in then:
                if stop.is_set():
                    return position
                r = await http.post(f"/v1/trips/{trip['id']}/{step}")
                if r.status_code != 200:
                    if not self.is_stopping():
                        self.tally.errors[f"{step}:{r.status_code}"] += 1
                    return position
                if step == "arrived":
                    await asyncio.sleep(self.rng.uniform(1.0, 3.0))  # the rider gets in
        return position

    # -- riders --------------------------------------------------------------------------

    async def rider(self, request: RideRequest) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            r = await http.post(
                "/v1/riders",
                json={"name": "Demo rider", "phone": f"+1 555 7{self.rng.randrange(10**6):06d}"},
            )
            r.raise_for_status()
            auth = {"Authorization": f"Bearer {r.json()['token']}"}
            body = {
                "pickup": {"lat": float(request.pickup.lat), "lng": float(request.pickup.lng)},
                "dropoff": {"lat": float(request.dropoff.lat), "lng": float(request.dropoff.lng)},
            }
            async with connect(
                f"{self.ws_url}/v1/riders/ws", additional_headers=auth, open_timeout=20
            ) as ws:
                quote = await http.post("/v1/quotes", json=body, headers=auth)
                if quote.status_code != 200:
                    self.tally.errors[f"quote:{quote.json().get('type')}"] += 1
                    return
                order = {**auth, "Idempotency-Key": request.trip_id}
                trip_id: str | None = None
                status = "requested"
                try:
                    trip = await http.post("/v1/trips", json=body, headers=order)
                    if trip.status_code != 201:
                        self.tally.errors[f"request:{trip.json().get('type')}"] += 1
                        return
                    self.tally.requested += 1
                    trip_id = trip.json()["id"]
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        status = frame.get("trip", {}).get("status", status)
                        if frame.get("type") == "trip.updated" and status in FINAL:
                            self.tally.outcomes[status] += 1
                            break
                except asyncio.CancelledError:
                    # The demo is stopping: a rider still waiting (or riding) cancels,
                    # so no open trip is left behind for the next run (or for any other
                    # dispatcher of this database, which would offer it to its drivers).
                    if status not in FINAL:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(
                                _withdraw(http, auth, order=order, body=body, trip_id=trip_id)
                            )
                    raise
                if status == "completed":
                    receipt = (await http.get(f"/v1/trips/{trip_id}/receipt", headers=auth)).json()
                    self.tally.fares_cents += receipt["total_cents"]
                    self.tally.driver_earnings_cents += receipt["driver_earnings_cents"]
                    self.tally.cost_recovery_cents += receipt["cost_recovery_cents"]
                    self.tally.commission_cents += receipt["platform_commission_cents"]

    async def riders(self, requests: list[RideRequest], stop: asyncio.Event) -> None:
        """Replay the demand at ``speedup`` times real speed, thinned to
        ``riders_per_minute`` so a small fleet is busy but not swamped."""
        if not requests:
            return
        span_s = max(1.0, requests[-1].requested_s - requests[0].requested_s)
        replayed_per_minute = len(requests) / (span_s / self.speedup) * 60
        keep = min(1.0, self.riders_per_minute / replayed_per_minute)
        started = time.monotonic()
        t0 = requests[0].requested_s
        running: set[asyncio.Task[None]] = set()
        try:
            for request in itertools.cycle(requests):
                if stop.is_set():
                    break
                if self.rng.random() > keep:
                    continue
                delay = (request.requested_s - t0) / self.speedup - (time.monotonic() - started)
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                task = asyncio.create_task(self._safely(self.rider(request)))
                running.add(task)
                task.add_done_callback(running.discard)
                if request is requests[-1]:  # the replay wraps around
                    started, t0 = time.monotonic(), requests[0].requested_s
        finally:
            # Whether the replay ended or was cancelled (the city stopping cancels this
            # task too, racing its own exit), every rider still out is stopped and
            # waited for: each cancels its trip while the server still answers.
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _safely(self, job: Any) -> None:
        try:
            await job
        except (TimeoutError, OSError, httpx.HTTPError) as exc:
            if not self.is_stopping():
                self.tally.errors[type(exc).__name__] += 1
        except Exception as exc:  # a demo phone's bug must not stop the city
            if self.is_stopping():
                return
            self.tally.errors[type(exc).__name__] += 1
            log.warning("demo phone failed: %r", exc, exc_info=exc)

    async def run(self, stop: asyncio.Event, *, report_every_s: float) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as http:
            members = await self.seed_city(http)
        requests = self.requests()
        starts = (
            driver_starts(requests, len(members), seed=self.seed)
            if requests
            else [LatLng(40.7549, -73.9840)] * len(members)
        )
        tasks = [
            asyncio.create_task(self._safely(self.driver(token, start, stop)))
            for (_, token), start in zip(members, starts, strict=True)
        ]
        tasks.append(asyncio.create_task(self.riders(requests, stop)))
        print(
            f"[demo] {len(members)} drivers, riders from {len(requests)} real pickups "
            f"({self.demand.name}), "
            f"{self.speedup:g}x speed",
            flush=True,
        )
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), report_every_s)
            print(f"[demo] {self.tally.line(self.online)}", flush=True)
        self.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _withdraw(
    http: httpx.AsyncClient,
    auth: dict[str, str],
    *,
    order: dict[str, str],
    body: dict[str, Any],
    trip_id: str | None,
) -> None:
    """Cancel the rider's trip. Stopped while its request was on the wire, the rider does
    not know whether the trip was made: asking again with the same headers (``order``,
    with its Idempotency-Key) answers with that trip if it was (and makes it if not), and
    then it is cancelled."""
    if trip_id is None:
        r = await http.post("/v1/trips", json=body, headers=order)
        if not r.is_success:
            return
        trip_id = r.json()["id"]
    await http.post(f"/v1/trips/{trip_id}/cancel", headers=auth)


def _say(line: str) -> None:
    print(f"[demo] {line}", flush=True)


def _in_demo_area(p: LatLng) -> bool:
    """Inside the demo polygon (a quick box-and-diagonal test matching MANHATTAN)."""
    if not (40.70 <= p.lat <= 40.815 and -74.02 <= p.lng <= -73.93):
        return False
    # West edge runs from (-74.02, 40.75) to (-73.96, 40.815); east edge from
    # (-73.97, 40.70) to (-73.93, 40.79).
    west = -74.02 + (p.lat - 40.75) / (40.815 - 40.75) * 0.06 if p.lat > 40.75 else -74.02
    east = -73.97 + (p.lat - 40.70) / (40.79 - 40.70) * 0.04 if p.lat < 40.79 else -73.93
    return west <= p.lng <= east


def _expired(expires_at: str) -> bool:
    """An offer replayed from before a reconnect may have run out already."""
    return datetime.fromisoformat(expires_at) <= datetime.now(UTC)


def _wander(p: LatLng, rng: random.Random) -> LatLng:
    angle = rng.uniform(0, 2 * math.pi)
    return LatLng(p.lat + 0.002 * math.sin(angle), p.lng + 0.002 * math.cos(angle))


def _cancelled(frames: asyncio.Queue[dict[str, Any]]) -> bool:
    kept, cancelled = [], False
    while not frames.empty():
        frame = frames.get_nowait()
        if frame.get("type") == "trip.cancelled":
            cancelled = True
        else:
            kept.append(frame)
    for frame in kept:
        frames.put_nowait(frame)
    return cancelled
