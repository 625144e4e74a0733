"""``coopride loadtest``: a bounded city rollout against a server on this machine.

By default it starts the server for the purpose: a database of its own
(``coopride_loadtest_<run>``, created, migrated and dropped afterwards), a Redis prefix
of its own (deleted afterwards), ``--api-workers`` api processes on a free port plus one
``coopride dispatcher`` process. ``--host`` targets a running server instead (127.0.0.1
only). Locust runs in a subprocess (``loadtests/locustfile.py``; nothing here imports
Locust) and the run writes, into its output directory:

- ``locust_stats.csv``, ``locust_failures.csv``, ``locust_exceptions.csv``,
  ``locust_stats_history.csv`` and ``report.html`` (Locust's own);
- ``kpi.json``: the dispatch KPI summary (``loadtests/kpi.py``) and the verdict.

Exit status: 0 when every threshold held, 1 when one was missed, 2 when the run itself
failed. The command line is ``loadtests/__main__.py``; ``--find-capacity``, which steps
the city up until a step misses a threshold, is ``loadtests/capacity.py``
(``docs/loadtesting.md``).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis import Redis

from core.settings import Settings
from loadtests import kpi
from loadtests.plan import GENERATOR_KEPT_UP, LoadPlan
from server import harness

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
READY_WAIT_S = 60.0
# After the rollout's planned end: Locust stops its users (riders cancel open trips),
# writes its reports and exits. Past this the run is killed and counted as failed.
LOCUST_GRACE_S = 90.0
# Sign-ups a minute the started server takes from one address (all phones are local).
LOADTEST_SIGNUP_RATE_PER_MIN = 1_000_000
# What Locust logs when one of its processes passes 90 % CPU.
LOCUST_CPU_WARNING = "CPU usage above 90%"
# The real NYC yellow-cab peak, requests a minute (the yardstick).
NYC_PEAK_RPM = 440


@dataclass(frozen=True)
class Thresholds:
    max_p99_request_to_offer_s: float
    max_error_rate: float


@dataclass
class Target:
    base_url: str
    settings: Settings  # what the server runs with (database, Redis, tokens, batch)
    processes: list[harness.Process]
    own_database: str | None = None


@contextmanager
def started_server(
    base: Settings, *, api_workers: int, batch_s: float | None, out: Path
) -> Iterator[Target]:
    """api processes + one dispatcher on a free port, with a database and a Redis prefix
    of their own; everything is stopped and removed on the way out."""
    run = secrets.token_hex(4)
    name = f"coopride_loadtest_{run}"
    settings = base.model_copy(
        update={
            "environment": "test",
            "database_url": harness.with_database(base.database_url, name),
            "redis_prefix": f"loadtest:{run}:",
            "jwt_secret": secrets.token_urlsafe(48),
            "operator_token": secrets.token_urlsafe(24),
            # Every rider phone signs up from 127.0.0.1: the per-address sign-up limit
            # (docs/security.md) is for carrier NATs, not for a load generator.
            "signup_rate_per_min": LOADTEST_SIGNUP_RATE_PER_MIN,
            **({"dispatch_batch_s": batch_s} if batch_s is not None else {}),
        }
    )
    harness.create_database(settings.database_url)
    processes: list[harness.Process] = []
    try:
        harness.migrate(settings.database_url)
        port = harness.free_port()
        processes.append(
            harness.start_serve(
                settings, out / "api.log", port=port, dispatcher=False, workers=api_workers
            )
        )
        processes.append(harness.start_dispatcher(settings, out / "dispatcher.log"))
        target = Target(f"http://127.0.0.1:{port}", settings, processes, own_database=name)
        harness.wait_ready(target.base_url, processes, timeout_s=READY_WAIT_S)
        print(
            f"[loadtest] server on {target.base_url}: {api_workers} api process(es) + "
            f"dispatcher, database {name}, batch {settings.dispatch_batch_s:g} s",
            flush=True,
        )
        yield target
    finally:
        for process in processes:
            process.stop()
        with suppress(Exception):
            _forget_redis(settings)
        harness.drop_database(settings.database_url)


def _forget_redis(settings: Settings) -> None:
    client = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def local_only(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise RuntimeError(f"load tests only target this machine (127.0.0.1), not {host!r}")
    return url.rstrip("/")


def ensure_service_area(target: Target, plan: LoadPlan) -> None:
    """The demo's Manhattan area when the plan keeps riders there and none exists."""
    if plan.area != "manhattan":
        return
    from simulation.city import MANHATTAN

    auth = {"Authorization": f"Bearer {target.settings.operator_token}"}
    r = httpx.get(f"{target.base_url}/v1/operator/service-areas", headers=auth, timeout=10)
    r.raise_for_status()
    if not r.json():
        r = httpx.post(
            f"{target.base_url}/v1/operator/service-areas",
            headers=auth,
            json={"name": "Manhattan (load test)", "polygon": MANHATTAN},
            timeout=10,
        )
        r.raise_for_status()


