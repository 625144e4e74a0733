"""The dispatch KPI summary of a load test: the server's record plus Locust's counts.

Trip timings come from PostgreSQL (the trips and offers rows of this run's riders, who
signed up under the run's id), so they are the server's own clock and hold whatever
machine or Locust worker the phones ran on. Errors come from Locust's CSV files: every
failed HTTP call, failed socket event and exception, by type. Plain Python, no Locust.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from loadtests.plan import GENERATOR_KEPT_UP, LoadPlan

# One row per trip of the run; durations in seconds (NULL when the step never happened).
TRIPS_SQL = """
SELECT t.status,
       extract(epoch FROM o.first_at - t.requested_at) AS request_to_offer_s,
       extract(epoch FROM coalesce(t.cancelled_at, t.expired_at, $2::timestamptz)
               - t.requested_at) AS waited_s,
       extract(epoch FROM a.responded_at - a.created_at) AS offer_to_accept_s,
       extract(epoch FROM t.arrived_at - t.requested_at) AS request_to_pickup_s,
       extract(epoch FROM t.completed_at - t.requested_at) AS request_to_complete_s,
       t.cancelled_at >= $2::timestamptz AS open_at_end
FROM trips t
JOIN riders r ON r.id = t.rider_id
LEFT JOIN LATERAL (SELECT min(created_at) AS first_at FROM offers WHERE trip_id = t.id) o
       ON true
LEFT JOIN LATERAL (SELECT created_at, responded_at FROM offers
                   WHERE trip_id = t.id AND status = 'accepted' LIMIT 1) a ON true
