"""The live index's Lua scripts, read from ``lua/*.lua`` (package data) at import.

Each operation of ``dispatch.presence.index`` is one script, so it is atomic and one
round trip. Every key a script touches is one of its KEYS, built in ``core.keys``; each
file's header says which, and which arguments follow. Scripts that change whether a
driver is available in a cell share the GEO helpers (``lua/geo_helpers.lua``),
prepended to them here.
"""

from __future__ import annotations

from importlib.resources import files

# A trip's trace keeps one position per 10 s of the driver's clock (enough to draw the
# route on a receipt and to settle a dispute), at most 5,000 (14 hours).
TRACE_EVERY_MS = 10_000
TRACE_MAX = 5_000


def _read(name: str) -> str:
    return files("dispatch.presence").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


_GEO_HELPERS = _read("geo_helpers")

LOCATION = _GEO_HELPERS + _read("location")
STATUS = _GEO_HELPERS + _read("status")
CONNECTIONS = _GEO_HELPERS + _read("connections")
CANDIDATES = _read("candidates")
REAP = _GEO_HELPERS + _read("reap")
TRIP = _GEO_HELPERS + _read("trip")
RESERVE = _read("reserve")
RELEASE = _read("release")
RESTORE = _read("restore")
LEASE = _read("lease")
LAPSED = _read("lapsed")
