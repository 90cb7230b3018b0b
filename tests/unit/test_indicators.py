"""Indicator kernels against pandas references on real SPY closes; streaming == array."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from tests.conftest import SPY_MINUTE
from trader.data import load_minute_bars
from trader.indicators import (
    atr,
    bollinger,
    ema,
    macd,
    nb,
    rolling_std,
    rsi,
    session_ids,
    sma,
    volatility,
    vwap,
    zscore,
)


@pytest.fixture(scope="module")
def close() -> pd.Series:
    return load_minute_bars(SPY_MINUTE)["close"]


@pytest.mark.parametrize("window", [1, 2, 12, 26, 200])
def test_ema_when_real_closes_then_equals_pandas_ewm(close: pd.Series, window: int) -> None:
    expected = close.ewm(span=window, adjust=False).mean()
    expected.iloc[: window - 1] = np.nan
    pd.testing.assert_series_equal(ema(close, window), expected, check_names=False, rtol=1e-12)


def _rsi_reference(close: pd.Series, window: int) -> pd.Series:
    """Wilder's RSI with pandas: SMA seed of the first `window` changes, then
    ewm(alpha=1/window, adjust=False) (Wilder's smoothing)."""
    change = close.diff()
    gain, loss = change.clip(lower=0.0), (-change).clip(lower=0.0)

    def wilder(x: pd.Series) -> pd.Series:
        seeded = x.copy()
        seeded.iloc[: window + 1] = np.nan
        seeded.iloc[window] = x.iloc[1 : window + 1].mean()
        return seeded.iloc[window:].ewm(alpha=1.0 / window, adjust=False).mean()

    rs = wilder(gain) / wilder(loss)
    out = 100.0 - 100.0 / (1.0 + rs)
    return out.reindex(close.index)


@pytest.mark.parametrize("window", [2, 14, 30])
def test_rsi_when_real_closes_then_equals_pandas_wilder_reference(
    close: pd.Series, window: int
) -> None:
    pd.testing.assert_series_equal(
        rsi(close, window), _rsi_reference(close, window), check_names=False, rtol=1e-9
    )


def test_rsi_when_prices_only_rise_then_100() -> None:
    out = nb.rsi_nb(np.arange(1.0, 30.0), 14)
    assert np.isnan(out[:14]).all()
    assert (out[14:] == 100.0).all()


def test_streaming_and_array_forms_when_same_input_then_identical(close: pd.Series) -> None:
    x = close.to_numpy()
    e_state, r_state = nb.ema_state_nb(), nb.rsi_state_nb()
    e_stream = np.array([nb.ema_update_nb(e_state, v, 26) for v in x])
    r_stream = np.array([nb.rsi_update_nb(r_state, v, 14) for v in x])
    np.testing.assert_array_equal(e_stream, nb.ema_nb(x, 26))
    np.testing.assert_array_equal(r_stream, nb.rsi_nb(x, 14))


# -- SMA, rolling std, Bollinger, z-score, volatility, MACD, ATR, VWAP -------------------


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_minute_bars(SPY_MINUTE)


def _exact_rolling_std(x: np.ndarray, window: int, ddof: int) -> np.ndarray:
    """Rolling std of the float64 values themselves, correctly rounded: every price >= 64
    is an integer multiple of 2**-46, so the window sums are exact Python integers and
    only the final division and square root round."""
    scale = 2**46
    assert x.min() >= 64.0
    k = [int(v * scale) for v in x]
    s1 = [0, *itertools.accumulate(k)]
    s2 = [0, *itertools.accumulate(i * i for i in k)]
    out = np.full(len(x), np.nan)
    if window > ddof:
        for i in range(window - 1, len(x)):
            a, q = s1[i + 1] - s1[i + 1 - window], s2[i + 1] - s2[i + 1 - window]
            out[i] = math.sqrt((window * q - a * a) / (window * (window - ddof) * scale * scale))
    return out


@pytest.mark.parametrize("window", [1, 2, 5, 20, 390])
def test_sma_when_real_closes_then_equals_pandas_rolling_mean(
    close: pd.Series, window: int
) -> None:
    pd.testing.assert_series_equal(
        sma(close, window), close.rolling(window).mean(), check_names=False, rtol=1e-12, atol=0
    )


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("window", [1, 2, 5, 20, 390])
def test_rolling_std_when_real_closes_then_exact_to_1e12(
    close: pd.Series, window: int, ddof: int
) -> None:
    got = rolling_std(close, window, ddof).to_numpy()
    np.testing.assert_allclose(got, _exact_rolling_std(close.to_numpy(), window, ddof), rtol=1e-12)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("window", [2, 20, 390])
def test_rolling_std_when_real_closes_then_equals_pandas_within_its_drift(
    close: pd.Series, window: int, ddof: int
) -> None:
    # pandas' rolling std is an online add/remove (Welford) update: over this month it
    # drifts up to ~2e-8 relative from the exact value, and up to ~8e-7 USD where a
    # window of equal prices should give 0 (test above: ours is exact to 1e-12).
    got = rolling_std(close, window, ddof)
    np.testing.assert_allclose(got, close.rolling(window).std(ddof=ddof), rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("window", [20, 60, 390])
def test_bollinger_when_real_closes_then_equals_pandas(
    close: pd.Series, window: int, ddof: int
) -> None:
    mid, sd = close.rolling(window).mean(), close.rolling(window).std(ddof=ddof)
    expected = pd.DataFrame({"middle": mid, "upper": mid + 2.0 * sd, "lower": mid - 2.0 * sd})
    got = bollinger(close, window, 2.0, ddof)
    # rtol 1e-11 on ~128 USD bands absorbs pandas' std drift (~1e-10 USD at window 20)
    pd.testing.assert_frame_equal(got, expected, check_names=False, rtol=1e-11, atol=0)
    pd.testing.assert_series_equal(got["middle"], sma(close, window), check_names=False)


@pytest.mark.parametrize("window", [20, 60, 390])
def test_zscore_when_real_closes_then_equals_pandas(close: pd.Series, window: int) -> None:
    r = close.rolling(window)
    expected = (close - r.mean()) / r.std(ddof=0)
    # |z| <= sqrt(window - 1); absolute tolerance for pandas' ~2e-8 relative std drift
    np.testing.assert_allclose(zscore(close, window), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("window", [2, 5])
def test_zscore_when_real_closes_with_equal_price_windows_then_nan_there(
    close: pd.Series, window: int
) -> None:
    sd = _exact_rolling_std(close.to_numpy(), window, 0)
    assert (sd == 0).any()  # the real data has windows of equal closes
    expected = (close - close.rolling(window).mean()) / np.where(sd > 0, sd, np.nan)
    got = zscore(close, window)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    assert np.isnan(got.to_numpy()[sd == 0]).all()


def _log_returns(close: pd.Series) -> pd.Series:
    return np.log1p(close.diff() / close.shift(1))


@pytest.mark.parametrize(
    ("window", "ddof", "ppy"), [(2, 1, None), (20, 1, None), (390, 0, None), (30, 1, 252 * 390)]
)
def test_volatility_when_real_closes_then_equals_pandas_two_pass_std(
    close: pd.Series, window: int, ddof: int, ppy: float | None
) -> None:
    # per-window two-pass std (pandas' vectorised rolling std drifts up to ~3e-6 relative
    # on 2- and 5-return windows of minute returns)
    sd = _log_returns(close).rolling(window).apply(lambda a: a.std(ddof=ddof), raw=True)
    expected = sd * math.sqrt(ppy) if ppy is not None else sd
    got = volatility(close, window, periods_per_year=ppy, ddof=ddof)
    pd.testing.assert_series_equal(got, expected, check_names=False, rtol=1e-10, atol=0)


@pytest.mark.parametrize("window", [20, 390])
def test_volatility_when_long_window_then_equals_pandas_rolling_std(
    close: pd.Series, window: int
) -> None:
    expected = _log_returns(close).rolling(window).std()
    pd.testing.assert_series_equal(
        volatility(close, window), expected, check_names=False, rtol=1e-12, atol=0
    )


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 16)])
def test_macd_when_real_closes_then_equals_pandas_ewm_composition(
    close: pd.Series, fast: int, slow: int, signal: int
) -> None:
    line = close.ewm(span=fast, adjust=False).mean() - close.ewm(span=slow, adjust=False).mean()
    sig = line.ewm(span=signal, adjust=False).mean()
    expected = pd.DataFrame({"macd": line, "signal": sig, "hist": line - sig})
    expected.iloc[: slow - 1, 0] = np.nan
    expected.iloc[: slow + signal - 2, 1:] = np.nan
    # MACD is a difference of two ~128 USD averages: compare absolutely, to ~100 ulp(128)
    pd.testing.assert_frame_equal(
        macd(close, fast, slow, signal), expected, check_names=False, rtol=0, atol=1e-12
    )


