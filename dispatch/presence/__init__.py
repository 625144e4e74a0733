"""The live driver index in Redis (``docs/live-index.md``).

``index.Presence`` has one method per Redis operation; ``results`` the values they
return; ``hints`` what this process last saw stored per driver (the keys its scripts
declare depend on it); ``sockets`` each driver's open sockets, counted per api process
under that process's lease; ``search`` and ``disk`` are candidate search and its disks of H3
rings, packed once; ``scripts`` loads the Lua scripts (``lua/*.lua``) they all run.
"""

from dispatch.presence.index import Presence
from dispatch.presence.results import DriverState, LocationResult, RiderForward, TripLeg
from dispatch.presence.scripts import TRACE_EVERY_MS, TRACE_MAX
from dispatch.presence.sockets import Gone

__all__ = [
    "TRACE_EVERY_MS",
    "TRACE_MAX",
    "DriverState",
    "Gone",
    "LocationResult",
    "Presence",
    "RiderForward",
    "TripLeg",
]
