"""Where an idle driver should wait: a demand forecast per H3 cell and hour of the week,
and nearby cells ranked by how soon a driver waiting there would get a rider.

Pure: the live service (``dispatch.guidance``: forecast from its own trips in
PostgreSQL, idle drivers from the live index) and the simulator
(``simulation.guidance``: forecast from earlier weeks of the demand file) both call
:func:`rank`, so what a member is advised is what the replay measured.

The model (``docs/dispatch-algorithm.md``, "Where to wait"):

- **Forecast.** Requests per hour in each resolution-8 cell for each hour of the week
  (0 = Monday 00:00, New York time), the mean over the weeks observed: a cell with 12
  requests on the last four Wednesdays 18:00-19:00 forecasts 3 per hour then.
- **Reach.** A driver waiting in a cell is the nearest one for requests in that cell and
  its six neighbours (a disk of ``REACH_RINGS`` rings, ~1.5 km across), so both the
  demand and the competition of a cell are summed over that disk. Summing also smooths
  the counts of a single small cell, which are sparse (resolution 7 cells would be
  smoother, but their centres, ~2.5 km apart, are too coarse to say where to wait and
  are not the cells the live index counts drivers in).
- **Expected wait** for a rider, waiting in cell ``c`` with ``n`` idle drivers already
  in its reach: the next ``n + 1`` requests in reach are needed before this driver's
  turn, at ``λ`` requests per second, so ``wait = (n + 1) / λ`` seconds.
- **Rank** by ``drive_s + wait_s``: the drive there (the ETA model's) plus the wait on
  arrival; cells with no forecast demand are left out. Ties go to the nearer cell, then
  to the cell id, so a ranking is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from geo import cells
from geo.eta import EtaModel
from geo.point import LatLng

HOURS_PER_WEEK = 168
# The cells of the live index (``COOP_H3_RESOLUTION``'s default) and of the advice.
RESOLUTION = 8
# Trailing weeks the forecast averages over: a month of the same hour of the week.
FORECAST_WEEKS = 4
# A waiting driver is first in line for its own cell and the ring around it.
REACH_RINGS = 1
# Cells within this drive (seconds) are considered: "a few minutes" away.
MAX_DRIVE_S = 420
# A driver with no demand forecast within that (stranded after a long trip out of town)
# is shown the cells within this drive instead.
FAR_DRIVE_S = 1200
# The advice a frame or the route lists by default, and at most.
DEFAULT_LIMIT = 5
MAX_LIMIT = 20
# A cell whose wait would be longer is not worth listing (two hours).
MAX_WAIT_S = 7200.0
# The co-op's city: hours of the week are counted in its local time.
SERVICE_TZ = ZoneInfo("America/New_York")

# hour of week → cell → forecast requests per hour
Rates = Mapping[int, Mapping[str, float]]


def hour_of_week(moment: datetime, tz: ZoneInfo = SERVICE_TZ) -> int:
    """0 = Monday 00:00-00:59 … 167 = Sunday 23:00, in the service's local time."""
    local = moment.astimezone(tz)
    return local.weekday() * 24 + local.hour


def build_rates(
    observations: Iterable[tuple[int, str, float]], *, weeks: int
) -> dict[int, dict[str, float]]:
    """Forecast rates from ``(hour_of_week, cell, requests)`` observed over ``weeks``
    weeks: the mean requests per hour of each cell at each hour of the week."""
    if weeks < 1:
        raise ValueError("a forecast needs at least one week observed")
    totals: dict[int, dict[str, float]] = {}
    for how, cell, n in observations:
        if not 0 <= how < HOURS_PER_WEEK:
            raise ValueError(f"hour of week {how} is outside 0..167")
        by_cell = totals.setdefault(how, {})
        by_cell[cell] = by_cell.get(cell, 0.0) + n
    return {h: {c: n / weeks for c, n in by_cell.items()} for h, by_cell in totals.items()}


@dataclass(frozen=True, slots=True)
class CellAdvice:
    cell: str
    centre: LatLng
    drive_s: int
    # Forecast requests per hour in the cell's reach (the cell and its neighbours).
    requests_per_hour: float
    # Idle drivers already in the cell's reach (the advised driver not counted).
    idle_drivers: int
    expected_wait_s: int

    @property
    def score_s(self) -> int:
        return self.drive_s + self.expected_wait_s

    def wire(self) -> dict[str, object]:
        """As the route and the ``demand.map`` frame carry it (``docs/websocket.md``)."""
        return {
            "cell": self.cell,
            "lat": round(self.centre.lat, 6),
            "lng": round(self.centre.lng, 6),
            "drive_s": self.drive_s,
            "expected_wait_s": self.expected_wait_s,
            "score_s": self.score_s,
            "requests_per_hour": round(self.requests_per_hour, 2),
            "idle_drivers": self.idle_drivers,
        }