def _atr_reference(bars: pd.DataFrame, window: int) -> pd.Series:
    """Wilder's ATR with pandas: TR needs the previous close (none on bar 0), SMA seed of
    the first `window` TRs, then ewm(alpha=1/window, adjust=False)."""
    h, lo, prev = bars["high"], bars["low"], bars["close"].shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    tr.iloc[0] = np.nan
    seeded = tr.copy()
    seeded.iloc[: window + 1] = np.nan
    seeded.iloc[window] = tr.iloc[1 : window + 1].mean()
    return seeded.iloc[window:].ewm(alpha=1.0 / window, adjust=False).mean().reindex(bars.index)


@pytest.mark.parametrize("window", [1, 2, 14, 30])
def test_atr_when_real_bars_then_equals_pandas_wilder_reference(
    bars: pd.DataFrame, window: int
) -> None:
    got = atr(bars["high"], bars["low"], bars["close"], window)
    pd.testing.assert_series_equal(
        got, _atr_reference(bars, window), check_names=False, rtol=1e-12, atol=0
    )


@pytest.mark.parametrize("session", ["regular", "all"])
def test_vwap_when_real_bars_then_equals_pandas_groupby_new_york_date(session: str) -> None:
    b = load_minute_bars(SPY_MINUTE, session=session)
    day = b.index.tz_convert("America/New_York").date
    pv = (b["high"] + b["low"] + b["close"]) / 3.0 * b["volume"]
    expected = pv.groupby(day).cumsum() / b["volume"].groupby(day).cumsum()
    got = vwap(b["high"], b["low"], b["close"], b["volume"])
    pd.testing.assert_series_equal(got, expected, check_names=False, rtol=1e-12, atol=0)
    assert len(np.unique(session_ids(b.index))) == len(set(day)) == 20  # trading days


