"""How the learned ETA model's settings were chosen, without looking at the held-out months.

Fits each candidate setting on January-March 2016 and scores it on April (the last
training month), never on May-June, which ``benchmarks/eval_eta.py`` and ``coopride eta
evaluate`` hold out. For each it prints the median and p90 absolute percentage error on
April alone and with the live correction replayed at 10 and 20 pseudo-trips of prior,
and the time to predict 16,000 pickup legs in one call (best and median of 9, one
thread, as the service runs it).

Run: ``.venv/bin/python benchmarks/select_eta.py`` (about a minute).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the packages importable
    sys.path.insert(0, str(ROOT))

from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from core.data import DataFile, data_path  # noqa: E402
from geo.eta import learned as learned_eta  # noqa: E402

Floats = npt.NDArray[np.float64]

# The settings shipped before (early stopping kept 196 of the 300 trees) and now.
CANDIDATES: dict[str, dict[str, Any]] = {
    "300 trees, rate 0.1, early stopping": {
        "max_iter": 300,
        "learning_rate": 0.1,
        "early_stopping": "auto",
    },
    "120 trees, rate 0.15 (shipped)": {},
    "100 trees of 127 leaves, rate 0.15": {"max_iter": 100, "max_leaf_nodes": 127},
}
LEGS = 16_000
RUNS = 9


def ape(predicted: Floats, actual: Floats) -> str:
    e = np.abs(predicted - actual) / actual
    return f"{np.median(e):6.2%} / {np.quantile(e, 0.9):6.2%}"


class Fixed:
    """Predictions made already, for ``learned_eta.replay``."""

    def __init__(self, predicted: Floats) -> None:
        self.predicted = predicted

    def predict_s(self, x: Floats) -> Floats:
        return self.predicted


def main() -> int:
    trips = learned_eta.read_observed_trips(data_path(DataFile.TRIPS))
    fit_on = trips.take(np.isin(trips.month, (1, 2, 3)))
    april = trips.take(trips.month == 4)
    print(f"fitted on {len(fit_on):,} trips (Jan-Mar 2016), scored on {len(april):,} (April)")
    rng = np.random.default_rng(7)
    pick = rng.choice(len(april), size=LEGS // 8, replace=False)
    lat, lng = np.repeat(april.pickup_lat[pick], 8), np.repeat(april.pickup_lng[pick], 8)
    legs = learned_eta.features(
        lat + rng.normal(0, 0.01, LEGS), lng + rng.normal(0, 0.012, LEGS), lat, lng, 90.0, 18.0
    )
    print(
        f"\n{'setting':38} {'trees':>5} {'alone':>17} {'live, prior 10':>17} "
        f"{'live, prior 20':>17} {'16k legs best/median':>21}"
    )
    for name, changes in CANDIDATES.items():
        params = {**learned_eta.REGRESSOR_PARAMS, **changes}
        regressor = HistGradientBoostingRegressor(**params, random_state=0)
        regressor.fit(fit_on.features(), np.log(fit_on.duration_s))
        predicted = np.maximum(np.exp(regressor.predict(april.features())), 30)
        live = [
            learned_eta.replay(
                Fixed(predicted),  # type: ignore[arg-type]
                april,
                correction=learned_eta.LiveCorrection(prior_trips=prior),
            )
            for prior in (10.0, 20.0)
        ]
        times = []
        with threadpool_limits(limits=1, user_api="openmp"):
            for _ in range(RUNS):
                started = time.perf_counter()
                regressor.predict(legs)
                times.append(time.perf_counter() - started)
        print(
            f"{name:38} {regressor.n_iter_:5} {ape(predicted, april.duration_s):>17} "
            f"{ape(live[0], april.duration_s):>17} {ape(live[1], april.duration_s):>17} "
            f"{min(times) * 1000:8.0f} / {statistics.median(times) * 1000:4.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
