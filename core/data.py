"""The real data the project ships and reads: where it is, and a clear error when it is not.

The files live in the repository's own ``data/`` folder, with their provenance and terms
in ``data/README.md``; a wheel installs the same files under
``<prefix>/share/coopride/data``. ``COOP_DATA_DIR`` points at another folder that holds
them (a co-op's own demand, a newer road extract, a refitted model).

A missing file is never quietly replaced by something else: :func:`data_path` raises
:class:`MissingDataError`, whose message is one line naming the file, where it was
looked for and the setting that moves it, and the CLI prints that line instead of a
stack trace.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

from core.settings import get_settings

# A source checkout (and an editable install) reads the repository's data/; an installed
# wheel reads the copy its data-files put under the environment's prefix.
CHECKOUT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
INSTALLED_DATA_DIR = Path(sys.prefix) / "share" / "coopride" / "data"


class DataFile(StrEnum):
    """Every file the project reads from its data folder (data/README.md has each one's
    source, shape and terms)."""

    # A month of real ride-hailing demand (every Uber pickup in NYC, April 2014): the
    # demo's riders, the simulator's and the load test's default replay.
    PICKUPS = "nyc_uber_pickups_2014-04.csv.gz"
    # The Midtown Manhattan OpenStreetMap extract (ODbL): the road-network ETA model.
    ROADS = "manhattan_midtown_osm_2025-01-25.osm.pbf"
    # 72,597 real NYC yellow-cab trips with observed durations (2016-01 to 2016-06).
    TRIPS = "nyc_taxi_trips_2016-01_2016-06.csv.gz"
    # The calibrated ETA model's fitted parameters (benchmarks/calibrate_eta.py).
    ETA_CALIBRATION = "eta_calibration.json"
    # The learned ETA model (`coopride eta fit` on the 2016 trips' months 1-4).
    ETA_MODEL = "eta_model.pkl"
    # The same model's trees as plain arrays (geo/eta/trees.py), written beside it by
    # `coopride eta fit`: what api processes quote with, without scikit-learn.
    ETA_TREES = "eta_model.npz"


class MissingDataError(FileNotFoundError):
    """A data file the command needs is not there. ``str()`` is the one line to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def data_dir() -> Path:
    """The folder data files are read from: ``COOP_DATA_DIR`` when set, else the data the
    project ships (the checkout's ``data/``, or the wheel's installed copy)."""
    configured = get_settings().data_dir
    if configured is not None:
        return configured
    if CHECKOUT_DATA_DIR.is_dir():
        return CHECKOUT_DATA_DIR
    return INSTALLED_DATA_DIR


def data_path(file: DataFile) -> Path:
    """The path of ``file`` in :func:`data_dir`; :class:`MissingDataError` if it is not
    there."""
    folder = data_dir()
    path = folder / file.value
    if not path.is_file():
        where = (
            "COOP_DATA_DIR"
            if get_settings().data_dir is not None
            else "the project's data/ folder (set COOP_DATA_DIR to use another)"
        )
        raise MissingDataError(
            f"data file {file.value} not found in {folder} ({where}); "
            "data/README.md lists every file and where it comes from"
        )
    return path


def given_file(path: Path, *, option: str) -> Path:
    """``path``, named on the command line by ``option``, if it is a file; otherwise the
    same one-line :class:`MissingDataError` as a missing data file."""
    if not path.is_file():
        raise MissingDataError(f"{option} {path}: no such file")
    return path
