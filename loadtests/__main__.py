"""``python -m loadtests``, which ``coopride loadtest`` hands over to: a bounded city
rollout under Locust (``docs/loadtesting.md``).

A program of its own, so that the service (``server``) never imports the load test: the
``coopride`` command only replaces itself with this one.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from core.settings import get_settings
from loadtests.capacity import find_capacity
from loadtests.plan import LoadPlan
from loadtests.run import ROOT, Target, Thresholds, local_only, one_run, started_server


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``coopride loadtest``'s options (``server/cli.py`` adds them to its subparser)."""
    d = LoadPlan()
    p.add_argument("--config", help="JSON file of plan settings (LoadPlan field names)")
    p.add_argument("--host", help="target a running server (127.0.0.1 only)")
    p.add_argument("--api-workers", type=int, default=1, help="api processes to start")
    p.add_argument("--batch-s", type=float, help="the started server's dispatch window")
    p.add_argument("--processes", type=int, default=1, help="Locust processes (-1: one per core)")
    p.add_argument("--out", help="output directory (default artifacts/loadtest-<time>)")
    p.add_argument("--ui", action="store_true", help="run Locust's web UI (on 127.0.0.1)")
    p.add_argument("--duration", type=float, dest="duration_s", help=f"seconds ({d.duration_s:g})")
    p.add_argument("--drivers", type=int, help=f"online drivers at the target ({d.drivers})")
    p.add_argument(
        "--requests-per-minute", type=float, help=f"base arrival rate ({d.requests_per_minute:g})"
    )
    p.add_argument("--surge-factor", type=float, help=f"surge × base rate ({d.surge_factor:g})")
    for phase in ("driver-ramp-s", "rider-ramp-s", "hold-s", "surge-s"):
        p.add_argument(f"--{phase}", type=float, help="phase length (default: share of duration)")
    p.add_argument("--trace", action="store_true", default=None, help="replay the demand's rate")
    p.add_argument("--speedup", type=float, help="trace replay speed (× real)")
    p.add_argument(
        "--demand",
        help="demand file (default: data/nyc_uber_pickups_2014-04.csv.gz; see data/README.md)",
    )
    p.add_argument("--trace-start", help="local time in the file where the replay starts")
    p.add_argument("--area", choices=("manhattan", "all"))
    p.add_argument("--rider-pool", type=int, help="rider phones (default: from the peak rate)")
    p.add_argument("--decline-rate", type=float)
    p.add_argument("--cancel-rate", type=float)
    p.add_argument("--drive-speedup", type=float, help=f"× street speed ({d.drive_speedup:g})")
    p.add_argument("--seed", type=int)
    p.add_argument("--operator-token", help="with --host (default: COOP_OPERATOR_TOKEN)")
    p.add_argument("--max-p99-offer-s", type=float, help="threshold (default: batch + 1 s)")
    p.add_argument("--max-error-rate", type=float, default=0.0, help="threshold (0)")
    p.add_argument("--find-capacity", action="store_true", help="step the city up; headline table")
    p.add_argument("--steps", help="capacity steps DRIVERS:RPM,... (default: geometric)")
    p.add_argument("--start-rpm", type=float, default=20.0)
    p.add_argument("--drivers-per-rpm", type=float, default=2.5)
    p.add_argument("--max-steps", type=int, default=8)


def build_plan(args: argparse.Namespace) -> LoadPlan:
    values: dict[str, Any] = {}
    if args.config:
        values.update(json.loads(Path(args.config).read_text()))
    names = {f.name for f in fields(LoadPlan)}
    for name in names:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    values.setdefault("run_id", f"lt-{secrets.token_hex(4)}")
    return LoadPlan.from_mapping(values)


def main(args: argparse.Namespace) -> int:
    base = get_settings()
    try:
        plan = build_plan(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"[loadtest] bad plan: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else ROOT / "artifacts" / f"loadtest-{stamp}"
    out.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def target() -> Iterator[Target]:
        if args.host:
            token = args.operator_token or base.operator_token
            yield Target(
                local_only(args.host), base.model_copy(update={"operator_token": token}), []
            )
        else:
            with started_server(
                base, api_workers=args.api_workers, batch_s=args.batch_s, out=out
            ) as t:
                yield t

    try:
        with target() as t:
            plan = plan.with_(
                operator_token=t.settings.operator_token,
                offer_timeout_s=t.settings.offer_timeout_s,
            )
            th = Thresholds(
                max_p99_request_to_offer_s=(
                    args.max_p99_offer_s
                    if args.max_p99_offer_s is not None
                    else t.settings.dispatch_batch_s + 1.0
                ),
                max_error_rate=args.max_error_rate,
            )
            if args.find_capacity:
                return find_capacity(t, plan, out, args, th)
            summary = one_run(t, plan, out, thresholds=th, ui=args.ui, processes=args.processes)
            return 0 if summary["passed"] else 1
    except (RuntimeError, OSError, asyncpg.PostgresError, httpx.HTTPError) as exc:
        print(f"[loadtest] run failed: {exc}", file=sys.stderr)
        return 2


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="coopride loadtest",
        description="a city rollout under Locust, bounded in time (docs/loadtesting.md)",
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