def run_locust(
    target: Target, plan: LoadPlan, out: Path, *, ui: bool, processes: int
) -> tuple[int, datetime, datetime]:
    """Locust in a subprocess, bounded by the plan's length; its exit status."""
    csv_prefix = out / "locust"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        target.base_url,
        "--csv",
        str(csv_prefix),
        "--csv-full-history",
        "--html",
        str(out / "report.html"),
        "--logfile",
        str(out / "locust.log"),
        "--loglevel",
        "WARNING",
        "--coop-plan",
        plan.to_json(),
    ]
    if processes != 1:
        cmd += ["--processes", str(processes)]
    if ui:
        port = harness.free_port()
        cmd += ["--web-host", "127.0.0.1", "--web-port", str(port), "--autostart"]
        cmd += ["--autoquit", "60"]
        print(f"[loadtest] Locust web UI on http://127.0.0.1:{port}", flush=True)
    else:
        cmd += ["--headless", "--only-summary"]
    started = datetime.now(UTC)
    with (out / "locust.out").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(plan.total_s + LOCUST_GRACE_S + (60 if ui else 0))
        except subprocess.TimeoutExpired:
            rc = -1
        finally:
            harness.stop(proc)  # timed out, or this command was interrupted
    ended = datetime.fromtimestamp(started.timestamp() + plan.total_s, UTC)
    return rc, started, ended


def fewest_expected(planned: float) -> float:
    """Fewer requests than this means the load generator fell behind: below
    ``GENERATOR_KEPT_UP`` of the plan, and further below it than Poisson arrivals
    stray (4 standard deviations), so a short run is not failed by chance."""
    return min(GENERATOR_KEPT_UP * planned, planned - 4 * math.sqrt(planned))


def verdict(
    trips: dict[str, Any],
    counts: kpi.LocustCounts,
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


def planned_requests(plan: LoadPlan) -> float:
    if plan.trace:
        from loadtests import trace

        return plan.planned_requests(trace.load(plan).rate_rpm)
    return plan.planned_requests(lambda _: 0.0)


def summarise(
    target: Target,
    plan: LoadPlan,
    out: Path,
    *,
    locust_rc: int,
    ended: datetime,
    thresholds: Thresholds,
) -> dict[str, Any]:
    counts = kpi.locust_counts(out / "locust")
    trips = asyncio.run(
        kpi.trip_kpis(target.settings.database_url, run_id=plan.run_id, ended_at=ended)
    )
    planned = planned_requests(plan)
    missed = verdict(trips, counts, thresholds, planned_requests=planned)
    minutes = max(plan.total_s - plan.riders_start_s, 1e-9) / 60
    log = out / "locust.log"
    saturated = log.exists() and LOCUST_CPU_WARNING in log.read_text(errors="replace")
    return {
        "run_id": plan.run_id,
        # Locust warned that a process of its own passed 90 % CPU: the phones' own
        # timings (Locust's statistics) may be late; the KPIs above are the server's.
        "generator_cpu_saturated": saturated,
        "host": target.base_url,
        "plan": json.loads(plan.to_json()),
        "dispatch_batch_s": target.settings.dispatch_batch_s,
        "drivers": plan.drivers,
        "requests_planned": round(planned, 1),
        "requests_per_minute_mean": round(trips["requests"] / minutes, 1),
        **trips,
        "locust": {
            "exit_code": locust_rc,
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


def one_run(
    target: Target,
    plan: LoadPlan,
    out: Path,
    *,
    thresholds: Thresholds,
    ui: bool,
    processes: int,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    ensure_service_area(target, plan)
    print(
        f"[loadtest] {plan.drivers} drivers, "
        + (
            f"the demand file's rate × {plan.speedup:g}"
            if plan.trace
            else f"{plan.requests_per_minute:g} requests/min"
        )
        + f", surge × {plan.surge_factor:g}, {plan.total_s:g} s → {out}",
        flush=True,
    )
    rc, _, ended = run_locust(target, plan, out, ui=ui, processes=processes)
    if rc not in (0, 1) or not (out / "locust_stats.csv").exists():
        tail = (out / "locust.out").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Locust failed (exit {rc}):\n{tail}")
    summary = summarise(target, plan, out, locust_rc=rc, ended=ended, thresholds=thresholds)
    (out / "kpi.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"[loadtest] {headline(summary)}", flush=True)
    if summary["errors"]:
        for kind, n in sorted(summary["errors"].items(), key=lambda kv: -kv[1])[:10]:
            print(f"[loadtest]   error ×{n}: {kind}", flush=True)
    verdict = "PASS" if summary["passed"] else "FAIL: " + "; ".join(summary["missed"])
    print(f"[loadtest] {verdict}  ({out / 'kpi.json'})", flush=True)
    return summary
