"""The live driver index in Redis (``docs/live-index.md``).

``index.Presence`` has one method per Redis operation; ``results`` the values they
return; ``disk`` packs a disk of H3 rings for candidate search; ``scripts`` loads the
Lua scripts (``lua/*.lua``) they run.
"""

from dispatch.presence.index import Presence
from dispatch.presence.results import DriverState, LocationResult, RiderForward
from dispatch.presence.scripts import TRACE_EVERY_MS, TRACE_MAX

__all__ = [
    "TRACE_EVERY_MS",
    "TRACE_MAX",
    "DriverState",
    "LocationResult",
    "Presence",
    "RiderForward",
]
