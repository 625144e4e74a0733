"""The simulator: real demand replayed through the dispatcher's own planner.

Requests (``simulation.demand``) are replayed against a fleet of simulated drivers on a
simulated clock. Every ``batch_s`` the simulated dispatcher does what
``dispatch.dispatcher.Dispatcher.tick`` does: expire requests that waited too long,
search candidates for every queued request with the live index's rule (H3 cells ring by
ring, one ring past ``want``, ranked by ``geo.eta``, nearest ``CANDIDATES_PER_REQUEST``
within the maximum pickup ETA), and plan the batch with the dispatcher's own planner
(``dispatch.batch.planner``: greedy, or batched with the fairness weight), with its
constants: requests about to expire are skipped, and those the first pass leaves
unmatched are searched again for ``SECOND_PASS_CANDIDATES`` among the drivers still
free. Each assignment is an offer; after ``offer_accept_s`` the driver accepts (or
declines, at ``decline_rate``), drives to the pickup and then to the drop-off, is paid
the fare (``fares.pricing.price``, on the estimated trip as quoted) at the drop-off and
waits there for the next offer.

The dispatcher decides on its ETA model's estimates (``SimConfig.eta``, asked once per
tick for all the tick's new pickup legs through ``seconds_many``). What the legs take is
the street's business (``simulation.street``): with ``SimConfig.street`` a leg lasts
its estimate × exp(r), r a held-out residual of the learned model, and a trip whose
file gives ``duration_s`` lasts exactly that; the KPIs are scored on the street. With
``SimConfig.shifts`` drivers log on and off (``street.Shifts``).

With ``SimConfig.guidance`` a share of the idle drivers drive to where demand will be
(``simulation.guidance``): the advice ranks cells on the dispatcher's estimates, the
drive there lasts what the street makes of it. A driver off shift is given no advice.

Pure: no Redis, no database, no wall clock. Deterministic for a given seed. What is and
is not simulated: ``docs/simulation.md``.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from core.fare_terms import FareRuleTerms
from dispatch import candidates, demand_forecast
from dispatch.batch import fairness, planner
from dispatch.batch.planner import (
    BATCH_MAX_REQUESTS,
    CANDIDATES_PER_REQUEST,
    SECOND_PASS_CANDIDATES,
)
from dispatch.batch.types import Assignment, Candidate, DriverStats, Policy, Request
from fares.pricing import price
from geo import cells
from geo.eta import DEFAULT_MODEL, EtaModel
from geo.point import LatLng
from simulation.defaults import (
    DEFAULT_BATCH_S,
    DEFAULT_MAX_PICKUP_ETA_S,
    DEFAULT_OFFER_ACCEPT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_RESOLUTION,
    DEFAULT_SEED,
    SEEDED_FARE_RULE,
)
from simulation.demand import RideRequest, random_streams
from simulation.guidance import MIN_GAIN_S, MOVE_STEP_S, Guidance
from simulation.kpis import DriverRecord, SimResult, TripRecord, kpis
from simulation.street import Shifts, SimulatedClock, Street, bind_clock

# How often, in simulated seconds, ``simulate`` tells its ``clock`` the time at most.
CLOCK_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    policy: Policy = "batched"
    # The co-op's vote in [0, 1]; the greedy policy ignores it, as the live one does.
    fairness_weight: float = 0.0
    batch_s: float = DEFAULT_BATCH_S
    offer_accept_s: float = DEFAULT_OFFER_ACCEPT_S
    decline_rate: float = 0.0
    max_pickup_eta_s: int = DEFAULT_MAX_PICKUP_ETA_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    resolution: int = DEFAULT_RESOLUTION
    fare: FareRuleTerms = SEEDED_FARE_RULE
    eta: EtaModel = DEFAULT_MODEL
    seed: int = DEFAULT_SEED
    # The replay window's length: without shifts drivers are online from 0 to here (or
    # to their last drop-off, if later); with them, shifts are drawn over it. None: the
    # last request's time.
    shift_end_s: float | None = None
    # The street (``simulation.street.Street``): None drives every leg in exactly its
    # estimate (the simulator grading itself; for tests of the dispatch rule alone).
    street: Street | None = None
    # Draw shifts (``Shifts.draw``) from the seed; False: everyone online all along.
    shifts: bool = False
    # Unix seconds at the replay's 0 s: the learned model's hour of the week reads it.
    start_epoch_s: float | None = None
    # Idle drivers (a share of them) move to where demand will be
    # (``simulation.guidance``); None: they wait where they dropped their last rider.
    guidance: Guidance | None = None

    def __post_init__(self) -> None:
        if self.policy not in ("greedy", "batched"):
            raise ValueError(f"policy must be greedy or batched, got {self.policy!r}")
        fairness.check_weight(self.fairness_weight)
        if not (self.batch_s > 0 and math.isfinite(self.batch_s)):
            raise ValueError("batch_s must be positive")
        if not (self.offer_accept_s >= 0 and math.isfinite(self.offer_accept_s)):
            raise ValueError("offer_accept_s must not be negative")
        if not 0.0 <= self.decline_rate < 1.0:
            raise ValueError("decline_rate must be in [0, 1)")
        if self.max_pickup_eta_s <= 0 or self.request_timeout_s <= 0:
            raise ValueError("max_pickup_eta_s and request_timeout_s must be positive")
        if self.request_timeout_s <= self.offer_accept_s + self.batch_s:
            # As core.settings: no request could ever be offered (planner.will_expire).
            raise ValueError("request_timeout_s must exceed offer_accept_s + batch_s")

    @property
    def unmatched_penalty_s(self) -> int:
        """The dispatcher's: twice the longest pickup ever offered."""
        return planner.unmatched_penalty_s(self.max_pickup_eta_s)


