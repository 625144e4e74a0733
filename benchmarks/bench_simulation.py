"""Greedy against batched dispatch, seeds × supply levels, scored on the street.

Replays the busiest two hours of April 2014 in NYC (Wednesday 2014-04-30, 18:00–20:00
local, every Uber pickup from ``data/nyc_uber_pickups_2014-04.csv.gz``, NYC TLC records
released to FiveThirtyEight) through ``simulation.simulator`` as ``coopride simulate``
does: the service's ETA model (``COOP_ETA_MODEL``) reading the simulated clock for the
dispatcher, a street that is as wrong as real trips (``simulation.street.Street``),
drivers with shifts.

For each seed and supply level (drivers online on average per request per minute: 1:1,
2:1, 4:1) it replays greedy, batched at fairness 0 and batched at each fairness weight
of ``--weights`` (the seeded rule's default among them), same requests, starts, shifts
and street luck. Per cell it checks the targets of issue 16 for batched at the default
weight against greedy: mean pickup time on the street ≥ 15% lower, match rate no lower,
earnings Gini lower. Then the trade-off curve: each weight's mean pickup time and Gini
against fairness 0 and greedy, over all cells.

"batched + guidance" is batched at the default weight with every idle driver following
the demand map (``simulation/guidance.py``, as ``coopride simulate --guidance``): the
forecast is built once from the four weeks before the window, drives to the advised
cell last what the street makes of them. ``--guidance-seeds`` replays it on fewer seeds
than the rest (0: not at all).

Run with ``.venv/bin/python benchmarks/bench_simulation.py`` (``--help`` for the
options); it prints figures and asserts nothing. About 6 minutes of CPU for the
default 5 seeds × 3 levels × 5 columns, 72 s of it for the guidance column (8 minutes of
wall time on a shared 2-core machine); ``--seeds 1`` for a quick look.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the packages importable
    sys.path.insert(0, str(ROOT))

from core.data import DataFile  # noqa: E402
from simulation import defaults, demand, simulator, street  # noqa: E402
from simulation.cli import street_config  # noqa: E402
from simulation.guidance import Guidance, history_rates  # noqa: E402
from simulation.kpis import Kpis  # noqa: E402
from simulation.simulator import SimConfig  # noqa: E402

DEMAND = ROOT / "data" / DataFile.PICKUPS.value
SEEDS = (defaults.DEFAULT_SEED, 1, 2, 3, 4)
# Drivers online on average per request per minute of the window.
RATIOS = (1.0, 2.0, 4.0)
DEFAULT_WEIGHT = defaults.SEEDED_FARE_RULE.fairness_weight
WEIGHTS = tuple(sorted({0.5, 1.0, DEFAULT_WEIGHT} - {0.0}))
ETA_REDUCTION_TARGET = 0.15


def guidance_config(config: SimConfig, guidance: Guidance | None) -> SimConfig | None:
    """Batched with idle drivers guided toward forecast demand (``guidance``, built once
    per benchmark). None: guidance is not replayed for this cell."""
    if guidance is None:
        return None
    return replace(config, guidance=guidance)


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    kpis: Kpis
    cpu_s: float


def fleet_size(ratio: float, requests_per_minute: float, window_s: float) -> int:
    """Headcount whose mean number online over the window is ``ratio`` × the requests
    per minute (shifts put ``expected_online_share`` of the fleet online at a time)."""
    return round(ratio * requests_per_minute / street.expected_online_share(window_s))


def replay(requests: list[demand.RideRequest], drivers: int, base: SimConfig, name: str) -> Run:
    starts = demand.driver_starts(requests, drivers, seed=base.seed)
    started = time.process_time()
    result = simulator.simulate(requests, starts, base)
    return Run(name, result.kpis, time.process_time() - started)


def fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def row(run: Run) -> str:
    k = run.kpis
    return (
        f"    {run.name:<22} {k.matched:>5}/{k.requests:<5} {k.match_rate:6.1%} "
        f"{fmt(k.pickup_eta_mean_s):>7} {fmt(k.pickup_estimate_mean_s):>7} "
        f"{fmt(k.eta_error, 3):>6} {fmt(k.rider_wait_mean_s):>7} {k.driver_utilisation:6.1%} "
        f"{k.earnings_gini:6.4f} {k.earnings_per_online_hour_p10_cents / 100:>7.2f} "
        f"{k.earnings_per_online_hour_p90_cents / 100:>7.2f} {run.cpu_s:6.1f}"
    )


HEADER = (
    f"    {'policy':<22} {'matched':>11} {'rate':>6} {'pickup':>7} {'est.':>7} "
    f"{'error':>6} {'wait':>7} {'util':>6} {'gini':>6} {'$/h p10':>7} {'$/h p90':>7} "
    f"{'cpu s':>6}\n"
    f"    {'':<22} {'':>11} {'':>6} {'mean s':>7} {'mean s':>7} {'':>6} {'mean s':>7}"
)


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="how many of the seeds")
    parser.add_argument(
        "--ratios", default=",".join(str(r) for r in RATIOS), help="supply levels, comma-separated"
    )
    parser.add_argument(
        "--guidance-seeds",
        type=int,
        default=len(SEEDS),
        help="how many of the seeds also replay batched + guidance (0: none)",
    )
    parser.add_argument(
        "--weights",
        default=",".join(str(w) for w in WEIGHTS),
        help="fairness weights beside 0, comma-separated",
    )
    args = parser.parse_args()
    seeds = SEEDS[: args.seeds]
    ratios = [float(r) for r in args.ratios.split(",")]
    weights = [float(w) for w in args.weights.split(",") if w.strip()]
    default_weight = DEFAULT_WEIGHT if DEFAULT_WEIGHT in weights or DEFAULT_WEIGHT == 0 else None

    wall0, cpu0 = time.perf_counter(), time.process_time()
    rows = demand.read_demand(DEMAND)
    window_s = (rows.end - rows.start).total_seconds()
    per_minute = len(rows) / (window_s / 60)
    base = SimConfig(shift_end_s=window_s, **street_config(rows.start.timestamp()))
    guidance: Guidance | None = None
    if args.guidance_seeds > 0:
        # As ``coopride simulate --guidance``: only the weeks before the window.
        rates, weeks = history_rates(DEMAND, before=rows.start, resolution=base.resolution)
        guidance = Guidance(rates, rows.start, weeks=weeks)
    print(
        f"Demand: {len(rows):,} pickups, {rows.start:%a %Y-%m-%d %H:%M}–{rows.end:%H:%M} "
        f"{rows.start.tzname()} ({per_minute:.1f} a minute; drop-offs drawn). Dispatcher: "
        f"{type(base.eta).__name__} on the simulated clock; street: its held-out residuals; "
        f"shifts {street.SHIFT_HOURS[0]:.0f}-{street.SHIFT_HOURS[1]:.0f} h "
        f"({street.expected_online_share(window_s):.0%} of the fleet online at a time). "
        f"The co-op's default fairness weight: {DEFAULT_WEIGHT}."
    )

    # cells[(ratio, seed)][name] = Run
    cells: dict[tuple[float, int], dict[str, Run]] = {}
    for ratio in ratios:
        n = fleet_size(ratio, per_minute, window_s)
        for seed in seeds:
            requests = demand.build_requests(rows, seed=seed)
            cfg = replace(base, seed=seed)
            runs: dict[str, Run] = {}
            runs["greedy"] = replay(requests, n, replace(cfg, policy="greedy"), "greedy")
            runs["0"] = replay(requests, n, replace(cfg, policy="batched"), "batched, fairness 0")
            for w in weights:
                runs[str(w)] = replay(
                    requests,
                    n,
                    replace(cfg, policy="batched", fairness_weight=w),
                    f"batched, fairness {w}",
                )
            guided = guidance_config(
                replace(cfg, policy="batched", fairness_weight=DEFAULT_WEIGHT),
                guidance if seed in seeds[: args.guidance_seeds] else None,
            )
            if guided is not None:
                runs["guidance"] = replay(requests, n, guided, "batched + guidance")
            cells[(ratio, seed)] = runs
            online = runs["greedy"].kpis.drivers_online_mean
            print(f"\n  {ratio:g}:1, seed {seed}: {n} drivers, {online:.0f} online on average")
            print(HEADER)
            for run in runs.values():
                print(row(run), flush=True)
            if "guidance" not in runs:
                print("    batched + guidance      not replayed (--guidance-seeds)")

    print("\nTargets per cell: batched at the default weight against greedy")
    key = "0" if not DEFAULT_WEIGHT else str(DEFAULT_WEIGHT)
    if default_weight is None:
        print(f"  (the default weight {DEFAULT_WEIGHT} was not replayed: pass it in --weights)")
        key = "0"
    print(f"  {'cell':<14} {'pickup':>18} {'match rate':>22} {'gini':>22}")
    totals = [0, 0, 0]
    for (ratio, seed), runs in cells.items():
        g, b = runs["greedy"].kpis, runs[key].kpis
        assert g.pickup_eta_mean_s is not None and b.pickup_eta_mean_s is not None
        cut = 1 - b.pickup_eta_mean_s / g.pickup_eta_mean_s
        checks = (
            cut >= ETA_REDUCTION_TARGET,
            b.match_rate >= g.match_rate,
            b.earnings_gini < g.earnings_gini,
        )
        totals = [t + ok for t, ok in zip(totals, checks, strict=True)]
        print(
            f"  {ratio:g}:1 seed {seed:<8} {cut:>7.1%} lower {met(checks[0]):>7} "
            f"{b.match_rate:6.1%} vs {g.match_rate:6.1%} {met(checks[1]):>7} "
            f"{b.earnings_gini:.4f} vs {g.earnings_gini:.4f} {met(checks[2]):>7}"
        )
    n_cells = len(cells)
    print(
        f"  met in {totals[0]}/{n_cells} (pickup ≥ {ETA_REDUCTION_TARGET:.0%} lower), "
        f"{totals[1]}/{n_cells} (match rate), {totals[2]}/{n_cells} (Gini lower)"
    )

    print("\nTrade-off: each weight over all cells (means; pickup and Gini vs fairness 0)")
    print(
        f"  {'weight':<8} {'pickup s':>9} {'vs w=0':>8} {'gini':>7} {'vs w=0':>8} "
        f"{'vs greedy':>10} {'Gini < greedy':>14}"
    )
    for name in ["greedy", "0", *(str(w) for w in weights)]:
        eta = np.mean([c[name].kpis.pickup_eta_mean_s or 0 for c in cells.values()])
        eta0 = np.mean([c["0"].kpis.pickup_eta_mean_s or 0 for c in cells.values()])
        gini = np.mean([c[name].kpis.earnings_gini for c in cells.values()])
        gini0 = np.mean([c["0"].kpis.earnings_gini for c in cells.values()])
        ginig = np.mean([c["greedy"].kpis.earnings_gini for c in cells.values()])
        below = sum(
            c[name].kpis.earnings_gini < c["greedy"].kpis.earnings_gini for c in cells.values()
        )
        print(
            f"  {name:<8} {eta:9.1f} {eta / eta0 - 1:+8.1%} {gini:7.4f} {gini - gini0:+8.4f} "
            f"{gini - ginig:+10.4f} {below:>8}/{n_cells}"
        )
    guided_cells = {c: runs for c, runs in cells.items() if "guidance" in runs}
    if guided_cells:
        print(
            f"\nGuidance: batched + guidance against batched at the default weight and greedy, "
            f"{len(guided_cells)} cell(s)"
        )
        print(
            f"  {'cell':<14} {'match rate':>24} {'pickup mean s':>22} {'gini':>22} {'$/h p10':>18}"
        )
        for (ratio, seed), runs in guided_cells.items():
            g, b, gd = runs["greedy"].kpis, runs[key].kpis, runs["guidance"].kpis
            print(
                f"  {ratio:g}:1 seed {seed:<8} {gd.match_rate:6.1%} vs {b.match_rate:6.1%} "
                f"/ {g.match_rate:6.1%} {fmt(gd.pickup_eta_mean_s):>6} vs "
                f"{fmt(b.pickup_eta_mean_s):>6} / {fmt(g.pickup_eta_mean_s):>6} "
                f"{gd.earnings_gini:.4f} vs {b.earnings_gini:.4f} / {g.earnings_gini:.4f} "
                f"{gd.earnings_per_online_hour_p10_cents / 100:6.2f} vs "
                f"{b.earnings_per_online_hour_p10_cents / 100:6.2f}"
            )
        n_guided = len(guided_cells)
        trios = [(r["guidance"].kpis, r[key].kpis, r["greedy"].kpis) for r in guided_cells.values()]
        above = sum(gd.match_rate > b.match_rate for gd, b, _ in trios)
        fairer = sum(gd.earnings_gini < b.earnings_gini for gd, b, _ in trios)
        fairer_than_greedy = sum(gd.earnings_gini < g.earnings_gini for gd, _, g in trios)
        print(
            f"  match rate above batched in {above}/{n_guided}; Gini below batched in "
            f"{fairer}/{n_guided}, below greedy in {fairer_than_greedy}/{n_guided}"
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"\nTotal: {time.perf_counter() - wall0:.0f} s wall, "
        f"{time.process_time() - cpu0:.0f} s CPU (user {usage.ru_utime:.0f} s)"
    )


if __name__ == "__main__":
    main()