# -- streaming == array ------------------------------------------------------------------


def test_streaming_and_array_forms_when_real_bars_then_identical_for_all(
    bars: pd.DataFrame,
) -> None:
    h, lo, c, v = (
        np.ascontiguousarray(bars[k].to_numpy()) for k in ("high", "low", "close", "volume")
    )
    sid = session_ids(bars.index)
    w = 20
    s_sma, s_std, s_z = nb.sma_state_nb(w), nb.std_state_nb(w), nb.zscore_state_nb(w)
    s_vol, s_bb, s_macd = nb.volatility_state_nb(w), nb.bollinger_state_nb(w), nb.macd_state_nb()
    s_atr, s_vwap = nb.atr_state_nb(), nb.vwap_state_nb()
    stream = {k: [] for k in ("sma", "std", "z", "vol", "atr", "vwap", "bb", "macd")}
    for i in range(len(c)):
        stream["sma"].append(nb.sma_update_nb(s_sma, c[i], w))
        stream["std"].append(nb.std_update_nb(s_std, c[i], w, 1))
        stream["z"].append(nb.zscore_update_nb(s_z, c[i], w, 0))
        stream["vol"].append(nb.volatility_update_nb(s_vol, c[i], w, 1, 252.0 * 390))
        stream["atr"].append(nb.atr_update_nb(s_atr, h[i], lo[i], c[i], 14))
        new = i == 0 or sid[i] != sid[i - 1]
        stream["vwap"].append(nb.vwap_update_nb(s_vwap, h[i], lo[i], c[i], v[i], new))
        out = np.empty(3)
        nb.bollinger_update_nb(s_bb, c[i], w, 2.0, 0, out)
        stream["bb"].append(out)
        out = np.empty(3)
        nb.macd_update_nb(s_macd, c[i], 12, 26, 9, out)
        stream["macd"].append(out)
    arrays = {
        "sma": nb.sma_nb(c, w),
        "std": nb.std_nb(c, w, 1),
        "z": nb.zscore_nb(c, w, 0),
        "vol": nb.volatility_nb(c, w, 1, 252.0 * 390),
        "atr": nb.atr_nb(h, lo, c, 14),
        "vwap": nb.vwap_nb(h, lo, c, v, sid),
        "bb": nb.bollinger_nb(c, w, 2.0, 0),
        "macd": nb.macd_nb(c, 12, 26, 9),
    }
    for name, arr in arrays.items():
        np.testing.assert_array_equal(np.array(stream[name]), arr, err_msg=name)


# -- warm-up lengths -----------------------------------------------------------------------


def _leading_nans(x: np.ndarray) -> int:
    nan = np.isnan(x)
    n = int(np.argmin(nan)) if not nan.all() else len(x)
    assert not nan[n:].any(), "NaN after the warm-up"
    return n