def expected_wait_s(requests_per_hour: float, idle_drivers: int) -> float:
    """``(idle + 1) / λ`` in seconds; infinite where no demand is forecast."""
    if requests_per_hour <= 0:
        return math.inf
    return (idle_drivers + 1) * 3600.0 / requests_per_hour


def search_rings(
    eta: EtaModel, *, max_drive_s: float = MAX_DRIVE_S, resolution: int = RESOLUTION
) -> int:
    """Rings around the origin's cell covering every point within ``max_drive_s``."""
    return cells.rings_to_cover(eta.reach_m(max_drive_s), resolution)


def neighbourhood(origin_cell: str, rings: int) -> tuple[list[str], list[str]]:
    """The cells a driver in ``origin_cell`` may be advised (within ``rings``), and
    every cell in the reach of one of them (what the forecast and idle counts are
    needed for)."""
    candidates = [c for ring in cells.disk_by_ring(origin_cell, rings) for c in ring]
    reach = [c for ring in cells.disk_by_ring(origin_cell, rings + REACH_RINGS) for c in ring]
    return candidates, reach


def rank(
    candidates: Sequence[str],
    *,
    rate_of: Callable[[str], float],
    idle_of: Callable[[str], int],
    drive_s: Sequence[int],
    limit: int = DEFAULT_LIMIT,
    max_drive_s: float = MAX_DRIVE_S,
) -> list[CellAdvice]:
    """The best ``limit`` of ``candidates`` for one driver, best first.

    ``rate_of(cell)``: forecast requests per hour in that one cell; ``idle_of(cell)``:
    idle drivers there now, the advised driver not counted; ``drive_s[i]``: seconds
    from the driver to ``candidates[i]`` (0 for the cell it is in: it is there).
    Cells beyond ``max_drive_s``, with no forecast demand in reach, or a wait over
    ``MAX_WAIT_S`` are left out."""
    if limit < 1:
        return []
    out: list[CellAdvice] = []
    for cell, drive in zip(candidates, drive_s, strict=True):
        if drive > max_drive_s:
            continue
        reach = [c for ring in cells.disk_by_ring(cell, REACH_RINGS) for c in ring]
        rate = sum(rate_of(c) for c in reach)
        idle = sum(idle_of(c) for c in reach)
        wait = expected_wait_s(rate, idle)
        if wait > MAX_WAIT_S:
            continue
        out.append(CellAdvice(cell, cells.center(cell), int(drive), rate, idle, math.ceil(wait)))
    out.sort(key=lambda a: (a.score_s, a.drive_s, a.cell))
    return out[:limit]


def advise(
    origin: LatLng,
    *,
    eta: EtaModel,
    rates: Mapping[str, float],
    idle: Mapping[str, int],
    exclude_self_from: str | None = None,
    limit: int = DEFAULT_LIMIT,
    max_drive_s: float = MAX_DRIVE_S,
    far_drive_s: float = FAR_DRIVE_S,
    resolution: int = RESOLUTION,
) -> list[CellAdvice]:
    """:func:`rank` over the cells within ``max_drive_s`` of ``origin``, given the hour's
    forecast ``rates`` (cell → requests per hour) and ``idle`` drivers per cell; if
    none of them has demand in reach, over those within ``far_drive_s``.
    ``exclude_self_from``: the cell the advised driver is idle in, counted in ``idle``
    but not competition for itself."""
    origin_cell = cells.cell_of(origin, resolution)
    for drive_limit in (max_drive_s, max(max_drive_s, far_drive_s)):
        found = _advise_within(
            origin, origin_cell, eta, rates, idle, exclude_self_from, limit, drive_limit, resolution
        )
        if found or far_drive_s <= max_drive_s:
            return found
    return []


def _advise_within(
    origin: LatLng,
    origin_cell: str,
    eta: EtaModel,
    rates: Mapping[str, float],
    idle: Mapping[str, int],
    exclude_self_from: str | None,
    limit: int,
    max_drive_s: float,
    resolution: int,
) -> list[CellAdvice]:
    candidates, _ = neighbourhood(
        origin_cell, search_rings(eta, max_drive_s=max_drive_s, resolution=resolution)
    )
    centres = [cells.center(c) for c in candidates]
    drives = eta.seconds_many([origin] * len(centres), centres)
    drives[candidates.index(origin_cell)] = 0  # staying put is no drive

    def idle_of(cell: str) -> int:
        n = idle.get(cell, 0)
        return max(0, n - 1) if cell == exclude_self_from else n

    return rank(
        candidates,
        rate_of=lambda c: rates.get(c, 0.0),
        idle_of=idle_of,
        drive_s=drives,
        limit=limit,
        max_drive_s=max_drive_s,
    )
