"""The learned ETA model's live correction, fed by the co-op's own finished trips.

When a trip completes, its real in-car time (start to drop-off) and the duration the
model predicted when the rider asked go into one capped Redis list, so every process
sees the same trips. Each process rebuilds its model's :class:`~geo.eta.learned.
LiveCorrection` from that list every ``REFRESH_S``: a quote and a dispatch in different
processes correct by the same evidence, and a restarted process has it at once.
Models without a live correction (``calibrated``, ``road``, ``straight``) ignore all of it.
Both of a runtime's models are corrected when learned: the trip model (quotes, by
default) and the pickup model (``COOP_ETA_MODEL=learned``); both are the same trees, so
one prediction serves as the evidence for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.clock import now_ms
from core.models import Trip
from dispatch.runtime import Runtime
from dispatch.views import latlng_of
from geo.eta.learned import LIVE_WINDOW_S, LearnedEtaModel, LiveCorrection

log = logging.getLogger(__name__)

# More than a busy half hour of a big city's finished trips; older ones fall off the end.
KEEP = 5000
# Often enough to follow traffic within a minute, rarely enough to cost nothing.
REFRESH_S = 15.0
# A meter stopped at once, or left running for hours, says nothing about traffic.
MIN_ACTUAL_S, MAX_ACTUAL_S = 30, 3 * 3600


def _learned(rt: Runtime) -> list[LearnedEtaModel]:
    """The runtime's learned models (each object once)."""
    models: list[LearnedEtaModel] = []
    for model in (rt.trip_eta, rt.eta):
        if isinstance(model, LearnedEtaModel) and all(model is not m for m in models):
            models.append(model)
    return models


async def record(rt: Runtime, trip: Trip) -> None:
    """After a trip's completion committed: its evidence for the live correction."""
    learned = _learned(rt)
    if not learned:
        return
    if trip.started_at is None or trip.completed_at is None:
        return
    actual_s = (trip.completed_at - trip.started_at).total_seconds()
    if not MIN_ACTUAL_S <= actual_s <= MAX_ACTUAL_S:
        return
    # Against the model's own prediction, not the corrected one the rider was quoted:
    # the correction must measure the model, or it would chase its own tail.
    predicted_s = learned[0].raw_seconds_at(
        latlng_of(trip.pickup), latlng_of(trip.dropoff), trip.requested_at.timestamp()
    )
    entry = f"{trip.completed_at.timestamp():.0f},{predicted_s:.0f},{actual_s:.0f}"
    async with rt.redis.pipeline(transaction=False) as pipe:
        pipe.lpush(rt.keys.eta_finished(), entry)
        pipe.ltrim(rt.keys.eta_finished(), 0, KEEP - 1)
        await pipe.execute()


async def refresh(rt: Runtime) -> int:
    """Rebuild the learned models' correction from the shared list; the trips it holds."""
    learned = _learned(rt)
    if not learned:
        return 0
    raw = await rt.redis.lrange(rt.keys.eta_finished(), 0, KEEP - 1)
    cutoff_s = now_ms() / 1000 - LIVE_WINDOW_S
    entries = []
    for item in raw:
        completed_s, predicted_s, actual_s = (float(v) for v in str(item).split(","))
        if completed_s >= cutoff_s:
            entries.append((completed_s, predicted_s, actual_s))
    fresh = LiveCorrection()
    for completed_s, predicted_s, actual_s in sorted(entries):
        fresh.observe(completed_s, predicted_s, actual_s)
    for model in learned:
        model.correction.replace_with(fresh)
    return len(entries)


async def keep_fresh(rt: Runtime, stop: asyncio.Event) -> None:
    """:func:`refresh` every ``REFRESH_S`` until ``stop`` is set; a Redis hiccup skips a
    round. It ends by the event, not by cancellation alone: a cancel that lands inside a
    Redis call can be swallowed by the client's retry."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await refresh(rt)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_S)
