"""ML strategy: features (no look-ahead, definitions), labels, purged walk-forward,
reproducible XGBoost, ONNX export parity and the live per-bar inference, on real bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import DAILY, SPY_MINUTE
from trader.data import load_daily_csv, load_minute_bars, to_bar_array
from trader.exceptions import ArtefactError
from trader.ml import (
    N_FEATURES,
    Dataset,
    XgbParams,
    build_dataset,
    fit_final,
    model_hash,
    model_signal,
    onnx_parity,
    to_onnx,
    walk_forward,
    walk_forward_splits,
)
from trader.ml.inference import ModelSignal, OnnxSignal
from trader.ml.nb import FEATURE_NAMES, WARMUP_BARS, features_nb, forward_label_nb
from trader.strategy import MlThresholdParams
from trader.strategy.nb import ml_threshold_step_nb

SMALL = XgbParams(n_estimators=30, max_depth=3)


@pytest.fixture(scope="module")
def spy() -> Dataset:
    bars = load_minute_bars(SPY_MINUTE, session="regular", start="2011-01-03", end="2011-01-14")
    return build_dataset(bars, horizon=10)


@pytest.fixture(scope="module")
def exported(spy: Dataset) -> tuple[object, bytes]:
    clf = fit_final(spy, SMALL)
    return clf, to_onnx(clf)


def _col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_features_when_compared_with_pandas_definitions_then_equal(spy: Dataset) -> None:
    b = spy.bars
    c = b["close"]
    logret = np.log(c / c.shift(1))
    expected = {
        "ret_1": logret,
        "ret_15": np.log(c / c.shift(15)),
        "ret_30": np.log(c / c.shift(30)),
        "ema12_gap": c / c.ewm(span=12, adjust=False).mean() - 1,
        "sma60_gap": c / c.rolling(60).mean() - 1,
        "vol60": logret.rolling(60).std(ddof=1),
        "volume_z20": (np.log1p(b["volume"]) - np.log1p(b["volume"]).rolling(20).mean())
        / np.log1p(b["volume"]).rolling(20).std(ddof=0),
    }
    day = b.index.normalize()
    tp = (b["high"] + b["low"] + c) / 3
    vwap = (tp * b["volume"]).groupby(day).cumsum() / b["volume"].groupby(day).cumsum()
    expected["vwap_gap"] = c / vwap - 1
    for name, series in expected.items():
        got = spy.x[:, _col(name)]
        want = series.to_numpy()
        warm = ~np.isnan(want) & ~np.isnan(got)
        assert warm.sum() > len(b) - 100, name
        np.testing.assert_allclose(got[warm], want[warm], rtol=1e-7, atol=1e-12, err_msg=name)
    assert spy.ready[WARMUP_BARS:].all()
    assert not spy.ready[: WARMUP_BARS - 1].any()


def test_features_when_future_bars_change_then_past_rows_identical(spy: Dataset) -> None:
    rec = to_bar_array(spy.bars)
    k = 500
    close = rec["close"].copy()
    close[k:] *= 1.5  # a different future
    x2, _ = features_nb(rec["ts_event"], rec["high"], rec["low"], close, rec["volume"])
    np.testing.assert_array_equal(x2[:k], spy.x[:k])
    assert not np.allclose(x2[k:], spy.x[k:], equal_nan=True)


def test_forward_label_when_computed_then_sign_of_forward_return() -> None:
    close = np.array([10.0, 11.0, 11.0, 9.0, 12.0, 12.0])
    y = forward_label_nb(close, 2)
    np.testing.assert_array_equal(y[:4], [1.0, 0.0, 1.0, 1.0])  # 11>10, 9<11, 12>11, 12>9
    assert np.isnan(y[4:]).all()


def test_walk_forward_splits_when_built_then_purged_by_the_horizon() -> None:
    splits = walk_forward_splits(1000, 4, horizon=15, gap=20, max_train=300)
    assert len(splits) == 4
    for tr, te in splits:
        assert tr.max() + 20 < te.min()
        assert len(tr) <= 300
    starts = [te.min() for _, te in splits]
    assert starts == sorted(starts)
    with pytest.raises(ValueError, match="horizon"):
        walk_forward_splits(1000, 4, horizon=15, gap=5)


def test_training_when_repeated_then_same_onnx_hash_and_other_seed_differs(
    spy: Dataset, exported: tuple[object, bytes]
) -> None:
    _, blob = exported
    again = to_onnx(fit_final(spy, SMALL))
    assert model_hash(again) == model_hash(blob)
    other = to_onnx(fit_final(spy, SMALL.model_copy(update={"seed": 1})))
    assert model_hash(other) != model_hash(blob)


def test_onnx_when_compared_on_every_row_then_matches_native_xgboost(
    spy: Dataset, exported: tuple[object, bytes]
) -> None:
    clf, blob = exported
    parity = onnx_parity(clf, blob, spy.x[spy.ready])  # type: ignore[arg-type]
    assert parity["rows"] == int(spy.ready.sum())
    assert parity["max_abs_diff"] < 1e-5
    assert parity["label_mismatches"] == 0


def test_live_signal_when_streamed_bar_by_bar_then_equals_research_signal(
    spy: Dataset, exported: tuple[object, bytes]
) -> None:
    _, blob = exported
    research = model_signal(blob, spy)
    live = ModelSignal(blob)
    rec = to_bar_array(spy.bars)
    streamed = np.array(
        [live.update(int(r["ts_event"]), r["high"], r["low"], r["close"], r["volume"]) for r in rec]
    )
    np.testing.assert_array_equal(np.isnan(streamed), ~spy.ready)
    np.testing.assert_array_equal(streamed, research)  # NaN where not warm, bit-equal elsewhere
    assert 0.0 < np.nanmin(research) < np.nanmax(research) < 1.0


def test_onnx_signal_when_model_is_not_ours_then_clear_error() -> None:
    with pytest.raises(ArtefactError, match="cannot load ONNX model"):
        OnnxSignal(b"not a model")


def test_ml_threshold_step_when_signal_crosses_levels_then_long_hold_flat() -> None:
    p = MlThresholdParams(enter=0.6, exit=0.4, qty=50).to_array()
    state = np.zeros(1)
    got = [
        ml_threshold_step_nb(state, p, 100.0, s)
        for s in [np.nan, 0.5, 0.6, 0.5, np.nan, 0.41, 0.4, 0.59, 0.9]
    ]
    assert got == [0, 0, 50, 50, 50, 50, 0, 0, 50]
    with pytest.raises(ValueError, match="exit"):
        MlThresholdParams(enter=0.5, exit=0.5)


def test_walk_forward_when_run_on_daily_bars_then_oos_metrics_per_fold() -> None:
    bars = load_daily_csv(DAILY["MSFT"], adjusted=True)
    data = build_dataset(bars, horizon=5)
    wf = walk_forward(
        data,
        n_splits=3,
        max_train=1500,
        xgb=SMALL,
        strategy_params={"enter": 0.55, "exit": 0.45, "qty": 100},
    )
    f = wf.folds
    assert len(f) == 3
    assert ((f["auc"] > 0) & (f["auc"] < 1)).all()
    assert (f["train_end"] < f["test_start"]).all()
    assert (f["n_train"] <= 1500).all()
    tested = ~np.isnan(wf.oos_proba)
    assert tested.sum() == pytest.approx(f["n_test"].sum(), abs=WARMUP_BARS)
    assert not tested[: len(bars) - int(f["n_test"].sum())].any()  # only test rows predicted
    s = wf.summary()
    assert s["n_folds"] == 3
    assert s["n_trades_total"] == f["n_trades"].sum()


def test_build_dataset_when_horizon_invalid_then_value_error(spy: Dataset) -> None:
    with pytest.raises(ValueError, match="horizon"):
        build_dataset(spy.bars.iloc[:5], horizon=10)
    assert spy.x.shape == (len(spy.bars), N_FEATURES)
    assert isinstance(spy.bars, pd.DataFrame)
