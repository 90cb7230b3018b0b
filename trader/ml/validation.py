"""Purged walk-forward validation.

Folds come from scikit-learn's :class:`~sklearn.model_selection.TimeSeriesSplit`: each
test window follows its training window in time, training windows roll forward (at most
``max_train`` rows) and a ``gap`` of rows between them is dropped. Because the label of
bar ``t`` looks ``horizon`` bars ahead (:func:`trader.ml.nb.forward_label_nb`), a gap of
at least ``horizon`` purges every training label that would overlap the test window
(M. López de Prado, *Advances in Financial Machine Learning*, 2018, ch. 7 "purging" and
"embargo"). Walk-forward never trains after its test window, so the gap is also the
embargo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import TimeSeriesSplit

from trader.backtest import run_backtest
from trader.metrics import summary
from trader.ml.model import XgbParams, native_predict, train_xgb
from trader.ml.pipeline import Dataset


def walk_forward_splits(
    n: int, n_splits: int, horizon: int, gap: int | None = None, max_train: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test row indices of a purged walk-forward.

    Parameters
    ----------
    n : int
        Number of rows (time-ordered).
    n_splits : int
        Number of folds (>= 2).
    horizon : int
        Label horizon, bars.
    gap : int, optional
        Rows dropped between train and test; ``horizon`` by default.
    max_train : int, optional
        Rolling training window, rows (expanding when None).

    Returns
    -------
    list of (train, test)
        int64 index arrays; ``train.max() + gap < test.min()``.

    Raises
    ------
    ValueError
        ``gap < horizon`` (labels would leak the test period into training) or too few
        rows for the folds.
    """
    gap = horizon if gap is None else gap
    if gap < horizon:
        raise ValueError(f"gap ({gap}) must be >= the label horizon ({horizon}) to purge leakage")
    tss = TimeSeriesSplit(n_splits=n_splits, gap=gap, max_train_size=max_train)
    return [(tr, te) for tr, te in tss.split(np.arange(n))]


@dataclass(frozen=True)
class WalkForwardResult:
    """Per-fold out-of-sample results and the out-of-sample probabilities.

    Attributes
    ----------
    folds : DataFrame
        One row per fold: ``train_start``, ``train_end``, ``test_start``, ``test_end``
        (UTC timestamps), ``n_train``, ``n_test``, ``auc``, ``accuracy`` and the
        backtest metrics of the strategy on the test window (``total_return``,
        ``sharpe``, ``max_drawdown``, ``n_trades``).
    oos_proba : ndarray, shape (n,), float64
        P(up) predicted for each row of the dataset by the fold that tested it; NaN
        for rows never tested.
    """

    folds: pd.DataFrame
    oos_proba: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean/min over folds and the count: ``auc_mean``, ``auc_min``,
        ``accuracy_mean``, ``sharpe_mean``, ``sharpe_min``, ``total_return_mean``,
        ``max_drawdown_max``, ``n_trades_total``, ``n_folds``."""
        f = self.folds
        return {
            "auc_mean": float(f["auc"].mean()),
            "auc_min": float(f["auc"].min()),
            "accuracy_mean": float(f["accuracy"].mean()),
            "sharpe_mean": float(f["sharpe"].mean()),
            "sharpe_min": float(f["sharpe"].min()),
            "total_return_mean": float(f["total_return"].mean()),
            "max_drawdown_max": float(f["max_drawdown"].max()),
            "n_trades_total": float(f["n_trades"].sum()),
            "n_folds": float(len(f)),
        }


def walk_forward(
    data: Dataset,
    *,
    n_splits: int = 4,
    gap: int | None = None,
    max_train: int | None = None,
    xgb: XgbParams | None = None,
    strategy_params: dict[str, Any] | None = None,
    commission_bps: float = 0.5,
    slippage_bps: float = 0.5,
    initial_cash: float = 100_000.0,
) -> WalkForwardResult:
    """Train on each fold's past, predict its test window, and backtest the model-driven
    ``ml_threshold`` strategy on that window with costs.

    Training rows are the fold's rows whose features are warm and whose label is known;
    the backtest runs over every bar of the test window with the model's probability as
    the step kernel's signal (NaN where features are not warm).

    Parameters
    ----------
    data : Dataset
        Bars, features and labels (:func:`trader.ml.pipeline.build_dataset`).
    n_splits, gap, max_train
        See :func:`walk_forward_splits` (the gap defaults to the label horizon).
    xgb : XgbParams, optional
    strategy_params : dict, optional
        :class:`~trader.strategy.MlThresholdParams` values.
    commission_bps, slippage_bps : float
        Costs, bps of traded notional.
    initial_cash : float
        USD per fold.

    Raises
    ------
    ValueError
        See :func:`walk_forward_splits`; a training fold with a single class.
    """
    n = len(data.bars)
    proba = np.full(n, np.nan)
    rows = []
    usable = data.ready & ~np.isnan(data.y)
    for k, (tr, te) in enumerate(walk_forward_splits(n, n_splits, data.horizon, gap, max_train)):
        tr_rows = tr[usable[tr]]
        clf = train_xgb(data.x[tr_rows], data.y[tr_rows], xgb)
        te_ready = te[data.ready[te]]
        proba[te_ready] = native_predict(clf, data.x[te_ready])
        scored = te[usable[te]]
        y_true, y_prob = data.y[scored], proba[scored]
        both = len(np.unique(y_true)) == 2
        bt = run_backtest(
            data.bars.iloc[te],
            "ml_threshold",
            strategy_params,
            initial_cash=initial_cash,
            commission_bps=commission_bps,
            slippage_bps=slippage_bps,
            signal=proba[te],
        )
        m = summary(bt)
        idx = data.bars.index
        rows.append(
            {
                "fold": k,
                "train_start": idx[tr[0]],
                "train_end": idx[tr[-1]],
                "test_start": idx[te[0]],
                "test_end": idx[te[-1]],
                "n_train": len(tr_rows),
                "n_test": len(te),
                "auc": float(roc_auc_score(y_true, y_prob)) if both else float("nan"),
                "accuracy": float(accuracy_score(y_true, y_prob > 0.5)),
                "total_return": m["total_return"],
                "sharpe": m["sharpe"],
                "max_drawdown": m["max_drawdown"],
                "n_trades": m["n_trades"],
            }
        )
    return WalkForwardResult(pd.DataFrame(rows).set_index("fold"), proba)
