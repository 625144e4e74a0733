"""``coopride loadtest``: a bounded city rollout against a server on this machine.

By default it starts the server for the purpose: a database of its own
(``coopride_loadtest_<run>``, created, migrated and dropped afterwards), a Redis prefix
of its own (deleted afterwards), ``--api-workers`` api processes on a free port plus one
``coopride dispatcher`` process. ``--host`` targets a running server instead (127.0.0.1
only). Locust runs in a subprocess (``locust -f loadtests/locustfile.py`` with the plan
as Locust options, as a Locust user gives them; nothing here imports Locust) and the run
writes, into its output directory:

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
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from core.settings import Settings
from loadtests import kpi, options, preflight, progress
from loadtests.kpi import Thresholds, headline
from loadtests.options import SettingError
from loadtests.plan import LoadPlan
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
# How often the rollout's progress bars are redrawn from the Locust master's file.
PROGRESS_EVERY_S = 0.5


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
    processes: list[harness.Process] = []
    with progress.steps("starting the server", 4) as step:
        step.now(f"database {name}")
        harness.create_database(settings.database_url)
        step.done()
        try:
            step.now("migrations")
            harness.migrate(settings.database_url)
            step.done()
            step.now(f"{api_workers} api process(es) and the dispatcher")
            port = harness.free_port()
            processes.append(
                harness.start_serve(
                    settings, out / "api.log", port=port, dispatcher=False, workers=api_workers
                )
            )
            processes.append(harness.start_dispatcher(settings, out / "dispatcher.log"))
            target = Target(f"http://127.0.0.1:{port}", settings, processes, own_database=name)
            step.done()
            step.now("waiting for /readyz")
            harness.wait_ready(target.base_url, processes, timeout_s=READY_WAIT_S)
            step.done()
        except BaseException:
            _stop_and_remove(settings, processes)
            raise
    try:
        print(
            f"[loadtest] server on {target.base_url}: {api_workers} api process(es) + "
            f"dispatcher, database {name}, batch {settings.dispatch_batch_s:g} s",
            flush=True,
        )
        yield target
    finally:
        _stop_and_remove(settings, processes)


def _stop_and_remove(settings: Settings, processes: list[harness.Process]) -> None:
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


def locust_command(target: Target, plan: LoadPlan, out: Path) -> list[str]:
    """``locust -f loadtests/locustfile.py`` with the plan as Locust options: the command a
    Locust user would type (the operator token goes in the environment)."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        target.base_url,
        *options.locust_arguments(plan),
        "--batch-s",
        f"{target.settings.dispatch_batch_s:g}",
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--html",
        str(out / "report.html"),
        "--logfile",
        str(out / "locust.log"),
        "--loglevel",
        "WARNING",
    ]


def locust_environment(target: Target) -> dict[str, str]:
    """The server's settings the locustfile reads (``COOP_*``), and no ``COOPRIDE_*``
    plan variable: the plan on the command line is already what they said."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOPRIDE_")}
    env.update(
        {
            "COOP_OPERATOR_TOKEN": target.settings.operator_token,
            "COOP_DATABASE_URL": target.settings.database_url,
            "COOP_DISPATCH_BATCH_S": str(target.settings.dispatch_batch_s),
            "COOP_OFFER_TIMEOUT_S": str(target.settings.offer_timeout_s),
        }
    )
    return env


def run_locust(
    target: Target, plan: LoadPlan, out: Path, *, ui: bool, processes: int
) -> tuple[int, datetime, datetime]:
    """Locust in a subprocess, bounded by the plan's length; its exit status. A setting
    the locustfile stopped the test for is raised as ``SettingError``."""
    state = out / "progress.json"
    state.unlink(missing_ok=True)
    cmd = [*locust_command(target, plan, out), "--coop-progress", str(state)]
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
    deadline = time.monotonic() + plan.total_s + LOCUST_GRACE_S + (60 if ui else 0)
    with (out / "locust.out").open("wb") as log, progress.bars() as bars:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=locust_environment(target)
        )
        rollout = progress.Rollout(bars, total_s=plan.total_s, drivers=plan.drivers)
        rc: int | None = None
        try:
            while (rc := proc.poll()) is None:
                if time.monotonic() > deadline:
                    rc = -1
                    break
                rollout.update(state)
                # Redrawing while the child runs; bounded by the deadline above.
                time.sleep(PROGRESS_EVERY_S)
        finally:
            harness.stop(proc)  # timed out, or this command was interrupted
    stopped = _stopped(state)
    if stopped:
        raise SettingError(stopped)
    ended = datetime.fromtimestamp(started.timestamp() + plan.total_s, UTC)
    return rc, started, ended


def _stopped(state: Path) -> str | None:
    """The line the locustfile stopped the test with, if it did."""
    try:
        line = json.loads(state.read_text()).get("stopped")
    except (OSError, ValueError):
        return None
    return str(line) if line else None


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
    log = out / "locust.log"
    return kpi.summary(
        plan=plan,
        host=target.base_url,
        dispatch_batch_s=target.settings.dispatch_batch_s,
        trips=asyncio.run(
            kpi.trip_kpis(target.settings.database_url, run_id=plan.run_id, ended_at=ended)
        ),
        counts=kpi.locust_counts(out / "locust"),
        locust_exit_code=locust_rc,
        planned=planned_requests(plan),
        thresholds=thresholds,
        generator_cpu_saturated=log.exists()
        and LOCUST_CPU_WARNING in log.read_text(errors="replace"),
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
    # A setting that cannot work stops here, in one line, before Locust starts (the
    # locustfile checks again: a plain `locust` run has no command before it).
    preflight.check(target.base_url, plan)
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
