"""``coopride eta fit`` and ``coopride eta evaluate`` as an operator runs them: a file of
observed trips in, a model out, and its error on trips outside its training months."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

from core.data import DataFile, data_path
from geo.eta import learned
from server.harness import ROOT


def _coopride(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _sample(path: Path) -> None:
    """January and February of the real trips, every fourth row: a quick fit."""
    with gzip.open(data_path(DataFile.TRIPS), "rt") as f, path.open("w") as out:
        out.write(f.readline())
        for n, line in enumerate(f):
            if line.startswith(("2016-01", "2016-02")) and n % 4 == 0:
                out.write(line)


def test_fit_then_evaluate_on_the_months_it_held_out(tmp_path: Path) -> None:
    trips, model = tmp_path / "trips.csv", tmp_path / "model.pkl"
    _sample(trips)
    fitted = _coopride("eta", "fit", "--trips", str(trips), "--months", "1", "--out", str(model))
    assert fitted.returncode == 0, fitted.stderr
    assert "\x1b[" not in fitted.stderr  # no progress bar into a pipe
    meta = learned.LearnedEta.load(model).meta
    assert meta["months"] == [1] and meta["source"] == "trips.csv"
    assert meta["held_out"]["n"] > 1000  # February
    scored = _coopride("eta", "evaluate", "--trips", str(trips), "--model", str(model), "--json")
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert set(result) >= {"n", "median_ape", "p90_ape", "baseline"}
    assert result["n"] == meta["held_out"]["n"]  # only the months it never saw
    assert 0 < result["median_ape"] < result["baseline"]["median_ape"]
    assert result["median_ape"] <= result["p90_ape"]
    # The same file and seed fit the same model.
    again = tmp_path / "again.pkl"
    assert (
        _coopride(
            "eta", "fit", "--trips", str(trips), "--months", "1", "--out", str(again)
        ).returncode
        == 0
    )
    x = learned.read_observed_trips(trips).features()[:500]
    a, b = learned.LearnedEta.load(model), learned.LearnedEta.load(again)
    assert (a.predict_s(x) == b.predict_s(x)).all()


def test_a_file_without_durations_is_one_clear_line(tmp_path: Path) -> None:
    pickups = tmp_path / "pickups.csv"
    pickups.write_text("pickup_datetime,lat,lon,base\n2014-04-01 00:00:00,40.7,-74.0,B\n")
    result = _coopride("eta", "fit", "--trips", str(pickups), "--out", str(tmp_path / "m.pkl"))
    assert result.returncode != 0
    assert "duration_s" in result.stderr and "Traceback" not in result.stderr
    missing = _coopride("eta", "evaluate", "--trips", str(tmp_path / "nowhere.csv"))
    assert missing.returncode == 2 and "--trips" in missing.stderr
    assert "Traceback" not in missing.stderr
