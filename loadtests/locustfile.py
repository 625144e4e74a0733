"""Locust scenarios of a city rollout: member drivers and riders over real HTTP and sockets.

Run as any locustfile is (``locust -f loadtests/locustfile.py --headless --host URL``,
with the web UI, or as master and workers; ``docs/loadtesting.md``), and by ``coopride
loadtest`` in a subprocess. With ``loadtests/control.py`` (the options, the plan, the
stop, the live KPIs) and ``loadtests/phone.py``, the only modules of the project that
import Locust, and imported by nothing else (Locust patches the process with gevent).
``docs/loadtesting.md`` says what each scenario does and how to read the statistics.

- ``DriverUser``: admitted as a member through the operator API, opens the driver
  socket, goes online where riders are, sends ``location`` every ``location_every_s``
  (wandering while idle, driving to the pickup and the drop-off on a trip), takes offers
  after a human delay (declining ``decline_rate`` of them) and drives the trip through
  arrived / start / complete.
- ``RiderUser``: a phone that signs up, keeps the rider socket open and, each time the
  arrival schedule says a rider appears, quotes, requests, watches the socket until the
  trip ends (cancelling ``cancel_rate`` of them) and fetches the receipt.
- ``CityRollout``: drivers first, then riders up to the rate, hold, surge, stop.

Socket events are Locust request events (type ``WS``) so they sit in the same statistics
as the HTTP calls: ``driver connect``, ``rider connect``, ``offer received`` (push delay:
offer made → frame on the phone), ``offer→accept`` (frame on the phone → trip assigned,
with the human delay), ``accept round trip`` (accept sent → ``ok``), ``request→assigned``,
``request→pickup``, ``request→completed`` (the rider's view), and ``error frame`` failures
named by code.

One module of about 500 lines on purpose: it is the file Locust reads, with both users
and the shape of the rollout; the phone's socket client is ``loadtests/phone.py``, the
run's control ``loadtests/control.py``.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import uuid
from datetime import datetime
from typing import Any, NoReturn

import gevent
import httpx
from gevent.queue import Queue
from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from geo.eta import DEFAULT_MODEL
from geo.point import LatLng, toward
from loadtests import preflight
from loadtests.control import City, Stop
from loadtests.phone import FrameError, Socket, fire, phone, point, ws_url
from simulation.demand import RideRequest

# Frames that end a rider's trip.
FINAL = frozenset({"completed", "cancelled", "expired"})
# Idle drivers drift about a block every few updates, as cars circling do.
WANDER_M = 30.0
START_JITTER_DEG = 0.0008
# A rider's clean-up call when the test stops.
TEARDOWN_TIMEOUT_S = 5.0
# What an accept racing the rider's cancel is answered with (docs/websocket.md).
LOST_RACE_CODES = frozenset({"offer-withdrawn", "offer-expired"})


def park() -> NoReturn:
    """A phone that cannot go on waits, idle, for the test to stop it: a failure is
    counted once and never retried in a loop (a user whose ``on_start`` raised would be
    started again by Locust, and fail again)."""
    while True:
        gevent.sleep(3600)


class DriverUser(FastHttpUser):
    """A member driver's phone (see the module docstring)."""

    fixed_count = 0  # set from the plan: all drivers are spawned before any rider
    weight = 1

    def on_start(self) -> None:
        assert City.plan is not None and City.demand is not None
        self.plan, demand = City.plan, City.demand
        self.rng = random.Random()
        self.trip: dict[str, Any] | None = None
        self.leg: str | None = None  # "pickup", "boarding", "dropoff"
        self.board_until = 0.0
        self.accepts: dict[int, tuple[str, float]] = {}  # frame id → offer id, sent at
        self.offers_seen: dict[str, float] = {}  # offer id → received (monotonic)
        self.withdrawn: set[str] = set()
        self.socket: Socket | None = None
        self.last_fix_ms = 0
        start = demand.requests[self.rng.randrange(len(demand.requests))].pickup
        self.position = LatLng(
            start.lat + self.rng.uniform(-1, 1) * START_JITTER_DEG,
            start.lng + self.rng.uniform(-1, 1) * START_JITTER_DEG,
        )
        # Straight-line metres per real second: the ETA model's street pace, compressed.
        self.speed_mps = DEFAULT_MODEL.speed_mps / DEFAULT_MODEL.detour_factor
        self.speed_mps *= self.plan.drive_speedup
        r = self.client.post(
            "/v1/drivers",
            json={
                "name": f"{self.plan.run_id} driver",
                "phone": phone(self.rng),
                "vehicle": {"plate": f"LT{self.rng.randrange(10**6):06d}", "seats": 4},
            },
            headers={"Authorization": f"Bearer {self.plan.operator_token}"},
            name="/v1/drivers [admit]",
        )
        if r.status_code != 201:
            if r.status_code in (401, 403):
                Stop.now(self.environment, preflight.admit_refused(r.status_code))
            park()  # counted as a failure once (the admit itself)
        self.token = r.json()["token"]
        self.auth = {"Authorization": f"Bearer {self.token}"}
        try:
            self.socket = Socket(
                self.environment, f"{ws_url(self.host)}/v1/drivers/ws", self.token, "driver connect"
            )
        except Exception:
            park()  # counted as a failed "driver connect"
        self.socket.send({"type": "status", "status": "online"})
        self.report()
        self.last_move = time.monotonic()

    def on_stop(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(Exception):
                self.socket.send({"type": "status", "status": "offline"})
            self.socket.close()

    def report(self) -> None:
        assert self.socket is not None
        # Like a phone, each position carries its fix time, later than the one before. (A
        # frame without one is stamped with the server's clock, and two of one driver's
        # frames handled in the same millisecond under load would make the second stale.)
        self.last_fix_ms = max(int(time.time() * 1000), self.last_fix_ms + 1)
        self.socket.send(
            {"type": "location", **point(self.position), "accuracy_m": 6, "ts": self.last_fix_ms}
        )

    @task
    def drive(self) -> None:
        """The phone's life: one long task (answer frames, move, report every few s)."""
        assert self.socket is not None
        next_report = time.monotonic() + self.plan.location_every_s
        while True:
            frame = self.socket.next(next_report - time.monotonic())
            if frame is not None:
                self.on_frame(frame)
            if time.monotonic() >= next_report:  # due even while frames keep coming
                self.move()
                self.report()
                next_report = time.monotonic() + self.plan.location_every_s

    def on_frame(self, frame: dict[str, Any]) -> None:
        assert self.socket is not None
        kind = frame.get("type")
        now = time.monotonic()
        if kind == "_closed":
            fire(self.environment, "driver socket", 0.0, exception=ConnectionError("closed"))
            park()
        if "event_id" in frame:
            self.socket.send({"type": "ack", "event_id": frame["event_id"]})
        if kind == "offer":
            made = datetime.fromisoformat(frame["expires_at"]).timestamp()
            made -= self.plan.offer_timeout_s
            fire(self.environment, "offer received", max(0.0, time.time() - made))
            self.offers_seen[frame["offer_id"]] = now
            gevent.sleep(self.rng.uniform(*self.plan.human_delay_s))
            if self.rng.random() < self.plan.decline_rate:
                self.socket.send({"type": "decline", "offer_id": frame["offer_id"]})
            else:
                frame_id = next(self.socket.ids)
                self.accepts[frame_id] = (frame["offer_id"], time.monotonic())
                self.socket.send({"type": "accept", "offer_id": frame["offer_id"], "id": frame_id})
        elif kind == "ok" and frame.get("ref") in self.accepts:
            _, sent = self.accepts.pop(frame["ref"])
            fire(self.environment, "accept round trip", now - sent)
        elif kind == "error":
            answered = frame.get("ref")
            accepted = self.accepts.pop(answered, None) if isinstance(answered, int) else None
            lost = accepted is not None and accepted[0] in self.withdrawn
            if accepted is not None and lost and frame.get("code") in LOST_RACE_CODES:
                # The rider cancelled while the driver was reading the offer: a race the
                # contract answers with this error, not a fault.
                fire(self.environment, "accept lost to a cancel", now - accepted[1])
            else:
                fire(
                    self.environment,
                    f"error frame {frame.get('code')}",
                    0.0,
                    exception=FrameError(f"{frame.get('code')}: {frame.get('detail')}"),
                )
        elif kind in ("offer.withdrawn", "offer.expired"):
            self.withdrawn.add(frame["offer_id"])
            if kind == "offer.expired":
                # The phone answers within its human delay, far inside the offer's
                # lifetime: an offer that still expires was answered too late by the
                # server (or never reached the phone).
                fire(
                    self.environment,
                    "offer expired",
                    0.0,
                    exception=FrameError("offer expired before the driver's answer"),
                )
        elif kind == "trip.assigned":
            trip = frame["trip"]
            seen = max(self.offers_seen.values(), default=None)
            self.offers_seen.clear()
            if seen is not None:
                fire(self.environment, "offer→accept", now - seen)
            self.trip, self.leg = trip, "pickup"
        elif (
            kind == "trip.cancelled"
            and self.trip is not None
            and frame["trip"]["id"] == self.trip["id"]
        ):
            self.trip, self.leg = None, None

    def move(self) -> None:
        now = time.monotonic()
        step_m = self.speed_mps * (now - self.last_move)
        self.last_move = now
        if self.trip is None:
            angle = self.rng.uniform(0, 2 * math.pi)
            aim = LatLng(
                self.position.lat + 0.002 * math.sin(angle),
                self.position.lng + 0.002 * math.cos(angle),
            )
            self.position = toward(self.position, aim, WANDER_M)
            return
        if self.leg == "boarding":
            if now >= self.board_until and self.progress("start"):
                self.leg = "dropoff"
            return
        where = self.trip["pickup"] if self.leg == "pickup" else self.trip["dropoff"]
        target = LatLng(where["lat"], where["lng"])
        self.position = toward(self.position, target, step_m)
        if self.position != target:
            return
        if self.leg == "pickup":
            if self.progress("arrived"):
                self.leg = "boarding"
                self.board_until = now + self.rng.uniform(*self.plan.boarding_s)
        elif self.progress("complete"):
            self.trip, self.leg = None, None

    def progress(self, step: str) -> bool:
        """POST the trip's next step; False (and off the trip) if the rider cancelled."""
        assert self.trip is not None
        trip_id = self.trip["id"]
        with self.client.post(
            f"/v1/trips/{trip_id}/{step}",
            headers=self.auth,
            name=f"/v1/trips/[id]/{step}",
            catch_response=True,
        ) as r:
            if r.status_code == 200:
                return True
            if r.status_code == 409 and self.cancelled(trip_id):
                r.success()  # the rider cancelled first: the trip.cancelled frame is coming
            else:
                # No text when the connection itself failed (status 0).
                r.failure(f"{r.status_code}: {(r.text or '')[:200]}")
        self.trip, self.leg = None, None
        return False

    def cancelled(self, trip_id: str) -> bool:
        r = self.client.get(f"/v1/trips/{trip_id}", headers=self.auth, name="/v1/trips/[id]")
        return r.status_code == 200 and r.json().get("status") == "cancelled"


class Arrivals:
    """This process's riders: one greenlet draws the arrival schedule (Poisson, at the
    plan's rate over time) and queues each rider as it arrives; free phones take them.

    One Locust process makes the whole rate. A worker of a distributed run makes the
    share of it that its phones are of the shape's phones, so the workers together make
    the plan's rate."""

    queue: Queue[tuple[float, RideRequest]] = Queue()
    phones = 0
    scheduler: gevent.Greenlet | None = None

    @classmethod
    def phone_started(cls, environment: Environment) -> None:
        cls.phones += 1
        if cls.scheduler is None or cls.scheduler.dead:
            cls.scheduler = gevent.spawn(cls._schedule, environment)

    @classmethod
    def _share(cls, environment: Environment, t: float) -> float:
        if not isinstance(environment.runner, WorkerRunner):
            return 1.0
        assert City.plan is not None
        planned = City.plan.riders_at(t, City.pool)
        return min(1.0, cls.phones / planned) if planned else 0.0

    @classmethod
    def _schedule(cls, environment: Environment) -> None:
        plan, demand = City.plan, City.demand
        assert plan is not None and demand is not None
        rng = random.Random()

        def rate(t: float) -> float:
            return plan.arrival_rate_per_s(t, demand.rate_rpm) * cls._share(environment, t)

        due = plan.next_arrival(City.elapsed_s(), rate_per_s=rate, rng=rng)
        while due is not None:
            wait = due - City.elapsed_s()
            if wait > 0:
                gevent.sleep(wait)
            if plan.trace:
                request = demand.near((due - plan.riders_start_s) * plan.speedup, rng)
            else:
                request = demand.requests[rng.randrange(len(demand.requests))]
            cls.queue.put((due, request))
            due = plan.next_arrival(due, rate_per_s=rate, rng=rng)


@events.test_stop.add_listener
def _stop(**_: Any) -> None:
    if Arrivals.scheduler is not None:
        Arrivals.scheduler.kill(block=False)
    Arrivals.queue = Queue()


class RiderUser(FastHttpUser):
    """A rider's phone, taking arrivals from the schedule (see the module docstring)."""

    weight = 1

    def on_start(self) -> None:
        assert City.plan is not None and City.demand is not None
        self.plan, self.demand = City.plan, City.demand
        self.rng = random.Random()
        self.trip_id: str | None = None
        self.socket: Socket | None = None
        r = self.client.post(
            "/v1/riders", json={"name": self.plan.run_id, "phone": phone(self.rng)}
        )
        if r.status_code != 201:
            if r.status_code == 429:
                # The per-address limit: every phone here signs up from one address.
                Stop.now(self.environment, preflight.signup_limited(City.pool))
            park()  # counted as a failure once (the sign-up itself)
        self.auth = {"Authorization": f"Bearer {r.json()['token']}"}
        try:
            self.socket = Socket(
                self.environment,
                f"{ws_url(self.host)}/v1/riders/ws",
                r.json()["token"],
                "rider connect",
            )
        except Exception:
            park()  # counted as a failed "rider connect"
        Arrivals.phone_started(self.environment)
        self.counted = True

    def on_stop(self) -> None:
        if getattr(self, "counted", False):
            Arrivals.phones -= 1
            self.counted = False
        if self.trip_id is not None:
            # Clean-up after the measured window, not load: a client of its own (this
            # phone's may have been cut mid-request by the stop) and no statistics. A
            # trip it cannot cancel shows in the KPIs as open at the end.
            with contextlib.suppress(Exception):
                httpx.post(
                    f"{self.host}/v1/trips/{self.trip_id}/cancel",
                    headers=self.auth,
                    timeout=TEARDOWN_TIMEOUT_S,
                )
        if self.socket is not None:
            self.socket.close()

    @task
    def ride(self) -> None:
        due, request = Arrivals.queue.get()
        late_s = City.elapsed_s() - due
        if late_s > 1.0:
            # Every phone was busy when this rider arrived: the pool is too small for
            # the rate (raise rider_pool); the rider still rides, late.
            fire(self.environment, "rider waited for a free phone", late_s)
        self.one_trip({"pickup": point(request.pickup), "dropoff": point(request.dropoff)})

    def one_trip(self, body: dict[str, Any]) -> None:
        assert self.socket is not None
        q = self.client.post("/v1/quotes", json=body, headers=self.auth)
        if q.status_code != 200:
            return
        requested = time.monotonic()
        r = self.client.post(
            "/v1/trips",
            json=body,
            headers={**self.auth, "Idempotency-Key": uuid.uuid4().hex},
        )
        if r.status_code != 201:
            return
        trip_id = self.trip_id = r.json()["id"]
        cancel_at = None
        if self.rng.random() < self.plan.cancel_rate:
            cancel_at = requested + self.rng.uniform(0, self.plan.cancel_within_s)
        status = "requested"
        while status not in FINAL:
            timeout = 30.0 if cancel_at is None else cancel_at - time.monotonic()
            frame = self.socket.next(timeout)
            if frame is None:
                if cancel_at is not None and time.monotonic() >= cancel_at:
                    cancel_at = None
                    self.cancel(trip_id)
                continue
            if frame.get("type") == "_closed":
                fire(self.environment, "rider socket", 0.0, exception=ConnectionError("closed"))
                park()
            if "event_id" in frame:
                self.socket.send({"type": "ack", "event_id": frame["event_id"]})
            if frame.get("type") == "error":
                fire(
                    self.environment,
                    f"error frame {frame.get('code')}",
                    0.0,
                    exception=FrameError(f"{frame.get('code')}: {frame.get('detail')}"),
                )
                continue
            trip = frame.get("trip") or {}
            if frame.get("type") != "trip.updated" or trip.get("id") != trip_id:
                continue
            if trip["status"] == status:
                continue
            status = trip["status"]
            since = time.monotonic() - requested
            if status == "assigned":
                fire(self.environment, "request→assigned", since)
            elif status == "arrived":
                fire(self.environment, "request→pickup", since)
            elif status == "completed":
                fire(self.environment, "request→completed", since)
            elif status == "expired":
                fire(
                    self.environment,
                    "request expired",
                    since,
                    exception=FrameError("no driver before the request timed out"),
                )
        self.trip_id = None
        if status == "completed":
            with self.client.get(
                f"/v1/trips/{trip_id}/receipt",
                headers=self.auth,
                name="/v1/trips/[id]/receipt",
                catch_response=True,
            ) as receipt:
                parts = receipt.json() if receipt.status_code == 200 else {}
                kept = parts.get("driver_earnings_cents", 0) + parts.get("cost_recovery_cents", 0)
                if receipt.status_code == 200 and (
                    parts.get("platform_commission_cents") != 0 or kept != parts["total_cents"]
                ):
                    receipt.failure("receipt parts do not add up to the total")

    def cancel(self, trip_id: str) -> None:
        with self.client.post(
            f"/v1/trips/{trip_id}/cancel",
            headers=self.auth,
            name="/v1/trips/[id]/cancel",
            catch_response=True,
        ) as r:
            if r.status_code == 409:
                r.success()  # it ended (or was picked up) first: nothing to cancel


class CityRollout(LoadTestShape):
    """Drivers ramp first, then riders to the rate, hold, surge; then the test stops.

    Its length is ``--duration``, else Locust's ``-t``/``--run-time`` (read here, hence
    ``use_common_options``); ``-u`` and ``-r`` are not used: the plan sets the users."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        environment = self.runner.environment  # type: ignore[union-attr]
        if not City.prepared:
            # A run starts (headless, or the web UI's start button): the plan from the
            # options, checked against the server; a setting that cannot work ends here.
            if not City.prepare(environment):
                return None
            DriverUser.fixed_count = City.plan.drivers  # type: ignore[union-attr]
            self.reset_time()
        plan = City.plan
        assert plan is not None
        t = self.get_run_time()
        if t >= plan.total_s:
            return None
        drivers = plan.drivers_at(t)
        riders = plan.riders_at(t, City.pool)
        ramp = plan.phase("driver_ramp_s")
        spawn_rate = max(plan.drivers / ramp if ramp > 0 else plan.drivers, City.pool / 5, 5.0)
        return drivers + riders, spawn_rate