def test_warm_up_when_real_bars_then_documented_nan_prefix(bars: pd.DataFrame) -> None:
    c, h, lo, v = bars["close"], bars["high"], bars["low"], bars["volume"]
    m, bb = macd(c, 12, 26, 9), bollinger(c, 20)
    expected = {
        "sma": (sma(c, 20), 19),
        "std0": (rolling_std(c, 20, 0), 19),
        "std1": (rolling_std(c, 20, 1), 19),
        "bollinger": (bb, 19),
        "zscore": (zscore(c, 20), 19),
        "volatility": (volatility(c, 20), 20),
        "macd": (m["macd"], 25),
        "signal": (m["signal"], 33),
        "hist": (m["hist"], 33),
        "atr": (atr(h, lo, c, 14), 14),
        "vwap": (vwap(h, lo, c, v), 0),
    }
    for name, (x, n) in expected.items():
        for col in np.atleast_2d(x.to_numpy().T):
            assert _leading_nans(col) == n, name


# -- edge cases ------------------------------------------------------------------------------


def test_window_one_when_any_prices_then_degenerate_values(close: pd.Series) -> None:
    x = close.to_numpy()
    np.testing.assert_array_equal(nb.sma_nb(x, 1), x)
    np.testing.assert_array_equal(nb.std_nb(x, 1, 0), np.zeros_like(x))
    assert np.isnan(nb.std_nb(x, 1, 1)).all()  # one value has no sample std
    assert np.isnan(nb.zscore_nb(x, 1, 0)).all()  # zero std: NaN, not 0/0 or inf
    np.testing.assert_array_equal(nb.bollinger_nb(x, 1, 2.0, 0), np.column_stack([x, x, x]))
    np.testing.assert_array_equal(nb.macd_nb(x, 1, 1, 1), np.zeros((len(x), 3)))
    vol = nb.volatility_nb(x, 1, 0, 1.0)
    assert np.isnan(vol[0])
    assert (vol[1:] == 0.0).all()


def test_constant_prices_when_windows_fill_then_zero_std_nan_zscore_exact_mean() -> None:
    # a varying start, then 50 equal prices that are not exactly representable
    x = np.concatenate([[100.3, 100.1, 100.7], np.full(50, 100.1)])
    w = 7
    flat = slice(3 + w - 1, None)  # windows made only of the constant
    with np.errstate(all="raise"):  # no division by zero, no invalid operation
        sd, z = nb.std_nb(x, w, 1), nb.zscore_nb(x, w, 0)
        vol = nb.volatility_nb(x, w, 1, 252.0)
        bb = nb.bollinger_nb(x, w, 2.0, 0)
    assert (sd[flat] == 0.0).all()
    assert (sd[w - 1 : 3 + w - 1] > 0.0).all()
    assert np.isnan(z[flat]).all()
    assert np.isfinite(z[w - 1 : 3 + w - 1]).all()
    assert (nb.sma_nb(x, w)[flat] == 100.1).all()
    assert (bb[flat] == 100.1).all()
    assert (vol[3 + w :] == 0.0).all()
    hlc = np.full(20, 100.1)
    assert (nb.atr_nb(hlc, hlc, hlc, 5)[5:] == 0.0).all()


def test_vwap_when_sessions_change_then_restarts_and_nan_without_volume() -> None:
    h = np.array([11.0, 12.0, 21.0, 22.0, 23.0])
    lo = np.array([9.0, 10.0, 19.0, 20.0, 21.0])
    c = np.array([10.0, 11.0, 20.0, 21.0, 22.0])
    vol = np.array([100.0, 300.0, 0.0, 200.0, 200.0])
    out = nb.vwap_nb(h, lo, c, vol, np.array([7, 7, 8, 8, 8]))
    tp = (h + lo + c) / 3.0
    assert out[0] == tp[0]
    assert out[1] == pytest.approx((tp[0] * 100 + tp[1] * 300) / 400, rel=1e-15)
    assert np.isnan(out[2])  # new session, no volume yet: no VWAP
    assert out[3] == tp[3]  # day 1 forgotten
    assert out[4] == pytest.approx((tp[3] + tp[4]) / 2, rel=1e-15)


def test_sma_std_when_spikes_leave_the_window_then_no_running_sum_drift() -> None:
    # Bad ticks 1e8 times the price: a plain running sum keeps their rounding error
    # (and, after many, drifts) once they left the window; ours must not.
    rng = np.random.default_rng(7)
    x = 128.0 + 0.01 * rng.standard_normal(200_000).cumsum()
    x[rng.integers(0, len(x), 200)] = 1.28e10
    w = 50
    windows = sliding_window_view(x, w)
    np.testing.assert_allclose(nb.sma_nb(x, w)[w - 1 :], windows.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(nb.std_nb(x, w, 1)[w - 1 :], windows.std(axis=1, ddof=1), rtol=1e-9)