class _Event(IntEnum):
    # Order among events at the same instant: a rider's request, then answers to
    # offers, then drivers finishing trips, then log-ons and log-offs (a driver whose
    # trip ends at the shift's end logs off), then guidance (a driver that logged off
    # at this instant is not advised); all before a dispatch tick at that instant.
    ARRIVAL = 0
    RESPONSE = 1
    DROPOFF = 2
    LOGON = 3
    LOGOFF = 4
    # Guidance: an idle driver looks at the map; a repositioning driver moves on.
    GUIDE = 5
    MOVE = 6


class _DriverState(IntEnum):
    AVAILABLE = 0
    OFFERED = 1
    ON_TRIP = 2
    OFFLINE = 3


class _Simulation:
    def __init__(
        self, requests: Sequence[RideRequest], starts: Sequence[LatLng], config: SimConfig
    ) -> None:
        self.cfg = config
        self.requests = list(requests)
        n = len(starts)
        width = max(5, len(str(max(0, n - 1))))
        self.driver_ids = [f"drv_{k:0{width}d}" for k in range(n)]
        self.driver_index = {d: k for k, d in enumerate(self.driver_ids)}
        self.position = list(starts)
        self.state = [_DriverState.OFFLINE] * n
        self.idle_since_s = [0.0] * n
        self.cell = [cells.cell_of(p, config.resolution) for p in starts]
        self.moves = [0] * n  # bumped whenever a driver's position changes
        self.eta_cache: dict[int, dict[int, tuple[int, int]]] = {}
        # The live index: available drivers without an offer, by H3 cell.
        self.index: dict[str, set[int]] = {}
        self.window_s = (
            config.shift_end_s
            if config.shift_end_s is not None
            else max((r.requested_s for r in self.requests), default=0.0)
        )
        streams = random_streams(config.seed)
        if config.shifts and n:
            self.shifts = Shifts.draw(streams["shifts"], n, max(self.window_s, 1.0))
        else:
            self.shifts = Shifts.whole(n, max(self.window_s, 1.0))
        # When each driver came online (clipped to the replay's start) and went off.
        self.online_from = [max(0.0, on) for on in self.shifts.on_s]
        self.offline_at: list[float | None] = [None] * n
        self.leaving = [False] * n  # past the shift's end, finishing a trip or an offer
        for k, on in enumerate(self.shifts.on_s):
            if on <= 0:  # online when the replay starts; the others log on later
                self.state[k] = _DriverState.AVAILABLE
                self.index.setdefault(self.cell[k], set()).add(k)
        self.clock = SimulatedClock(config.start_epoch_s or 0.0)
        if config.start_epoch_s is None and _reads_clock(config.eta):
            raise ValueError("start_epoch_s is needed: the ETA model reads the hour of the week")
        self.eta = bind_clock(config.eta, self.clock)
        self.k_max = candidates.max_rings(
            self.eta, max_pickup_eta_s=config.max_pickup_eta_s, resolution=config.resolution
        )
        self.rings: dict[str, tuple[tuple[str, ...], ...]] = {}
        self.ring_of: dict[str, dict[str, int]] = {}  # per centre: cell → ring
        self.pickup_cell = [cells.cell_of(r.pickup, config.resolution) for r in self.requests]
        self.trips = [TripRecord(r.trip_id, r.requested_s) for r in self.requests]
        self.drivers = [DriverRecord(d) for d in self.driver_ids]
        self.trip_index = {r.trip_id: i for i, r in enumerate(self.requests)}
        # Requests that are queued or hold an offer, in arrival order (a declined one
        # keeps its place, as ``offers`` requeues it); value: whether queued.
        self.open: dict[int, bool] = {}
        self.by_age: deque[int] = deque()  # the same requests, oldest first, for expiry
        self.excluded: dict[int, set[str]] = {}
        # trip → (offer number, driver, the offer's pickup ETA)
        self.offer_of_trip: dict[int, tuple[int, int, int]] = {}
        self.events: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.offers = 0
        self.declined = 0
        self.batches = 0
        self.decline_rng = streams["declines"]
        # The street's luck, one uniform per rider for the pickup and one for the trip,
        # drawn up front: every policy meets the same street for the same rider.
        self.street_u = streams["street"].random((2, len(self.requests)))
        self.trip_distance_m, self.trip_estimate_s = trip_legs(self.eta, self.clock, self.requests)
        # Guidance: who follows it; per driver, where it is idle or heading (None while
        # offered, on a trip or offline), a generation that cancels its pending
        # GUIDE/MOVE events when it changes, and the move under way (from, to, departed,
        # seconds on the street).
        self.followers: frozenset[int] = frozenset()
        self.waiting: dict[str, int] = {}  # idle drivers by the cell they are (going) in
        self.effective: list[str | None] = [None] * n
        for k in range(n):
            if self.state[k] is _DriverState.AVAILABLE:
                self._count_waiting(k, self.cell[k])
        self.guide_gen = [0] * n
        self.route: dict[int, tuple[LatLng, LatLng, float, float]] = {}
        self.last_arrival_s = max((r.requested_s for r in self.requests), default=0.0)
        self.moves_rng = streams["moves"]
        if config.guidance is not None:
            self.followers = config.guidance.followers(n, config.seed)

    # -- events --------------------------------------------------------------------

    def _push(self, at: float, kind: _Event, a: int, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, int(kind), self.seq, a, b))

    def _make_available(self, k: int, now: float, *, idle_from: bool = False) -> None:
        """Back in the index (a follower then looks at the map), or off for the day if
        the shift ended meanwhile."""
        if self.leaving[k]:
            self._log_off(k, now)
            return
        self.state[k] = _DriverState.AVAILABLE
        self.index.setdefault(self.cell[k], set()).add(k)
        if idle_from:
            self.idle_since_s[k] = now
        self._count_waiting(k, self.cell[k])
        if k in self.followers:
            self._push(now, _Event.GUIDE, k, self.guide_gen[k])

    def _leave_index(self, k: int) -> None:
        members = self.index[self.cell[k]]
        members.discard(k)
        if not members:  # the index holds occupied cells only
            del self.index[self.cell[k]]

    def _stop_idling(self, k: int) -> None:
        """No longer idle (offered or off): not counted as waiting anywhere, and any
        move (the driver stops where it is) and pending look at the map are cancelled."""
        self._count_waiting(k, None)
        self.guide_gen[k] += 1
        self.route.pop(k, None)

    def _reserve(self, k: int) -> None:
        # The matcher never gives a driver two trips, and the index holds only
        # available drivers: an offer to a busy or offline driver is a bug here.
        assert self.state[k] is _DriverState.AVAILABLE, self.driver_ids[k]
        self.state[k] = _DriverState.OFFERED
        self._leave_index(k)
        self._stop_idling(k)

    def _log_off(self, k: int, now: float) -> None:
        if self.state[k] is _DriverState.AVAILABLE:
            self._leave_index(k)
        self._stop_idling(k)
        self.state[k] = _DriverState.OFFLINE
        self.leaving[k] = False
        self.offline_at[k] = now

    def _count_waiting(self, k: int, cell: str | None) -> None:
        """Count driver ``k`` as idle in ``cell`` (where it is or is heading; None:
        not idle), for the guidance's competition."""
        old = self.effective[k]
        if old is not None:
            n = self.waiting[old] - 1
            if n:
                self.waiting[old] = n
            else:
                del self.waiting[old]
        self.effective[k] = cell
        if cell is not None:
            self.waiting[cell] = self.waiting.get(cell, 0) + 1

    def _on_logon(self, now: float, k: int) -> None:
        self.online_from[k] = now
        self.idle_since_s[k] = now  # as the live index: idle since going online
        self._make_available(k, now)

    def _on_logoff(self, now: float, k: int) -> None:
        if self.state[k] is _DriverState.AVAILABLE:
            self._log_off(k, now)
        elif self.state[k] is not _DriverState.OFFLINE:
            self.leaving[k] = True  # finishes the trip (or answers the offer) first

    # -- guidance ------------------------------------------------------------------

    def _on_guide(self, now: float, k: int, gen: int) -> None:
        """An idle follower reads the map: drive to the best cell if it beats staying
        put by ``MIN_GAIN_S``, else wait here and look again later."""
        guidance = self.cfg.guidance
        if gen != self.guide_gen[k] or self.state[k] is not _DriverState.AVAILABLE:
            return
        assert guidance is not None
        self.guide_gen[k] += 1
        here = self.cell[k]
        self._count_waiting(k, None)  # not competition for itself
        self.clock.now_s = now  # the dispatcher's model at this hour of the week
        advice = demand_forecast.advise(
            self.position[k],
            eta=self.eta,
            rates=guidance.rates_at(now),
            idle=self.waiting,
            limit=demand_forecast.MAX_LIMIT,
            max_drive_s=guidance.max_drive_s,
            resolution=self.cfg.resolution,
        )
        stay = next((a.score_s for a in advice if a.cell == here), None)
        best = advice[0] if advice else None
        if (
            best is None
            or best.cell == here
            or (stay is not None and best.score_s + MIN_GAIN_S > stay)
        ):
            self._count_waiting(k, here)
            if now + guidance.reevaluate_s <= self.last_arrival_s:
                self._push(now + guidance.reevaluate_s, _Event.GUIDE, k, self.guide_gen[k])
            return
        self._count_waiting(k, best.cell)
        origin = self.position[k]
        # Advised on the estimate, driven on the street: the drive lasts what a pickup
        # leg of that estimate lasts (its own draw from the ``moves`` stream).
        estimate_s = max(1, self.eta.seconds(origin, best.centre))
        seconds = float(estimate_s)
        street = self.cfg.street
        if street is not None:
            est = np.array([estimate_s], dtype=np.float64)
            r = street.log_ratios(self.moves_rng.random(1), est)
            seconds = float(street.seconds(est, r)[0])
        self.route[k] = (origin, best.centre, now, seconds)
        self._push(now + min(MOVE_STEP_S, seconds), _Event.MOVE, k, self.guide_gen[k])

    def _on_move(self, now: float, k: int, gen: int) -> None:
        """A repositioning driver's position, one step further along its route (a
        straight line, at the pace its street seconds give); on arrival it waits there."""
        if gen != self.guide_gen[k] or k not in self.route:
            return
        origin, target, departed, seconds = self.route[k]
        share = min(1.0, (now - departed) / seconds)
        self.position[k] = LatLng(
            origin.lat + (target.lat - origin.lat) * share,
            origin.lng + (target.lng - origin.lng) * share,
        )
        self.moves[k] += 1
        cell = cells.cell_of(self.position[k], self.cfg.resolution)
        if cell != self.cell[k]:
            self._leave_index(k)
            self.cell[k] = cell
            self.index.setdefault(cell, set()).add(k)
        guidance = self.cfg.guidance
        assert guidance is not None
        if share < 1.0:
            self._push(min(now + MOVE_STEP_S, departed + seconds), _Event.MOVE, k, gen)
            return
        del self.route[k]
        self._count_waiting(k, cell)
        if now + guidance.reevaluate_s <= self.last_arrival_s:
            self._push(now + guidance.reevaluate_s, _Event.GUIDE, k, gen)

    def _on_arrival(self, i: int) -> None:
        self.open[i] = True
        self.by_age.append(i)

    def _on_response(self, now: float, i: int, offer_no: int) -> None:
        held = self.offer_of_trip.get(i)
        if held is None or held[0] != offer_no:
            return  # withdrawn: the request expired while the offer was out
        del self.offer_of_trip[i]
        _, k, pickup_eta_s = held
        assert self.state[k] is _DriverState.OFFERED
        if self.cfg.decline_rate > 0 and self.decline_rng.random() < self.cfg.decline_rate:
            self.declined += 1
            self.excluded.setdefault(i, set()).add(self.driver_ids[k])
            self.open[i] = True
            self._make_available(k, now)
            return
        request, trip = self.requests[i], self.trips[i]
        del self.open[i]
        self.eta_cache.pop(i, None)
        # The driver has not moved since the offer: the pickup leg is the one estimated.
        self.state[k] = _DriverState.ON_TRIP
        estimate_s = self.trip_estimate_s[i]
        street = self.cfg.street
        if street is None:
            pickup_s, trip_s = float(pickup_eta_s), float(estimate_s)
        else:
            u, est = self.street_u[:, i], np.array([pickup_eta_s, estimate_s], dtype=np.float64)
            pickup_s, trip_s = street.seconds(est, street.log_ratios(u, est)).tolist()
        if request.duration_s is not None:
            trip_s = request.duration_s  # the real trip's own duration
        distance_m = self.trip_distance_m[i]
        # The fare is on the trip as quoted (the estimate), as the live service prices it.
        fare = price(self.cfg.fare, distance_m=distance_m, duration_s=estimate_s)
        trip.status = "matched"
        trip.driver_id = self.driver_ids[k]
        trip.accepted_s = now
        trip.pickup_eta_s = pickup_eta_s
        trip.pickup_street_s = pickup_s
        trip.pickup_s = now + pickup_s
        trip.dropoff_s = trip.pickup_s + trip_s
        trip.distance_m = distance_m
        trip.duration_estimate_s = estimate_s
        trip.duration_s = trip_s
        trip.duration_real = request.duration_s is not None
        trip.driver_earnings_cents = fare.driver_earnings_cents
        self._push(trip.dropoff_s, _Event.DROPOFF, k, i)

    def _on_dropoff(self, now: float, k: int, i: int) -> None:
        trip, driver = self.trips[i], self.drivers[k]
        assert trip.accepted_s is not None and self.state[k] is _DriverState.ON_TRIP
        driver.trips += 1
        driver.earnings_cents += trip.driver_earnings_cents
        driver.busy_s += now - trip.accepted_s
        driver.intervals.append((trip.accepted_s, now))
        self.position[k] = self.requests[i].dropoff
        self.moves[k] += 1
        self.cell[k] = cells.cell_of(self.position[k], self.cfg.resolution)
        self._make_available(k, now, idle_from=True)

    # -- dispatch ------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        """As ``trips.expire_unmatched``: a request still open ``request_timeout_s``
        after it was made expires, and an offer it holds is withdrawn."""
        cutoff = now - self.cfg.request_timeout_s
        while self.by_age:
            i = self.by_age[0]
            if i not in self.open:
                self.by_age.popleft()
                continue
            if not self.trips[i].requested_s < cutoff:
                break
            self.by_age.popleft()
            del self.open[i]
            self.eta_cache.pop(i, None)
            self.trips[i].status = "expired"
            self.trips[i].expired_s = now
            held = self.offer_of_trip.pop(i, None)
            if held is not None:
                self._make_available(held[1], now)

    def _rings(self, centre: str) -> tuple[tuple[str, ...], ...]:
        rings = self.rings.get(centre)
        if rings is None:
            rings = self.rings[centre] = cells.disk_by_ring(centre, self.k_max)
            self.ring_of[centre] = {c: k for k, ring in enumerate(rings) for c in ring}
        return rings

    def _found(self, centre: str, want: int) -> list[int]:
        """What ``presence.candidates`` returns: available drivers ring by ring; once a
        ring brings the count to ``want``, one ring more, then stop."""
        rings = self._rings(centre)
        ring_of = self.ring_of[centre]
        per_ring: list[list[int]] | None = None
        if len(self.index) < len(ring_of):
            # Fewer occupied cells than cells in the disk (scarce supply): bucket the
            # occupied cells by ring rather than look up every cell of the disk. The
            # walk below then finds the same drivers as walking the rings.
            per_ring = [[] for _ in rings]
            for c, in_cell in self.index.items():
                k = ring_of.get(c)
                if k is not None:
                    per_ring[k].extend(in_cell)
        found: list[int] = []
        stop_after: int | None = None
        for k, ring in enumerate(rings):
            if per_ring is not None:
                found.extend(per_ring[k])
            else:
                for c in ring:
                    members = self.index.get(c)
                    if members:
                        found.extend(members)
            if stop_after is None and len(found) >= want:
                stop_after = k + 1
            if stop_after is not None and k >= stop_after:
                break
        return found

    def _search_all(self, batch: Sequence[int], want: int) -> list[tuple[Candidate, ...]]:
        """``candidates.search`` for every request of the batch, then the dispatcher's
        cut: nearest first by (ETA, driver id), none beyond the maximum pickup ETA, at
        most ``want``. The pickup legs not yet known are estimated in one
        ``seconds_many`` call for the whole pass, as ``candidates.rank`` does live."""
        cache: dict[tuple[str, int], list[int]] = {}
        found_of: list[list[int]] = []
        missing_k: list[int] = []
        missing_i: list[int] = []
        for i in batch:
            excluded = self.excluded.get(i, set())
            key = (self.pickup_cell[i], want + len(excluded))
            found = cache.get(key)
            if found is None:
                found = cache[key] = self._found(*key)
            # A queued request meets the same drivers tick after tick: their ETAs are
            # kept until the driver moves (a new position generation) or it leaves.
            known = self.eta_cache.setdefault(i, {})
            mine = [k for k in found if self.driver_ids[k] not in excluded]
            for k in mine:
                hit = known.get(k)
                if hit is None or hit[0] != self.moves[k]:
                    missing_k.append(k)
                    missing_i.append(i)
            found_of.append(mine)
        if missing_k:
            seconds = self.eta.seconds_many(
                [self.position[k] for k in missing_k],
                [self.requests[i].pickup for i in missing_i],
            )
            for k, i, s in zip(missing_k, missing_i, seconds, strict=True):
                self.eta_cache[i][k] = (self.moves[k], s)
        limit = self.cfg.max_pickup_eta_s
        out: list[tuple[Candidate, ...]] = []
        for i, mine in zip(batch, found_of, strict=True):
            known = self.eta_cache[i]
            ranked = sorted((s, self.driver_ids[k]) for k in mine if (s := known[k][1]) <= limit)
            out.append(tuple(Candidate(d, s) for s, d in ranked[:want]))
        return out

    def _stats(self, requests: Sequence[Request], now: float) -> dict[str, DriverStats]:
        """As the live index stores them: idle since the last drop-off (or going
        online), and what the driver has been paid this shift. Only fairness reads them."""
        stats: dict[str, DriverStats] = {}
        if self.cfg.policy == "batched" and self.cfg.fairness_weight > 0:
            for r in requests:
                for c in r.candidates:
                    k = self.driver_index[c.driver_id]
                    stats[c.driver_id] = DriverStats(
                        idle_s=max(0, int(now - self.idle_since_s[k])),
                        shift_earnings_cents=self.drivers[k].earnings_cents,
                    )
        return stats

    def _offer(self, now: float, assignments: Sequence[Assignment]) -> None:
        for a in assignments:
            i, k = self.trip_index[a.trip_id], self.driver_index[a.driver_id]
            self.offers += 1
            self.trips[i].offers += 1
            self.open[i] = False
            self.offer_of_trip[i] = (self.offers, k, a.pickup_eta_s)
            self._reserve(k)
            self._push(now + self.cfg.offer_accept_s, _Event.RESPONSE, i, self.offers)

    def _tick(self, now: float) -> None:
        """As ``Dispatcher.dispatch_batch``: the first pass's offers go out (so its
        drivers leave the index), then the requests it left unmatched are searched
        again, wider, for a second pass. A request's time to answer is the simulated
        driver's ``offer_accept_s``."""
        self._expire(now)
        batch = [i for i, queued in self.open.items() if queued][:BATCH_MAX_REQUESTS]
        if not batch:
            return
        self.batches += 1
        self.clock.now_s = now
        timeout_s = self.cfg.request_timeout_s
        requests = [
            Request(
                self.requests[i].trip_id,
                found,
                expires_in_s=timeout_s - (now - self.requests[i].requested_s),
            )
            for i, found in zip(batch, self._search_all(batch, CANDIDATES_PER_REQUEST), strict=True)
        ]
        first = planner.plan(
            requests,
            policy=self.cfg.policy,
            max_pickup_eta_s=self.cfg.max_pickup_eta_s,
            stats=self._stats(requests, now),
            fairness_weight=self.cfg.fairness_weight,
            offer_timeout_s=self.cfg.offer_accept_s,
            batch_s=self.cfg.batch_s,
        )
        self._offer(now, first.assignments)
        retry = first.retry
        if not retry:
            return
        # The first pass's drivers have left the index: search again among the rest.
        again = [self.trip_index[t] for t in retry]
        wider = [
            Request(self.requests[i].trip_id, found)
            for i, found in zip(again, self._search_all(again, SECOND_PASS_CANDIDATES), strict=True)
        ]
        both = planner.second_pass(first, wider, stats=self._stats(wider, now))
        retried = set(retry)
        self._offer(now, [a for a in both.assignments if a.trip_id in retried])

    def run(
        self,
        progress: Callable[[int, int], None] | None = None,
        clock: Callable[[float], None] | None = None,
    ) -> SimResult:
        for i, r in enumerate(self.requests):
            self._push(r.requested_s, _Event.ARRIVAL, i)
        for k, (on, off) in enumerate(zip(self.shifts.on_s, self.shifts.off_s, strict=True)):
            if on > 0:
                self._push(on, _Event.LOGON, k)
            if off < self.window_s:
                # A shift that outlasts the window does not end in the replay: the
                # driver stays to finish, as in the fleet of old.
                self._push(off, _Event.LOGOFF, k)
        for k in sorted(self.followers):  # the shift starts with a look at the map
            if self.state[k] is _DriverState.AVAILABLE:  # the others, when they log on
                self._push(0.0, _Event.GUIDE, k, self.guide_gen[k])
        batch_s = self.cfg.batch_s
        tick = 0  # dispatch ticks at tick × batch_s, from 0
        now = 0.0
        arrived, total = 0, len(self.requests)
        # Tell the caller every tenth of the replay (a long one takes minutes), and the
        # simulated time once per simulated minute at most.
        next_report = max(1, total // 10)
        next_minute_s = CLOCK_EVERY_S
        while self.open or self.events:
            if not self.open:
                # Nothing to dispatch until the next event: jump to the first tick at
                # or after it (the clock is simulated; idle ticks would do nothing).
                tick = max(tick, math.ceil(self.events[0][0] / batch_s))
            now = tick * batch_s
            if clock is not None and now >= next_minute_s:
                clock(now)
                next_minute_s = (now // CLOCK_EVERY_S + 1) * CLOCK_EVERY_S
            while self.events and self.events[0][0] <= now:
                at, kind, _, a, b = heapq.heappop(self.events)
                if kind == _Event.ARRIVAL:
                    self._on_arrival(a)
                    arrived += 1
                    if progress is not None and (arrived >= next_report or arrived == total):
                        progress(arrived, total)
                        next_report = arrived + max(1, total // 10)
                elif kind == _Event.RESPONSE:
                    self._on_response(at, a, b)
                elif kind == _Event.DROPOFF:
                    self._on_dropoff(at, a, b)
                elif kind == _Event.LOGON:
                    self._on_logon(at, a)
                elif kind == _Event.LOGOFF:
                    self._on_logoff(at, a)
                elif kind == _Event.GUIDE:
                    self._on_guide(at, a, b)
                else:
                    self._on_move(at, a, b)
            self._tick(now)
            tick += 1
        return self._result(now)

    def _result(self, end_s: float) -> SimResult:
        for k, d in enumerate(self.drivers):
            off = self.offline_at[k]
            if off is None:  # still on at the end: the window, or the last drop-off
                last = d.intervals[-1][1] if d.intervals else 0.0
                off = max(self.window_s, last)
            d.online_from_s = self.online_from[k]
            d.online_s = max(0.0, off - self.online_from[k])
        return SimResult(
            kpis(
                self.trips,
                self.drivers,
                self.offers,
                self.declined,
                self.batches,
                end_s,
                window_s=self.window_s,
            ),
            self.trips,
            self.drivers,
        )


def _reads_clock(model: EtaModel) -> bool:
    from geo.eta.learned import LearnedEtaModel

    return isinstance(model, LearnedEtaModel)


def trip_legs(
    model: EtaModel, clock: SimulatedClock, requests: Sequence[RideRequest]
) -> tuple[list[int], list[int]]:
    """Each request's trip leg as the dispatcher's model estimates it when the rider asks:
    road metres (the fare's distance) and seconds (the quote's duration). A learned
    model is asked in one ``seconds_many`` call per minute of requests (its hour of the
    week), its distances come from the calibrated model it wraps."""
    from geo.eta.learned import LearnedEtaModel

    if not isinstance(model, LearnedEtaModel):
        legs = [model.leg(r.pickup, r.dropoff) for r in requests]
        return [leg.distance_m for leg in legs], [leg.duration_s for leg in legs]
    distance = [model.fallback.leg(r.pickup, r.dropoff).distance_m for r in requests]
    seconds = [0] * len(requests)
    by_minute: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        by_minute.setdefault(math.floor(r.requested_s / 60), []).append(i)
    for minute, group in by_minute.items():
        clock.now_s = minute * 60.0
        got = model.seconds_many(
            [requests[i].pickup for i in group], [requests[i].dropoff for i in group]
        )
        for i, s in zip(group, got, strict=True):
            seconds[i] = s
    clock.now_s = 0.0
    return distance, seconds


def simulate(
    requests: Sequence[RideRequest],
    starts: Sequence[LatLng],
    config: SimConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[float], None] | None = None,
) -> SimResult:
    """Replay ``requests`` (in arrival order) against drivers starting at ``starts``
    (ids ``drv_00000``, … in that order) until every request is matched or expired and
    every trip has ended. ``progress(arrived, total)`` is called at each tenth of the
    requests' arrivals; ``clock(simulated_s)`` once per simulated minute at most."""
    if any(b.requested_s < a.requested_s for a, b in itertools.pairwise(requests)):
        raise ValueError("requests must be in arrival order")
    if any(r.requested_s < 0 for r in requests):
        raise ValueError("requests must not come before the replay's start (0 s)")
    return _Simulation(requests, starts, config).run(progress, clock)
