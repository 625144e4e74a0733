"""Every Redis key and channel, built in one place.

All names start with the configured prefix so a test run, or a second co-op on the same
Redis, never sees another's state. Nothing in Redis is the only copy of a durable fact:
after a restart drivers re-send their position and the dispatcher re-queues open trips
from PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    # -- live driver index (dispatch.presence) --
    def driver(self, driver_id: str) -> str:
        """Hash: lat, lng, ts (fix time, ms), seen (server time of the last position,
        ms), acc, hdg, spd, cell, status (offline | available | on_trip), rl_t/rl_at (the
        location rate limit's tokens and when counted), and while on a trip: trip,
        rider, tlat/tlng (where it is heading). Its open sockets: ``driver_sockets``."""
        return f"{self.prefix}drv:{driver_id}"

    def driver_sockets(self, driver_id: str) -> str:
        """Hash: api process id -> how many of the driver's sockets that process holds
        open (dispatch.presence.sockets). The driver is connected while a process whose
        lease lasts (``processes``) counts it."""
        return f"{self.prefix}conns:{driver_id}"

    def processes(self) -> str:
        """Sorted set: process id -> when its lease runs out (ms, Redis's clock). Each
        process renews its own; the dispatcher takes a lapsed one's socket counts off
        its drivers, then forgets it."""
        return f"{self.prefix}procs"

    def process_drivers(self, process_id: str) -> str:
        """Set of the drivers a process counts sockets for (in ``driver_sockets``), so
        they are found when the process is gone. Touched by the same script as those
        drivers' keys: when keys are hash-tagged by region, it is one set per region."""
        return f"{self.prefix}procs:{process_id}:drivers"

    def cell(self, resolution: int, cell: str) -> str:
        """Sorted set of online drivers in one H3 cell, scored by last update (ms)."""
        return f"{self.prefix}cell:{resolution}:{cell}"

    def cell_geo(self, resolution: int, cell: str) -> str:
        """GEO set of the *available* drivers in one H3 cell at their last position:
        candidate search reads it (GEOSEARCH)."""
        return f"{self.prefix}cell:{resolution}:{cell}:g"

    def available_cells(self, resolution: int) -> str:
        """Set of the cells at ``resolution`` whose GEO set holds any available driver
        (kept by dispatch.presence's scripts; candidate search skips the rest)."""
        return f"{self.prefix}cell:{resolution}#avail"

    def seen(self) -> str:
        """Sorted set of every indexed driver by last update: stale drivers come off the
        low end without scanning the rest, and candidate search reads freshness here."""
        return f"{self.prefix}seen"

    def positions(self) -> str:
        """Hash: driver -> "lat,lng", its last position exactly as sent (a GEO set keeps
        it only to about a metre): candidate search returns these."""
        return f"{self.prefix}pos"

    def fairness(self) -> str:
        """Hash: driver -> "idle_since_ms,shift_cents", what the dispatcher's fairness
        term reads (written when a shift starts and when a trip ends)."""
        return f"{self.prefix}fair"

    def held_offers(self) -> str:
        """Sorted set: driver -> when its offer reservation (``driver_offer``) expires,
        ms. Kept in step with those keys, so candidate search reads one key instead of
        one per driver; an entry whose time has passed counts as free, as the expired
        key it stands for would."""
        return f"{self.prefix}offers:held"

    # -- dispatch queue and offers --
    def pending(self, region: str) -> str:
        """Sorted set of trip ids waiting for a driver, scored by request time (ms)."""
        return f"{self.prefix}pending:{region}"

    def trip_excluded(self, trip_id: str) -> str:
        """Set of drivers who declined or let an offer for this trip expire."""
        return f"{self.prefix}excl:{trip_id}"

    def driver_offer(self, driver_id: str) -> str:
        """The one live offer a driver holds (SET NX with a TTL)."""
        return f"{self.prefix}offer:drv:{driver_id}"

    def trip_offer(self, trip_id: str) -> str:
        """The one live offer a trip has (SET NX with a TTL)."""
        return f"{self.prefix}offer:trip:{trip_id}"

    def offer_deadlines(self) -> str:
        """Sorted set of live offer ids by expiry (ms): the dispatcher expires the low end."""
        return f"{self.prefix}offers:deadline"

    def offers_orphaned(self) -> str:
        """Offers whose driver has no socket open: offer id -> when the grace period
        ends (ms); the dispatcher withdraws those still orphaned then."""
        return f"{self.prefix}offers:orphaned"

    def trace(self, trip_id: str) -> str:
        """List of "ts_ms,lat,lng" positions sampled during a trip, written to PostgreSQL
        (trip_trace) when the trip ends."""
        return f"{self.prefix}trace:{trip_id}"

    def dispatch_log(self, driver_id: str) -> str:
        """List of recent dispatch decisions that involved this driver, newest first:
        why it did or did not get each trip it was a candidate for."""
        return f"{self.prefix}dlog:{driver_id}"

    def leader(self, region: str) -> str:
        return f"{self.prefix}leader:{region}"

    def fence(self, region: str) -> str:
        return f"{self.prefix}fence:{region}"

    # -- events to sockets (core.events) --
    def event_seq(self, audience: str, ident: str) -> str:
        return f"{self.prefix}evseq:{audience}:{ident}"

    def event_ack(self, audience: str, ident: str) -> str:
        """The highest event id the recipient acked (web.event_stream), for resume."""
        return f"{self.prefix}evseq:{audience}:{ident}:ack"

    def event_log(self, audience: str, ident: str) -> str:
        """Stream of recent events for one recipient, for resume after a reconnect."""
        return f"{self.prefix}evlog:{audience}:{ident}"

    def channel(self, audience: str, ident: str) -> str:
        return f"{self.prefix}ch:{audience}:{ident}"

    def hub_control(self, token: str) -> str:
        """Pub/sub channel of one process's hub (core.hub), subscribed from its start."""
        return f"{self.prefix}hub:{token}"

    # -- service areas (geo.areas) --
    def areas_version(self) -> str:
        """Bumped when an operator changes the service areas; api processes reload their
        in-memory copy when it moves."""
        return f"{self.prefix}areas:version"

    # -- request hygiene --
    def rate(self, bucket: str, ident: str) -> str:
        """Hash: a rate limit's token bucket (core.ratelimit)."""
        return f"{self.prefix}rate:{bucket}:{ident}"

    def rate_seen(self, bucket: str, ident: str, digest: str) -> str:
        """Marks a request (by the digest of its ``Idempotency-Key``) already charged
        to ``ident``'s bucket, so its retries are free (core.ratelimit)."""
        return f"{self.prefix}rate:{bucket}:seen:{ident}:{digest}"

    def eta_finished(self) -> str:
        """List of the latest finished trips' ``completed_s,predicted_s,actual_s`` (newest
        first, capped): the learned ETA model's live correction (dispatch/eta_feedback.py)."""
        return f"{self.prefix}eta:finished"

    # -- where to wait (dispatch.guidance) --
    def demand_forecast(self, resolution: int, hour_of_week: int) -> str:
        """Hash: H3 cell -> forecast requests per hour at that hour of the week (0 =
        Monday 00:00, New York time), from the last weeks' trips; rebuilt by the
        dispatcher, read by every api process."""
        return f"{self.prefix}demand:{resolution}:{hour_of_week}"

    def demand_forecast_meta(self) -> str:
        """Hash: built_ms (when the forecast was rebuilt), weeks, trips."""
        return f"{self.prefix}demand:meta"

    def all_keys_pattern(self) -> str:
        return f"{self.prefix}*"
