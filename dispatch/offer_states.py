"""The offer state machine, as data.

    pending -> accepted   the driver accepted in time and the trip was still open
    pending -> declined   the driver declined (or went offline holding it)
    pending -> expired    no answer by ``expires_at`` (the dispatcher's expiry job)
    pending -> withdrawn  the trip ended (cancelled, expired), or the driver had no
                          socket open for ``COOP_OFFER_DISCONNECT_GRACE_S``

Every other status is final. Pure: no I/O. ``dispatch.offers`` applies a transition to
the offer row locked FOR UPDATE (or with ``UPDATE … WHERE status IN sources_of(target)``),
so of any number of racing answers exactly one moves the offer and every other one is
refused with the error ``check`` raises: ``offer-expired`` for an offer that expired,
``offer-withdrawn`` for one that ended any other way.
"""

from __future__ import annotations

from typing import Literal

from core.errors import OfferExpired, OfferWithdrawn

OfferStatus = Literal["pending", "accepted", "declined", "expired", "withdrawn"]

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"accepted", "declined", "expired", "withdrawn"}),
    "accepted": frozenset(),
    "declined": frozenset(),
    "expired": frozenset(),
    "withdrawn": frozenset(),
}

OPEN = frozenset({"pending"})
FINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def sources_of(target: str) -> frozenset[str]:
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def check(offer_id: str, current: str, target: str) -> None:
    """Refuse a move the table does not allow, with the error a phone is told: the offer
    expired, or it was withdrawn (ended any other way: answered, withdrawn)."""
    if can_move(current, target):
        return
    if current == "expired":
        raise OfferExpired(f"offer {offer_id} expired")
    raise OfferWithdrawn(f"offer {offer_id} is {current}")
