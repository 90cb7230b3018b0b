"""Research-facing steps of the ML strategy: dataset, final model, export and the
backtest signal.

Typical use (``notebooks/train_export.ipynb``)::

    cand = train_export(bars, horizon=15)        # walk-forward, final model, ONNX, parity
    save_candidate(run_dir / "candidate", cand)  # model.onnx + evidence.json
    signal = model_signal(cand.model, cand.data) # what the live engine will compute
    run_backtest(bars, "ml_threshold", params, signal=signal)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from xgboost import XGBClassifier

from trader.data import to_bar_array
from trader.exceptions import ArtefactError
from trader.ml.model import (
    XgbParams,
    model_hash,
    onnx_parity,
    onnx_predict,
    to_onnx,
    train_xgb,
)
from trader.ml.nb import FEATURE_NAMES, features_nb, forward_label_nb
from trader.strategy import MlThresholdParams

if TYPE_CHECKING:
    from trader.ml.validation import WalkForwardResult


@dataclass(frozen=True)
class Dataset:
    """Bars with their features and labels, row-aligned.

    Attributes
    ----------
    bars : DataFrame
        Validated OHLCV bars (a :mod:`trader.data` loader's output).
    x : ndarray, shape (n, N_FEATURES), float64
        :func:`trader.ml.nb.features_nb` of the bars.
    ready : ndarray, shape (n,), bool
        Rows whose features are all finite.
    y : ndarray, shape (n,), float64
        :func:`trader.ml.nb.forward_label_nb` (NaN for the last ``horizon`` rows).
    horizon : int
        Label horizon, bars.
    """

    bars: pd.DataFrame
    x: np.ndarray
    ready: np.ndarray
    y: np.ndarray
    horizon: int

    @property
    def usable(self) -> np.ndarray:
        """Rows with warm features and a known label, shape (n,) bool."""
        return self.ready & ~np.isnan(self.y)


def build_dataset(bars: pd.DataFrame, horizon: int) -> Dataset:
    """Compute features and labels of ``bars``.

    Parameters
    ----------
    bars : DataFrame
        From :func:`trader.data.load_minute_bars` or :func:`trader.data.load_daily_csv`.
    horizon : int
        Label horizon in bars (>= 1).

    Raises
    ------
    ValueError
        ``horizon < 1`` or not more bars than the horizon.
    """
    if horizon < 1 or len(bars) <= horizon:
        raise ValueError(f"need horizon >= 1 and more than {horizon} bars, got {len(bars)}")
    rec = to_bar_array(bars)
    x, ready = features_nb(rec["ts_event"], rec["high"], rec["low"], rec["close"], rec["volume"])
    y = forward_label_nb(rec["close"], horizon)
    return Dataset(bars, x, ready, y, horizon)


def fit_final(data: Dataset, xgb: XgbParams | None = None) -> XGBClassifier:
    """Train the model to export on every usable row of ``data``."""
    u = data.usable
    return train_xgb(data.x[u], data.y[u], xgb)


def model_signal(blob: bytes, data: Dataset) -> np.ndarray:
    """The per-bar signal the live engine computes: the ONNX model's P(up) on rows with
    warm features, NaN elsewhere; shape (n,) float64 (the backtester's ``signal``)."""
    sig = np.full(len(data.bars), np.nan)
    if data.ready.any():
        sig[data.ready] = onnx_predict(blob, data.x[data.ready])
    return sig


@dataclass(frozen=True)
class Candidate:
    """A trained, exported model with the evidence behind it.

    Attributes
    ----------
    model : bytes
        ``model.onnx``.
    evidence : dict
        JSON-serialisable: ``horizon``, ``xgb`` (hyper-parameters), ``strategy_params``
        (of the walk-forward backtests), ``features``,
        ``oos`` (walk-forward summary), ``folds`` (per-fold rows), ``onnx_parity``,
        ``model_sha256_runs`` (hashes of two independent trainings).
    walk_forward : WalkForwardResult
    data : Dataset
    """

    model: bytes
    evidence: dict[str, Any]
    walk_forward: WalkForwardResult
    data: Dataset


def train_export(
    bars: pd.DataFrame,
    horizon: int,
    xgb: XgbParams | None = None,
    *,
    n_splits: int = 4,
    gap: int | None = None,
    max_train: int | None = None,
    strategy_params: dict[str, Any] | None = None,
    commission_bps: float = 0.5,
    slippage_bps: float = 0.5,
) -> Candidate:
    """Walk-forward validate, train the final model twice (reproducibility), export it to
    ONNX and check ONNX parity on every row with warm features.

    Parameters are those of :func:`build_dataset` and
    :func:`trader.ml.validation.walk_forward`.

    Raises
    ------
    ValueError
        See :func:`build_dataset` and :func:`trader.ml.validation.walk_forward`.
    """
    from trader.ml.validation import walk_forward

    xgb = xgb or XgbParams()
    data = build_dataset(bars, horizon)
    wf = walk_forward(
        data,
        n_splits=n_splits,
        gap=gap,
        max_train=max_train,
        xgb=xgb,
        strategy_params=strategy_params,
        commission_bps=commission_bps,
        slippage_bps=slippage_bps,
    )
    clf = fit_final(data, xgb)
    blob = to_onnx(clf)
    rerun = to_onnx(fit_final(data, xgb))
    folds = wf.folds.reset_index()
    for c in ("train_start", "train_end", "test_start", "test_end"):
        folds[c] = folds[c].astype(str)
    evidence = {
        "horizon": horizon,
        "gap": horizon if gap is None else gap,
        "max_train": max_train,
        "xgb": xgb.model_dump(),
        "strategy_params": MlThresholdParams(**(strategy_params or {})).model_dump(),
        "features": list(FEATURE_NAMES),
        "bars": {"first": str(bars.index[0]), "last": str(bars.index[-1]), "n": len(bars)},
        "costs_bps": {"commission": commission_bps, "slippage": slippage_bps},
        "oos": wf.summary(),
        "folds": folds.to_dict(orient="records"),
        "onnx_parity": onnx_parity(clf, blob, data.x[data.ready]),
        "model_sha256_runs": [model_hash(blob), model_hash(rerun)],
    }
    return Candidate(blob, evidence, wf, data)


def save_candidate(folder: Path, cand: Candidate) -> Path:
    """Write ``model.onnx`` and ``evidence.json`` of ``cand`` into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(cand.model)
    (folder / "evidence.json").write_text(json.dumps(cand.evidence, indent=2, default=float))
    return folder


def load_candidate(folder: Path) -> tuple[bytes, dict[str, Any]]:
    """Read ``model.onnx`` and ``evidence.json`` written by :func:`save_candidate`.

    Raises
    ------
    ArtefactError
        If either file is missing or the evidence is not valid JSON.
    """
    try:
        return (folder / "model.onnx").read_bytes(), json.loads(
            (folder / "evidence.json").read_text()
        )
    except (OSError, ValueError) as e:
        raise ArtefactError(f"candidate {folder}: {e}; run notebooks/train_export.ipynb") from None
