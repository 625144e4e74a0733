"""Candidate drivers for a pickup: grow an H3 disk ring by ring until enough available
drivers are found or the radius a driver could cover within ``COOP_MAX_PICKUP_ETA_S``
is reached, then rank them by pickup ETA."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from dispatch.batch.types import Candidate
from dispatch.presence import Presence
from geo import cells
from geo.eta import EtaModel
from geo.point import LatLng


def max_rings(eta: EtaModel, *, max_pickup_eta_s: float, resolution: int) -> int:
    return cells.rings_to_cover(eta.reach_m(max_pickup_eta_s), resolution)


async def search(
    presence: Presence,
    eta: EtaModel,
    pickup: LatLng,
    *,
    want: int,
    max_pickup_eta_s: float,
    min_seen_ms: int,
    exclude: Collection[str] = (),
) -> list[Candidate]:
    """Up to ``want`` available drivers (more if a ring brings more), nearest first,
    never one in ``exclude`` and never one further than ``max_pickup_eta_s``."""
    found = await near(
        presence,
        eta,
        pickup,
        want=want,
        max_pickup_eta_s=max_pickup_eta_s,
        min_seen_ms=min_seen_ms,
        exclude=exclude,
    )
    return rank(eta, [pickup], [found], max_pickup_eta_s=max_pickup_eta_s)[0]


async def near(
    presence: Presence,
    eta: EtaModel,
    pickup: LatLng,
    *,
    want: int,
    max_pickup_eta_s: float,
    min_seen_ms: int,
    exclude: Collection[str] = (),
) -> list[Candidate]:
    """The drivers the live index finds around ``pickup`` (not in ``exclude``), with no
    pickup ETA yet: :func:`rank` estimates a whole batch's legs in one call."""
    centre = cells.cell_of(pickup, presence.resolution)
    k_max = max_rings(eta, max_pickup_eta_s=max_pickup_eta_s, resolution=presence.resolution)
    found = await presence.candidates(
        cells.disk_by_ring(centre, k_max),
        min_seen_ms=min_seen_ms,
        want=want + len(exclude),
        eta_s=_unranked,
        pickup=pickup,
        radius_m=eta.reach_m(max_pickup_eta_s),
    )
    return [c for c in found if c.driver_id not in exclude]


def _unranked(position: LatLng) -> int:
    return 0


def rank(
    eta: EtaModel,
    pickups: Sequence[LatLng],
    found: Sequence[Sequence[Candidate]],
    *,
    max_pickup_eta_s: float,
) -> list[list[Candidate]]:
    """Each pickup's drivers with their pickup ETAs, nearest first by (ETA, driver id),
    none beyond ``max_pickup_eta_s``. Every leg of the batch is one ``seconds_many``
    call, so a model that predicts in bulk (the learned one) is asked once."""
    origins = [c.position or pickup for pickup, cs in zip(pickups, found, strict=True) for c in cs]
    destinations = [pickup for pickup, cs in zip(pickups, found, strict=True) for _ in cs]
    seconds = iter(eta.seconds_many(origins, destinations))
    ranked: list[list[Candidate]] = []
    for cs in found:
        timed = [replace(c, pickup_eta_s=next(seconds)) for c in cs]
        kept = [c for c in timed if c.pickup_eta_s <= max_pickup_eta_s]
        kept.sort(key=lambda c: (c.pickup_eta_s, c.driver_id))
        ranked.append(kept)
    return ranked
