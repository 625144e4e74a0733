"""``coopride loadtest --find-capacity``: step the city up until a step misses a threshold,
and print the headline table (``docs/loadtesting.md``)."""

from __future__ import annotations

import argparse
import math
import os
import secrets
from pathlib import Path
from typing import Any

from loadtests.kpi import Thresholds
from loadtests.plan import LoadPlan
from loadtests.run import NYC_PEAK_RPM, Target, one_run

# Capacity search: each step this many times the previous rate.
CAPACITY_FACTOR = 1.5


def capacity_steps(args: argparse.Namespace) -> list[tuple[int, float]]:
    """(drivers, requests a minute) per step: ``--steps`` as given, else from
    ``--start-rpm`` up by ``CAPACITY_FACTOR`` with ``--drivers-per-rpm`` drivers."""
    if args.steps:
        steps = []
        for part in args.steps.split(","):
            drivers, rpm = part.split(":")
            steps.append((int(drivers), float(rpm)))
        return steps
    rpm = args.start_rpm
    out = []
    for _ in range(args.max_steps):
        out.append((max(1, math.ceil(rpm * args.drivers_per_rpm)), round(rpm, 1)))
        rpm *= CAPACITY_FACTOR
    return out


def capacity_table(rows: list[dict[str, Any]], *, batch_s: float) -> str:
    lines = [
        "| online drivers | requests/min (hold → surge) | requests made / planned | request→offer "
        "p50 / p95 / p99 (s) | offer→accept p50 (s) | completed | errors | "
        f"p99 ≤ {batch_s + 1:g} s and 0 errors |",
        "|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        o = r["request_to_offer_s"]
        rpm = r["plan"]["requests_per_minute"]
        lines.append(
            f"| {r['drivers']} | {rpm:g} → {rpm * r['plan']['surge_factor']:g} | "
            f"{r['requests']} / {r['requests_planned']:.0f} | "
            f"{o['p50']} / {o['p95']} / {o['p99']} | "
            f"{r['offer_to_accept_s']['p50']} | {r['completed']} | {r['locust']['failures']} | "
            f"{'holds' if r['passed'] else 'missed: ' + '; '.join(r['missed'])}"
            f"{' (Locust above 90 % CPU)' if r.get('generator_cpu_saturated') else ''} |"
        )
    return "\n".join(lines)


def find_capacity(
    target: Target, base_plan: LoadPlan, out: Path, args: argparse.Namespace, th: Thresholds
) -> int:
    rows = []
    for k, (drivers, rpm) in enumerate(capacity_steps(args)):
        plan = base_plan.with_(
            drivers=drivers,
            requests_per_minute=rpm,
            trace=False,
            run_id=f"lt-{secrets.token_hex(4)}",
        )
        summary = one_run(
            target,
            plan,
            out / f"step{k + 1:02d}",
            thresholds=th,
            ui=False,
            processes=args.processes,
        )
        rows.append(summary)
        if not summary["passed"]:
            break
    table = capacity_table(rows, batch_s=target.settings.dispatch_batch_s)
    held = [r for r in rows if r["passed"]]
    best = held[-1] if held else None
    lines = [
        f"Capacity on {os.cpu_count()} cores, {args.api_workers} api process(es) + dispatcher "
        f"+ Locust on the same machine; each step {base_plan.total_s:g} s, drivers move "
        f"{base_plan.drive_speedup:g}× street speed.",
        "",
        table,
        "",
        (
            f"Largest city held: {best['drivers']} online drivers at "
            f"{best['plan']['requests_per_minute']:g} requests/min "
            f"({best['plan']['requests_per_minute'] / NYC_PEAK_RPM:.0%} of the NYC yellow-cab "
            f"peak, ~{NYC_PEAK_RPM}/min), with a surge to "
            f"{best['plan']['requests_per_minute'] * best['plan']['surge_factor']:g}/min for "
            f"{base_plan.phase('surge_s'):g} s."
            if best
            else "No step held."
        ),
    ]
    text = "\n".join(lines)
    (out / "capacity.md").write_text(text + "\n")
    print(text, flush=True)
    return 0 if best else 1


# -- command line ----------------------------------------------------------------------------
