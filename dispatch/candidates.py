"""Candidate drivers for a pickup: grow an H3 disk ring by ring until enough available
drivers are found or the radius a driver could cover within ``COOP_MAX_PICKUP_ETA_S``
is reached, then rank them by pickup ETA."""

from __future__ import annotations

from collections.abc import Collection

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
    centre = cells.cell_of(pickup, presence.resolution)
    k_max = max_rings(eta, max_pickup_eta_s=max_pickup_eta_s, resolution=presence.resolution)
    found = await presence.candidates(
        cells.disk_by_ring(centre, k_max),
        min_seen_ms=min_seen_ms,
        want=want + len(exclude),
        eta_s=lambda position: eta.seconds(position, pickup),
        pickup=pickup,
        radius_m=eta.reach_m(max_pickup_eta_s),
    )
    ranked = [c for c in found if c.driver_id not in exclude and c.pickup_eta_s <= max_pickup_eta_s]
    ranked.sort(key=lambda c: (c.pickup_eta_s, c.driver_id))
    return ranked
