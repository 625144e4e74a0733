"""geo.eta.trees: the learned model's trees as plain arrays give scikit-learn's numbers,
and an api process quotes with them without importing scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data import DataFile, data_path
from geo.eta import learned as L
from geo.eta import load_eta_model
from geo.eta.learned import LearnedEtaModel
from geo.eta.trees import TreeTables
from geo.point import LatLng
from server.harness import ROOT


@pytest.fixture(scope="module")
def fitted() -> L.LearnedEta:
    return L.LearnedEta.load()


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    trips = L.read_observed_trips(data_path(DataFile.TRIPS))
    return trips.take(trips.month >= 5).features()[:4000]


def test_the_tables_predict_what_scikit_learn_predicts(
    fitted: L.LearnedEta, features: np.ndarray
) -> None:
    tables = TreeTables.from_regressor(fitted.regressor, fitted.meta)
    assert len(tables.roots) == fitted.regressor.n_iter_
    np.testing.assert_allclose(
        tables.predict_log(features), fitted.regressor.predict(features), rtol=0, atol=1e-9
    )


def test_the_shipped_tables_are_the_shipped_models_trees(
    fitted: L.LearnedEta, features: np.ndarray
) -> None:
    shipped = TreeTables.load(data_path(DataFile.ETA_TREES))
    assert shipped.meta["fitted_at"] == fitted.meta["fitted_at"]
    np.testing.assert_allclose(shipped.predict_s(features), fitted.predict_s(features), rtol=1e-12)


def test_saving_the_model_writes_both_files_and_they_round_trip(
    fitted: L.LearnedEta, features: np.ndarray, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "eta_model.pkl")
    again = TreeTables.load(tmp_path / "eta_model.npz")
    assert again.meta == fitted.meta
    np.testing.assert_allclose(again.predict_s(features[:50]), fitted.predict_s(features[:50]))


def test_a_leg_at_a_time_model_quotes_like_the_batch_model() -> None:
    batch = load_eta_model("learned")
    one = load_eta_model("learned", leg_at_a_time=True)
    assert isinstance(batch, LearnedEtaModel) and isinstance(one, LearnedEtaModel)
    assert isinstance(one.learned, TreeTables)
    times_square, union_square = LatLng(40.7580, -73.9855), LatLng(40.7359, -73.9911)
    assert one.leg(times_square, union_square) == batch.leg(times_square, union_square)
    origins = [LatLng(40.70 + k / 100, -74.0) for k in range(10)]
    destinations = [LatLng(40.75, -73.98 + k / 200) for k in range(10)]
    assert one.seconds_many(origins, destinations) == batch.seconds_many(origins, destinations)


def test_the_leg_at_a_time_model_does_not_import_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from geo.eta import load_eta_model\n"
        "from geo.point import LatLng\n"
        "m = load_eta_model('learned', leg_at_a_time=True)\n"
        "print(m.seconds(LatLng(40.758, -73.9855), LatLng(40.7359, -73.9911)))\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'sklearn'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert int(out[0]) > 60
    assert out[1] == "[]"


def test_tables_of_another_format_are_refused(fitted: L.LearnedEta, tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    TreeTables.from_regressor(fitted.regressor, {}).save(path)
    with np.load(path) as f:
        arrays = dict(f)
    arrays["format"] = np.array(99)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="format 99"):
        TreeTables.load(path)
