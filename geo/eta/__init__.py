"""Travel distance and time between two points.

Three models behind one interface (``leg``, ``seconds``, ``reach_m``), chosen by
:func:`load_eta_model` (``COOP_ETA_MODEL``):

- ``straight`` — ``base.EtaModel``: one detour factor and one speed for the whole city.
- ``calibrated`` — ``calibrated.CalibratedEtaModel``: detour factor and pace fitted by
  place (H3 cell, district), hour of the week, trip length and direction
  (``data/eta_calibration.json``, made by ``benchmarks/calibrate_eta.py``).
- ``learned`` (the default) — ``learned.LearnedEtaModel``: durations learned from real,
  observed NYC taxi trips (``data/eta_model.pkl``, made by ``coopride eta fit``), with a
  live correction from the co-op's recently finished trips; distances from
  ``calibrated``.
- ``road`` — ``road.RoadNetworkEtaModel``: fastest route over the Midtown OpenStreetMap
  road graph (``geo.roads``) where it covers both ends, the calibrated model elsewhere.

What the calibration was fitted against, and how well it does, is in ``docs/eta.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from core.data import DataFile
from geo.eta.base import DEFAULT_DETOUR_FACTOR, DEFAULT_MODEL, DEFAULT_SPEED_MPS, EtaModel, Leg
from geo.eta.calibrated import (
    CALIBRATION_FORMAT,
    HOURS_PER_WEEK,
    CalibratedEtaModel,
    EtaCalibration,
    HourOfWeekClock,
    Surface,
    calibration_path,
    fixed_hour,
    hour_of_week,
)
from geo.eta.road import RoadNetworkEtaModel

EtaMode = Literal["learned", "calibrated", "road", "straight"]
ETA_MODES: tuple[EtaMode, ...] = ("learned", "calibrated", "road", "straight")


def data_needed(mode: EtaMode, *, leg_at_a_time: bool = False) -> tuple[DataFile, ...]:
    """The data files :func:`load_eta_model` reads for ``mode`` (checked before start-up)."""
    if mode == "straight":
        return ()
    if mode == "road":
        return (DataFile.ETA_CALIBRATION, DataFile.ROADS)
    if mode == "learned":
        trees = DataFile.ETA_TREES if leg_at_a_time else DataFile.ETA_MODEL
        return (DataFile.ETA_CALIBRATION, trees)
    return (DataFile.ETA_CALIBRATION,)


def load_eta_model(
    mode: EtaMode,
    *,
    calibration_path: Path | None = None,
    osm_path: Path | None = None,
    cache_dir: Path | None = None,
    leg_at_a_time: bool = False,
) -> EtaModel:
    """The model ``COOP_ETA_MODEL`` (or ``COOP_TRIP_ETA_MODEL``) names. ``calibrated``
    reads one small JSON file; ``road`` also loads the road graph (cached after the first
    build: see geo/roads/) and needs ``osmium`` and ``scipy``. ``learned`` loads
    scikit-learn and its regressor, fast on a batch; with ``leg_at_a_time`` (an api
    process's quotes) the same trees as plain arrays instead (``geo.eta.trees``)."""
    if mode == "straight":
        return DEFAULT_MODEL
    calibrated = CalibratedEtaModel.create(EtaCalibration.load(calibration_path))
    if mode == "calibrated":
        return calibrated
    if mode == "learned":
        from geo.eta.learned import load_learned_model, load_quote_model

        if leg_at_a_time:
            return load_quote_model(calibrated)
        return load_learned_model(calibrated)
    if mode == "road":
        from geo.roads import RoadRouter

        router = RoadRouter.load(osm_path, cache_dir=cache_dir)
        return RoadNetworkEtaModel(router=router, fallback=calibrated)
    raise ValueError(f"unknown ETA model {mode!r}; expected one of {ETA_MODES}")


__all__ = [
    "CALIBRATION_FORMAT",
    "DEFAULT_DETOUR_FACTOR",
    "DEFAULT_MODEL",
    "DEFAULT_SPEED_MPS",
    "ETA_MODES",
    "HOURS_PER_WEEK",
    "CalibratedEtaModel",
    "EtaCalibration",
    "EtaMode",
    "EtaModel",
    "HourOfWeekClock",
    "Leg",
    "RoadNetworkEtaModel",
    "Surface",
    "calibration_path",
    "data_needed",
    "fixed_hour",
    "hour_of_week",
    "load_eta_model",
]
