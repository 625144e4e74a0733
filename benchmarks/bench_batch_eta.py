"""The whole dispatch batch with each ETA model: does the learned model fit the budget?

Plans the 2,000 requests × 4,000 drivers batch of ``benchmarks/bench_solver.py`` (real
April 2014 pickups, ``benchmarks.citygen``) as the dispatcher does, both passes
(``bench_solver.two_passes``: the candidate graph with every leg's ETA in one call, the
first pass, the second search and pass), once per ETA model, and prints the median
wall and CPU time of the whole batch over several runs, with the graph's share. The
budget is 250 ms. The straight-line model is the baseline measured in the same run.

Run: ``.venv/bin/python benchmarks/bench_batch_eta.py`` (under a minute).
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import citygen  # noqa: E402
from benchmarks.bench_solver import SEED, two_passes  # noqa: E402
from geo.eta import DEFAULT_MODEL, load_eta_model  # noqa: E402

REQUESTS, DRIVERS = 2_000, 4_000
RUNS = 7


def main() -> int:
    pickups = citygen.load_pickups()
    city = citygen.make_city(pickups, requests=REQUESTS, drivers=DRIVERS, seed=SEED)
    models = {
        "straight (baseline)": DEFAULT_MODEL,
        "calibrated": load_eta_model("calibrated"),
        "learned": load_eta_model("learned"),
    }
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{REQUESTS:,} requests × {DRIVERS:,} drivers, batched, both passes; median of "
        f"{RUNS} (after one warm-up); {os.cpu_count()} CPUs, load average {load}"
    )
    print(
        f"{'ETA model':22} {'matched':>8} {'legs':>7} {'graph+ETAs':>11} {'batch wall':>11} "
        f"{'batch CPU':>10}"
    )
    for name, eta in models.items():
        two_passes(city, "batched", eta=eta)  # warm-up: imports, caches
        runs = [two_passes(city, "batched", eta=eta) for _ in range(RUNS)]
        last = runs[-1]
        legs = sum(len(r.candidates) for r in last.first.requests)
        print(
            f"{name:22} {len(last.both.assignments):8,} {legs:7,} "
            f"{statistics.median(r.graph_ms for r in runs):8.1f} ms "
            f"{statistics.median(r.total_ms for r in runs):8.1f} ms "
            f"{statistics.median(r.cpu_ms for r in runs):7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
