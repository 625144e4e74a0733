"""``coopride simulate``: replay a demand file and print the KPIs (the flags are declared
in ``server/cli.py``, their defaults in ``simulation.defaults``).

Progress goes to stderr: a bar of the simulated minutes replayed on a terminal
(``core.progress``), else a line at each tenth of the requests."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from core import progress
from core.fare_terms import FareRuleTerms
from core.settings import Settings
from geo.point import LatLng
from simulation.defaults import (
    DEFAULT_BATCH_S,
    DEFAULT_MAX_PICKUP_ETA_S,
    DEFAULT_OFFER_ACCEPT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_SEED,
    SEEDED_FARE_RULE,
)
from simulation.demand import (
    RideRequest,
    build_requests,
    driver_starts,
    parse_local_time,
    read_demand,
)
from simulation.guidance import Guidance, history_rates
from simulation.kpis import SimResult
from simulation.simulator import SimConfig, simulate


def street_config(start_epoch_s: float) -> dict[str, Any]:
    """What ``coopride simulate`` replays on (``SimConfig`` fields): the service's ETA
    model (``COOP_ETA_MODEL``, the calibrated one by default) reading the simulated
    clock, a street as wrong as real trips (the learned model's held-out residuals,
    whichever model decides), and drivers with shifts. Loads the model and the trips
    file: a few seconds."""
    from geo.eta import load_eta_model
    from simulation.street import Street

    mode = Settings.model_fields["eta_model"].default
    mode = os.environ.get("COOP_ETA_MODEL", mode)
    return {
        "eta": load_eta_model(mode),
        "street": Street.learned(),
        "shifts": True,
        "start_epoch_s": start_epoch_s,
    }


def _parse_fare(text: str | None) -> FareRuleTerms:
    if text is None:
        return SEEDED_FARE_RULE
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError("--fare takes BASE,PER_KM,PER_MINUTE,MINIMUM in whole cents")
    base, per_km, per_minute, minimum = (int(p) for p in parts)
    return replace(
        SEEDED_FARE_RULE,
        version=0,
        base_cents=base,
        per_km_cents=per_km,
        per_minute_cents=per_minute,
        minimum_cents=minimum,
    )


def _arg(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def run_cli(args: argparse.Namespace) -> int:
    """``coopride simulate``: replay the file, print the KPIs (one JSON object on stdout
    with ``--json``); progress goes to stderr. Returns the exit status."""
    try:
        start = parse_local_time(args.start) if getattr(args, "start", None) else None
        end = parse_local_time(args.end) if getattr(args, "end", None) else None
        seed = int(_arg(args, "seed", DEFAULT_SEED))
        config = SimConfig(
            policy=args.policy,
            fairness_weight=float(_arg(args, "fairness", 0.0)),
            batch_s=float(_arg(args, "batch_s", DEFAULT_BATCH_S)),
            offer_accept_s=float(_arg(args, "offer_accept_s", DEFAULT_OFFER_ACCEPT_S)),
            decline_rate=float(_arg(args, "decline_rate", 0.0)),
            max_pickup_eta_s=int(_arg(args, "max_pickup_eta_s", DEFAULT_MAX_PICKUP_ETA_S)),
            request_timeout_s=float(_arg(args, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S)),
            fare=_parse_fare(getattr(args, "fare", None)),
            seed=seed,
        )
        speedup = float(_arg(args, "speedup", 1.0))
        if not speedup > 0:
            raise ValueError("--speedup must be positive")
        rows = read_demand(Path(args.demand), start=start, end=end)
        config = replace(config, **street_config(rows.start.timestamp()))
        requests = build_requests(rows, seed=seed, eta=config.eta)
        if int(args.drivers) < 1:
            raise ValueError("--drivers must be at least 1")
        starts = driver_starts(requests, int(args.drivers), seed=seed)
        compliance = float(_arg(args, "guidance_compliance", 1.0))
        if getattr(args, "guidance", False):
            # Only the weeks before the window: the replay never sees its own future.
            rates, weeks = history_rates(
                Path(args.demand), before=rows.start, resolution=config.resolution
            )
            guidance = Guidance(rates, rows.start, compliance=compliance, weeks=weeks)
            config = replace(config, guidance=guidance)
        elif not 0.0 <= compliance <= 1.0:
            raise ValueError("--guidance-compliance must be in [0, 1]")
    except (ValueError, OSError) as exc:  # MissingDataError is an OSError
        print(f"coopride simulate: {exc}", file=sys.stderr)
        return 2
    if config.policy == "greedy" and config.fairness_weight > 0:
        print("[simulate] note: greedy ignores --fairness, as the live one does", file=sys.stderr)
    window_s = (rows.end - rows.start).total_seconds()
    config = replace(config, shift_end_s=window_s)
    print(
        f"[simulate] {len(requests)} requests from {rows.start:%Y-%m-%d %H:%M} to "
        f"{rows.end:%Y-%m-%d %H:%M} ({rows.start.tzname()}), {len(starts)} drivers, "
        f"policy {config.policy}, fairness {config.fairness_weight}, seed {seed}",
        file=sys.stderr,
        flush=True,
    )
    if config.guidance is not None:
        print(
            f"[simulate] guidance: forecast from the {config.guidance.weeks} week(s) before "
            f"the window ({sum(len(c) for c in config.guidance.rates.values())} cell-hours), "
            f"compliance {config.guidance.compliance}",
            file=sys.stderr,
            flush=True,
        )

    # No bar under --json: its reader is a program.
    result = _replay(requests, starts, config, window_s, bar=not getattr(args, "json", False))
    out: dict[str, Any] = asdict(result.kpis)
    out["scenario"] = {
        "demand": str(args.demand),
        "start": rows.start.isoformat(),
        "end": rows.end.isoformat(),
        "policy": config.policy,
        "drivers": len(starts),
        "fairness_weight": config.fairness_weight,
        "seed": seed,
        "batch_s": config.batch_s,
        "offer_accept_s": config.offer_accept_s,
        "decline_rate": config.decline_rate,
        "max_pickup_eta_s": config.max_pickup_eta_s,
        "request_timeout_s": config.request_timeout_s,
        "fare_cents": [
            config.fare.base_cents,
            config.fare.per_km_cents,
            config.fare.per_minute_cents,
            config.fare.minimum_cents,
        ],
        "speedup": speedup,
        "guidance": config.guidance is not None,
        "guidance_compliance": None if config.guidance is None else config.guidance.compliance,
        "clock": "simulated",
        "eta_model": type(config.eta).__name__,
        "street": "held-out residuals of the learned model; real durations where known",
        "shifts": config.shifts,
    }
    if getattr(args, "json", False):
        print(json.dumps(out, allow_nan=False))
    else:
        for key, value in out.items():
            if key != "scenario":
                print(f"{key:<40} {value}")
    return 0


def _replay(
    requests: list[RideRequest],
    starts: list[LatLng],
    config: SimConfig,
    window_s: float,
    *,
    bar: bool,
) -> SimResult:
    """``simulate`` with its progress on stderr: on a terminal, a bar of the window's
    simulated minutes (moved once per simulated minute at most, which costs nothing
    measurable); elsewhere a line at each tenth of the requests."""
    if not (bar and progress.shown()):

        def report(arrived: int, total: int) -> None:
            print(f"[simulate] {arrived}/{total} requests replayed", file=sys.stderr, flush=True)

        return simulate(requests, starts, config, progress=report)
    minutes = window_s / 60
    shown_s = 0.0
    with progress.bar("[simulate] replaying", total=minutes, unit="simulated min") as advance:

        def clock(now_s: float) -> None:
            nonlocal shown_s
            upto = min(now_s, window_s)
            if upto > shown_s:
                advance((upto - shown_s) / 60)
                shown_s = upto

        result = simulate(requests, starts, config, clock=clock)
        # The last trips end after the window, or every rider was served before it did.
        clock(window_s)
    return result
