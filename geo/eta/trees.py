"""The learned ETA model's trees as plain arrays, for the processes that quote a leg at a time.

Importing scikit-learn takes about five seconds and 120 MB per process on the
development machine, and an api process only ever asks for one leg at a time (a
quote). It reads the same fitted trees from ``data/eta_model.npz`` instead: one
array per node attribute, every tree's nodes in one run, written beside
``eta_model.pkl`` by ``coopride eta fit``. Walking all the trees at once, one level per
step, costs a few hundred microseconds for a leg, and no pickle is read, so no code
runs on load. The dispatcher's batch of 16,000 legs still goes through
scikit-learn's compiled predictor (``geo.eta.learned``), far faster per leg;
``tests/geo/test_eta_trees.py`` checks that both give the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

TABLES_FORMAT = 1
# A real trip shorter than this is a meter started and stopped (geo.eta.learned too).
MIN_SECONDS = 30


@dataclass(frozen=True, eq=False)
class TreeTables:
    """Every tree's nodes, concatenated: node ``i``'s split feature, threshold and
    children (indices into the same arrays), whether it is a leaf and its value; each
    tree starts at ``roots[t]``. The prediction of log seconds is ``baseline`` plus one
    leaf value per tree."""

    feature: Ints
    threshold: Floats
    left: Ints
    right: Ints
    is_leaf: npt.NDArray[np.bool_]
    missing_left: npt.NDArray[np.bool_]
    value: Floats
    roots: Ints
    baseline: float
    meta: dict[str, Any]

    @classmethod
    def from_regressor(cls, regressor: Any, meta: dict[str, Any]) -> TreeTables:
        """The tables of a fitted ``HistGradientBoostingRegressor`` (numeric features
        only, as the learned model has)."""
        parts = [predictors[0].nodes for predictors in regressor._predictors]
        offsets = np.cumsum([0] + [len(nodes) for nodes in parts[:-1]])
        nodes = np.concatenate(parts)
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        shift = np.repeat(offsets, [len(n) for n in parts])
        return cls(
            feature=nodes["feature_idx"].astype(np.int64),
            threshold=nodes["num_threshold"].astype(np.float64),
            left=nodes["left"].astype(np.int64) + shift,
            right=nodes["right"].astype(np.int64) + shift,
            is_leaf=nodes["is_leaf"].astype(bool),
            missing_left=nodes["missing_go_to_left"].astype(bool),
            value=nodes["value"].astype(np.float64),
            roots=offsets.astype(np.int64),
            baseline=float(np.ravel(regressor._baseline_prediction)[0]),
            meta=meta,
        )

    def predict_log(self, x: Floats) -> Floats:
        """Log seconds for each row of the feature matrix ``x``: every tree walked at
        once, one level per step, until each stands on a leaf."""
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        while True:
            inner = ~self.is_leaf[node]
            if not inner.any():
                break
            value = x[rows, self.feature[node]]
            go_left = np.where(
                np.isnan(value), self.missing_left[node], value <= self.threshold[node]
            )
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.baseline + self.value[node].sum(axis=1)  # type: ignore[no-any-return]

    def predict_s(self, x: Floats) -> Floats:
        return np.maximum(np.exp(self.predict_log(x)), MIN_SECONDS)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            format=np.array(TABLES_FORMAT),
            feature=self.feature,
            threshold=self.threshold,
            left=self.left,
            right=self.right,
            is_leaf=self.is_leaf,
            missing_left=self.missing_left,
            value=self.value,
            roots=self.roots,
            baseline=np.array(self.baseline),
            meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TreeTables:
        with np.load(path, allow_pickle=False) as f:
            if int(f["format"]) != TABLES_FORMAT:
                raise ValueError(f"{path.name}: tables format {int(f['format'])}, expected 1")
            return cls(
                feature=f["feature"],
                threshold=f["threshold"],
                left=f["left"],
                right=f["right"],
                is_leaf=f["is_leaf"],
                missing_left=f["missing_left"],
                value=f["value"],
                roots=f["roots"],
                baseline=float(f["baseline"]),
                meta=json.loads(str(f["meta"])),
            )
