"""The trip state machine of the wire contract, as data.

    requested -> assigned -> arrived -> in_progress -> completed
    requested | assigned | arrived -> cancelled
    requested -> expired   (no driver within COOP_TRIP_REQUEST_TIMEOUT_S)

Pure: no I/O. ``dispatch.trips`` applies a transition to the trip row locked FOR UPDATE,
so of two racing changes the second sees the first's result and is refused.
"""

from __future__ import annotations

from typing import Literal

from core.errors import IllegalTransition

TripStatus = Literal[
    "requested", "assigned", "arrived", "in_progress", "completed", "cancelled", "expired"
]

TRANSITIONS: dict[str, frozenset[str]] = {
    "requested": frozenset({"assigned", "cancelled", "expired"}),
    "assigned": frozenset({"arrived", "cancelled"}),
    "arrived": frozenset({"in_progress", "cancelled"}),
    "in_progress": frozenset({"completed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
    "expired": frozenset(),
}

ACTIVE = frozenset({"requested", "assigned", "arrived", "in_progress"})
DRIVER_ACTIVE = frozenset({"assigned", "arrived", "in_progress"})
FINAL = frozenset({"completed", "cancelled", "expired"})

# The timestamp column each status sets.
STAMP = {
    "assigned": "assigned_at",
    "arrived": "arrived_at",
    "in_progress": "started_at",
    "completed": "completed_at",
    "cancelled": "cancelled_at",
    "expired": "expired_at",
}


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def sources_of(target: str) -> frozenset[str]:
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def check(current: str, target: str) -> None:
    if not can_move(current, target):
        raise IllegalTransition(f"a trip that is {current} cannot become {target}")