WHERE r.name = $1
"""
OFFERS_SQL = """
SELECT o.status, count(*) AS n
FROM offers o JOIN trips t ON t.id = o.trip_id JOIN riders r ON r.id = t.rider_id
WHERE r.name = $1 GROUP BY o.status
"""


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max by the nearest-rank method (None for no values)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)

    return {
        "n": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1], 3),
    }


@dataclass(frozen=True)
class LocustCounts:
    requests: int
    failures: int
    errors: dict[str, int]

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def locust_counts(csv_prefix: Path) -> LocustCounts:
    """Requests and failures (the Aggregated row), and every error by type."""
    requests = failures = 0
    with (csv_prefix.parent / f"{csv_prefix.name}_stats.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                requests = int(row["Request Count"])
                failures = int(row["Failure Count"])
    errors: Counter[str] = Counter()
    failures_csv = csv_prefix.parent / f"{csv_prefix.name}_failures.csv"
    if failures_csv.exists():
        with failures_csv.open(newline="") as f:
            for row in csv.DictReader(f):
                errors[f"{row['Method']} {row['Name']}: {row['Error']}"] += int(row["Occurrences"])
    exceptions_csv = csv_prefix.parent / f"{csv_prefix.name}_exceptions.csv"
    if exceptions_csv.exists():
        with exceptions_csv.open(newline="") as f:
            for row in csv.DictReader(f):
                errors[f"exception: {row['Message'].strip()[:200]}"] += int(row["Count"])
    return LocustCounts(requests=requests, failures=failures, errors=dict(errors))


async def trip_kpis(database_url: str, *, run_id: str, ended_at: Any) -> dict[str, Any]:
    """The run's trips as the server recorded them. ``ended_at``: when the rollout
    ended; a trip cancelled after it was still open when the phones stopped.

    request→offer counts every request: one never offered counts the time it waited
    (until cancelled, expired or the end), a lower bound, so unserved requests raise
    the percentiles instead of vanishing from them."""
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(url, timeout=10)
    try:
        rows = await conn.fetch(TRIPS_SQL, run_id, ended_at)
        offer_rows = await conn.fetch(OFFERS_SQL, run_id)
    finally:
        await conn.close()
    status: Counter[str] = Counter()
    to_offer: list[float] = []
    to_accept: list[float] = []
    to_pickup: list[float] = []
    to_complete: list[float] = []
    never_offered = 0
    open_at_end = 0
    for row in rows:
        kind = row["status"]
        if kind == "cancelled" and row["open_at_end"]:
            kind = "open_at_end"
            open_at_end += 1
        status[kind] += 1
        if row["request_to_offer_s"] is not None:
            to_offer.append(float(row["request_to_offer_s"]))
        else:
            never_offered += 1
            to_offer.append(max(0.0, float(row["waited_s"])))
        for values, name in (
            (to_accept, "offer_to_accept_s"),
            (to_pickup, "request_to_pickup_s"),
            (to_complete, "request_to_complete_s"),
        ):
            if row[name] is not None:
                values.append(float(row[name]))
    matched = sum(1 for row in rows if row["offer_to_accept_s"] is not None)
    return {
        "requests": len(rows),
        "matched": matched,
        "completed": status["completed"],
        "cancelled_by_riders": status["cancelled"],
        "expired": status["expired"],
        "open_at_end": open_at_end
        + sum(status[s] for s in ("requested", "assigned", "arrived", "in_progress")),
        "never_offered": never_offered,
        "by_status": dict(status),
        "offers": {r["status"]: int(r["n"]) for r in offer_rows},
        "request_to_offer_s": percentiles(to_offer),
        "offer_to_accept_s": percentiles(to_accept),
        "request_to_pickup_s": percentiles(to_pickup),
        "request_to_complete_s": percentiles(to_complete),
    }


# -- the verdict and the summary (kpi.json) ------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    max_p99_request_to_offer_s: float
    max_error_rate: float


def fewest_expected(planned: float) -> float:
    """Fewer requests than this means the load generator fell behind: below
    ``GENERATOR_KEPT_UP`` of the plan, and further below it than Poisson arrivals
    stray (4 standard deviations), so a short run is not failed by chance."""
    return min(GENERATOR_KEPT_UP * planned, planned - 4 * math.sqrt(planned))


def verdict(
    trips: dict[str, Any],
    counts: LocustCounts,
    thresholds: Thresholds,
    *,
    planned_requests: float | None = None,
) -> list[str]:
    """The thresholds a run missed (none: it passed)."""
    p99 = trips["request_to_offer_s"]["p99"]
    missed = []
    if trips["requests"] == 0:
        missed.append("no trip was requested")
    elif planned_requests and trips["requests"] < fewest_expected(planned_requests):
        missed.append(
            f"the load generator fell behind: {trips['requests']} of "
            f"{planned_requests:.0f} planned requests made"
        )
    if p99 is None or p99 > thresholds.max_p99_request_to_offer_s:
        missed.append(f"p99 request→offer {p99} s > {thresholds.max_p99_request_to_offer_s:g} s")
    if counts.error_rate > thresholds.max_error_rate:
        missed.append(f"error rate {counts.error_rate:.4%} > {thresholds.max_error_rate:.4%}")
    return missed


def summary(
    *,
    plan: LoadPlan,
    host: str,
    dispatch_batch_s: float,
    trips: dict[str, Any],
    counts: LocustCounts,
    locust_exit_code: int,
    planned: float,
    thresholds: Thresholds,
    generator_cpu_saturated: bool,
) -> dict[str, Any]:
    """``kpi.json``: the same keys whether ``coopride loadtest`` or plain Locust wrote it."""
    missed = verdict(trips, counts, thresholds, planned_requests=planned)
    minutes = max(plan.total_s - plan.riders_start_s, 1e-9) / 60
    return {
        "run_id": plan.run_id,
        # Locust warned that a process of its own passed 90 % CPU: the phones' own
        # timings (Locust's statistics) may be late; the KPIs above are the server's.
        "generator_cpu_saturated": generator_cpu_saturated,
        "host": host,
        "plan": json.loads(plan.to_json()) | {"operator_token": "(not shown)"},
        "dispatch_batch_s": dispatch_batch_s,
        "drivers": plan.drivers,
        "requests_planned": round(planned, 1),
        "requests_per_minute_mean": round(trips["requests"] / minutes, 1),
        **trips,
        "locust": {
            "exit_code": locust_exit_code,
            "requests": counts.requests,
            "failures": counts.failures,
            "error_rate": counts.error_rate,
        },
        "errors": counts.errors,
        "thresholds": {
            "max_p99_request_to_offer_s": thresholds.max_p99_request_to_offer_s,
            "max_error_rate": thresholds.max_error_rate,
        },
        "missed": missed,
        "passed": not missed,
    }


def headline(summary: dict[str, Any]) -> str:
    o, a, p = (
        summary[k] for k in ("request_to_offer_s", "offer_to_accept_s", "request_to_pickup_s")
    )
    return (
        f"drivers {summary['drivers']} | requests {summary['requests']} "
        f"({summary['requests_per_minute_mean']}/min) | matched {summary['matched']} | "
        f"completed {summary['completed']} | expired {summary['expired']} | "
        f"request→offer p50/p95/p99 {o['p50']}/{o['p95']}/{o['p99']} s | "
        f"offer→accept p50 {a['p50']} s | request→pickup p50 {p['p50']} s | "
        f"errors {summary['locust']['failures']}/{summary['locust']['requests']}"
    )
